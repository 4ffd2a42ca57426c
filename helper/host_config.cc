#include "helper/host_config.h"

#include <cctype>
#include <cmath>
#include <set>

#include "core/config_yaml.h"
#include "helper/stunnel_config.h"

namespace ptrust {

namespace {

using config_yaml::error;

double days(const YAML::Node& n, const std::string& src, const std::string& key) {
  std::string s = config_yaml::scalar(n, src, key);
  char* end = nullptr;
  double d = std::strtod(s.c_str(), &end);
  if (s.empty() || *end != '\0' || !std::isfinite(d) || d < 0 || d > 3650)
    error(src, n.Mark(), key + " must be a number of days between 0 and 3650, not '" + s + "'");
  return d;
}

AlertPolicy parse_alerts(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) error(src, n.Mark(), "alerts must be a mapping");
  AlertPolicy a;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    if (key == "certificate-expiring-days") {
      const YAML::Node& v = kv.second;
      if (!v.IsSequence() || v.size() != 3)
        error(src, v.Mark(), "certificate-expiring-days must list three windows: [30, 14, 7]");
      a.expiring_30 = days(v[0], src, key);
      a.expiring_14 = days(v[1], src, key);
      a.expiring_07 = days(v[2], src, key);
      if (!(a.expiring_30 > a.expiring_14 && a.expiring_14 > a.expiring_07 && a.expiring_07 > 0))
        error(src, v.Mark(), "certificate-expiring-days must be decreasing and above 0, like [30, 14, 7]");
    } else if (key == "crl-next-update-days") {
      a.crl_next_update = days(kv.second, src, key);
    } else {
      error(src, kv.first.Mark(), "unknown alerts setting '" + key + "'");
    }
  }
  return a;
}

int signal_from(const YAML::Node& n, const std::string& src) {
  static const std::pair<const char*, int> kSignals[] = {{"SIGHUP", SIGHUP},   {"SIGUSR1", SIGUSR1},
                                                         {"SIGUSR2", SIGUSR2}, {"SIGTERM", SIGTERM},
                                                         {"SIGINT", SIGINT},   {"SIGQUIT", SIGQUIT}};
  std::string s = config_yaml::scalar(n, src, "reload-signal");
  for (auto [name, sig] : kSignals)
    if (s == name) return sig;
  error(src, n.Mark(), "reload-signal must be one of SIGHUP, SIGUSR1, SIGUSR2, SIGTERM, SIGINT, SIGQUIT, not '" + s + "'");
}

ConsumerDecl parse_consumer(const YAML::Node& n, const Config& cfg) {
  const std::string& src = cfg.source;
  if (!n.IsMap()) error(src, n.Mark(), "a consumer must be a mapping");
  ConsumerDecl c;
  bool saw_signal = false;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      c.name = config_yaml::one_line(v, src, key);
      if (!valid_stunnel_name(c.name)) error(src, v.Mark(), "consumer name must match [A-Za-z0-9._-]{1,64}");
    } else if (key == "purposes") {
      if (!v.IsSequence() || v.size() == 0) error(src, v.Mark(), "purposes must be a non-empty list");
      std::set<std::string> seen;
      for (const auto& p : v) {
        std::string name = config_yaml::scalar(p, src, key);
        if (name != kGeneral && !cfg.declares(name))
          error(src, p.Mark(), "purpose '" + name + "' is not declared in purposes");
        if (!seen.insert(name).second) error(src, p.Mark(), "purpose '" + name + "' listed twice");
        c.purposes.push_back(name);
      }
    } else if (key == "pidfile") {
      c.pidfile = config_yaml::abs_path(v, src, key);
    } else if (key == "reload-signal") {
      c.signal = signal_from(v, src);
      saw_signal = true;
    } else if (key == "reload-command") {
      if (!v.IsSequence() || v.size() == 0)
        error(src, v.Mark(), "reload-command must be a list: the program (absolute path) and its arguments");
      for (const auto& a : v) c.command.push_back(config_yaml::one_line(a, src, key));
      if (c.command[0].empty() || c.command[0][0] != '/')
        error(src, v[0].Mark(), "reload-command's program must be an absolute path (no shell, no PATH search)");
    } else if (key == "caches-trust") {
      c.caches_trust = config_yaml::boolean(v, src, key);
    } else {
      error(src, kv.first.Mark(), "unknown consumer setting '" + key + "'");
    }
  }
  if (c.name.empty()) error(src, n.Mark(), "consumer lacks 'name'");
  if (c.purposes.empty()) error(src, n.Mark(), "consumer '" + c.name + "' lacks 'purposes'");
  if (saw_signal && !c.command.empty())
    error(src, n.Mark(), "consumer '" + c.name + "': reload-signal and reload-command exclude each other");
  if (saw_signal && !c.pidfile) error(src, n.Mark(), "consumer '" + c.name + "': reload-signal needs a pidfile");
  if (c.caches_trust && !c.pidfile && c.command.empty())
    error(src, n.Mark(),
          "consumer '" + c.name + "' caches trust but has no way to be reloaded: give pidfile or reload-command");
  return c;
}

bool valid_host_name(std::string_view n) {
  if (n.empty() || n.size() > 253 || n.front() == '.' || n.back() == '.') return false;
  size_t label = 0;
  for (char c : n) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-') return false;
    if (++label > 63) return false;
  }
  return true;
}

ClusterDecl parse_cluster(const YAML::Node& n, const std::string& src) {
  if (!n.IsMap()) error(src, n.Mark(), "cluster must be a mapping: {name: NAME, nodes: [HOST, ...]}");
  ClusterDecl c;
  std::set<std::string> seen;
  for (const auto& kv : n) {
    std::string key = kv.first.Scalar();
    const YAML::Node& v = kv.second;
    if (key == "name") {
      c.name = config_yaml::scalar(v, src, key);
      if (!valid_host_name(c.name)) error(src, v.Mark(), "cluster name must be a DNS name, not '" + c.name + "'");
    } else if (key == "nodes") {
      if (!v.IsSequence()) error(src, v.Mark(), "nodes must be a list of host names");
      for (const auto& h : v) {
        std::string name = config_yaml::scalar(h, src, key);
        if (!valid_host_name(name)) error(src, h.Mark(), "node name must be a DNS name, not '" + name + "'");
        if (!seen.insert(name).second) error(src, h.Mark(), "node '" + name + "' listed twice");
        c.nodes.push_back(name);
      }
    } else {
      error(src, kv.first.Mark(), "unknown cluster setting '" + key + "'");
    }
  }
  if (c.name.empty()) error(src, n.Mark(), "cluster lacks 'name'");
  return c;
}

}  // namespace

std::vector<std::string> ClusterDecl::names() const {
  std::vector<std::string> out{name};
  out.insert(out.end(), nodes.begin(), nodes.end());
  return out;
}

HostConfig parse_host_config(const Config& cfg) {
  HostConfig h;
  if (auto n = config_yaml::section(cfg, "alerts")) h.alerts = parse_alerts(*n, cfg.source);
  if (auto n = config_yaml::section(cfg, "cluster")) h.cluster = parse_cluster(*n, cfg.source);
  if (auto n = config_yaml::section(cfg, "consumers")) {
    if (!n->IsSequence()) error(cfg.source, n->Mark(), "consumers must be a list");
    std::set<std::string> names;
    for (const auto& s : parse_stunnel_config(cfg)) names.insert(s.name);
    for (const auto& c : *n) {
      h.consumers.push_back(parse_consumer(c, cfg));
      if (!names.insert(h.consumers.back().name).second)
        error(cfg.source, c.Mark(), "consumer '" + h.consumers.back().name + "' is declared twice (or is a stunnel instance's name)");
    }
  }
  return h;
}

}  // namespace ptrust
