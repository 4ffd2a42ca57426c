#include "helper/status.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>
#include <unordered_map>
#include <sstream>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/cluster_ca.h"
#include "core/counters.h"
#include "core/db.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/layout.h"
#include "core/store.h"
#include "core/trust.h"
#include "core/x509.h"
#include "helper/stunnel_config.h"
#include "ptrust/ptrust.h"
#include "helper/stunnel_sync.h"

namespace ptrust::status {

namespace json = boost::json;

std::string_view to_string(Health h) noexcept {
  switch (h) {
    case Health::kOk: return "ok";
    case Health::kWarning: return "warning";
    case Health::kError: return "error";
  }
  return "?";
}

int exit_status(Health h) noexcept { return h == Health::kOk ? 0 : h == Health::kWarning ? 3 : 1; }

std::string common_name(std::string_view dn) {
  // RFC 2253: attributes separated by unescaped ',' (or '+' inside one RDN); '\' escapes.
  size_t i = 0;
  while (i < dn.size()) {
    std::string value;
    bool in_value = false;
    std::string type;
    for (; i < dn.size(); ++i) {
      char c = dn[i];
      if (c == '\\' && i + 1 < dn.size()) {
        (in_value ? value : type) += dn[++i];
        continue;
      }
      if (c == ',' || c == '+') break;
      if (c == '=' && !in_value) {
        in_value = true;
        continue;
      }
      (in_value ? value : type) += c;
    }
    if (type == "CN") return value;
    ++i;  // past the separator
  }
  return "";
}

namespace {

std::string cn_of(const X509_NAME* n) { return n ? common_name(x509::rfc2253(n)) : ""; }

std::string serial_of(const X509* x) {
  const ASN1_INTEGER* s = X509_get0_serialNumber(x);
  ossl::BnPtr bn(ASN1_INTEGER_to_BN(s, nullptr));
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out = hex ? hex : "";
  OPENSSL_free(hex);
  return out;
}


std::string path_in(const Context& ctx, std::string_view rel) {
  std::string root = ctx.root;
  if (!root.empty() && root.back() == '/') root.pop_back();
  return root + "/" + std::string(rel);
}

// The purpose a drift entry belongs to ("" for none): the stores and capath entries of
// etc/trusted-certs are named after their purpose.
std::string drift_purpose(const std::string& path) {
  std::string prefix = std::string(layout::kTrustedDir) + "/";
  if (path.rfind(prefix, 0) != 0) return "";
  std::string rest = path.substr(prefix.size());
  if (rest.rfind("capath/", 0) == 0) rest = rest.substr(7);
  for (std::string_view p : {"ca-bundle-", "pinned-bundle-", "ca-", "pinned-"})
    if (rest.rfind(p, 0) == 0) {
      rest = rest.substr(p.size());
      break;
    }
  size_t end = rest.find_first_of("/.");
  return rest.substr(0, end);
}

// A host identity file (key and certificate, as xapi keeps them): its first certificate.
void host_identity(const Context& ctx, std::string_view file, const char* kind, Report& r) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd dir = fs::open_dir(root.get(), "etc/xensource", false);
  if (!dir) return;
  std::optional<std::string> data;
  try {
    data = fs::read_at(dir.get(), std::string(file), 1u << 20);
  } catch (const Error& e) {
    r.findings.push_back({Health::kError, std::string(code_name(e.code())), path_in(ctx, "etc/xensource/" + std::string(file)),
                          std::string(e.what()) + "; replace it with a regular file"});
    return;
  }
  if (!data) return;
  ossl::BioPtr bio(BIO_new_mem_buf(data->data(), static_cast<int>(data->size())));
  ossl::X509Ptr x(bio ? PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  std::string path = path_in(ctx, "etc/xensource/" + std::string(file));
  if (!x) {
    r.findings.push_back({Health::kError, "STORE_CORRUPT", path, "holds no certificate that parses; re-issue the host certificate"});
    return;
  }
  CertEntry c{.kind = kind, .object = path, .subject = x509::rfc2253(X509_get_subject_name(x.get())),
              .subject_cn = cn_of(X509_get_subject_name(x.get())), .issuer_cn = cn_of(X509_get_issuer_name(x.get())),
              .serial = serial_of(x.get()), .filepath = path};
  c.not_before = x509::to_epoch(X509_get0_notBefore(x.get())).value_or(0);
  c.not_after = x509::to_epoch(X509_get0_notAfter(x.get())).value_or(0);
  r.certs.push_back(std::move(c));
}

// The cluster CA's certificate (never its key), with its serial counters.
void cluster_ca_entry(const Context& ctx, Report& r) {
  const std::string path = path_in(ctx, std::string(cluster_ca::kDir) + "/" + std::string(cluster_ca::kCert));
  std::optional<cluster_ca::Info> i;
  try {
    fs::Fd root = fs::open_root(ctx.root);
    i = cluster_ca::info(root.get());
  } catch (const Error& e) {
    r.findings.push_back({Health::kError, std::string(code_name(e.code())), path, e.what()});
    return;
  }
  if (!i) return;
  X509* x = i->cert.get();
  CertEntry c{.kind = "cluster_ca", .object = path, .subject = x509::rfc2253(X509_get_subject_name(x)),
              .subject_cn = cn_of(X509_get_subject_name(x)), .issuer_cn = cn_of(X509_get_issuer_name(x)),
              .serial = serial_of(x), .filepath = path};
  c.not_before = x509::to_epoch(X509_get0_notBefore(x)).value_or(0);
  c.not_after = x509::to_epoch(X509_get0_notAfter(x)).value_or(0);
  r.certs.push_back(std::move(c));
  r.ca_last_serial = i->last_serial;
  r.ca_min_serial = i->min_serial;
}

// A record's fingerprint ("AB:CD:...", or hex without colons) as 32 bytes; nullopt when it
// is not one (the certificate is then decoded where it is needed).
std::optional<Digest> digest_of(std::string_view fp) {
  Digest d{};
  size_t n = 0;
  int half = -1;
  for (char c : fp) {
    if (c == ':') continue;
    int v = std::isdigit(static_cast<unsigned char>(c)) ? c - '0'
            : (c >= 'a' && c <= 'f') ? c - 'a' + 10
            : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                     : -1;
    if (v < 0 || n == d.size()) return std::nullopt;
    if (half < 0) {
      half = v;
    } else {
      d[n++] = static_cast<unsigned char>(half << 4 | v);
      half = -1;
    }
  }
  if (n != d.size() || half >= 0) return std::nullopt;
  return d;
}

// SHA-256 of a certificate's DER (what a record's fingerprint is of).
Digest sha256_of(std::string_view der) {
  Digest d{};
  unsigned int n = 0;
  if (EVP_Digest(der.data(), der.size(), d.data(), &n, x509::sha256(), nullptr) != 1 || n != d.size()) throw std::bad_alloc();
  return d;
}

std::string store_file(const Context& ctx, const CertRecord& rec) {
  auto stores = rec.stores();
  if (stores.empty()) return "";
  return path_in(ctx, std::string(layout::kTrustedDir) + "/" + layout::store_dir(stores.front()) + "/" + rec.uuid + ".pem");
}

// What a consumer of `purposes` should run with: the certificates and CRLs of each (not the
// generation: an unrelated change must not reload it).
std::string consumer_digest(const std::vector<std::string>& purposes,
                            const std::map<std::string, std::string>& material) {
  std::string all;
  for (const auto& p : purposes) {
    auto it = material.find(p);
    all += p + "=" + (it == material.end() ? "" : it->second) + "\n";
  }
  return x509::sha256_hex(all);
}

std::string material_hex(const TrustState& t) {
  std::string all = std::string(to_string(t.mode)) + "\n" + t.failure_message + "\n";
  for (const auto& c : t.certs) all += x509::sha256_hex(c.der);
  for (const auto& c : t.crls) all += c.name + x509::sha256_hex(c.der);
  return x509::sha256_hex(all);
}

void stunnel_consumers(const Context& ctx, Report& r) {
  for (const auto& in : parse_stunnel_config(ctx.config)) {
    ConsumerEntry c{.name = in.name, .kind = "stunnel"};
    for (const auto& s : in.services)
      if (std::find(c.purposes.begin(), c.purposes.end(), s.purpose) == c.purposes.end()) c.purposes.push_back(s.purpose);
    stunnel::InstanceReport rep;
    std::string text = stunnel::render_instance(ctx, in, rep);
    c.want = x509::sha256_hex(text);
    auto applied = stunnel::applied_digest(ctx, in);
    c.pid = stunnel::live_pid(in.pidfile);
    if (applied && *applied == c.want) {
      c.state = "ok";
      c.detail = "stunnel was told to load the current configuration";
    } else if (c.pid) {
      c.state = "reload_needed";
      c.detail = "stunnel caches trust and still runs with what it loaded before the last change; "
                 "`ptrust stunnel sync` (or the daemon) rewrites its configuration and reloads it";
    } else {
      std::optional<std::string> on_disk;
      try {
        fs::Fd dir = fs::open_root(std::filesystem::path(in.config).parent_path().string());
        on_disk = fs::read_at(dir.get(), std::filesystem::path(in.config).filename().string(), 1u << 20);
      } catch (const Error&) {
      }
      if (on_disk == text) {
        c.state = "ok";
        c.detail = "not running; it loads the current configuration when it starts";
      } else {
        c.state = "update_available";
        c.detail = "not running, and its configuration file is out of date; `ptrust stunnel sync` writes it";
      }
    }
    r.consumers.push_back(std::move(c));
  }
}

void service_consumers(const Context& ctx, const HostConfig& hc, const std::map<std::string, std::string>& material,
                       Report& r) {
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd records = fs::open_dir(root.get(), std::string(layout::kStateDir) + "/consumers", false);
  for (const auto& d : hc.consumers) {
    ConsumerEntry c{.name = d.name, .kind = "service", .purposes = d.purposes};
    c.want = consumer_digest(d.purposes, material);
    std::optional<std::string> applied;
    if (records) {
      try {
        applied = fs::read_at(records.get(), d.name + ".applied", 4096);
      } catch (const Error&) {
      }
    }
    c.pid = d.pidfile ? stunnel::live_pid(*d.pidfile) : 0;
    bool running = !d.pidfile || c.pid;
    if (applied && *applied == c.want) {
      c.state = "ok";
      c.detail = "reloaded with the current trust";
    } else if (!running) {
      c.state = "ok";
      c.detail = "not running; it loads the current trust when it starts";
    } else if (d.caches_trust) {
      c.state = "reload_needed";
      c.detail = applied ? "the trust of its purposes changed since it was last reloaded; the daemon reloads it"
                         : "never reloaded by ptrust, so what it loaded is unknown; the daemon reloads it";
    } else {
      c.state = "update_available";
      c.detail = "the trust of its purposes changed; it follows changes itself (within 1 s)";
    }
    r.consumers.push_back(std::move(c));
  }
}

Health worst(const std::vector<Finding>& f) {
  Health h = Health::kOk;
  for (const auto& x : f) h = std::max(h, x.severity);
  return h;
}

}  // namespace

Report collect(const Context& context, const HostConfig& hc, std::int64_t now, const Options& opt) {
  // Each purpose is built here, again by the drift check (capath) and by stunnel rendering.
  // It keeps no decoded certificates (TrustMemo::verdicts): a report needs each one's verdict
  // (libcrypto decodes it or the purpose fails), not the decoded objects.
  Context ctx = context;
  if (!ctx.memo) ctx.memo = std::make_shared<TrustMemo>();
  if (!ctx.memo->verdicts) ctx.memo->verdicts = opt.verdicts ? opt.verdicts : std::make_shared<DecodeVerdicts>();
  Report r;
  r.now = now;
  r.root = ctx.root;
  {
    fs::Fd root = fs::open_root(ctx.root);
    fs::Fd state = fs::open_dir(root.get(), layout::kStateDir, false);
    r.generation = state ? read_generation(state.get()) : 0;
  }
  auto wanted = [&](std::string_view p) { return !opt.purpose || *opt.purpose == p; };

  // Drift, as `sync --check` reports it, and the database it compared the stores with: what
  // alerts and metrics name (UUIDs, files). One load of the database (each load holds every
  // record and its certificate: ~10 MB at 10,000 certificates).
  Database db;
  bool have_db = false;
  try {
    r.drift = Store(ctx).check(db);
    have_db = true;
  } catch (const Error& e) {
    r.drift_error = std::string(code_name(e.code())) + ": " + e.what();
  }
  if (!have_db) {  // the drift check refused: the database may still load (or say why not)
    try {
      db = Store(ctx).database();
    } catch (const Error& e) {
      r.findings.push_back({Health::kError, std::string(code_name(e.code())), "database",
                            std::string(e.what()) + "; see `ptrust sync --help` (--adopt recovers a lost database)"});
    }
  }
  // Each record's certificate by the SHA-256 of its DER: an index into r.certs (the purposes
  // below read notAfter and subject from it rather than decode the certificate).
  std::unordered_map<Digest, size_t, DecodeVerdicts::Hash> by_sha256;
  by_sha256.reserve(db.certs.size());
  r.certs.reserve(db.certs.size() + db.legacy.size() + db.pool.size() + 3);
  for (auto& rec : db.certs) {
    const std::vector<std::string>& ps = rec.purposes;
    if (opt.purpose && (ps.empty() ? *opt.purpose != kGeneral : std::find(ps.begin(), ps.end(), *opt.purpose) == ps.end()))
      continue;
    if (auto d = digest_of(rec.sha256)) by_sha256.emplace(*d, r.certs.size());
    std::string filepath = store_file(ctx, rec);
    std::string subject_cn = common_name(rec.subject), issuer_cn = common_name(rec.issuer);
    r.certs.push_back({.kind = std::string(to_string(rec.type)), .object = std::move(rec.uuid),
                       .subject = std::move(rec.subject), .subject_cn = std::move(subject_cn),
                       .issuer_cn = std::move(issuer_cn), .serial = std::move(rec.serial), .filepath = std::move(filepath),
                       .purposes = std::move(rec.purposes), .not_before = rec.not_before, .not_after = rec.not_after});
    std::string().swap(rec.pem);  // the largest part of a record: not needed past here
  }
  if (!opt.purpose) {
    std::string legacy_dir = path_in(ctx, std::string(layout::kStunnelDir) + "/" + std::string(layout::kLegacyDir));
    std::string pool_dir = path_in(ctx, std::string(layout::kStunnelDir) + "/" + std::string(layout::kPoolDir));
    for (const auto& rec : db.legacy)
      r.certs.push_back({.kind = "legacy", .object = rec.name, .subject = rec.subject, .subject_cn = common_name(rec.subject),
                         .filepath = legacy_dir + "/" + rec.name, .not_after = rec.not_after});
    for (const auto& rec : db.pool)
      r.certs.push_back({.kind = "pool", .object = rec.file(), .subject = rec.subject, .subject_cn = common_name(rec.subject),
                         .filepath = pool_dir + "/" + rec.file(), .not_after = rec.not_after});
    r.legacy = db.legacy.size();
    r.pool = db.pool.size();
    host_identity(ctx, "xapi-ssl.pem", "host_server", r);
    host_identity(ctx, "xapi-pool-tls.pem", "host_internal", r);
    cluster_ca_entry(ctx, r);
  }
  // Only the CRL records are needed past here: the rest of the database is freed before the
  // bundles are read (the daemon's peak at 10,000 certificates).
  std::vector<CrlRecord> crl_records = std::move(db.crls);
  db = Database{};

  // Each purpose as consumers see it.
  std::vector<std::string> names;
  for (const auto& [p, _] : ctx.config.purposes) names.push_back(p);
  names.push_back(std::string(kGeneral));
  std::map<std::string, std::string> material;
  std::map<std::string, CrlEntry> crls;
  for (const auto& p : names) {
    auto t = build_trust(ctx, p, TrustStamp{});
    if (!t) throw std::bad_alloc();
    material[p] = material_hex(*t);
    for (const auto& c : t->crls) {
      CrlEntry& e = crls[c.name];
      e.applies_to.push_back(p);
      if (e.name.empty()) {
        e.name = c.name;
        e.filepath = path_in(ctx, std::string(layout::kCrlDir) + "/" + c.name);
        e.issuer = x509::rfc2253(X509_CRL_get_issuer(c.crl.get()));
        e.issuer_cn = common_name(e.issuer);
        e.crl_number = x509::crl_number(c.crl.get());
        e.this_update = x509::to_epoch(X509_CRL_get0_lastUpdate(c.crl.get())).value_or(0);
        e.next_update = X509_CRL_get0_nextUpdate(c.crl.get()) ? x509::to_epoch(X509_CRL_get0_nextUpdate(c.crl.get())).value_or(0) : 0;
        e.stale = e.next_update != 0 && e.next_update < now;
      }
      // OpenSSL skips an expired delta CRL (its base still decides): only a complete one fails.
      const bool delta = X509_CRL_get_ext_by_NID(c.crl.get(), NID_delta_crl, -1) >= 0;
      if (e.stale && !delta && !t->policy.allow_expired_crl) e.failing.push_back(p);
    }
    if (!wanted(p)) continue;
    PurposeEntry e{.name = p, .mode = std::string(to_string(t->mode)), .bundle = t->bundle,
                   .crl_policy = std::string(to_string(t->policy.crl_policy)), .certificates = t->certs.size()};
    if (t->failure) e.failure = std::string(code_name(*t->failure)) + ": " + t->failure_message;
    // The states keep no decoded certificates (TrustMemo::verdicts): each certificate's
    // notAfter from its record (the same bytes: the same SHA-256), decoding only one that
    // has no record (drift, which the drift check names).
    for (const auto& c : t->certs) {
      std::optional<std::int64_t> na;
      std::string subject;
      if (auto it = by_sha256.find(sha256_of(c.der)); it != by_sha256.end()) {
        na = r.certs[it->second].not_after;
        subject = r.certs[it->second].subject;
      } else {
        auto der = reinterpret_cast<const unsigned char*>(c.der.data());
        ossl::X509Ptr x(d2i_X509(nullptr, &der, static_cast<long>(c.der.size())));
        if (!x) continue;  // not reached: build_trust failed the purpose on it
        na = x509::to_epoch(X509_get0_notAfter(x.get()));
        subject = x509::rfc2253(X509_get_subject_name(x.get()));
      }
      if (na && (!e.earliest_not_after || *na < *e.earliest_not_after)) {
        e.earliest_not_after = na;
        e.earliest_subject = std::move(subject);
      }
    }
    for (const auto& c : t->crls) e.crls.push_back(c.name);
    r.purposes.push_back(std::move(e));
  }
  // CRLs installed but applying to no purpose still expire.
  for (const auto& rec : crl_records) {
    if (crls.count(rec.name)) continue;
    CrlEntry e{.name = rec.name, .issuer = rec.issuer, .issuer_cn = common_name(rec.issuer),
               .filepath = path_in(ctx, std::string(layout::kCrlDir) + "/" + rec.name), .this_update = rec.last_update,
               .next_update = rec.next_update};
    e.stale = e.next_update != 0 && e.next_update < now;
    crls[rec.name] = std::move(e);
  }
  for (auto& [name, e] : crls)
    if (!opt.purpose || std::find(e.applies_to.begin(), e.applies_to.end(), *opt.purpose) != e.applies_to.end())
      r.crls.push_back(std::move(e));

  add_verdicts(r, opt.folded);

  for (const auto& d : r.drift)
    for (auto& p : r.purposes)
      if (drift_purpose(d.path) == p.name) ++p.drift;

  // Consumers.
  try {
    stunnel_consumers(ctx, r);
  } catch (const Error& e) {
    r.findings.push_back({Health::kError, std::string(code_name(e.code())), "stunnel", e.what()});
  }
  service_consumers(ctx, hc, material, r);
  for (auto& p : r.purposes)
    for (const auto& c : r.consumers)
      if (std::find(c.purposes.begin(), c.purposes.end(), p.name) != c.purposes.end()) p.consumers.push_back(c.name);
  if (opt.purpose)
    std::erase_if(r.consumers, [&](const ConsumerEntry& c) {
      return std::find(c.purposes.begin(), c.purposes.end(), *opt.purpose) == c.purposes.end();
    });

  // Findings: what is wrong and what to do, from the same facts the alerts use.
  for (const auto& p : r.purposes) {
    if (p.failure) {
      r.findings.push_back({Health::kError, p.failure->substr(0, p.failure->find(':')), "purpose " + p.name,
                            "every verification fails: " + *p.failure + "; `ptrust sync` repairs the stores from the database"});
    } else if (p.mode == "none" && p.name != kGeneral) {
      r.findings.push_back({Health::kWarning, "NO_TRUST_FOR_PURPOSE", "purpose " + p.name,
                            "nothing is installed for it, so every verification fails; install a CA or pin with "
                            "`ptrust install FILE --ca|--pinned --purpose " + p.name + "`"});
    }
  }
  for (const auto& a : alerts(r, hc.alerts)) {
    if (a.cls == "Store" && a.name != "STORE_DRIFT") continue;  // reported above per purpose
    Health h = a.priority == 1 ? Health::kError : Health::kWarning;
    r.findings.push_back({h, a.name, a.object, a.message});
  }
  if (r.drift_error)
    r.findings.push_back({Health::kError, r.drift_error->substr(0, r.drift_error->find(':')), "stores",
                          "drift could not be checked: " + *r.drift_error});
  std::stable_sort(r.findings.begin(), r.findings.end(),
                   [](const Finding& a, const Finding& b) { return a.severity > b.severity; });
  r.health = worst(r.findings);
  return r;
}

// ---- decode verdicts on disk ------------------------------------------------------------

namespace {

constexpr std::string_view kVerdictMagic = "ptrust-decode-verdicts 1\n";
constexpr size_t kVerdictCacheMax = 64u << 20;  // 2 million certificates

// Owned by root or by us, writable by nobody else.
bool trusted_owner(const struct stat& st) noexcept {
  return (st.st_uid == 0 || st.st_uid == ::geteuid()) && (st.st_mode & (S_IWGRP | S_IWOTH)) == 0;
}

std::vector<Digest> sorted_entries(DecodeVerdicts& v) {
  std::vector<Digest> out;
  {
    std::lock_guard lk(v.mu);
    out.assign(v.good.begin(), v.good.end());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// The file's entries (sorted as written); nullopt when it is not there or not to be trusted.
std::optional<std::vector<Digest>> read_verdict_cache(const std::string& root) noexcept {
  try {
    fs::Fd r = fs::open_root(root);
    fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, false);
    if (!state) return std::nullopt;
    fs::Fd dir = fs::open_dir(state.get(), kVerdictCacheDir, false);
    if (!dir) return std::nullopt;
    struct stat st;
    if (::fstat(state.get(), &st) != 0 || !trusted_owner(st)) return std::nullopt;
    if (::fstat(dir.get(), &st) != 0 || !trusted_owner(st)) return std::nullopt;
    fs::Fd f(::openat(dir.get(), std::string(kVerdictCacheFile).c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
    if (!f || ::fstat(f.get(), &st) != 0 || !S_ISREG(st.st_mode) || !trusted_owner(st)) return std::nullopt;
    const auto size = static_cast<size_t>(st.st_size);
    if (size < kVerdictMagic.size() || size > kVerdictCacheMax || (size - kVerdictMagic.size()) % sizeof(Digest) != 0)
      return std::nullopt;
    std::string data(size, '\0');
    for (size_t off = 0; off < size;) {
      ssize_t n = ::read(f.get(), data.data() + off, size - off);
      if (n <= 0) return std::nullopt;  // shrank (being replaced? write_atomic renames: it never is)
      off += static_cast<size_t>(n);
    }
    if (std::string_view(data).substr(0, kVerdictMagic.size()) != kVerdictMagic) return std::nullopt;
    std::vector<Digest> out((size - kVerdictMagic.size()) / sizeof(Digest));
    if (!out.empty())  // no entry: out.data() may be null, which memcpy must not get (UBSan in CI)
      std::memcpy(out.data(), data.data() + kVerdictMagic.size(), size - kVerdictMagic.size());
    return out;
  } catch (...) {
    return std::nullopt;
  }
}

}  // namespace

std::size_t load_verdict_cache(const std::string& root, DecodeVerdicts& v) noexcept {
  auto entries = read_verdict_cache(root);
  if (!entries) return 0;
  try {
    std::lock_guard lk(v.mu);
    v.good.reserve(v.good.size() + entries->size());
    v.good.insert(entries->begin(), entries->end());
  } catch (...) {  // only a cache
    return 0;
  }
  return entries->size();
}

bool save_verdict_cache(const Context& ctx, DecodeVerdicts& v) {
  std::vector<Digest> now = sorted_entries(v);
  auto on_disk = read_verdict_cache(ctx.root);
  if (on_disk ? *on_disk == now : now.empty()) return false;  // nothing new (an empty root stays empty)
  std::string data(kVerdictMagic);
  data.resize(kVerdictMagic.size() + now.size() * sizeof(Digest));
  if (!now.empty()) std::memcpy(data.data() + kVerdictMagic.size(), now.data(), now.size() * sizeof(Digest));
  Store(ctx).with_state_lock([&](int state) {
    fs::Fd dir = fs::open_dir(state, kVerdictCacheDir, true);
    fs::write_atomic(dir.get(), std::string(kVerdictCacheFile), data, 0644);
  });
  return true;
}

void add_verdicts(Report& r, const Folded* folded) {
  Folded all;
  if (folded) all = *folded;
  for (const auto& proc : counters::read_counters(r.root))
    for (const auto& [purpose, counts] : proc.purposes) {
      auto& v = all[purpose];
      v.resize(std::max(v.size(), counts.size()));
      for (size_t i = 0; i < counts.size(); ++i) v[i] += counts[i];
    }
  for (auto& p : r.purposes) {
    p.verdicts.clear();
    auto it = all.find(p.name);
    if (it == all.end()) continue;
    for (size_t i = 0; i < it->second.size(); ++i)
      if (it->second[i]) p.verdicts[ptrust_reason_string(static_cast<ptrust_reason>(i))] = it->second[i];
  }
}

// ---- alerts ---------------------------------------------------------------------------

namespace {

struct Window {
  const char* suffix;
  int priority;
};

std::string rfc3339(std::int64_t t) { return x509::format_time(t); }

std::string xml_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string body(const std::string& message, std::int64_t date) {
  return "<body><message>" + xml_escape(message) + "</message><date>" + rfc3339(date) + "</date></body>";
}

// xapi's rule (certificate_check.ml): the remaining days (fractional) against each window.
std::optional<Alert> expiry_alert(const CertEntry& c, const AlertPolicy& p, std::int64_t now) {
  const char* cls = nullptr;
  const char* what = nullptr;
  if (c.kind == "ca" || c.kind == "legacy") cls = "POOL_CA_CERTIFICATE", what = "CA certificate";
  else if (c.kind == "cluster_ca") cls = "POOL_CA_CERTIFICATE", what = "cluster CA certificate";
  else if (c.kind == "pinned") cls = "POOL_PINNED_CERTIFICATE", what = "pinned certificate";
  else if (c.kind == "host_server") cls = "HOST_SERVER_CERTIFICATE", what = "TLS server certificate";
  else if (c.kind == "host_internal") cls = "HOST_INTERNAL_CERTIFICATE", what = "internal TLS certificate";
  else return std::nullopt;  // pool members' certificates: their own hosts raise those
  double days = (static_cast<double>(c.not_after) - static_cast<double>(now)) / 86400.0;
  Alert a{.cls = "Certificate", .object = c.object, .subject = c.subject, .date = c.not_after};
  std::string desc = std::string(what) + " " + c.object + (c.subject.empty() ? "" : " (" + c.subject + ")");
  std::string message;
  if (days <= 0) {
    a.name = std::string(cls) + "_EXPIRED";
    a.priority = 1;
    message = "The " + std::string(what) + " has expired.";
    a.message = "the " + desc + " expired on " + rfc3339(c.not_after) + "; replace it";
  } else if (days <= p.expiring_30) {
    Window w = days <= p.expiring_07 ? Window{"_EXPIRING_07", 1}
               : days <= p.expiring_14 ? Window{"_EXPIRING_14", 2}
                                       : Window{"_EXPIRING_30", 3};
    a.name = std::string(cls) + w.suffix;
    a.priority = w.priority;
    message = "The " + std::string(what) + " is expiring soon.";
    a.message = "the " + desc + " expires on " + rfc3339(c.not_after) + " (" +
                std::to_string(static_cast<long>(std::floor(days))) + " days); replace it before then";
  } else {
    return std::nullopt;
  }
  a.body = body(message, c.not_after);
  return a;
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

}  // namespace

std::vector<Alert> alerts(const Report& r, const AlertPolicy& policy) {
  std::map<std::pair<std::string, std::string>, Alert> by_object;  // (class, object) -> most severe
  auto raise = [&](Alert a) {
    auto key = std::make_pair(a.cls, a.object);
    auto it = by_object.find(key);
    if (it == by_object.end() || a.priority < it->second.priority) by_object[key] = std::move(a);
  };
  for (const auto& c : r.certs)
    if (auto a = expiry_alert(c, policy, r.now)) raise(std::move(*a));
  for (const auto& c : r.crls) {
    if (c.stale) {
      Alert a{.name = "CRL_STALE", .priority = c.failing.empty() ? 2 : 1, .cls = "CRL", .object = c.name,
              .subject = c.issuer, .date = c.next_update};
      a.message = "CRL " + c.name + " (" + c.issuer + ") passed its nextUpdate " + rfc3339(c.next_update) +
                  (c.failing.empty() ? "" : "; every verification of " + join(c.failing) + " fails until it is replaced") +
                  "; install a current CRL with `ptrust crl install`";
      a.body = body("The CRL is stale.", c.next_update);
      raise(std::move(a));
    } else if (c.next_update && (c.next_update - r.now) <= policy.crl_next_update * 86400.0) {
      Alert a{.name = "CRL_NEXT_UPDATE_SOON", .priority = 3, .cls = "CRL", .object = c.name, .subject = c.issuer,
              .date = c.next_update};
      a.message = "CRL " + c.name + " (" + c.issuer + ") reaches its nextUpdate on " + rfc3339(c.next_update) +
                  (c.applies_to.empty() ? "" : "; then every verification of " + join(c.applies_to) + " fails unless a newer CRL is installed");
      a.body = body("The CRL needs an update soon.", c.next_update);
      raise(std::move(a));
    }
  }
  for (const auto& p : r.purposes) {
    if (!p.failure) continue;
    std::string code = p.failure->substr(0, p.failure->find(':'));
    if (code != "STORE_UNSAFE" && code != "STORE_CORRUPT") continue;
    Alert a{.name = code, .priority = 1, .cls = "Store", .object = "purpose " + p.name};
    a.message = "every verification of " + p.name + " fails: " + *p.failure + "; `ptrust sync` repairs it";
    raise(std::move(a));
  }
  bool unsafe = false;
  for (const auto& d : r.drift) unsafe |= d.kind == Drift::Kind::kUnsafe;
  if (!r.drift.empty()) {
    Alert a{.name = unsafe ? "STORE_UNSAFE" : "STORE_DRIFT", .priority = unsafe ? 1 : 2, .cls = "Store", .object = "stores"};
    a.message = std::to_string(r.drift.size()) + " difference" + (r.drift.size() == 1 ? "" : "s") +
                " between the stores and the database (first: " + std::string(to_string(r.drift[0].kind)) + " " +
                r.drift[0].path + "); `ptrust sync --check` lists them, `ptrust sync` repairs them";
    raise(std::move(a));
  }
  for (const auto& c : r.consumers) {
    if (c.state != "reload_needed") continue;
    Alert a{.name = "CONSUMER_RELOAD_NEEDED", .priority = 2, .cls = "Consumer", .object = c.name};
    a.message = c.kind + " " + c.name + " (" + join(c.purposes) + "): " + c.detail;
    raise(std::move(a));
  }
  std::vector<Alert> out;
  for (auto& [_, a] : by_object) out.push_back(std::move(a));
  std::stable_sort(out.begin(), out.end(), [](const Alert& a, const Alert& b) { return a.priority < b.priority; });
  return out;
}

// ---- output ---------------------------------------------------------------------------

namespace {

json::value time_or_null(std::optional<std::int64_t> t) {
  return t && *t ? json::value(rfc3339(*t)) : json::value(nullptr);
}

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

}  // namespace

json::object to_json(const Alert& a) {
  return {{"name", a.name}, {"priority", a.priority}, {"class", a.cls}, {"object", a.object}, {"subject", a.subject},
          {"date", time_or_null(a.date)}, {"message", a.message}, {"body", a.body}};
}

json::object to_json(const Report& r) {
  json::array purposes, crls, consumers, findings, drift;
  for (const auto& p : r.purposes) {
    json::object v{{"purpose", p.name}, {"mode", p.mode}, {"bundle", p.bundle.empty() ? json::value(nullptr) : json::value(p.bundle)},
                   {"failure", p.failure ? json::value(*p.failure) : json::value(nullptr)}, {"crl_policy", p.crl_policy},
                   {"certificates", p.certificates}, {"earliest_not_after", time_or_null(p.earliest_not_after)},
                   {"earliest_subject", p.earliest_subject}, {"crls", strings(p.crls)}, {"drift", p.drift},
                   {"consumers", strings(p.consumers)}};
    json::object verdicts;
    for (const auto& [k, n] : p.verdicts) verdicts[k] = n;
    v["verdicts"] = std::move(verdicts);
    purposes.emplace_back(std::move(v));
  }
  for (const auto& c : r.crls)
    crls.emplace_back(json::object{{"name", c.name}, {"issuer", c.issuer}, {"this_update", time_or_null(c.this_update)},
                                   {"next_update", time_or_null(c.next_update)},
                                   {"crl_number", c.crl_number.empty() ? json::value(nullptr) : json::value(c.crl_number)},
                                   {"stale", c.stale}, {"applies_to", strings(c.applies_to)}, {"failing", strings(c.failing)}});
  for (const auto& c : r.consumers)
    consumers.emplace_back(json::object{{"name", c.name}, {"kind", c.kind}, {"purposes", strings(c.purposes)},
                                        {"state", c.state}, {"detail", c.detail}, {"pid", c.pid}});
  for (const auto& f : r.findings)
    findings.emplace_back(json::object{{"severity", std::string(to_string(f.severity))}, {"code", f.code},
                                       {"object", f.object}, {"message", f.message}});
  for (const auto& d : r.drift)
    drift.emplace_back(json::object{{"kind", std::string(to_string(d.kind))}, {"path", d.path}, {"detail", d.detail}});
  std::size_t trusted = 0;
  for (const auto& c : r.certs) trusted += c.kind == "ca" || c.kind == "pinned";
  json::object host_ids;
  for (const auto& c : r.certs)
    if (c.kind == "host_server" || c.kind == "host_internal")
      host_ids[c.kind] = json::object{{"file", c.filepath}, {"subject", c.subject}, {"not_after", rfc3339(c.not_after)}};
  json::value ca = nullptr;
  for (const auto& c : r.certs)
    if (c.kind == "cluster_ca")
      ca = json::object{{"file", c.filepath}, {"subject", c.subject}, {"not_after", rfc3339(c.not_after)},
                        {"last_serial", r.ca_last_serial},
                        {"min_serial", r.ca_min_serial ? json::value(*r.ca_min_serial) : json::value(nullptr)}};
  return {{"health", std::string(to_string(r.health))},
          {"time", rfc3339(r.now)},
          {"root", r.root},
          {"generation", r.generation},
          {"purposes", std::move(purposes)},
          {"crls", std::move(crls)},
          {"drift", r.drift_error ? json::value(nullptr) : json::value(std::move(drift))},
          {"consumers", std::move(consumers)},
          {"stores", json::object{{"trusted", trusted}, {"legacy", r.legacy}, {"pool", r.pool}}},
          {"host_identity", std::move(host_ids)},
          {"cluster_ca", std::move(ca)},
          {"findings", std::move(findings)}};
}

std::string text(const Report& r) {
  std::ostringstream os;
  std::size_t errors = 0, warnings = 0;
  for (const auto& f : r.findings) (f.severity == Health::kError ? errors : warnings) += f.severity != Health::kOk;
  os << to_string(r.health);
  if (r.health != Health::kOk)
    os << ": " << errors << " error" << (errors == 1 ? "" : "s") << ", " << warnings << " warning" << (warnings == 1 ? "" : "s");
  os << " (root " << r.root << ", generation " << r.generation << ")\n";
  for (const auto& f : r.findings) os << "  " << to_string(f.severity) << ": " << f.code << ": " << f.object << ": " << f.message << "\n";
  for (const auto& p : r.purposes) {
    os << "\npurpose " << p.name << ": " << p.mode;
    if (p.failure) os << " (FAILS: " << *p.failure << ")";
    os << "\n";
    if (!p.bundle.empty()) os << "  bundle:    " << p.bundle << " (" << p.certificates << " certificate" << (p.certificates == 1 ? "" : "s") << ")\n";
    if (p.earliest_not_after) os << "  earliest:  " << rfc3339(*p.earliest_not_after) << " " << p.earliest_subject << "\n";
    if (p.mode != "pinned" && p.mode != "none")
      os << "  crls:      " << (p.crls.empty() ? "none" : join(p.crls)) << " (crl-policy " << p.crl_policy << ")\n";
    if (p.drift) os << "  drift:     " << p.drift << " (`ptrust sync --check`)\n";
    if (!p.consumers.empty()) os << "  consumers: " << join(p.consumers) << "\n";
    if (!p.verdicts.empty()) {
      os << "  verdicts: ";
      for (const auto& [k, n] : p.verdicts) os << " " << k << "=" << n;
      os << "\n";
    }
  }
  if (!r.crls.empty()) os << "\n";
  for (const auto& c : r.crls)
    os << "crl " << c.name << ": issuer " << c.issuer << ", thisUpdate " << rfc3339(c.this_update) << ", nextUpdate "
       << (c.next_update ? rfc3339(c.next_update) : "none") << (c.crl_number.empty() ? "" : ", crlNumber " + c.crl_number)
       << (c.stale ? ", STALE" : "") << "\n";
  if (!r.consumers.empty()) os << "\n";
  for (const auto& c : r.consumers)
    os << "consumer " << c.name << " (" << c.kind << ", " << join(c.purposes) << "): " << c.state << ": " << c.detail << "\n";
  os << "\nstores: legacy " << r.legacy << " certificate" << (r.legacy == 1 ? "" : "s") << ", pool " << r.pool << "; drift: "
     << (r.drift_error ? "not checked (" + *r.drift_error + ")" : r.drift.empty() ? "none" : std::to_string(r.drift.size()))
     << "\n";
  return os.str();
}

}  // namespace ptrust::status
