// The `stunnel:` section of ptrust.yaml: the stunnel instances `ptrust stunnel sync` manages
// (see docs/stunnel.md). Only the helper reads it; core keeps the configuration's text.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"

namespace ptrust {

// How a stunnel service gets its trust material (see docs/stunnel.md).
enum class StunnelVia { kFiles, kProvider };
std::string_view to_string(StunnelVia v) noexcept;
std::optional<StunnelVia> stunnel_via_from(std::string_view s) noexcept;

// Names of stunnel instances and services: [A-Za-z0-9._-]{1,64}.
bool valid_stunnel_name(std::string_view name) noexcept;

// One client service of a stunnel instance managed by `ptrust stunnel sync`.
struct StunnelService {
  std::string name;     // [name] of the stanza
  std::string purpose;  // a declared purpose or "general"
  std::string accept;
  std::string connect;
  std::optional<std::string> check_host;
  std::optional<std::string> check_ip;
  bool no_subject_check = false;  // explicit opt-out; otherwise one check is required
  // Render a policy 5.68 can only express more strictly (pin-match spki) with a warning
  // instead of refusing it with RENDER_CANNOT_EXPRESS (docs/stunnel.md).
  bool accept_stricter = false;
};

// One stunnel process: ptrust writes its whole configuration file and signals its pid.
struct StunnelInstance {
  std::string name;
  std::string config;   // absolute path of the stunnel.conf ptrust writes
  std::string pidfile;  // absolute path; rendered as `pid =` and read for SIGHUP
  StunnelVia via = StunnelVia::kFiles;
  std::optional<std::string> openssl_conf;  // via provider: the openssl.cnf ptrust writes
  std::optional<std::string> module;        // via provider: ptrust.so (default: "ptrust.so")
  std::vector<std::string> global;          // raw global lines, before the services
  std::vector<StunnelService> services;
};

// The instances of `cfg`'s `stunnel:` section (none without one), parsed from cfg.text.
// CONFIG_INVALID naming file:line:column, as every other configuration error.
std::vector<StunnelInstance> parse_stunnel_config(const Config& cfg);

}  // namespace ptrust
