// What `ptrust status`, `ptrust alerts`, the daemon's socket methods and its metrics report:
// one Report of the whole host, read the way consumers read trust (build_trust), plus the
// database's records, the drift `sync --check` finds, the consumers' states and the verdict
// counters hooks publish. Read-only: collecting a report writes nothing.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json.hpp>

#include "core/config.h"
#include "core/reconcile.h"
#include "core/trust.h"
#include "helper/host_config.h"

namespace ptrust::status {

enum class Health { kOk, kWarning, kError };
std::string_view to_string(Health h) noexcept;

// One certificate an alert or a metric can be about.
struct CertEntry {
  std::string kind;    // ca | pinned | legacy | pool | host_server | host_internal | cluster_ca
  std::string object;  // trusted: UUID; legacy: file name; pool: host UUID (file); host: file path
  std::string subject, subject_cn, issuer_cn, serial;
  std::string filepath;               // absolute path of the file it is served from
  std::vector<std::string> purposes;  // trusted certificates: the purposes (empty: general)
  std::int64_t not_before = 0, not_after = 0;
};

struct CrlEntry {
  std::string name, issuer, issuer_cn, filepath;
  std::string crl_number;  // decimal; "" when the CRL has none
  std::int64_t this_update = 0, next_update = 0;  // next_update 0: none
  bool stale = false;                             // nextUpdate has passed
  std::vector<std::string> applies_to;            // purposes whose trust holds it
  std::vector<std::string> failing;               // purposes that fail because it is stale
};

// A consumer of trust: a stunnel instance, or a service from `consumers:`.
struct ConsumerEntry {
  std::string name, kind;  // kind: stunnel | service
  std::vector<std::string> purposes;
  std::string state;       // ok | update_available | reload_needed
  std::string detail;      // why, and what brings it back to ok
  long pid = 0;            // 0: not running (or no pid file)
  std::string want;        // digest of the trust it should run with (record after a reload)
};

struct PurposeEntry {
  std::string name;
  std::string mode;    // pinned | ca | general | none
  std::string bundle;  // absolute path, "" for none
  std::optional<std::string> failure;  // "CODE: message" when every verification fails
  std::string crl_policy;
  std::size_t certificates = 0;
  std::optional<std::int64_t> earliest_not_after;
  std::string earliest_subject;
  std::vector<std::string> crls;       // names of the CRLs that apply
  std::size_t drift = 0;               // drift entries in its stores
  std::vector<std::string> consumers;  // names
  std::map<std::string, std::uint64_t> verdicts;  // by reason name, host-wide (published hooks)
};

struct Finding {
  Health severity = Health::kWarning;
  std::string code;    // stable: the alert name or error code it comes from
  std::string object;  // what it is about
  std::string message; // what is wrong and what to do
};

struct Report {
  std::int64_t now = 0;
  std::string root;
  std::uint64_t generation = 0;
  std::vector<PurposeEntry> purposes;  // declared purposes, then general
  std::vector<CertEntry> certs;        // trusted, legacy, pool, host identity
  std::vector<CrlEntry> crls;
  std::vector<Drift> drift;
  std::optional<std::string> drift_error;  // "CODE: message" when drift could not be checked
  std::vector<ConsumerEntry> consumers;
  std::size_t legacy = 0, pool = 0;        // certificates in those stores
  // The cluster CA (kind cluster_ca in certs) when there is one: serials issued, minimum.
  std::uint64_t ca_last_serial = 0;
  std::optional<std::uint64_t> ca_min_serial;
  std::vector<Finding> findings;           // most severe first
  Health health = Health::kOk;
};

// Verdict counts by purpose, indexed by ptrust_reason.
using Folded = std::map<std::string, std::vector<std::uint64_t>>;

struct Options {
  std::optional<std::string> purpose;  // restrict to one purpose (findings too)
  // Verdicts of hooks whose counter files are gone (see add_verdicts).
  const Folded* folded = nullptr;
  // Certificates known to decode (core/trust.h): the daemon keeps one across refreshes, so a
  // refresh decodes only new certificates; null: a fresh set for this report.
  std::shared_ptr<DecodeVerdicts> verdicts;
};

// Decode verdicts kept on disk, so that a fresh `ptrust status --local` does not decode every
// certificate again (OpenSSL 3.0: ~175 µs each, 1.75 s at 10,000): <state>/cache/decode-verdicts,
// written by the daemon after a refresh. Each entry is the tagged SHA-256 of one certificate's
// DER (core/trust.cc check_decodes): it can only ever vouch for those exact bytes, and a verdict
// is a pure function of them. The file is used only when it and the directories holding it are
// owned by root or by this user and writable by no one else (the trust ptrust.db has); anything
// else (missing, a symlink, malformed) is ignored: the certificates are decoded as without it.
// Returns the number of entries taken in.
std::size_t load_verdict_cache(const std::string& root, DecodeVerdicts& v) noexcept;
// Writes `v`'s current entries (after DecodeVerdicts::retain_used) when they differ from the
// file's, under the writer lock. Returns whether it wrote. Throws Error (IO_ERROR, LOCK_FAILED).
bool save_verdict_cache(const Context& ctx, DecodeVerdicts& v);
inline constexpr std::string_view kVerdictCacheDir = "cache";  // in layout::kStateDir
inline constexpr std::string_view kVerdictCacheFile = "decode-verdicts";

// Reads the whole host at `now` (seconds since the epoch).
Report collect(const Context& ctx, const HostConfig& hc, std::int64_t now, const Options& opt = {});

// Sets each purpose's verdicts: what the hooks' counter files hold now, plus `folded` (the
// counts of exited processes whose files the daemon removed). Cheap: a few small files.
void add_verdicts(Report& r, const Folded* folded);

// xapi's alert and beyond: one per object, the most severe.
struct Alert {
  std::string name;     // e.g. POOL_CA_CERTIFICATE_EXPIRING_14, CRL_STALE
  int priority = 3;     // 1 most urgent
  std::string cls;      // Certificate | CRL | Store | Consumer
  std::string object;   // UUID, name or path
  std::string subject;  // certificate subject / CRL issuer ("" otherwise)
  std::optional<std::int64_t> date;  // the date it is about (notAfter, nextUpdate)
  std::string message;  // human text
  std::string body;     // xapi's <body><message>..</message><date>..</date></body>
};
std::vector<Alert> alerts(const Report& r, const AlertPolicy& policy);

boost::json::object to_json(const Report& r);
boost::json::object to_json(const Alert& a);
std::string text(const Report& r);

// The exit status of `ptrust status`: 0 ok, 3 warning, 1 error (2 stays "usage").
int exit_status(Health h) noexcept;

// Prometheus text exposition (x509-certificate-exporter's names plus ptrust's own). The
// daemon renders everything but the verdicts once per refresh (`verdicts` false) and the
// verdicts, which hooks move all the time, per scrape (verdict_metrics).
std::string metrics(const Report& r, bool verdicts = true);
std::string verdict_metrics(const Report& r);

// The subject's or issuer's CN from RFC 2253 text ("" when it has none).
std::string common_name(std::string_view rfc2253);

}  // namespace ptrust::status
