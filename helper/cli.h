// Shared plumbing of the `ptrust` command: option parsing, errors, output.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <boost/program_options.hpp>

#include "core/config.h"
#include "core/db.h"
#include "core/store.h"

namespace ptrust::fleet {
struct Endpoint;
}

namespace ptrust::cli {

namespace po = boost::program_options;

// Options every command accepts, before or after the command name.
struct Common {
  std::optional<std::string> root;
  std::optional<std::string> config;
  bool json = false;

  // The Context of every command. Also validates the `stunnel:` section (which core does
  // not read), so every command refuses a broken one with CONFIG_INVALID file:line:column.
  Context context() const;
};

struct Command {
  const char* name;
  const char* args;     // synopsis after the name
  const char* summary;  // one line for `ptrust --help`
  bool reads;           // read command: takes --json
  // Adds the command's own options and positionals; returns the positional description.
  std::function<void(po::options_description&, po::positional_options_description&)> describe;
  std::function<int(const Common&, const po::variables_map&)> run;
};

const std::vector<Command>& commands();

// Commands, grouped by file.
void add_trust_commands(std::vector<Command>& out);
void add_store_commands(std::vector<Command>& out);  // crl, legacy, pool, export, import, eject
void add_stunnel_commands(std::vector<Command>& out);  // stunnel render, stunnel sync
void add_status_commands(std::vector<Command>& out);   // status, alerts (helper/status_cmd.cc)
void add_serve_commands(std::vector<Command>& out);    // serve (helper/serve.cc)
void add_identity_commands(std::vector<Command>& out); // host-cert, ca (helper/identity.cc)
void add_fleet_commands(std::vector<Command>& out);    // fleet publish, fleet status (helper/fleet_cmd.cc)
// --etcd-purpose, --etcd-cert, --etcd-key (fleet commands, serve --follow), and their use.
void add_etcd_tls_options(po::options_description& d);
void apply_etcd_tls_options(fleet::Endpoint& ep, const po::variables_map& vm, const Context& ctx);

// Reads a user-supplied input file (regular file, no symlink, at most 1 MiB).
std::string read_input_file(const std::string& path);

boost::json::object crl_json(const CrlRecord& r);
boost::json::object record_json(const CertRecord& r);

// The one record `selector` names: a UUID, a unique UUID prefix (8+ characters), a SHA-256
// fingerprint (any case, colons optional) or the path of a certificate file.
// TRUSTED_CERTIFICATE_NOT_FOUND, or CERTIFICATE_SELECTOR_AMBIGUOUS listing the candidates.
const CertRecord& select_certificate(const Database& db, const std::string& selector);
void add_show_commands(std::vector<Command>& out);  // show, crl show (helper/show.cc)
void add_verify_commands(std::vector<Command>& out);  // verify, probe (helper/verify.cc)

// --at TIME: YYYY-MM-DD, YYYY-MM-DDTHH:MM:SS with or without Z (UTC), @EPOCH, or +30d / -2h /
// +15m / +10s from now; USAGE otherwise.
std::int64_t parse_time(const std::string& s);

// Prints `ptrust: CODE: message` on stderr as one line (control characters escaped).
void print_refusal(std::string_view code, std::string_view message);

// --allow-mode-change for the commands that change which certificates a purpose trusts
// (install, uninstall, import, eject), and the report of the modes they moved (stderr).
void add_mode_change_option(po::options_description& d);
void apply_mode_change_option(Store& store, const po::variables_map& vm);
void report_mode_changes(const Store& store);

// Prints a JSON value (pretty enough for humans: one document per line).
void print_json(const boost::json::value& v);

}  // namespace ptrust::cli
