// A purpose's TrustState as the verify hook's OpenSSL objects. This file never decides what
// a purpose trusts: core/trust.cc did (selection, CRL scope and policy).
#include <openssl/err.h>

#include <algorithm>
#include <new>
#include <vector>

#include "core/x509.h"
#include "hook/verifier.h"

namespace ptrust::hook {

namespace {

bool epoch(const ASN1_TIME* t, std::int64_t& out) noexcept {
  std::optional<std::int64_t> e = x509::to_epoch(t);
  if (e) out = *e;
  return e.has_value();
}

}  // namespace

bool pin_digest(X509* cert, PinMatch match, Digest& out) noexcept {
  unsigned int len = 0;
  switch (match) {
    case PinMatch::kCertificate: {
      // i2d of a parsed certificate copies its cached encoding; heap, not stack or
      // thread-local buffers: this runs inside other people's threads.
      unsigned char* der = nullptr;
      int n = i2d_X509(cert, &der);
      if (n <= 0) return false;
      ossl::OsslStr owned(reinterpret_cast<char*>(der));
      return EVP_Digest(der, static_cast<size_t>(n), out.data(), &len, x509::sha256(), nullptr) == 1 && len == out.size();
    }
    case PinMatch::kSpki: return X509_pubkey_digest(cert, x509::sha256(), out.data(), &len) == 1 && len == out.size();
  }
  return false;
}

HookView::HookView(std::shared_ptr<const TrustState> state) : state_(std::move(state)) {
  const TrustState& s = *state_;
  if (s.failure) {
    failure = code_info(*s.failure).hook_reason;
    return;
  }
  // The state's decoded certificates, shared (one more reference each).
  std::vector<ossl::X509Ptr> certs;
  certs.reserve(s.decoded.size());
  for (const auto& c : s.decoded) {
    if (X509_up_ref(c.get()) != 1) throw std::bad_alloc();
    certs.emplace_back(c.get());
  }
  switch (s.mode) {
    case Mode::kPinned:
      pinned = std::move(certs);
      for (auto& c : pinned) {
        Pin pin{{}, c.get(), 0, 0};
        if (!pin_digest(c.get(), s.policy.pin_match, pin.digest) || !epoch(X509_get0_notBefore(c.get()), pin.not_before) ||
            !epoch(X509_get0_notAfter(c.get()), pin.not_after)) {
          failure = PTRUST_REASON_INTERNAL_ERROR;
          break;
        }
        pins.push_back(pin);
      }
      std::sort(pins.begin(), pins.end(), [](const Pin& a, const Pin& b) { return a.digest < b.digest; });
      break;
    case Mode::kCa:
    case Mode::kGeneral:
      store.reset(X509_STORE_new());
      if (!store) throw std::bad_alloc();
      for (auto& c : certs)
        if (X509_STORE_add_cert(store.get(), c.get()) != 1) throw std::bad_alloc();  // 3.0: a duplicate returns 1
      // 3.0 returns 1 for a duplicate: a failure is out of memory, and a CRL left out would
      // let a revoked certificate through (the provider would still serve it).
      crls.reset(sk_X509_CRL_new_reserve(nullptr, static_cast<int>(s.crls.size())));
      if (!crls) throw std::bad_alloc();
      for (const auto& c : s.crls) {
        if (X509_STORE_add_crl(store.get(), c.crl.get()) != 1) throw std::bad_alloc();
        X509_CRL_up_ref(c.crl.get());
        sk_X509_CRL_push(crls.get(), c.crl.get());  // reserved: cannot fail
      }
      break;
    case Mode::kNone: break;
  }
}

std::shared_ptr<const HookView> PurposeState::with_policy(const PurposePolicy& policy) noexcept {
  try {
    std::shared_ptr<const TrustState> s = source_->build(purpose_, source_->stamp(), &policy);
    return s ? std::make_shared<const HookView>(std::move(s)) : nullptr;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace ptrust::hook
