// The decision: one function for the TLS callback and for offline `ptrust verify`.
#include <openssl/err.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <ctime>
#include <utility>

#include "core/cluster_ca.h"
#include "core/x509.h"
#include "hook/verifier.h"

namespace ptrust::hook {

ptrust_mode to_c(Mode m) noexcept {
  switch (m) {
    case Mode::kNone: return PTRUST_MODE_NONE;
    case Mode::kPinned: return PTRUST_MODE_PINNED;
    case Mode::kCa: return PTRUST_MODE_CA;
    case Mode::kGeneral: return PTRUST_MODE_GENERAL;
  }
  return PTRUST_MODE_NONE;
}

ptrust_reason reason_for_x509_error(int err) noexcept {
  switch (err) {
    case X509_V_OK: return PTRUST_REASON_OK;
    case X509_V_ERR_HOSTNAME_MISMATCH: return PTRUST_REASON_HOSTNAME_MISMATCH;
    case X509_V_ERR_IP_ADDRESS_MISMATCH: return PTRUST_REASON_IP_MISMATCH;
    case X509_V_ERR_CERT_HAS_EXPIRED: return PTRUST_REASON_CERT_EXPIRED;
    case X509_V_ERR_CERT_NOT_YET_VALID: return PTRUST_REASON_CERT_NOT_YET_VALID;
    case X509_V_ERR_CERT_REVOKED: return PTRUST_REASON_CERT_REVOKED;
    case X509_V_ERR_UNABLE_TO_GET_CRL: return PTRUST_REASON_CRL_MISSING;
    case X509_V_ERR_CRL_HAS_EXPIRED: return PTRUST_REASON_CRL_EXPIRED;
    case X509_V_ERR_CRL_NOT_YET_VALID:
    case X509_V_ERR_CRL_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CRL_SIGNATURE:
    case X509_V_ERR_ERROR_IN_CRL_LAST_UPDATE_FIELD:
    case X509_V_ERR_ERROR_IN_CRL_NEXT_UPDATE_FIELD:
    case X509_V_ERR_UNABLE_TO_GET_CRL_ISSUER:
    case X509_V_ERR_KEYUSAGE_NO_CRL_SIGN:
    case X509_V_ERR_DIFFERENT_CRL_SCOPE:
    case X509_V_ERR_UNHANDLED_CRITICAL_CRL_EXTENSION:
    case X509_V_ERR_CRL_PATH_VALIDATION_ERROR: return PTRUST_REASON_CRL_INVALID;
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT:
    case X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY:
    case X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE:
    case X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT:
    case X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN:
    case X509_V_ERR_CERT_UNTRUSTED:
    case X509_V_ERR_CERT_REJECTED:
    case X509_V_ERR_CERT_SIGNATURE_FAILURE:
    case X509_V_ERR_UNABLE_TO_DECRYPT_CERT_SIGNATURE:
    case X509_V_ERR_UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY: return PTRUST_REASON_CHAIN_UNTRUSTED;
    case X509_V_ERR_OUT_OF_MEM: return PTRUST_REASON_INTERNAL_ERROR;
    default: return PTRUST_REASON_CHAIN_INVALID;
  }
}

namespace {

Verdict fail(ptrust_reason reason, int x509_error, int depth = 0) {
  Verdict v;
  v.reason = reason;
  v.x509_error = x509_error;
  v.depth = depth;
  return v;
}

// The verification time the caller asked for (`--at`, X509_VERIFY_PARAM_set_time) or now.
time_t check_time(const X509_VERIFY_PARAM* param) noexcept {
  if (param && (X509_VERIFY_PARAM_get_flags(param) & X509_V_FLAG_USE_CHECK_TIME))
    return X509_VERIFY_PARAM_get_time(param);
  return std::time(nullptr);
}

// X509_V_OK, or why `cert` is not valid at `t`.
int validity_error(X509* cert, time_t t) noexcept {
  int nb = X509_cmp_time(X509_get0_notBefore(cert), &t);
  if (nb == 0) return X509_V_ERR_ERROR_IN_CERT_NOT_BEFORE_FIELD;
  if (nb > 0) return X509_V_ERR_CERT_NOT_YET_VALID;
  int na = X509_cmp_time(X509_get0_notAfter(cert), &t);
  if (na == 0) return X509_V_ERR_ERROR_IN_CERT_NOT_AFTER_FIELD;
  if (na < 0) return X509_V_ERR_CERT_HAS_EXPIRED;
  return X509_V_OK;
}

// Pinned: the leaf itself is the trust decision (a direct digest lookup; no chain, no
// hostname). Equivalent to X509_verify_cert with X509_V_FLAG_PARTIAL_CHAIN on a store of
// the pinned certificates, without its chain-building cost, and it also serves SPKI pins.
Verdict decide_pinned(const HookView& view, X509* leaf, const X509_VERIFY_PARAM* param) {
  const PurposePolicy& policy = view.state().policy;
  HookView::Pin key{{}, nullptr, 0, 0};
  if (!pin_digest(leaf, policy.pin_match, key.digest)) return fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_UNSPECIFIED);
  auto it = std::lower_bound(view.pins.begin(), view.pins.end(), key,
                             [](const auto& a, const auto& b) { return a.digest < b.digest; });
  if (it == view.pins.end() || it->digest != key.digest)
    return fail(PTRUST_REASON_PIN_MISMATCH, X509_V_ERR_CERT_UNTRUSTED);
  if (policy.enforce_pin_validity) {
    time_t t = check_time(param);
    // The pinned certificate's own validity (notBefore <= t <= notAfter, as X509_cmp_time).
    int err = t < it->not_before ? X509_V_ERR_CERT_NOT_YET_VALID
              : t > it->not_after ? X509_V_ERR_CERT_HAS_EXPIRED
                                  : X509_V_OK;
    // An SPKI match lets another certificate through: check the presented one too. (A
    // certificate match means the leaf is the pinned certificate, byte for byte.)
    if (err == X509_V_OK && policy.pin_match == PinMatch::kSpki) err = validity_error(leaf, t);
    if (err != X509_V_OK) return fail(reason_for_x509_error(err), err);
  }
  Verdict v;
  v.reason = PTRUST_REASON_OK;
  v.x509_error = X509_V_OK;
  v.chain.reset(sk_X509_new_null());
  if (!v.chain || !sk_X509_push(v.chain.get(), leaf)) return fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  X509_up_ref(leaf);
  return v;
}

// Lets OpenSSL's CRL checks follow the purpose's policy: `if-present` tolerates a missing
// CRL, `allow-expired-crl` an expired one. Everything else stops the verification.
int nested_verify_cb(int ok, X509_STORE_CTX* c) {
  if (ok) return 1;
  const auto* policy = static_cast<const PurposePolicy*>(X509_STORE_CTX_get_app_data(c));
  bool accept = false;
  switch (X509_STORE_CTX_get_error(c)) {
    case X509_V_ERR_UNABLE_TO_GET_CRL: {
      // A trust anchor at the top of the chain is not revoked by its own CRL.
      STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(c);
      X509* cur = X509_STORE_CTX_get_current_cert(c);
      bool anchor = chain && X509_STORE_CTX_get_error_depth(c) == sk_X509_num(chain) - 1 && cur &&
                    X509_check_issued(cur, cur) == X509_V_OK;
      accept = policy->crl_policy == CrlPolicy::kIfPresent || anchor;
      break;
    }
    case X509_V_ERR_CRL_HAS_EXPIRED: accept = policy->allow_expired_crl; break;
    default: break;
  }
  if (!accept) return 0;
  X509_STORE_CTX_set_error(c, X509_V_OK);
  return 1;
}

unsigned long crl_flags(const PurposePolicy& policy) {
  switch (policy.crl_policy) {
    case CrlPolicy::kOff: return 0;
    case CrlPolicy::kIfPresent:
    case CrlPolicy::kRequire: break;
  }
  switch (policy.crl_scope) {
    case CrlScope::kLeaf: return X509_V_FLAG_CRL_CHECK;
    case CrlScope::kChain: return X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
  }
  return X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL;
}

// ca / general: a nested verification on the snapshot's store, with the caller's
// parameters (host, IP, time, purpose, depth) copied in and ptrust's own flags on top.
Verdict decide_chain(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param) {
  const PurposePolicy& policy = view.state().policy;
  ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
  if (!ctx || X509_STORE_CTX_init(ctx.get(), view.store.get(), leaf, untrusted) != 1)
    return fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  X509_VERIFY_PARAM* p = X509_STORE_CTX_get0_param(ctx.get());
  if (param && X509_VERIFY_PARAM_set1(p, param) != 1) return fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  // Only ptrust decides these: a partial chain would let any cached intermediate anchor
  // trust, and CRL checking follows the purpose's policy, not the caller's flags.
  X509_VERIFY_PARAM_clear_flags(p, X509_V_FLAG_PARTIAL_CHAIN | X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
  // A host name is matched against subjectAltName only, never the subject CN (RFC 6125 6.4.4;
  // what browsers and Go do): a CN-only leaf fails with HOSTNAME_MISMATCH.
  X509_VERIFY_PARAM_set_hostflags(p, X509_VERIFY_PARAM_get_hostflags(p) | X509_CHECK_FLAG_NEVER_CHECK_SUBJECT);
  if (unsigned long f = crl_flags(policy))
    X509_VERIFY_PARAM_set_flags(p, f | X509_V_FLAG_EXTENDED_CRL_SUPPORT | X509_V_FLAG_USE_DELTAS);
  if (view.crls && sk_X509_CRL_num(view.crls.get()) > 0) X509_STORE_CTX_set0_crls(ctx.get(), view.crls.get());
  X509_STORE_CTX_set_app_data(ctx.get(), const_cast<PurposePolicy*>(&policy));
  X509_STORE_CTX_set_verify_cb(ctx.get(), nested_verify_cb);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  if (ok != 1 || err != X509_V_OK) {
    if (err == X509_V_OK) err = X509_V_ERR_UNSPECIFIED;
    return fail(reason_for_x509_error(err), err, X509_STORE_CTX_get_error_depth(ctx.get()));
  }
  Verdict v;
  v.reason = PTRUST_REASON_OK;
  v.x509_error = X509_V_OK;
  v.chain.reset(X509_STORE_CTX_get1_chain(ctx.get()));
  if (!v.chain) return fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  // Ganeti's revocation for the cluster CA: its minimum serial, read with the snapshot.
  if (cluster_ca::below_minimum(view.state(), v.chain.get()))
    return fail(PTRUST_REASON_SERIAL_BELOW_MINIMUM, X509_V_ERR_CERT_REVOKED);
  return v;
}

// ---- verified-chain cache --------------------------------------------------------------

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// Certificate policies have no getter in an X509_VERIFY_PARAM: a verification that checks
// them is never cached (they only matter with these flags).
constexpr unsigned long kUnkeyableFlags =
    X509_V_FLAG_POLICY_CHECK | X509_V_FLAG_EXPLICIT_POLICY | X509_V_FLAG_INHIBIT_ANY | X509_V_FLAG_INHIBIT_MAP;

// SHA-256 over the scope, every verification input the parameters expose, and the DER of
// the leaf and of each presented certificate in order. The verification time is not in it:
// each entry carries the interval of times it holds for. False when memory ran out.
bool cache_key(const CacheScope& scope, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param,
               Digest& out) noexcept {
  ossl::Ptr<EVP_MD_CTX, EVP_MD_CTX_free> md(EVP_MD_CTX_new());
  if (!md || EVP_DigestInit_ex(md.get(), x509::sha256(), nullptr) != 1) return false;
  auto add = [&](const void* p, size_t n) { return n == 0 || EVP_DigestUpdate(md.get(), p, n) == 1; };
  auto add_u64 = [&](std::uint64_t v) { return add(&v, sizeof v); };
  auto add_str = [&](const char* str) {  // length-prefixed; null and "" differ
    if (str == nullptr) return add_u64(0);
    size_t n = std::strlen(str) + 1;
    return add_u64(n) && add(str, n);
  };
  auto add_cert = [&](X509* c) {
    unsigned char* der = nullptr;  // i2d copies the cached encoding; heap, not stack
    int n = i2d_X509(c, &der);
    if (n <= 0) return false;
    ossl::OsslStr owned(reinterpret_cast<char*>(der));
    return add_u64(static_cast<std::uint64_t>(n)) && add(der, static_cast<size_t>(n));
  };
  static constexpr char kTag[] = "ptrust verified-chain cache 1";
  bool ok = add(kTag, sizeof kTag) && add_u64(scope.id) && add_u64(static_cast<std::uint64_t>(scope.role));
  if (param != nullptr) {
    auto* p = const_cast<X509_VERIFY_PARAM*>(param);  // 3.0's getters of hosts and email take non-const
    ok = ok && add_u64(1) && add_u64(X509_VERIFY_PARAM_get_flags(p)) && add_u64(X509_VERIFY_PARAM_get_inh_flags(p)) &&
         add_u64(static_cast<std::uint64_t>(static_cast<std::int64_t>(X509_VERIFY_PARAM_get_depth(p)))) &&
         add_u64(static_cast<std::uint64_t>(static_cast<std::int64_t>(X509_VERIFY_PARAM_get_auth_level(p)))) &&
         add_u64(X509_VERIFY_PARAM_get_hostflags(p)) && add_str(X509_VERIFY_PARAM_get0_name(p));
    std::uint64_t hosts = 0;
    for (const char* h; ok && (h = X509_VERIFY_PARAM_get0_host(p, static_cast<int>(hosts))) != nullptr; ++hosts)
      ok = add_str(h);
    ok = ok && add_u64(hosts) && add_str(X509_VERIFY_PARAM_get0_email(p));
    if (ok) {
      char* ip = X509_VERIFY_PARAM_get1_ip_asc(p);  // null when none is set
      ossl::OsslStr owned(ip);
      ok = add_str(ip);
    }
  } else {
    ok = ok && add_u64(0);
  }
  const int n = untrusted ? sk_X509_num(untrusted) : 0;
  ok = ok && add_cert(leaf) && add_u64(static_cast<std::uint64_t>(n));
  for (int i = 0; ok && i < n; ++i) ok = add_cert(sk_X509_value(untrusted, i));
  unsigned int len = 0;
  return ok && EVP_DigestFinal_ex(md.get(), out.data(), &len) == 1 && len == out.size();
}

// The earliest time after `t` (epoch seconds) at which a verdict reached at `t` could change
// by the clock alone: a notAfter (or a future notBefore) of a certificate of the verified
// chain or presented by the peer, a CRL's next thisUpdate or (unless expired CRLs are
// allowed) nextUpdate. OpenSSL's checks are notBefore <= t < notAfter and thisUpdate <= t <
// nextUpdate, so the verdict holds on [t, result). nullopt when a time does not parse.
std::optional<std::int64_t> stable_until(const HookView& view, const STACK_OF(X509) * chain, X509* leaf,
                                         STACK_OF(X509) * untrusted, std::int64_t t) noexcept {
  std::int64_t until = INT64_MAX;
  auto bound = [&](const X509* c) {
    std::optional<std::int64_t> nb = x509::to_epoch(X509_get0_notBefore(c)), na = x509::to_epoch(X509_get0_notAfter(c));
    if (!nb || !na) return false;
    if (*nb > t) until = std::min(until, *nb);
    if (*na > t) until = std::min(until, *na);
    else until = t;  // already expired (only possible when time checks are off): cache nothing
    return true;
  };
  const int n = untrusted ? sk_X509_num(untrusted) : 0;
  if (!bound(leaf)) return std::nullopt;
  for (int i = 0; i < n; ++i)
    if (!bound(sk_X509_value(untrusted, i))) return std::nullopt;
  // The chain's certificates that the peer did not send (the anchor, at least).
  for (int i = 0; i < sk_X509_num(chain); ++i) {
    X509* c = sk_X509_value(chain, i);
    bool presented = c == leaf;
    for (int j = 0; !presented && j < n; ++j) presented = sk_X509_value(untrusted, j) == c;
    if (!presented && !bound(c)) return std::nullopt;
  }
  if (crl_flags(view.state().policy) != 0) {
    if (!view.crl_times_known) return std::nullopt;
    for (const auto& [this_update, next_update] : view.crl_times) {
      if (this_update > t) until = std::min(until, this_update);
      if (!view.state().policy.allow_expired_crl && next_update > t) until = std::min(until, next_update);
    }
  }
  return until;
}

// decide_chain through the view's cache, when the caller gave a scope and the inputs can be
// keyed. Only OK verdicts are cached.
Verdict decide_chain_cached(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param,
                            const CacheScope* scope) {
  Digest key;
  if (scope == nullptr || !view.cache.enabled() || (param && (X509_VERIFY_PARAM_get_flags(param) & kUnkeyableFlags)) ||
      !cache_key(*scope, leaf, untrusted, param, key))
    return decide_chain(view, leaf, untrusted, param);
  const std::int64_t before = check_time(param);
  if (STACK_OF(X509)* chain = view.cache.find(key, before, steady_ns())) {
    Verdict v;
    v.reason = PTRUST_REASON_OK;
    v.x509_error = X509_V_OK;
    v.chain.reset(chain);
    return v;
  }
  Verdict v = decide_chain(view, leaf, untrusted, param);
  if (v.reason != PTRUST_REASON_OK || !v.chain) return v;
  // Boundaries are looked for after the time before the verification, and the entry is kept
  // only if none falls before the time after it: the verdict then holds from `before` on.
  const std::int64_t after = check_time(param);
  std::optional<std::int64_t> until = stable_until(view, v.chain.get(), leaf, untrusted, before);
  if (until && *until > after) view.cache.insert(key, before, *until, steady_ns(), v.chain.get());
  return v;
}

}  // namespace

STACK_OF(X509) * VerifyCache::find(const Digest& key, std::int64_t t, std::int64_t now_ns) noexcept {
  std::uint64_t tag;
  std::memcpy(&tag, key.data(), sizeof tag);
  try {
    std::lock_guard lk(mu_);
    for (Entry& e : entries_) {
      if (e.tag != tag || e.key != key) continue;
      if (t < e.from || t >= e.until || now_ns - e.inserted_ns >= max_age_ns_) break;
      STACK_OF(X509)* chain = X509_chain_up_ref(e.chain.get());
      if (chain == nullptr) break;
      e.used = ++tick_;
      hits_.fetch_add(1, std::memory_order_relaxed);
      return chain;
    }
  } catch (...) {
  }
  misses_.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

void VerifyCache::insert(const Digest& key, std::int64_t from, std::int64_t until, std::int64_t now_ns,
                         STACK_OF(X509) * chain) noexcept {
  std::uint64_t tag;
  std::memcpy(&tag, key.data(), sizeof tag);
  ossl::X509StackPtr held(X509_chain_up_ref(chain));  // allocated outside the lock
  if (!held) return;
  try {
    std::lock_guard lk(mu_);
    if (entries_.capacity() < kCapacity) entries_.reserve(kCapacity);  // once; never grows past it
    Entry* slot = nullptr;
    for (Entry& e : entries_)
      if (e.tag == tag && e.key == key) slot = &e;  // a concurrent miss of the same peer
    if (slot == nullptr && entries_.size() < kCapacity) slot = &entries_.emplace_back();
    if (slot == nullptr) {  // full: the least recently used goes
      slot = &entries_.front();
      for (Entry& e : entries_)
        if (e.used < slot->used) slot = &e;
    }
    slot->tag = tag;
    slot->key = key;
    slot->from = from;
    slot->until = until;
    slot->inserted_ns = now_ns;
    slot->used = ++tick_;
    slot->chain.swap(held);  // the evicted chain is freed below, outside the lock
  } catch (...) {
  }
}

std::size_t VerifyCache::size() const noexcept {
  try {
    std::lock_guard lk(mu_);
    return entries_.size();
  } catch (...) {
    return 0;
  }
}

Verdict decide(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param,
               const CacheScope* scope) noexcept {
  ERR_set_mark();
  Verdict v;
  try {
    if (!leaf) {
      v = fail(PTRUST_REASON_NO_PEER_CERTIFICATE, X509_V_ERR_APPLICATION_VERIFICATION, -1);
    } else if (view.failure != PTRUST_REASON_OK) {
      v = fail(view.failure, X509_V_ERR_APPLICATION_VERIFICATION, -1);
    } else {
      switch (view.state().mode) {
        case Mode::kNone: v = fail(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, X509_V_ERR_CERT_UNTRUSTED); break;
        case Mode::kPinned: v = decide_pinned(view, leaf, param); break;
        case Mode::kCa:
        case Mode::kGeneral: v = decide_chain_cached(view, leaf, untrusted, param, scope); break;
      }
    }
  } catch (const std::exception&) {
    v = fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  }
  ERR_pop_to_mark();  // the nested verification's errors are in the verdict, not the host's queue
  return v;
}

}  // namespace ptrust::hook
