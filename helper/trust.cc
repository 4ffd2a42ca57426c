// install / uninstall / list / resolve / sync.
#include <ctime>
#include <iostream>
#include <optional>

#include "core/cert.h"
#include "core/error.h"
#include "core/selection.h"
#include "core/store.h"
#include "core/trust.h"
#include "core/x509.h"
#include "helper/cli.h"

namespace ptrust::cli {

namespace json = boost::json;

json::object record_json(const CertRecord& r) {
  json::array ps;
  for (const auto& p : r.purposes) ps.emplace_back(p);
  return {{"uuid", r.uuid},
          {"type", std::string(to_string(r.type))},
          {"purposes", std::move(ps)},
          {"sha256", r.sha256},
          {"sha1", r.sha1},
          {"subject", r.subject},
          {"issuer", r.issuer},
          {"serial", r.serial},
          {"not_before", x509::format_time(r.not_before)},
          {"not_after", x509::format_time(r.not_after)},
          {"key", r.key_type + "-" + std::to_string(r.key_bits)},
          {"installed_at", x509::format_time(r.installed_at)}};
}

namespace {

constexpr size_t kMaxInput = 1u << 20;  // 1 MiB: no certificate is bigger


}  // namespace

json::object crl_json(const CrlRecord& r) {
  json::array ps;
  for (const auto& p : r.purposes) ps.emplace_back(p);
  return {{"name", r.name},
          {"purposes", std::move(ps)},
          {"issuer", r.issuer},
          {"sha256", r.sha256},
          {"last_update", x509::format_time(r.last_update)},
          {"next_update", r.next_update ? json::value(x509::format_time(r.next_update)) : json::value(nullptr)},
          {"installed_at", x509::format_time(r.installed_at)}};
}

namespace {

std::string purposes_text(const CertRecord& r) {
  if (r.purposes.empty()) return "general";
  std::string s;
  for (const auto& p : r.purposes) s += (s.empty() ? "" : ",") + p;
  return s;
}

}  // namespace

void add_mode_change_option(po::options_description& d) {
  d.add_options()("allow-mode-change", po::bool_switch(),
                  "accept a change that widens a purpose's trust (pinned -> ca or general, ca -> general)");
}

void apply_mode_change_option(Store& store, const po::variables_map& vm) {
  store.allow_mode_change(vm.count("allow-mode-change") && vm["allow-mode-change"].as<bool>());
}

void report_mode_changes(const Store& store) {
  for (const auto& m : store.mode_changes())
    std::cerr << "ptrust: mode: " << m.purpose << ": " << to_string(m.before) << " -> " << to_string(m.after)
              << (m.widens() ? " (wider trust, allowed by --allow-mode-change)" : "") << "\n";
}

namespace {

int install(const Common& c, const po::variables_map& vm) {
  bool ca = vm["ca"].as<bool>(), pinned = vm["pinned"].as<bool>();
  if (ca == pinned) throw Error(Code::kUsage, "give exactly one of --ca or --pinned");
  Context ctx = c.context();
  InstallRequest req;
  req.type = ca ? CertType::kCa : CertType::kPinned;
  if (vm.count("purpose")) req.purposes = parse_purpose_list(vm["purpose"].as<std::string>(), ctx.config, ctx.root);
  std::string input = read_input_file(vm["file"].as<std::string>());
  if (vm["each"].as<bool>()) {
    // A PEM bundle: each block is parsed as an input of its own (a key anywhere refuses all).
    std::vector<Certificate> certs;
    for (size_t at = 0; (at = input.find("-----BEGIN ", at)) != std::string::npos;) {
      size_t end = input.find("-----END ", at);
      size_t stop = end == std::string::npos ? std::string::npos : input.find("-----", end + 9);
      if (stop == std::string::npos) throw Error(Code::kTrustedCertificateInvalid, "a PEM block is not closed");
      std::string block = input.substr(at, stop + 5 - at);
      try {
        certs.push_back(Certificate::parse(block));
      } catch (const Error& e) {
        throw Error(e.code(), "block " + std::to_string(certs.size() + 1) + " of the bundle: " + e.what() +
                                  "; nothing was installed");
      }
      at = stop + 5;
    }
    if (certs.empty()) throw Error(Code::kTrustedCertificateInvalid, "--each needs a PEM bundle; no PEM block found");
    Store store(std::move(ctx));
    apply_mode_change_option(store, vm);
    for (const auto& r : store.install_each(certs, req, std::time(nullptr))) std::cout << r.uuid << "\n";
    report_mode_changes(store);
    return 0;
  }
  Certificate cert = Certificate::parse(input);
  Store store(std::move(ctx));
  apply_mode_change_option(store, vm);
  CertRecord r = store.install(cert, req, std::time(nullptr));
  report_mode_changes(store);
  if (req.type == CertType::kPinned && X509_check_ca(cert.get()) != 0)
    std::cerr << "ptrust: warning: PIN_IS_CA: this pinned certificate is a CA; ptrust:// and the capath "
                 "directories refuse its purposes (a program verifying chains would also trust what it signs); "
                 "the verify hook and stunnel --via files verify it as a pin\n";
  std::cout << r.uuid << "\n";
  return 0;
}

int uninstall(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  apply_mode_change_option(store, vm);
  // A full UUID goes to the writer as it is (its refusals, DATABASE_MISSING first, apply).
  const std::string& sel = vm["selector"].as<std::string>();
  std::string uuid = valid_uuid(sel) ? sel : select_certificate(store.database(), sel).uuid;
  CertRecord r = store.uninstall(uuid, vm["force"].as<bool>());
  std::cout << "removed " << to_string(r.type) << " " << r.uuid << " (" << r.subject << ")\n";
  report_mode_changes(store);
  return 0;
}

int list(const Common& c, const po::variables_map& vm) {
  Store store(c.context());
  Database db = store.database();
  std::time_t now = std::time(nullptr);
  // Filters: --purpose P (its own records; `general` for the general store), --expiring DAYS.
  std::optional<std::string> purpose;
  if (vm.count("purpose")) {
    purpose = vm["purpose"].as<std::string>();
    if (*purpose != kGeneral && !store.context().config.declares(*purpose))
      throw unknown_purpose(store.context().config, *purpose, store.context().root);
  }
  std::optional<long> expiring;
  if (vm.count("expiring")) {
    expiring = vm["expiring"].as<long>();
    if (*expiring < 0) throw Error(Code::kUsage, "--expiring takes a number of days (0 or more)");
  }
  auto soon = [&](std::int64_t not_after) { return !expiring || not_after - now <= *expiring * 86400L; };
  std::erase_if(db.certs, [&](const CertRecord& r) {
    bool in = !purpose || (r.purposes.empty() ? *purpose == kGeneral
                                              : std::find(r.purposes.begin(), r.purposes.end(), *purpose) != r.purposes.end());
    return !in || !soon(r.not_after);
  });
  if (purpose) db.crls.clear(), db.legacy.clear(), db.pool.clear();
  std::erase_if(db.legacy, [&](const LegacyRecord& r) { return !soon(r.not_after); });
  std::erase_if(db.pool, [&](const PoolRecord& r) { return !soon(r.not_after); });
  if (expiring) std::erase_if(db.crls, [&](const CrlRecord& r) { return !r.next_update || !soon(r.next_update); });
  // By purpose, then subject: what an administrator scans for.
  std::stable_sort(db.certs.begin(), db.certs.end(), [](const CertRecord& a, const CertRecord& b) {
    return std::pair(purposes_text(a), a.subject) < std::pair(purposes_text(b), b.subject);
  });
  auto days = [&](std::int64_t t) { return static_cast<long>((t - now) / 86400); };
  if (c.json) {
    json::array a, crls, legacy, pool;
    for (const auto& r : db.certs) {
      json::object o = record_json(r);
      o["days_left"] = days(r.not_after);
      a.emplace_back(std::move(o));
    }
    for (const auto& r : db.crls) crls.emplace_back(crl_json(r));
    for (const auto& r : db.legacy)
      legacy.emplace_back(json::object{{"name", r.name}, {"subject", r.subject}, {"sha256", r.sha256},
                                       {"not_after", x509::format_time(r.not_after)}});
    for (const auto& r : db.pool)
      pool.emplace_back(json::object{{"host", r.host}, {"staged", r.staged}, {"subject", r.subject},
                                     {"sha256", r.sha256}, {"not_after", x509::format_time(r.not_after)}});
    print_json(json::object{{"certificates", std::move(a)}, {"crls", std::move(crls)}, {"legacy", std::move(legacy)},
                            {"pool", std::move(pool)}});
    return 0;
  }
  if (db.certs.empty() && db.crls.empty() && db.legacy.empty() && db.pool.empty()) {
    std::cout << (purpose || expiring ? "nothing matches\n" : "nothing installed\n");
    return 0;
  }
  for (const auto& r : db.certs) {
    std::cout << r.uuid << "  " << to_string(r.type) << "  purposes=" << purposes_text(r)
              << "  expires=" << x509::format_time(r.not_after) << " (" << days(r.not_after) << " days)\n"
              << "    subject: " << r.subject << "\n"
              << "    issuer:  " << r.issuer << "\n"
              << "    sha256:  " << r.sha256 << "\n";
  }
  for (const auto& r : db.crls)
    std::cout << "crl " << r.name << "  issuer=" << r.issuer
              << "  next-update=" << (r.next_update ? x509::format_time(r.next_update) : "none") << "\n";
  for (const auto& r : db.legacy)
    std::cout << "legacy " << r.name << "  subject=" << r.subject << "  expires=" << x509::format_time(r.not_after) << "\n";
  for (const auto& r : db.pool)
    std::cout << "pool " << r.file() << "  subject=" << r.subject << "  expires=" << x509::format_time(r.not_after) << "\n";
  return 0;
}

// The declared purposes, their policies and modes, and where they are declared.
int purposes_cmd(const Common& c, const po::variables_map&) {
  Context ctx = c.context();
  json::array out;
  std::vector<std::string> names;
  for (const auto& [p, _] : ctx.config.purposes) names.push_back(p);
  names.push_back(std::string(kGeneral));
  if (!c.json) std::cout << "declared in " << ctx.config.source << "\n";
  for (const auto& p : names) {
    PurposePolicy pol = policy_of(ctx.config, p);
    auto t = build_trust(ctx, p, TrustStamp{});
    if (!t) throw std::bad_alloc();
    std::string mode(to_string(t->mode));
    std::string failure = t->failure ? std::string(code_name(*t->failure)) : "";
    if (c.json) {
      out.emplace_back(json::object{{"purpose", p},
                                    {"mode", mode},
                                    {"failure", failure.empty() ? json::value(nullptr) : json::value(failure)},
                                    {"crl_policy", std::string(to_string(pol.crl_policy))},
                                    {"crl_scope", std::string(to_string(pol.crl_scope))},
                                    {"allow_expired_crl", pol.allow_expired_crl},
                                    {"pin_match", std::string(to_string(pol.pin_match))},
                                    {"enforce_pin_validity", pol.enforce_pin_validity},
                                    {"report_only", pol.report_only}});
      continue;
    }
    std::cout << "  " << p << ": " << mode << (failure.empty() ? "" : " (FAILS: " + failure + ")")
              << "  crl-policy=" << to_string(pol.crl_policy) << " crl-scope=" << to_string(pol.crl_scope)
              << (pol.allow_expired_crl ? " allow-expired-crl" : "") << " pin-match=" << to_string(pol.pin_match)
              << (pol.enforce_pin_validity ? "" : " enforce-pin-validity=false") << (pol.report_only ? " REPORT-ONLY" : "")
              << (p == kGeneral ? "  (reserved: the general CAs)" : "") << "\n";
  }
  if (c.json) print_json(json::object{{"source", ctx.config.source}, {"purposes", std::move(out)}});
  return 0;
}

int resolve_cmd(const Common& c, const po::variables_map& vm) {
  Context ctx = c.context();
  // What every consumer trusts for the purpose (a failure is the refusal they all make).
  std::shared_ptr<const TrustState> trust = build_trust(ctx, vm["purpose"].as<std::string>(), TrustStamp{});
  if (!trust) throw std::bad_alloc();
  const TrustState& t = *trust;
  if (t.failure) throw Error(*t.failure, t.failure_message);
  if (c.json) {
    print_json(json::object{{"purpose", t.purpose},
                            {"mode", std::string(to_string(t.mode))},
                            {"bundle", t.bundle.empty() ? json::value(nullptr) : json::value(t.bundle)},
                            {"certificates", t.certs.size()},
                            {"crls", t.crls.size()}});
    return 0;
  }
  std::cout << "purpose: " << t.purpose << "\nmode:    " << to_string(t.mode) << "\n";
  if (t.mode == Mode::kNone) {
    std::cout << "bundle:  (none: every verification for this purpose fails)\n";
  } else {
    std::cout << "bundle:  " << t.bundle << " (" << t.certs.size() << " certificate" << (t.certs.size() == 1 ? "" : "s")
              << ")\n";
    if (t.mode != Mode::kPinned)
      std::cout << "crls:    " << t.crls.size() << " (crl-policy " << to_string(t.policy.crl_policy) << ")\n";
  }
  return 0;
}

json::array drift_json(const std::vector<Drift>& drift) {
  json::array a;
  for (const auto& d : drift)
    a.emplace_back(json::object{{"kind", std::string(to_string(d.kind))}, {"path", d.path}, {"detail", d.detail}});
  return a;
}

void print_drift(const std::vector<Drift>& drift, bool repaired) {
  for (const auto& d : drift)
    std::cout << (repaired ? "repaired " : "") << to_string(d.kind) << ": " << d.path
              << (d.detail.empty() ? "" : " (" + d.detail + ")") << "\n";
}

// Recovery after DATABASE_MISSING: adopts the files on disk (validated as their intake
// commands validate them), then syncs.
int adopt_cmd(const Common& c) {
  Store store(c.context());
  AdoptResult r = store.adopt(std::time(nullptr));
  for (const auto& w : r.warnings) std::cerr << "ptrust: warning: " << w << "\n";
  const Database& db = r.adopted;
  if (c.json) {
    json::array certs, crls, legacy, pool;
    for (const auto& x : db.certs) certs.emplace_back(record_json(x));
    for (const auto& x : db.crls) crls.emplace_back(crl_json(x));
    for (const auto& x : db.legacy) legacy.emplace_back(x.name);
    for (const auto& x : db.pool) pool.emplace_back(x.file());
    print_json(json::object{{"adopted", json::object{{"certificates", std::move(certs)}, {"crls", std::move(crls)},
                                                     {"legacy", std::move(legacy)}, {"pool", std::move(pool)}}},
                            {"repaired", drift_json(r.repaired)}});
    return 0;
  }
  for (const auto& x : db.certs)
    std::cout << "adopted " << to_string(x.type) << " " << x.uuid << " purposes=" << purposes_text(x) << " ("
              << x.subject << ")\n";
  for (const auto& x : db.crls) std::cout << "adopted crl " << x.name << "\n";
  for (const auto& x : db.legacy) std::cout << "adopted legacy " << x.name << "\n";
  for (const auto& x : db.pool) std::cout << "adopted pool " << x.file() << "\n";
  print_drift(r.repaired, true);
  std::cout << "in sync\n";
  return 0;
}

int sync_cmd(const Common& c, const po::variables_map& vm) {
  bool check = vm["check"].as<bool>();
  if (vm["adopt"].as<bool>()) {
    if (check) throw Error(Code::kUsage, "--adopt and --check exclude each other");
    return adopt_cmd(c);
  }
  Store store(c.context());
  auto drift = store.sync(!check);
  if (c.json) {
    print_json(json::object{{"clean", drift.empty()}, {"repaired", !check && !drift.empty()}, {"drift", drift_json(drift)}});
  } else {
    print_drift(drift, !check);
    if (drift.empty()) std::cout << "in sync\n";
  }
  return check && !drift.empty() ? 1 : 0;
}

}  // namespace

void add_trust_commands(std::vector<Command>& out) {
  out.push_back({"install", "FILE (--ca | --pinned) [--purpose a,b] [--each]",
                 "install a trusted certificate (PEM or DER); prints its UUID", false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("file", po::value<std::string>()->required(), "certificate file (PEM or DER)")(
                       "ca", po::bool_switch(), "a CA: peers must chain to it")(
                       "pinned", po::bool_switch(), "a pinned peer: the peer's leaf must equal it")(
                       "purpose", po::value<std::string>(), "comma-separated purposes (none: general CA)")(
                       "each", po::bool_switch(), "FILE is a PEM bundle: install each certificate (all or nothing); prints one UUID per line");
                   add_mode_change_option(d);
                   p.add("file", 1);
                 },
                 install});
  out.push_back({"uninstall", "SELECTOR [--force] [--allow-mode-change]", "remove a trusted certificate", false,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("selector", po::value<std::string>()->required(),
                                   "UUID printed by install, a UUID prefix (8+), the SHA-256 or the certificate file")(
                       "force", po::bool_switch(), "also drop a record whose files are already gone");
                   add_mode_change_option(d);
                   p.add("selector", 1);
                 },
                 uninstall});
  out.push_back({"list", "[--purpose P] [--expiring DAYS]",
                 "list trusted certificates (by purpose, then subject), CRLs, legacy and pool certificates", true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("purpose", po::value<std::string>(), "only the certificates installed for P (or general)")(
                       "expiring", po::value<long>(), "only what expires (or whose CRL nextUpdate comes) within DAYS");
                 },
                 list});
  out.push_back({"purposes", "", "list the declared purposes: mode, policy, and the file that declares them", true,
                 [](po::options_description&, po::positional_options_description&) {}, purposes_cmd});
  out.push_back({"resolve", "PURPOSE", "show which store serves PURPOSE (pinned|ca|general|none)", true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("purpose", po::value<std::string>()->required(), "purpose, or general");
                   p.add("purpose", 1);
                 },
                 resolve_cmd});
  out.push_back({"sync", "[--check | --adopt]", "reconcile the stores with the database", true,
                 [](po::options_description& d, po::positional_options_description&) {
                   d.add_options()("check", po::bool_switch(), "report drift only; exit 1 if any")(
                       "adopt", po::bool_switch(),
                       "the database is missing: adopt the store files (validated as install would), then sync");
                 },
                 sync_cmd});
}

const std::vector<Command>& commands() {
  static const std::vector<Command> all = [] {
    std::vector<Command> v;
    add_trust_commands(v);
    add_store_commands(v);
    add_verify_commands(v);
    add_stunnel_commands(v);
    add_status_commands(v);
    add_serve_commands(v);
    add_show_commands(v);
    add_identity_commands(v);
    add_fleet_commands(v);
    return v;
  }();
  return all;
}

std::string read_input_file(const std::string& path) { return fs::read_input(path, kMaxInput); }

void print_json(const json::value& v) { std::cout << json::serialize(v) << "\n"; }

}  // namespace ptrust::cli
