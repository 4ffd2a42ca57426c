// `ptrust stunnel sync` as a library call, for the CLI and for the daemon: re-render each
// declared stunnel instance, write it atomically when it changed, SIGHUP its stunnel.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/selection.h"
#include "helper/stunnel_config.h"
#include "helper/stunnel_render.h"
#include "core/store.h"

namespace ptrust::stunnel {

struct ServiceReport {
  std::string name, purpose;
  Mode mode = Mode::kNone;
  bool changed = false;      // its stanza differs from the one in the old file
  bool fail_closed = false;  // rendered to refuse every connection
  std::string reason;        // why it fails closed ("CODE: message")
  bool error = false;        // the material was unusable (mode none alone is not an error)
  std::vector<std::string> warnings;
};

struct InstanceReport {
  std::string name, config;
  bool written = false, openssl_conf_written = false;
  std::string reload = "none";  // none | sighup | not-running | failed
  long pid = 0;
  std::string reload_detail;
  bool pending = false;  // stunnel has not been told to load the current file (retried next sync)
  std::vector<ServiceReport> services;
  std::vector<CrlFile> crl_files;  // the CRLfiles the rendered services name (written before the file)
  size_t crl_files_removed = 0;    // CRLfiles no managed configuration names any more
};

// Never keeps an old stanza: a purpose whose material is gone or unusable gets the
// fail-closed stanza. Signals stunnel whenever the file differs from what stunnel was last
// told to load (recorded in <root>/var/lib/ptrust/stunnel/stunnel-<instance>.applied once a
// SIGHUP was delivered), so a failed
// or interrupted reload is retried. Only a stunnel binary started with this instance's
// configuration file is signalled. Files, signal and record are written under the store's
// writer lock (Store::with_state_lock): concurrent syncs and store changes do not interleave.
// The CRLfiles the services name (--via files) are written before the configuration; then
// the files of etc/ptrust/stunnel-crls that no instance's configuration file names are removed.
InstanceReport sync_instance(Store& store, const StunnelInstance& in);

// What sync would write for `in` now (services reported in `rep`), without writing it.
std::string render_instance(const Context& ctx, const StunnelInstance& in, InstanceReport& rep);
// The SHA-256 (hex) of the configuration stunnel was last told to load; nullopt when none is
// recorded (never signalled by ptrust).
std::optional<std::string> applied_digest(const Context& ctx, const StunnelInstance& in);
// The pid in `pidfile` when that process exists; 0 otherwise (no pid file, no pid, gone).
long live_pid(const std::string& pidfile);

// Replaces a file named by the administrator (outside the stores) atomically, 0644.
void write_file_atomic(const std::string& path, const std::string& data);

}  // namespace ptrust::stunnel
