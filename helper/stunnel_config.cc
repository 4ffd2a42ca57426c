#include "helper/stunnel_config.h"

#include <cctype>
#include <set>

#include "core/config_yaml.h"

namespace ptrust {

using config_yaml::abs_path;
using config_yaml::boolean;
using config_yaml::one_line;
using config_yaml::scalar;

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

namespace {

using config_yaml::error;

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
    error(src, n.Mark(),
          "global line '" + line + "' is not allowed: only foreground, debug, output, syslog, setuid, setgid, "
          "chroot, compression, log, fips and RND* options (a service option there would apply to every "
          "service, the fail-closed ones included)");
  return line;
}

StunnelService parse_stunnel_service(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) error(src, n.Mark(), "a stunnel service must be a mapping");
  StunnelService s;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      s.name = one_line(v, src, key);
      if (!valid_stunnel_name(s.name)) error(src, v.Mark(), "service name must match [A-Za-z0-9._-]{1,64}");
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
    } else if (key == "accept-stricter") {
      s.accept_stricter = boolean(v, src, key);
    } else {
      error(src, kv.first.Mark(), "unknown stunnel service setting '" + key + "'");
    }
  }
  for (auto [field, key] : {std::pair{&s.name, "name"}, {&s.purpose, "purpose"}, {&s.accept, "accept"},
                            {&s.connect, "connect"}})
    if (field->empty()) error(src, n.Mark(), std::string("stunnel service lacks '") + key + "'");
  // The mode can become ca/general at any time, so every service declares its subject check.
  int checks = (s.check_host ? 1 : 0) + (s.check_ip ? 1 : 0) + (s.no_subject_check ? 1 : 0);
  if (checks != 1)
    error(src, n.Mark(),
          "stunnel service '" + s.name + "' needs exactly one of check-host, check-ip or no-subject-check: true");
  return s;
}

StunnelInstance parse_stunnel_instance(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) error(src, n.Mark(), "a stunnel instance must be a mapping");
  StunnelInstance in;
  bool saw_services = false;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      in.name = one_line(v, src, key);
      if (!valid_stunnel_name(in.name)) error(src, v.Mark(), "instance name must match [A-Za-z0-9._-]{1,64}");
    } else if (key == "config") {
      in.config = abs_path(v, src, key);
    } else if (key == "pidfile") {
      in.pidfile = abs_path(v, src, key);
    } else if (key == "via") {
      auto s = scalar(v, src, key);
      auto x = stunnel_via_from(s);
      if (!x) error(src, v.Mark(), "via must be files or provider, not '" + s + "'");
      in.via = *x;
    } else if (key == "openssl-conf") {
      in.openssl_conf = abs_path(v, src, key);
    } else if (key == "module") {
      in.module = one_line(v, src, key);
    } else if (key == "global") {
      if (!v.IsSequence()) error(src, v.Mark(), "global must be a list of stunnel lines");
      for (const auto& line : v) in.global.push_back(global_line(line, src));
    } else if (key == "services") {
      saw_services = true;
      if (!v.IsSequence()) error(src, v.Mark(), "services must be a list");
      std::set<std::string> names;
      for (const auto& sv : v) {
        in.services.push_back(parse_stunnel_service(sv, src));
        if (!names.insert(in.services.back().name).second)
          error(src, sv.Mark(), "service '" + in.services.back().name + "' declared twice");
      }
    } else {
      error(src, kv.first.Mark(), "unknown stunnel instance setting '" + key + "'");
    }
  }
  if (in.name.empty()) error(src, n.Mark(), "stunnel instance lacks 'name'");
  if (in.config.empty()) error(src, n.Mark(), "stunnel instance '" + in.name + "' lacks 'config'");
  if (in.pidfile.empty()) error(src, n.Mark(), "stunnel instance '" + in.name + "' lacks 'pidfile'");
  if (!saw_services || in.services.empty())
    error(src, n.Mark(), "stunnel instance '" + in.name + "' declares no services");
  if (in.via == StunnelVia::kProvider && !in.openssl_conf)
    error(src, n.Mark(), "stunnel instance '" + in.name + "' uses via: provider and needs 'openssl-conf'");
  if (in.via == StunnelVia::kFiles && (in.openssl_conf || in.module))
    error(src, n.Mark(), "openssl-conf and module apply to via: provider only");
  return in;
}

std::vector<StunnelInstance> parse_instances(const YAML::Node& n, const Config& c) {
  const std::string& src = c.source;
  std::vector<StunnelInstance> out;
  if (!n.IsSequence()) error(src, n.Mark(), "stunnel must be a list of instances");
  std::set<std::string> names, files;
  for (const auto& i : n) {
    StunnelInstance in = parse_stunnel_instance(i, src);
    if (!names.insert(in.name).second) error(src, i.Mark(), "stunnel instance '" + in.name + "' declared twice");
    if (!files.insert(in.config).second) error(src, i.Mark(), "two stunnel instances write " + in.config);
    for (size_t k = 0; k < in.services.size(); ++k) {
      const std::string& p = in.services[k].purpose;
      if (p != kGeneral && !c.declares(p))
        error(src, i["services"][k]["purpose"].Mark(), "purpose '" + p + "' is not declared in purposes");
    }
    out.push_back(std::move(in));
  }
  return out;
}

}  // namespace

std::vector<StunnelInstance> parse_stunnel_config(const Config& cfg) {
  auto node = config_yaml::section(cfg, "stunnel");
  return node ? parse_instances(*node, cfg) : std::vector<StunnelInstance>{};
}

}  // namespace ptrust
