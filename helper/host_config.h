// The helper's own sections of ptrust.yaml besides `stunnel:`: `alerts:` (the windows of the
// expiry alerts), `consumers:` (the services, other than the stunnel instances, that load
// trust and that the daemon keeps in step) and `cluster:` (the names the cluster CA signs for). Core never reads them: a broken section cannot
// break verification, and every `ptrust` command refuses it with CONFIG_INVALID file:line:col.
#pragma once

#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include "core/config.h"

namespace ptrust {

// xapi's windows by default (certificate_check.ml): an alert `_07` when at most 7 days are
// left, `_14` at most 14, `_30` at most 30; EXPIRED when none is left.
struct AlertPolicy {
  double expiring_30 = 30, expiring_14 = 14, expiring_07 = 7;  // days
  double crl_next_update = 7;  // CRL_NEXT_UPDATE_SOON when nextUpdate is at most this many days away
};

// A service that loads trust for some purposes and is reloaded when that trust changes.
struct ConsumerDecl {
  std::string name;                   // [A-Za-z0-9._-]{1,64}; not a stunnel instance's name
  std::vector<std::string> purposes;  // declared purposes or "general"
  std::optional<std::string> pidfile;  // absolute; without one the consumer is never signalled
  int signal = SIGHUP;                 // reload-signal (with pidfile)
  std::vector<std::string> command;   // reload-command: argv (absolute program), run without a shell
  bool caches_trust = true;           // false: it follows changes itself (libptrust, ptrust.so)
};

// `cluster: {name: pool1, nodes: [host1, host2]}`: the only common names `ca sign` accepts.
struct ClusterDecl {
  std::string name;                // a DNS name: [A-Za-z0-9-] labels joined by '.', at most 253
  std::vector<std::string> nodes;  // the same grammar, no repeats
  std::vector<std::string> names() const;  // name, then nodes
};

struct HostConfig {
  AlertPolicy alerts;
  std::vector<ConsumerDecl> consumers;
  std::optional<ClusterDecl> cluster;
};

// Parses `alerts:`, `consumers:` and `cluster:` of `cfg` (defaults without them).
HostConfig parse_host_config(const Config& cfg);

}  // namespace ptrust
