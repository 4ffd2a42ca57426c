// The verify hook's model: a purpose's TrustState (core/trust.h) as OpenSSL objects, and the
// one decision function that the TLS callback and the offline `verify` both call.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/ossl.h"
#include "core/trust.h"
#include "ptrust/ptrust.h"

namespace ptrust::hook {

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
  // ca / general: the bundle's CAs and the CRLs that apply to the purpose.
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
// handshake's parameters, or the offline run's). Never throws.
Verdict decide(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param) noexcept;

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

}  // namespace ptrust::hook
