// The verify hook's model: a purpose's TrustState (core/trust.h) as OpenSSL objects, and the
// one decision function that the TLS callback and the offline `verify` both call.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/ossl.h"
#include "core/trust.h"
#include "ptrust/ptrust.h"

namespace ptrust::hook {

// Repeated peers (ca / general): a bounded LRU of verified chains, one per HookView (a new
// store generation, configuration or policy is a new view, so a new, empty cache). An entry
// is the verified chain of one presented chain (SHA-256 over the DER of the leaf and of every
// certificate the peer sent) under one set of verification inputs (host, IP, email, flags,
// depth, security level, the caller's scope), answered only at verification times within
// [verified at, earliest validity boundary) — the first notAfter of the verified chain and of
// every presented certificate, a presented certificate's future notBefore, the next
// thisUpdate / nextUpdate of a purpose CRL — and for at most the purpose's
// verify-cache-seconds of steady time. Failures are never cached. Thread-safe: a mutex held
// for the lookup or the insertion only (a scan of at most kCapacity 8-byte tags), never
// during a verification. Fixed memory: kCapacity entries, each a digest, times and the
// chain's certificate references.
class VerifyCache {
 public:
  static constexpr std::size_t kCapacity = 256;
  explicit VerifyCache(std::uint32_t max_age_seconds) noexcept
      : max_age_ns_(static_cast<std::int64_t>(max_age_seconds) * 1'000'000'000) {}
  bool enabled() const noexcept { return max_age_ns_ > 0; }

  // The verified chain (new references) cached under `key` if it is valid at verification
  // time `t` (epoch seconds) and steady time `now_ns`; nullptr otherwise.
  STACK_OF(X509) * find(const Digest& key, std::int64_t t, std::int64_t now_ns) noexcept;
  // Caches `chain` (takes new references) for verification times [from, until). May drop the
  // least recently used entry. Out of memory: nothing is cached.
  void insert(const Digest& key, std::int64_t from, std::int64_t until, std::int64_t now_ns,
              STACK_OF(X509) * chain) noexcept;

  // For tests and diagnostics.
  std::uint64_t hits() const noexcept { return hits_.load(std::memory_order_relaxed); }
  std::uint64_t misses() const noexcept { return misses_.load(std::memory_order_relaxed); }
  std::size_t size() const noexcept;

 private:
  struct Entry {
    std::uint64_t tag = 0;  // the key's first 8 bytes: what a lookup scans
    Digest key{};
    std::int64_t from = 0, until = 0;  // verification times (epoch seconds), [from, until)
    std::int64_t inserted_ns = 0;      // steady clock
    std::uint64_t used = 0;            // LRU tick
    ossl::X509StackPtr chain;
  };
  const std::int64_t max_age_ns_;
  mutable std::mutex mu_;
  std::vector<Entry> entries_;  // guarded by mu_; at most kCapacity (reserved on first insert)
  std::uint64_t tick_ = 0;      // guarded by mu_
  std::atomic<std::uint64_t> hits_{0}, misses_{0};
};

// Where a verification comes from: what OpenSSL 3.0 gives no getter for (an
// X509_VERIFY_PARAM's purpose and trust) is fixed per scope, so cached verdicts are never
// shared between scopes. TLS: the attached SSL_CTX (a serial unique per attachment) and the
// role; offline: scope 0.
struct CacheScope {
  std::uint64_t id = 0;
  int role = 0;  // 0 offline, 1 TLS client verifying a server, 2 TLS server verifying a client
};

// Everything one verification needs, made once per TrustState and only read afterwards
// (shared between threads by shared_ptr).
class HookView {
 public:
  // Decodes the state's certificates and builds the store or the pin table. Throws only
  // std::bad_alloc; a state that cannot be used is recorded in `failure`.
  explicit HookView(std::shared_ptr<const TrustState> state);

  const TrustState& state() const noexcept { return *state_; }

  // Why every verification fails (the state's failure, or its certificates did not decode).
  ptrust_reason failure = PTRUST_REASON_OK;
  // ca / general: the bundle's CAs sorted by subject (X509_NAME_cmp; owned by the state): the
  // store's lookup serves issuers from here, so building a view is O(n log n) (adding n
  // certificates to an OpenSSL 3.0 X509_STORE one by one re-sorts it each time: quadratic).
  std::vector<X509*> by_subject;
  // ca / general: the purpose's CRLs and a lookup method over `by_subject`. The store caches
  // the CAs its verifications looked up (as OpenSSL's by_dir lookup does): X509_STORE_CTX
  // finds every CA of an issuer name among the store's objects.
  ossl::X509StorePtr store;
  // The same CRLs, handed to each verification as well: OpenSSL looks CRLs up in the store by
  // the certificate's issuer name only, which misses an indirect CRL (another issuer's, with
  // cRLIssuer in the distribution point) and a CRL-signing key's own CRL.
  ossl::X509CrlStackPtr crls;
  // pinned: SHA-256 of each pinned certificate (DER) or of its SPKI, per the purpose's policy.
  struct Pin {
    Digest digest;
    X509* cert;                          // owned by `pinned`
    std::int64_t not_before, not_after;  // parsed once: ASN1 time parsing per call costs microseconds
  };
  std::vector<Pin> pins;  // sorted by digest
  std::vector<ossl::X509Ptr> pinned;
  // thisUpdate / nextUpdate of each CRL in `crls` (epoch seconds; nextUpdate INT64_MAX when
  // absent): the validity boundaries of cached verdicts.
  std::vector<std::pair<std::int64_t, std::int64_t>> crl_times;
  bool crl_times_known = true;  // false: a CRL time did not parse, nothing is cached
  // Verified chains of repeated peers (ca / general), for this view only.
  mutable VerifyCache cache;

 private:
  std::shared_ptr<const TrustState> state_;
};

struct Verdict {
  ptrust_reason reason = PTRUST_REASON_INTERNAL_ERROR;
  int x509_error = X509_V_ERR_UNSPECIFIED;
  int depth = -1;
  ossl::X509StackPtr chain;  // the verified chain (leaf first) when reason is OK
};

// The decision under the view's policy. `param` carries host / IP / time / purpose (the TLS
// handshake's parameters, or the offline run's). With a `scope`, a ca / general verdict may
// come from (and an OK one goes to) the view's VerifyCache; without one it never does.
// Never throws.
Verdict decide(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param,
               const CacheScope* scope = nullptr) noexcept;

// SHA-256 of the certificate's DER or of its SubjectPublicKeyInfo.
bool pin_digest(X509* cert, PinMatch match, Digest& out) noexcept;

ptrust_mode to_c(Mode m) noexcept;
ptrust_reason reason_for_x509_error(int err) noexcept;

// One purpose of one PTRUST_CTX: its current view and its counters. Thread-safe; current()
// on an unchanged store is the source's stamp (one atomic load of the generation counter and
// a clock read) plus one atomic shared_ptr load of this purpose's slot.
class PurposeState {
 public:
  // `shared`: this purpose's PTRUST_REASON_COUNT counters in the process's host-wide counters
  // file (core/counters.h), used by this PurposeState only; nullptr counts in-process.
  PurposeState(std::shared_ptr<TrustSource> source, std::string purpose, std::uint64_t* shared = nullptr)
      : source_(std::move(source)), purpose_(std::move(purpose)), counters_(shared ? shared : local_.data()) {}

  const std::string& purpose() const noexcept { return purpose_; }

  // The view of the purpose's trust now; nullptr only when memory ran out (fail closed).
  std::shared_ptr<const HookView> current() noexcept { return slot_.get(*source_, purpose_, source_->stamp()); }
  // A view of the same trust under another policy (offline overrides); not cached.
  std::shared_ptr<const HookView> with_policy(const PurposePolicy& policy) noexcept;

  // One relaxed atomic add, wherever the counters live: publishing costs nothing extra.
  void count(ptrust_reason r) noexcept {
    std::atomic_ref<std::uint64_t>(counters_[r]).fetch_add(1, std::memory_order_relaxed);
  }
  std::uint64_t counter(ptrust_reason r) const noexcept {
    return std::atomic_ref<std::uint64_t>(counters_[r]).load(std::memory_order_relaxed);
  }
  // Whether the counts are visible host-wide (tests, diagnostics).
  bool published() const noexcept { return counters_ != local_.data(); }

 private:
  const std::shared_ptr<TrustSource> source_;
  const std::string purpose_;
  TrustSlot<HookView> slot_;
  alignas(64) std::array<std::uint64_t, PTRUST_REASON_COUNT> local_{};
  std::uint64_t* const counters_;  // into local_ or into a slot of the shared file
};

// `purpose`'s state in `ctx` (created on first use, as attaching does); nullptr for an unknown
// purpose. Internal (tests, diagnostics): not part of libptrust's C API.
std::shared_ptr<PurposeState> purpose_state_of(PTRUST_CTX* ctx, const char* purpose) noexcept;

}  // namespace ptrust::hook
