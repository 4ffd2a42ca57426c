#include "core/trust.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <sys/stat.h>

#include <cstdlib>
#include <unordered_map>

#include "core/cluster_ca.h"
#include "core/crl.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/x509.h"

namespace ptrust {

namespace {

constexpr std::int64_t kRecheckNs = std::chrono::nanoseconds(TrustSource::kRecheck).count();

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::vector<TrustCrl> crls_for(const Context& ctx, std::string_view purpose) {
  std::vector<TrustCrl> out;
  for (auto& n : load_crls(ctx, purpose)) {
    unsigned char* der = nullptr;
    int len = i2d_X509_CRL(n.crl.get(), &der);
    if (len <= 0) throw std::bad_alloc();
    ossl::OsslStr owned(reinterpret_cast<char*>(der));
    out.push_back({std::move(n.name), std::string(owned.get(), static_cast<size_t>(len)), std::move(n.crl)});
  }
  return out;
}

// Full decode of the bundle's certificates. The OpenSSL extension caches are computed now,
// while the state is private to its builder: once published, threads only read them.
// Certificates the previous state already decoded are shared, not decoded again: a change
// costs what it changed (OpenSSL 3.0 spends tens of microseconds decoding each public key).
std::vector<ossl::X509Ptr> decode(const std::vector<DerCert>& certs, const std::string& what,
                                  const TrustState* previous) {
  std::unordered_map<std::string_view, X509*> known;
  if (previous)
    for (size_t i = 0; i < previous->certs.size() && i < previous->decoded.size(); ++i)
      known.emplace(previous->certs[i].der, previous->decoded[i].get());
  std::vector<ossl::X509Ptr> out;
  out.reserve(certs.size());
  for (const auto& c : certs) {
    if (auto it = known.find(c.der); it != known.end()) {
      if (X509_up_ref(it->second) != 1) throw std::bad_alloc();
      out.emplace_back(it->second);
      continue;
    }
    auto p = reinterpret_cast<const unsigned char*>(c.der.data());
    ossl::X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(c.der.size())));
    if (!x || p != reinterpret_cast<const unsigned char*>(c.der.data()) + c.der.size())
      throw Error(Code::kStoreCorrupt, what + " holds a certificate libcrypto cannot decode");
    X509_check_purpose(x.get(), -1, 0);
    out.push_back(std::move(x));
  }
  return out;
}

// A CA bundle holds only what `install --ca` accepts (CA:TRUE, and keyCertSign when keyUsage
// is present). Anything else was put there by hand: an X509_STORE would trust a self-signed
// CA:FALSE certificate in it as itself, so the bundle fails the purpose closed.
void refuse_non_ca_one(X509* x, const std::string& what) {
  uint32_t flags = X509_get_extension_flags(x);
  bool ca = (flags & EXFLAG_CA) != 0;
  if (ca && (flags & EXFLAG_KUSAGE)) ca = (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) != 0;
  if (!ca)
    throw Error(Code::kStoreCorrupt, what + " holds a certificate that is not a CA (" +
                                         x509::rfc2253(X509_get_subject_name(x)) +
                                         "); refusing it (run `ptrust sync` to repair the store)");
}

void refuse_non_ca(const std::vector<ossl::X509Ptr>& decoded, const std::string& what) {
  for (const auto& x : decoded) refuse_non_ca_one(x.get(), what);
}

// SHA-256 of a one-byte tag and `data`: a verdict "decodes" (tag 'd') and "decodes and is a
// CA" (tag 'c') for the same certificate are different entries.
Digest sha256(char tag, std::string_view data) {
  Digest d{};
  unsigned int n = 0;
  ossl::Ptr<EVP_MD_CTX, EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  if (!md || EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) != 1 || EVP_DigestUpdate(md.get(), &tag, 1) != 1 ||
      EVP_DigestUpdate(md.get(), data.data(), data.size()) != 1 || EVP_DigestFinal_ex(md.get(), d.data(), &n) != 1 ||
      n != d.size())
    throw std::bad_alloc();
  return d;
}

// decode()'s verdict (and, for a ca/general bundle, refuse_non_ca's) without keeping anything
// decoded (TrustMemo::verdicts): each certificate not known to pass is decoded and freed at once.
void check_decodes(const std::vector<DerCert>& certs, const std::string& what, DecodeVerdicts& v, bool require_ca) {
  std::vector<Digest> digests;
  digests.reserve(certs.size());
  for (const auto& c : certs) digests.push_back(sha256(require_ca ? 'c' : 'd', c.der));
  std::vector<size_t> unknown;
  {
    std::lock_guard lk(v.mu);
    for (size_t i = 0; i < certs.size(); ++i)
      if (!v.good.count(digests[i])) unknown.push_back(i);
  }
  for (size_t i : unknown) {
    const auto& c = certs[i];
    auto p = reinterpret_cast<const unsigned char*>(c.der.data());
    ossl::X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(c.der.size())));
    if (!x || p != reinterpret_cast<const unsigned char*>(c.der.data()) + c.der.size())
      throw Error(Code::kStoreCorrupt, what + " holds a certificate libcrypto cannot decode");
    if (require_ca) refuse_non_ca_one(x.get(), what);
  }
  std::lock_guard lk(v.mu);
  for (const auto& d : digests) {
    v.good.insert(d);
    v.used.insert(d);
  }
}

void update(EVP_MD_CTX* md, const void* data, size_t len) {
  if (EVP_DigestUpdate(md, data, len) != 1) throw std::bad_alloc();
}

template <typename T>
void update_value(EVP_MD_CTX* md, const T& v) {
  update(md, &v, sizeof v);
}

void compute_material(TrustState& s) {
  ossl::Ptr<EVP_MD_CTX, EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  if (!md || EVP_DigestInit_ex(md.get(), x509::fetch_sha256().get(), nullptr) != 1) throw std::bad_alloc();
  update(md.get(), s.purpose.c_str(), s.purpose.size() + 1);
  update_value(md.get(), s.stamp.generation);
  // The policy too: a process with another configuration must not resume this one's sessions.
  const int fields[] = {static_cast<int>(s.policy.crl_policy), static_cast<int>(s.policy.crl_scope),
                        s.policy.allow_expired_crl, static_cast<int>(s.policy.pin_match),
                        s.policy.enforce_pin_validity, s.policy.report_only,
                        static_cast<int>(s.mode), s.failure ? static_cast<int>(*s.failure) : -1};
  update_value(md.get(), fields);
  for (const auto& c : s.certs) update(md.get(), c.der.data(), c.der.size());
  for (const auto& c : s.crls) update(md.get(), c.der.data(), c.der.size());
  if (s.min_serial) {  // a raised minimum must not let an older session resume
    update_value(md.get(), *s.min_serial);
    update(md.get(), s.cluster_ca.data(), s.cluster_ca.size());
  }
  unsigned int n = 0;
  if (EVP_DigestFinal_ex(md.get(), s.material.data(), &n) != 1 || n != s.material.size()) throw std::bad_alloc();
}

std::optional<FileId> stat_follow(const std::string& path) noexcept {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) return std::nullopt;
  return file_id(st);
}

std::optional<FileId> lstat_id(const std::string& path) noexcept {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return std::nullopt;
  return file_id(st);
}

std::string under(const std::string& root, std::string_view rel) {
  return root + (root.ends_with('/') ? "" : "/") + std::string(rel);
}

// Everything but the bundle, taken before reading: a change while we read is seen next time.
TrustInputs inputs_before(const std::string& root) {
  TrustInputs in;
  in.trusted_dir = lstat_id(under(root, layout::kTrustedDir));
  in.crl_dir = lstat_id(under(root, layout::kCrlDir));
  fs::Fd r = fs::open_root(root);
  if (fs::Fd crls = fs::open_dir(r.get(), layout::kCrlDir, false))
    for (const auto& e : fs::list_dir(crls.get()))
      if (auto st = fs::stat_at(crls.get(), e.name)) in.crl_files.emplace_back(e.name, file_id(*st));
  in.crl_scope = lstat_id(under(root, std::string(layout::kStateDir) + "/" + std::string(layout::kCrlScopeFile)));
  const std::string ca_dir = std::string(cluster_ca::kDir) + "/";
  in.ca_min_serial = lstat_id(under(root, ca_dir + std::string(cluster_ca::kMinSerial)));
  in.ca_cert = lstat_id(under(root, ca_dir + std::string(cluster_ca::kCert)));
  return in;
}

std::optional<std::string> from_env(const char* name) {
  const char* e = std::getenv(name);
  if (e == nullptr || *e == '\0') return std::nullopt;
  return std::string(e);
}

}  // namespace

// Which modes verify chains and so take CRLs: pinned mode has no CRLs (a pin is not a chain),
// and neither does a purpose whose crl-policy is off (a broken CRL file cannot fail it).
bool takes_crls(Mode mode, const PurposePolicy& policy) noexcept {
  switch (mode) {
    case Mode::kCa:
    case Mode::kGeneral: break;
    case Mode::kPinned:
    case Mode::kNone: return false;
  }
  switch (policy.crl_policy) {
    case CrlPolicy::kOff: return false;
    case CrlPolicy::kIfPresent:
    case CrlPolicy::kRequire: return true;
  }
  return true;
}

PurposePolicy policy_of(const Config& cfg, std::string_view purpose) {
  auto it = cfg.purposes.find(std::string(purpose));
  return it == cfg.purposes.end() ? PurposePolicy{} : it->second;
}

namespace {

std::shared_ptr<TrustState> build_state(const Context& ctx, std::string_view purpose, const TrustStamp& at,
                                        const PurposePolicy* policy, const TrustState* previous,
                                        bool decode_all = true, DecodeVerdicts* verdicts = nullptr) noexcept {
  ERR_set_mark();  // libcrypto errors of our own reading never reach the host's error queue
  try {
    auto s = std::make_shared<TrustState>();
    s->purpose = std::string(purpose);
    s->stamp = at;
    s->root = ctx.root;
    s->policy = policy ? *policy : policy_of(ctx.config, purpose);
    try {
      // A root that cannot be opened is this purpose's failure (STORE_UNREADABLE), as a
      // bundle that cannot be read is: never an internal error.
      s->inputs = inputs_before(ctx.root);
      Material m = load_material(ctx, purpose);  // UNKNOWN_PURPOSE, STORE_*
      s->mode = m.resolution.mode;
      s->bundle = m.resolution.path;
      if (s->mode != Mode::kNone) {
        s->inputs.bundle = m.id;  // of the file actually read
        s->store_dir = under(ctx.root, std::string(layout::kTrustedDir) + "/" + m.resolution.store_dir);
        s->inputs.store_dir = lstat_id(s->store_dir);
      }
      s->certs = std::move(m.certs);
      const bool chains = s->mode == Mode::kCa || s->mode == Mode::kGeneral;
      if (s->mode == Mode::kPinned || (decode_all && !verdicts)) s->decoded = decode(s->certs, s->bundle, previous);
      else if (decode_all) check_decodes(s->certs, s->bundle, *verdicts, chains);
      if (chains) refuse_non_ca(s->decoded, s->bundle);
      if (takes_crls(s->mode, s->policy)) s->crls = crls_for(ctx, purpose);
      if (s->mode == Mode::kCa || s->mode == Mode::kGeneral) {
        fs::Fd r = fs::open_root(ctx.root);
        if (auto m = cluster_ca::load_minimum(r.get())) {  // STORE_CORRUPT fails the purpose closed
          s->min_serial = m->min_serial;
          s->cluster_ca = m->ca_sha256;
        }
      }
    } catch (const Error& e) {
      s->failure = e.code();
      s->failure_message = e.what();
      s->certs.clear();
      s->decoded.clear();
      s->crls.clear();
      s->min_serial.reset();
      if (s->bundle.empty()) {  // which source failed, for the report
        try {
          Resolution r = resolve(ctx, purpose);
          s->mode = r.mode;
          s->bundle = r.path;
        } catch (const std::exception&) {
        }
      }
      if (!s->bundle.empty() && !s->inputs.bundle) s->inputs.bundle = lstat_id(s->bundle);
    }
    s->next_input_check_ns.store(at.now_ns + kRecheckNs, std::memory_order_relaxed);
    compute_material(*s);
    ERR_pop_to_mark();
    return s;
  } catch (...) {
    ERR_pop_to_mark();
    return nullptr;
  }
}

}  // namespace

std::shared_ptr<const TrustState> build_trust(const Context& ctx, std::string_view purpose, const TrustStamp& at,
                                              const PurposePolicy* policy, const TrustState* previous) noexcept {
  if (previous || !ctx.memo) return build_state(ctx, purpose, at, policy, previous);
  std::shared_ptr<const TrustState> last;
  {
    std::lock_guard lk(ctx.memo->mu);
    if (auto it = ctx.memo->last.find(purpose); it != ctx.memo->last.end()) last = it->second;
  }
  std::shared_ptr<const TrustState> s =
      build_state(ctx, purpose, at, policy, last.get(), true, ctx.memo->verdicts.get());
  // With verdicts nothing decoded is worth lending (pinned mode's few pins aside): keeping
  // every purpose's state for the rest of a report would only raise its peak.
  if (s && !policy && !ctx.memo->verdicts) {
    try {
      std::lock_guard lk(ctx.memo->mu);
      ctx.memo->last[std::string(purpose)] = s;
    } catch (...) {  // only a cache
    }
  }
  return s;
}

std::shared_ptr<const TrustState> build_trust_undecoded(const Context& ctx, std::string_view purpose) noexcept {
  return build_state(ctx, purpose, TrustStamp{}, nullptr, nullptr, false);
}

void refuse_ca_pins_for_chain_consumers(const TrustState& t) {
  if (t.mode != Mode::kPinned) return;
  for (const auto& x : t.decoded)
    if (X509_check_ca(x.get()) != 0)
      throw Error(Code::kPinIsCa, "purpose '" + t.purpose + "' pins a CA certificate (" +
                                      x509::rfc2253(X509_get_subject_name(x.get())) +
                                      "): a program verifying chains through it would also trust every certificate it "
                                      "signs; verify this purpose with the ptrust verify hook or stunnel --via files");
}

std::shared_ptr<const TrustState> failed_trust(std::string_view purpose, Code code, std::string_view message,
                                               const TrustStamp& at) noexcept {
  try {
    auto s = std::make_shared<TrustState>();
    s->purpose = std::string(purpose);
    s->stamp = at;
    s->failure = code;
    s->failure_message = std::string(message);
    compute_material(*s);
    return s;
  } catch (...) {
    ERR_clear_error();
    return nullptr;
  }
}

// ---- TrustSource ----------------------------------------------------------------------

TrustSource::TrustSource(std::optional<std::string> root, std::optional<std::string> config)
    : root_opt_(root ? std::move(root) : from_env("PTRUST_ROOT")),
      config_opt_(config ? std::move(config) : from_env("PTRUST_CONFIG")),
      config_path_(config_path_for(root_opt_, config_opt_)) {
  std::lock_guard lk(mu_);
  load_config();
  if (auto c = configured(); c->ctx) open_generation(c->ctx->root);
  next_check_ns_.store(steady_ns() + kRecheckNs, std::memory_order_relaxed);
}

TrustSource::~TrustSource() = default;

std::shared_ptr<const TrustSource::Configured> TrustSource::configured() const noexcept {
  std::lock_guard g(configured_mu_);
  return configured_;
}

void TrustSource::load_config() {
  config_id_ = stat_follow(config_path_);  // before reading: a change while we read is seen next time
  auto c = std::make_shared<Configured>();
  try {
    c->ctx = std::make_shared<const Context>(open_context(root_opt_, config_opt_));
  } catch (const Error& e) {
    c->code = e.code();
    c->error = e.what();
  } catch (const std::bad_alloc&) {
    throw;
  } catch (const std::exception& e) {
    c->code = Code::kConfigInvalid;
    c->error = config_path_ + ": " + e.what();
  }
  std::shared_ptr<const Configured> old = std::move(c);
  {
    std::lock_guard g(configured_mu_);
    configured_.swap(old);
  }
}

void TrustSource::open_generation(const std::string& root) {
  std::unique_ptr<GenerationView> fresh;
  try {
    fresh = GenerationView::open(root);  // nullptr until the first writer creates it
  } catch (const std::exception&) {
  }
  view_root_ = root;
  const GenerationView* v = fresh.get();
  if (fresh) views_.push_back(std::move(fresh));
  view_.store(v, std::memory_order_release);
}

void TrustSource::recheck(std::int64_t now) noexcept {
  std::unique_lock lk(mu_, std::try_to_lock);
  if (!lk.owns_lock() || now < next_check_ns_.load(std::memory_order_relaxed)) return;  // another thread checks
  next_check_ns_.store(now + kRecheckNs, std::memory_order_relaxed);
  try {
    bool moved = false;
    if (stat_follow(config_path_) != config_id_) {
      load_config();
      moved = true;
    }
    auto c = configured();
    const GenerationView* v = view_.load(std::memory_order_relaxed);
    // A missing file is looked for again; a replaced one (deleted and re-created: its counter
    // would never move again) or a garbled one is dropped even when no good file exists yet.
    if (c->ctx &&
        (c->ctx->root != view_root_ || v == nullptr || v->replaced() || v->read() == GenerationView::kInvalid)) {
      open_generation(c->ctx->root);
      moved |= view_.load(std::memory_order_relaxed) != v;
    }
    if (moved) epoch_.fetch_add(1, std::memory_order_acq_rel);
  } catch (...) {
    // Out of memory while re-reading: the next recheck tries again; states stay as they were.
  }
}

TrustStamp TrustSource::stamp() noexcept {
  const std::int64_t now = steady_ns();
  if (now >= next_check_ns_.load(std::memory_order_relaxed)) recheck(now);
  TrustStamp s;
  s.epoch = epoch_.load(std::memory_order_acquire);
  const GenerationView* v = view_.load(std::memory_order_acquire);
  s.generation = v ? v->load(now) : 0;
  // A generation file that went bad (truncated, garbled) reports nothing reliable: states are
  // then re-read at a bounded rate, as without a file, until a writer or `sync` repairs it.
  s.watched = v != nullptr && s.generation != GenerationView::kInvalid;
  s.now_ns = now;
  return s;
}

std::shared_ptr<const TrustState> TrustSource::build(std::string_view purpose, const TrustStamp& at,
                                                     const PurposePolicy* policy, const TrustState* previous) noexcept {
  builds_.fetch_add(1, std::memory_order_relaxed);
  std::shared_ptr<const Configured> c = configured();
  if (!c) return nullptr;
  if (!c->ctx) return failed_trust(purpose, c->code, c->error, at);
  const GenerationView* v = view_.load(std::memory_order_acquire);
  TrustStamp stamp = at;
  // Seqlock reading: the counter before (fresh, not the cached one) and after reading the
  // store. A state read while a writer moved it may mix old and new files: it is labelled
  // with a generation the store is not at (an odd one), so it is re-read as soon as the
  // counter moves on, and within a second at most.
  if (v != nullptr && at.watched) stamp.generation = v->read();
  std::shared_ptr<TrustState> s = build_state(*c->ctx, purpose, stamp, policy, previous);
  if (s && v != nullptr && at.watched) {
    const std::uint64_t after = v->read();
    if (after != stamp.generation || !generation_stable(after))
      s->stamp.generation = generation_stable(after) ? after - 1 : after;  // odd: never taken as settled
  }
  return s;
}

bool TrustSource::fresh(const TrustState& s, const TrustStamp& now) noexcept {
  if (stale(s, now)) return false;
  // A writer is half-way (stale() keeps the finished state meanwhile): the files are moving
  // under it, comparing them now would re-read a half-written store.
  if (s.stamp.generation != now.generation) return true;
  std::int64_t due = s.next_input_check_ns.load(std::memory_order_relaxed);
  if (now.now_ns < due) return true;
  if (!s.next_input_check_ns.compare_exchange_strong(due, now.now_ns + kRecheckNs, std::memory_order_relaxed))
    return true;  // another thread is comparing
  if (s.root.empty()) return true;  // not read from disk (a configuration failure)
  try {
    TrustInputs in = inputs_before(s.root);
    in.bundle = s.bundle.empty() ? std::nullopt : lstat_id(s.bundle);
    in.store_dir = s.store_dir.empty() ? std::nullopt : lstat_id(s.store_dir);
    return in == s.inputs;
  } catch (...) {
    return false;  // out of memory: re-read, which fails closed if memory is still short
  }
}

bool TrustSource::stale(const TrustState& s, const TrustStamp& now) noexcept {
  if (s.stamp.epoch != now.epoch) return true;
  // The counter only grows (a re-created file moves the epoch): a state read after a fresher
  // look at it than `now`'s (cached up to 100 µs) is not outdated by it.
  if (now.watched && generation_stable(s.stamp.generation) && s.stamp.generation > now.generation) return false;
  if (s.stamp.generation != now.generation) {
    // Seqlock reading: the next writer has begun (odd counter) and this state was read from
    // the finished store before it. Keep it until the writer ends its change rather than read a
    // half-written store (a bundle written before its directory would look damaged), but for
    // at most kRecheck: a writer that takes longer has died (`ptrust sync` ends its change).
    const bool next_change_begun = now.watched && !generation_stable(now.generation) &&
                                   generation_stable(s.stamp.generation) && now.generation == s.stamp.generation + 1;
    if (!next_change_begun) return true;
    std::int64_t seen = 0;
    if (!s.writer_seen_ns.compare_exchange_strong(seen, now.now_ns, std::memory_order_relaxed)) return now.now_ns - seen >= kRecheckNs;
    return false;
  }
  // Nothing reliable reports changes without a generation file, or while a writer is (or died)
  // half-way (odd counter): re-read at a bounded rate.
  const bool unsure = !now.watched || !generation_stable(now.generation);
  return unsure && now.now_ns - s.stamp.now_ns >= kRecheckNs;
}

}  // namespace ptrust
