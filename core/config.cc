#include "core/config.h"

#include <sys/stat.h>

#include <charconv>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <vector>

#include <yaml-cpp/yaml.h>

#include "core/config_yaml.h"
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

namespace config_yaml {

void error(const std::string& source, const YAML::Mark& m, const std::string& what) {
  std::ostringstream os;
  os << source;
  if (!m.is_null()) os << ":" << (m.line + 1) << ":" << (m.column + 1);
  os << ": " << what;
  throw Error(Code::kConfigInvalid, os.str());
}

namespace {

// Every mapping of the document, however deep, has scalar keys and no key twice. yaml-cpp
// keeps both pairs of a repeated key: a section parser iterating the pairs would read both,
// one indexing by key would see only the first, so a repeated key is refused here for every
// section at once (a repeated `services:` once made a lookup by index throw yaml-cpp's
// InvalidNode, reported as INTERNAL_ERROR). Iterative (the provider parses the configuration
// on its callers' stacks) and bounded: aliases can make a small text a huge tree.
void check_keys(const YAML::Node& doc, const std::string& src) {
  constexpr size_t kMaxNodes = 100000;
  std::vector<YAML::Node> todo{doc};
  size_t visited = 0;
  while (!todo.empty()) {
    YAML::Node n = todo.back();
    todo.pop_back();
    if (++visited > kMaxNodes)
      error(src, n.Mark(), "the configuration has more than " + std::to_string(kMaxNodes) + " nodes (aliases included)");
    if (n.IsSequence()) {
      for (const auto& v : n) todo.push_back(v);
    } else if (n.IsMap()) {
      std::set<std::string> keys;
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) error(src, kv.first.Mark(), "a mapping key must be a scalar");
        if (!keys.insert(kv.first.Scalar()).second) error(src, kv.first.Mark(), "'" + kv.first.Scalar() + "' given twice");
        todo.push_back(kv.second);
      }
    }
  }
}

}  // namespace

YAML::Node document(const Config& cfg) {
  YAML::Node doc;
  try {
    doc = YAML::Load(cfg.text);
  } catch (const YAML::Exception& e) {
    error(cfg.source, e.mark, e.msg);
  }
  check_keys(doc, cfg.source);
  return doc;
}

std::optional<YAML::Node> section(const Config& cfg, std::string_view key) {
  YAML::Node doc = document(cfg);
  if (!doc.IsMap()) return std::nullopt;
  for (const auto& kv : doc)
    if (kv.first.Scalar() == key) return kv.second;
  return std::nullopt;
}

std::string scalar(const YAML::Node& n, const std::string& src, const std::string& key) {
  if (!n.IsScalar()) error(src, n.Mark(), "'" + key + "' must be a scalar");
  return n.Scalar();
}

bool boolean(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = scalar(n, src, key);
  if (v == "true" || v == "yes") return true;
  if (v == "false" || v == "no") return false;
  error(src, n.Mark(), "'" + key + "' must be true or false, not '" + v + "'");
}

std::string one_line(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = scalar(n, src, key);
  if (v.empty()) error(src, n.Mark(), "'" + key + "' must not be empty");
  for (char ch : v)
    if (ch == '\n' || ch == '\r' || ch == '\0') error(src, n.Mark(), "'" + key + "' must be a single line");
  return v;
}

std::string abs_path(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string v = one_line(n, src, key);
  if (v[0] != '/') error(src, n.Mark(), "'" + key + "' must be an absolute path");
  if (!safe_config_path(v))
    error(src, n.Mark(), "'" + key + "' must not contain #, $, \\ or \" (they mean something in openssl.cnf)");
  return v;
}

}  // namespace config_yaml

namespace {

using config_yaml::boolean;
using config_yaml::scalar;
using config_yaml::error;

PurposePolicy parse_policy(const YAML::Node& n, const std::string& src) {
  PurposePolicy p;
  if (n.IsNull()) return p;
  if (!n.IsMap()) error(src, n.Mark(), "a purpose must be a mapping of settings (or empty)");
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "crl-policy") {
      auto s = scalar(v, src, key);
      auto x = crl_policy_from(s);
      if (!x) error(src, v.Mark(), "crl-policy must be off, if-present or require, not '" + s + "'");
      p.crl_policy = *x;
    } else if (key == "crl-scope") {
      auto s = scalar(v, src, key);
      auto x = crl_scope_from(s);
      if (!x) error(src, v.Mark(), "crl-scope must be leaf or chain, not '" + s + "'");
      p.crl_scope = *x;
    } else if (key == "allow-expired-crl") {
      p.allow_expired_crl = boolean(v, src, key);
    } else if (key == "pin-match") {
      auto s = scalar(v, src, key);
      if (s == "certificate") p.pin_match = PinMatch::kCertificate;
      else if (s == "spki") p.pin_match = PinMatch::kSpki;
      else error(src, v.Mark(), "pin-match must be certificate or spki, not '" + s + "'");
    } else if (key == "enforce-pin-validity") {
      p.enforce_pin_validity = boolean(v, src, key);
    } else if (key == "report-only") {
      p.report_only = boolean(v, src, key);
    } else if (key == "verify-cache-seconds") {
      auto s = scalar(v, src, key);
      std::uint32_t n = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (s.empty() || ec != std::errc() || end != s.data() + s.size() || n > PurposePolicy::kMaxVerifyCacheSeconds)
        error(src, v.Mark(), "verify-cache-seconds must be a whole number of seconds from 0 to " +
                                 std::to_string(PurposePolicy::kMaxVerifyCacheSeconds) + ", not '" + s + "'");
      p.verify_cache_seconds = n;
    } else {
      error(src, kv.first.Mark(), "unknown purpose setting '" + key + "'");
    }
  }
  return p;
}

}  // namespace

Config parse_config(const std::string& text, const std::string& src) {
  Config c;
  c.source = src;
  c.text = text;
  YAML::Node doc = config_yaml::document(c);
  if (doc.IsNull()) error(src, doc.Mark(), "empty configuration: declare at least `purposes:`");
  if (!doc.IsMap()) error(src, doc.Mark(), "the configuration must be a mapping");
  bool saw_purposes = false;
  for (const auto& kv : doc) {
    std::string key = kv.first.Scalar();
    if (key == "root") {
      c.root = config_yaml::abs_path(kv.second, src, key);
    } else if (key == "purposes") {
      saw_purposes = true;
      const YAML::Node& ps = kv.second;
      if (!ps.IsMap()) error(src, ps.Mark(), "purposes must be a mapping of purpose name to settings");
      for (const auto& p : ps) {
        std::string name = p.first.Scalar();
        if (name == kGeneral) error(src, p.first.Mark(), "'general' is reserved and cannot be declared");
        if (!valid_purpose_name(name))
          error(src, p.first.Mark(), "purpose name '" + name + "' must match [a-z0-9][a-z0-9_-]{0,31}");
        if (c.purposes.count(name)) error(src, p.first.Mark(), "purpose '" + name + "' declared twice");
        c.purposes[name] = parse_policy(p.second, src);
      }
    } else if (key == "stunnel" || key == "alerts" || key == "consumers" || key == "cluster") {
      // The helper's sections (helper/stunnel_config.h, helper/host_config.h), validated by
      // every `ptrust` command.
    } else {
      error(src, kv.first.Mark(), "unknown setting '" + key + "'");
    }
  }
  if (!saw_purposes) error(src, doc.Mark(), "missing `purposes:`");
  return c;
}

Config load_config_file(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw Error(Code::kConfigInvalid, path + ": cannot read configuration file");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_config(ss.str(), path);
}

std::vector<std::string> parse_purpose_list(std::string_view csv, const Config& cfg, std::string_view root) {
  if (csv.empty()) throw Error(Code::kUnknownPurpose, "empty purpose list; omit --purpose for the general store");
  std::vector<std::string> out;
  size_t pos = 0;
  for (;;) {
    size_t comma = csv.find(',', pos);
    out.emplace_back(csv.substr(pos, comma == csv.npos ? csv.npos : comma - pos));
    if (comma == csv.npos) break;
    pos = comma + 1;
  }
  check_purposes(out, cfg, root);
  return out;
}

void check_purposes(const std::vector<std::string>& purposes, const Config& cfg, std::string_view root) {
  std::set<std::string> seen;
  for (const auto& name : purposes) {
    if (name == kGeneral)
      throw Error(Code::kUnknownPurpose, "'general' is reserved; omit --purpose to install a general CA");
    if (!valid_purpose_name(name))
      throw Error(Code::kUnknownPurpose, "malformed purpose '" + name + "' (expected [a-z0-9][a-z0-9_-]{0,31})");
    if (!cfg.declares(name))
      throw unknown_purpose(cfg, name, root);
    if (!seen.insert(name).second) throw Error(Code::kUnknownPurpose, "purpose '" + name + "' listed twice");
  }
}

std::string config_path_for(const std::optional<std::string>& root, const std::optional<std::string>& config) {
  return config ? *config : root.value_or("/") + "/" + std::string(layout::kConfigFile);
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
    std::string implicit = config_path_for(root, std::nullopt);
    struct stat st;
    ctx.config = ::stat(implicit.c_str(), &st) == 0 ? load_config_file(implicit) : default_config();
  }
  ctx.root = root ? *root : ctx.config.root.value_or("/");
  if (ctx.root.empty()) ctx.root = ".";
  ctx.root = std::filesystem::absolute(ctx.root).lexically_normal().string();
  return ctx;
}

Error unknown_purpose(const Config& cfg, std::string_view purpose, std::string_view root) {
  std::string p(purpose);
  if (cfg.source == "<built-in>") {
    std::string file = (root.empty() ? std::string("<root>/") : root == "/" ? std::string("/") : std::string(root) + "/") +
                       std::string(layout::kConfigFile);
    return Error(Code::kUnknownPurpose, "purpose '" + p + "' is not declared: there is no configuration file, and the " +
                                           "built-in one declares licensing and ldaps; create " + file +
                                           " declaring it under `purposes:` as `  " + p + ": {}` (see config/ptrust.yaml)");
  }
  return Error(Code::kUnknownPurpose, "purpose '" + p + "' is not declared in " + cfg.source + "; add `  " + p +
                                          ": {}` under `purposes:` there");
}

}  // namespace ptrust
