// The verify hook's model: one immutable trust snapshot per store generation and the one
// decision function that the TLS callback and the offline `verify` both call.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/generation.h"
#include "core/ossl.h"
#include "core/selection.h"
#include "ptrust/ptrust.h"

namespace ptrust::hook {

using Digest = std::array<unsigned char, 32>;

// Everything one verification needs, read once per generation and never changed after.
// Shared between threads by shared_ptr; OpenSSL objects in it are only read.
struct Snapshot {
  std::uint64_t serial = 0;  // unique per snapshot built in this process; stamps sessions
  // SHA-256 of the purpose, mode, generation and every certificate and CRL of the snapshot:
  // the same in every process that sees the same store (keys server-side resumption).
  Digest material{};
  std::uint64_t generation = 0;
  std::chrono::steady_clock::time_point built_at;
  Mode mode = Mode::kNone;
  ptrust_reason load_failure = PTRUST_REASON_OK;  // STORE_* when the chosen source failed
  std::string load_error;                         // its message
  // ca / general: the bundle's CAs and the purpose's CRLs. pinned: unused.
  ossl::X509StorePtr store;
  // pinned: SHA-256 of each pinned certificate (DER) or of its SPKI, per the purpose's policy.
  struct Pin {
    Digest digest;
    X509* cert;  // owned by `pinned`
    std::int64_t not_before, not_after;  // parsed once: ASN1 time parsing per call costs microseconds
  };
  std::vector<Pin> pins;  // sorted by digest
  std::vector<ossl::X509Ptr> pinned;
  // ca / general: the purpose's CRLs failed to load (matters unless crl-policy is off).
  ptrust_reason crl_failure = PTRUST_REASON_OK;
};

// The CRL part of a policy, after per-run overrides.
struct CrlRule {
  CrlPolicy policy = CrlPolicy::kIfPresent;
  CrlScope scope = CrlScope::kChain;
  bool allow_expired = false;
};

struct Verdict {
  ptrust_reason reason = PTRUST_REASON_INTERNAL_ERROR;
  int x509_error = X509_V_ERR_UNSPECIFIED;
  int depth = -1;
  ossl::X509StackPtr chain;  // the verified chain (leaf first) when reason is OK
};

// The decision. `param` carries host / IP / time / purpose (the TLS handshake's parameters,
// or the offline run's). Never throws.
Verdict decide(const Snapshot& snap, const PurposePolicy& policy, const CrlRule& crl, X509* leaf,
               STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param) noexcept;

// Builds a snapshot of `purpose` as of generation `gen`. Never throws: failures are
// recorded in the snapshot (nullptr only when memory runs out).
std::shared_ptr<const Snapshot> build_snapshot(const Context& ctx, const std::string& purpose,
                                               const PurposePolicy& policy, std::uint64_t gen) noexcept;

// SHA-256 of the certificate's DER or of its SubjectPublicKeyInfo.
bool pin_digest(X509* cert, PinMatch match, Digest& out) noexcept;

ptrust_mode to_c(Mode m) noexcept;
ptrust_reason reason_for_x509_error(int err) noexcept;

// One purpose of one PTRUST_CTX: its current snapshot and its counters. Thread-safe. The hot
// path takes no lock and writes no shared memory: one atomic load of the generation counter
// and a lookup in a small thread-local cache of snapshot references. Only the first
// handshake of each thread after a change takes the mutex (one thread rebuilds).
class PurposeState {
 public:
  PurposeState(Context ctx, std::string purpose, PurposePolicy policy);

  const std::string& purpose() const noexcept { return purpose_; }
  const PurposePolicy& policy() const noexcept { return policy_; }
  CrlRule crl_rule() const noexcept { return {policy_.crl_policy, policy_.crl_scope, policy_.allow_expired_crl}; }

  // The snapshot for the current store generation (rebuilt if it moved). It stays valid
  // until this thread's next current() call on this object. Null only when memory ran out
  // before any snapshot was built.
  const Snapshot* current() noexcept;
  // The current generation, as current() sees it (no rebuild).
  std::uint64_t generation() noexcept;

  void count(ptrust_reason r) noexcept { counters_[r].fetch_add(1, std::memory_order_relaxed); }
  std::uint64_t counter(ptrust_reason r) const noexcept { return counters_[r].load(std::memory_order_relaxed); }

 private:
  // Without a generation file (no ptrust writer has touched this root yet) the snapshot is
  // rebuilt at most this often, and the file is looked for again at that rate.
  static constexpr auto kFallbackRefresh = std::chrono::seconds(1);

  const GenerationView* view(std::int64_t now_ns) noexcept;
  bool stale(const Snapshot& s, std::uint64_t gen, const GenerationView* v) const noexcept;

  const Context ctx_;
  const std::string purpose_;
  const PurposePolicy policy_;
  std::atomic<const GenerationView*> view_{nullptr};
  std::unique_ptr<GenerationView> view_owner_;  // guarded by mu_
  std::atomic<std::int64_t> next_view_try_ns_{0};  // next look for a missing or replaced file
  std::vector<std::unique_ptr<GenerationView>> retired_;  // guarded by mu_: replaced views stay
                                                          // mapped (other threads may read them)
  const std::shared_ptr<const Snapshot> failed_;  // fail-closed stand-in when memory runs out
  const std::uint64_t id_;              // keys the thread-local caches; never reused
  std::mutex mu_;                       // never taken when nothing changed
  std::shared_ptr<const Snapshot> snap_;  // guarded by mu_: the latest snapshot
  std::array<std::atomic<std::uint64_t>, PTRUST_REASON_COUNT> counters_{};
};

}  // namespace ptrust::hook
