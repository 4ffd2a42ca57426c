#include "core/config.h"

#include <sys/stat.h>

#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <yaml-cpp/yaml.h>

#include "core/error.h"
#include "core/layout.h"

namespace ptrust {

std::string_view to_string(CrlPolicy p) noexcept {
  switch (p) {
    case CrlPolicy::kOff: return "off";
    case CrlPolicy::kIfPresent: return "if-present";
    case CrlPolicy::kRequire: return "require";
  }
  return "?";
}

std::string_view to_string(CrlScope s) noexcept {
  switch (s) {
    case CrlScope::kLeaf: return "leaf";
    case CrlScope::kChain: return "chain";
  }
  return "?";
}

std::string_view to_string(PinMatch m) noexcept {
  switch (m) {
    case PinMatch::kCertificate: return "certificate";
    case PinMatch::kSpki: return "spki";
  }
  return "?";
}

std::optional<CrlPolicy> crl_policy_from(std::string_view s) noexcept {
  for (auto p : {CrlPolicy::kOff, CrlPolicy::kIfPresent, CrlPolicy::kRequire})
    if (to_string(p) == s) return p;
  return std::nullopt;
}

std::optional<CrlScope> crl_scope_from(std::string_view s) noexcept {
  for (auto p : {CrlScope::kLeaf, CrlScope::kChain})
    if (to_string(p) == s) return p;
  return std::nullopt;
}

std::string_view to_string(StunnelVia v) noexcept {
  switch (v) {
    case StunnelVia::kFiles: return "files";
    case StunnelVia::kProvider: return "provider";
  }
  return "?";
}

std::optional<StunnelVia> stunnel_via_from(std::string_view s) noexcept {
  for (auto v : {StunnelVia::kFiles, StunnelVia::kProvider})
    if (to_string(v) == s) return v;
  return std::nullopt;
}

// Stanza names: a safe subset of what stunnel accepts between brackets.
bool valid_stunnel_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 64) return false;
  for (char c : n)
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
          c == '.'))
      return false;
  return true;
}

bool valid_purpose_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 32) return false;
  auto ok_first = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!ok_first(n[0])) return false;
  for (char c : n.substr(1))
    if (!ok_first(c) && c != '_' && c != '-') return false;
  return true;
}

bool safe_config_path(std::string_view p) noexcept {
  for (char ch : p)
    if (ch == '\n' || ch == '\r' || ch == '\0' || ch == '#' || ch == '$' || ch == '\\' || ch == '"') return false;
  return true;
}

Config default_config() {
  Config c;
  c.source = "<built-in>";
  c.purposes["licensing"] = {};
  c.purposes["ldaps"] = {};
  return c;
}

namespace {

[[noreturn]] void config_error(const std::string& source, const YAML::Mark& m, const std::string& what) {
  std::ostringstream os;
  os << source;
  if (!m.is_null()) os << ":" << (m.line + 1) << ":" << (m.column + 1);
  os << ": " << what;
  throw Error(Code::kConfigInvalid, os.str());
}

std::string scalar(const YAML::Node& n, const std::string& src, const std::string& key) {
  if (!n.IsScalar()) config_error(src, n.Mark(), "'" + key + "' must be a scalar");
  return n.Scalar();
}

bool boolean(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = scalar(n, src, key);
  if (v == "true" || v == "yes") return true;
  if (v == "false" || v == "no") return false;
  config_error(src, n.Mark(), "'" + key + "' must be true or false, not '" + v + "'");
}

PurposePolicy parse_policy(const YAML::Node& n, const std::string& src) {
  PurposePolicy p;
  if (n.IsNull()) return p;
  if (!n.IsMap()) config_error(src, n.Mark(), "a purpose must be a mapping of settings (or empty)");
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "crl-policy") {
      auto s = scalar(v, src, key);
      auto x = crl_policy_from(s);
      if (!x) config_error(src, v.Mark(), "crl-policy must be off, if-present or require, not '" + s + "'");
      p.crl_policy = *x;
    } else if (key == "crl-scope") {
      auto s = scalar(v, src, key);
      auto x = crl_scope_from(s);
      if (!x) config_error(src, v.Mark(), "crl-scope must be leaf or chain, not '" + s + "'");
      p.crl_scope = *x;
    } else if (key == "allow-expired-crl") {
      p.allow_expired_crl = boolean(v, src, key);
    } else if (key == "pin-match") {
      auto s = scalar(v, src, key);
      if (s == "certificate") p.pin_match = PinMatch::kCertificate;
      else if (s == "spki") p.pin_match = PinMatch::kSpki;
      else config_error(src, v.Mark(), "pin-match must be certificate or spki, not '" + s + "'");
    } else if (key == "enforce-pin-validity") {
      p.enforce_pin_validity = boolean(v, src, key);
    } else if (key == "report-only") {
      p.report_only = boolean(v, src, key);
    } else {
      config_error(src, kv.first.Mark(), "unknown purpose setting '" + key + "'");
    }
  }
  return p;
}

// A value that ends up on one line of a stunnel or OpenSSL configuration file.
std::string one_line(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = scalar(n, src, key);
  if (v.empty()) config_error(src, n.Mark(), "'" + key + "' must not be empty");
  for (char ch : v)
    if (ch == '\n' || ch == '\r' || ch == '\0') config_error(src, n.Mark(), "'" + key + "' must be a single line");
  return v;
}

std::string abs_path(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = one_line(n, src, key);
  if (v[0] != '/') config_error(src, n.Mark(), "'" + key + "' must be an absolute path");
  if (!safe_config_path(v))
    config_error(src, n.Mark(), "'" + key + "' must not contain #, $, \\ or \" (they mean something in openssl.cnf)");
  return v;
}

// A `global:` line of a stunnel instance: only options that exist in stunnel's global
// section alone. A service option there (CApath, checkHost, verify..., config, ...) would
// become a default of every service, and could even widen the fail-closed stanza.
std::string global_line(const YAML::Node& n, const std::string& src) {
  static const std::set<std::string> kAllowed = {"foreground", "debug", "output", "syslog", "setuid", "setgid",
                                                 "chroot", "compression", "log", "fips", "rndbytes", "rndfile",
                                                 "rndoverwrite"};
  std::string line = one_line(n, src, "global");
  size_t eq = line.find('=');
  std::string key = line.substr(0, eq);
  while (!key.empty() && std::isspace(static_cast<unsigned char>(key.back()))) key.pop_back();
  size_t start = key.find_first_not_of(" \t");
  key = start == std::string::npos ? "" : key.substr(start);
  std::string lower;
  for (char ch : key) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  if (eq == std::string::npos || !kAllowed.count(lower))
    config_error(src, n.Mark(),
                 "global line '" + line + "' is not allowed: only foreground, debug, output, syslog, setuid, setgid, "
                 "chroot, compression, log, fips and RND* options (a service option there would apply to every "
                 "service, the fail-closed ones included)");
  return line;
}

StunnelService parse_stunnel_service(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) config_error(src, n.Mark(), "a stunnel service must be a mapping");
  StunnelService s;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      s.name = one_line(v, src, key);
      if (!valid_stunnel_name(s.name)) config_error(src, v.Mark(), "service name must match [A-Za-z0-9._-]{1,64}");
    } else if (key == "purpose") {
      s.purpose = one_line(v, src, key);
    } else if (key == "accept") {
      s.accept = one_line(v, src, key);
    } else if (key == "connect") {
      s.connect = one_line(v, src, key);
    } else if (key == "check-host") {
      s.check_host = one_line(v, src, key);
    } else if (key == "check-ip") {
      s.check_ip = one_line(v, src, key);
    } else if (key == "no-subject-check") {
      s.no_subject_check = boolean(v, src, key);
    } else {
      config_error(src, kv.first.Mark(), "unknown stunnel service setting '" + key + "'");
    }
  }
  for (auto [field, key] : {std::pair{&s.name, "name"}, {&s.purpose, "purpose"}, {&s.accept, "accept"},
                            {&s.connect, "connect"}})
    if (field->empty()) config_error(src, n.Mark(), std::string("stunnel service lacks '") + key + "'");
  // The mode can become ca/general at any time, so every service declares its subject check.
  int checks = (s.check_host ? 1 : 0) + (s.check_ip ? 1 : 0) + (s.no_subject_check ? 1 : 0);
  if (checks != 1)
    config_error(src, n.Mark(),
                 "stunnel service '" + s.name + "' needs exactly one of check-host, check-ip or no-subject-check: true");
  return s;
}

StunnelInstance parse_stunnel_instance(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) config_error(src, n.Mark(), "a stunnel instance must be a mapping");
  StunnelInstance in;
  bool saw_services = false;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      in.name = one_line(v, src, key);
      if (!valid_stunnel_name(in.name)) config_error(src, v.Mark(), "instance name must match [A-Za-z0-9._-]{1,64}");
    } else if (key == "config") {
      in.config = abs_path(v, src, key);
    } else if (key == "pidfile") {
      in.pidfile = abs_path(v, src, key);
    } else if (key == "via") {
      auto s = scalar(v, src, key);
      auto x = stunnel_via_from(s);
      if (!x) config_error(src, v.Mark(), "via must be files or provider, not '" + s + "'");
      in.via = *x;
    } else if (key == "openssl-conf") {
      in.openssl_conf = abs_path(v, src, key);
    } else if (key == "module") {
      in.module = one_line(v, src, key);
    } else if (key == "global") {
      if (!v.IsSequence()) config_error(src, v.Mark(), "global must be a list of stunnel lines");
      for (const auto& line : v) in.global.push_back(global_line(line, src));
    } else if (key == "services") {
      saw_services = true;
      if (!v.IsSequence()) config_error(src, v.Mark(), "services must be a list");
      std::set<std::string> names;
      for (const auto& sv : v) {
        in.services.push_back(parse_stunnel_service(sv, src));
        if (!names.insert(in.services.back().name).second)
          config_error(src, sv.Mark(), "service '" + in.services.back().name + "' declared twice");
      }
    } else {
      config_error(src, kv.first.Mark(), "unknown stunnel instance setting '" + key + "'");
    }
  }
  if (in.name.empty()) config_error(src, n.Mark(), "stunnel instance lacks 'name'");
  if (in.config.empty()) config_error(src, n.Mark(), "stunnel instance '" + in.name + "' lacks 'config'");
  if (in.pidfile.empty()) config_error(src, n.Mark(), "stunnel instance '" + in.name + "' lacks 'pidfile'");
  if (!saw_services || in.services.empty())
    config_error(src, n.Mark(), "stunnel instance '" + in.name + "' declares no services");
  if (in.via == StunnelVia::kProvider && !in.openssl_conf)
    config_error(src, n.Mark(), "stunnel instance '" + in.name + "' uses via: provider and needs 'openssl-conf'");
  if (in.via == StunnelVia::kFiles && (in.openssl_conf || in.module))
    config_error(src, n.Mark(), "openssl-conf and module apply to via: provider only");
  return in;
}

void parse_stunnel(const YAML::Node& n, Config& c) {
  const std::string& src = c.source;
  if (!n.IsSequence()) config_error(src, n.Mark(), "stunnel must be a list of instances");
  std::set<std::string> names, files;
  for (const auto& i : n) {
    StunnelInstance in = parse_stunnel_instance(i, src);
    if (!names.insert(in.name).second) config_error(src, i.Mark(), "stunnel instance '" + in.name + "' declared twice");
    if (!files.insert(in.config).second) config_error(src, i.Mark(), "two stunnel instances write " + in.config);
    for (size_t k = 0; k < in.services.size(); ++k) {
      const std::string& p = in.services[k].purpose;
      if (p != kGeneral && !c.declares(p))
        config_error(src, i["services"][k]["purpose"].Mark(), "purpose '" + p + "' is not declared in purposes");
    }
    c.stunnel.push_back(std::move(in));
  }
}

}  // namespace

Config parse_config(const std::string& text, const std::string& src) {
  YAML::Node doc;
  try {
    doc = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    config_error(src, e.mark, e.msg);
  }
  Config c;
  c.source = src;
  if (doc.IsNull()) config_error(src, doc.Mark(), "empty configuration: declare at least `purposes:`");
  if (!doc.IsMap()) config_error(src, doc.Mark(), "the configuration must be a mapping");
  bool saw_purposes = false;
  std::optional<YAML::Node> stunnel_node;  // parsed after `purposes:`, whose names it refers to
  for (const auto& kv : doc) {
    std::string key = kv.first.Scalar();
    if (key == "root") {
      c.root = abs_path(kv.second, src, key);
    } else if (key == "purposes") {
      saw_purposes = true;
      const YAML::Node& ps = kv.second;
      if (!ps.IsMap()) config_error(src, ps.Mark(), "purposes must be a mapping of purpose name to settings");
      for (const auto& p : ps) {
        std::string name = p.first.Scalar();
        if (name == kGeneral) config_error(src, p.first.Mark(), "'general' is reserved and cannot be declared");
        if (!valid_purpose_name(name))
          config_error(src, p.first.Mark(), "purpose name '" + name + "' must match [a-z0-9][a-z0-9_-]{0,31}");
        if (c.purposes.count(name)) config_error(src, p.first.Mark(), "purpose '" + name + "' declared twice");
        c.purposes[name] = parse_policy(p.second, src);
      }
    } else if (key == "stunnel") {
      stunnel_node.emplace(kv.second);
    } else {
      config_error(src, kv.first.Mark(), "unknown setting '" + key + "'");
    }
  }
  if (!saw_purposes) config_error(src, doc.Mark(), "missing `purposes:`");
  if (stunnel_node) parse_stunnel(*stunnel_node, c);
  return c;
}

Config load_config_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(Code::kConfigInvalid, path + ": cannot read configuration file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

std::vector<std::string> parse_purpose_list(std::string_view csv, const Config& cfg) {
  std::vector<std::string> out;
  if (csv.empty()) throw Error(Code::kUnknownPurpose, "empty purpose list; omit --purpose for the general store");
  std::set<std::string> seen;
  size_t pos = 0;
  for (;;) {
    size_t comma = csv.find(',', pos);
    std::string name(csv.substr(pos, comma == csv.npos ? csv.npos : comma - pos));
    if (name == kGeneral)
      throw Error(Code::kUnknownPurpose, "'general' is reserved; omit --purpose to install a general CA");
    if (!valid_purpose_name(name))
      throw Error(Code::kUnknownPurpose, "malformed purpose '" + name + "' (expected [a-z0-9][a-z0-9_-]{0,31})");
    if (!cfg.declares(name))
      throw Error(Code::kUnknownPurpose, "purpose '" + name + "' is not declared in " + cfg.source);
    if (!seen.insert(name).second) throw Error(Code::kUnknownPurpose, "purpose '" + name + "' listed twice");
    out.push_back(name);
    if (comma == csv.npos) break;
    pos = comma + 1;
  }
  return out;
}

Context open_context(const std::optional<std::string>& root_opt, const std::optional<std::string>& config_opt) {
  std::optional<std::string> root = root_opt;
  if (!root) {
    if (const char* e = std::getenv("PTRUST_ROOT"); e && *e) root = e;
  }
  std::optional<std::string> cfg_path = config_opt;
  if (!cfg_path) {
    if (const char* e = std::getenv("PTRUST_CONFIG"); e && *e) cfg_path = e;
  }
  Context ctx;
  if (cfg_path) {
    ctx.config = load_config_file(*cfg_path);
  } else {
    std::string implicit = root.value_or("/") + "/" + std::string(layout::kConfigFile);
    struct stat st;
    ctx.config = ::stat(implicit.c_str(), &st) == 0 ? load_config_file(implicit) : default_config();
  }
  ctx.root = root ? *root : ctx.config.root.value_or("/");
  if (ctx.root.empty()) ctx.root = ".";
  ctx.root = std::filesystem::absolute(ctx.root).lexically_normal().string();
  return ctx;
}

}  // namespace ptrust
