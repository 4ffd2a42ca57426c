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

bool subject_less(X509* a, X509* b) noexcept { return X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)) < 0; }

// The store's issuer lookup over HookView::by_subject, OpenSSL's by_dir pattern: every CA of
// the asked subject is added to the store (a duplicate is a no-op; X509_STORE locks), then one
// of them is returned. X509_STORE_CTX_get1_issuer and _get1_certs then look at all of them
// in the store's objects: several CAs may share a subject with different keys. Only reads the
// immutable index: safe for any number of concurrent verifications on the view. Small frame,
// no exception, no allocation but the store's own (at most one object per CA of the bundle).
int lookup_by_subject(X509_LOOKUP* lu, X509_LOOKUP_TYPE type, const X509_NAME* name, X509_OBJECT* ret) noexcept {
  if (type != X509_LU_X509 || name == nullptr || ret == nullptr) return 0;  // CRLs are in the store itself
  const auto* index = static_cast<const std::vector<X509*>*>(X509_LOOKUP_get_method_data(lu));
  X509_STORE* store = X509_LOOKUP_get_store(lu);
  if (index == nullptr || store == nullptr) return 0;
  auto lo = std::lower_bound(index->begin(), index->end(), name, [](X509* c, const X509_NAME* n) {
    return X509_NAME_cmp(X509_get_subject_name(c), n) < 0;
  });
  auto hi = lo;
  while (hi != index->end() && X509_NAME_cmp(X509_get_subject_name(*hi), name) == 0) ++hi;
  if (lo == hi) return 0;
  for (auto it = lo; it != hi; ++it)
    if (X509_STORE_add_cert(store, *it) != 1) return 0;  // out of memory: no issuer, the chain fails
  // X509_OBJECT_set1_X509 takes a reference and so does X509_STORE_CTX_get_by_subject on
  // return: give one back (as OpenSSL's by_store does). The state keeps the certificate alive.
  if (X509_OBJECT_set1_X509(ret, *lo) != 1) return 0;
  X509_free(*lo);
  return 1;
}

// One lookup method for the process (a static: created once, never freed).
X509_LOOKUP_METHOD* index_lookup_method() noexcept {
  static X509_LOOKUP_METHOD* const m = [] {
    X509_LOOKUP_METHOD* x = X509_LOOKUP_meth_new("ptrust hook subject index");
    if (x != nullptr && X509_LOOKUP_meth_set_get_by_subject(x, lookup_by_subject) != 1) {
      X509_LOOKUP_meth_free(x);
      x = nullptr;
    }
    return x;
  }();
  return m;
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

HookView::HookView(std::shared_ptr<const TrustState> state)
    : cache(state->policy.verify_cache_seconds), state_(std::move(state)) {
  const TrustState& s = *state_;
  if (s.failure) {
    failure = code_info(*s.failure).hook_reason;
    return;
  }
  switch (s.mode) {
    case Mode::kPinned:
      // The state's decoded certificates, shared (one more reference each).
      pinned.reserve(s.decoded.size());
      for (const auto& c : s.decoded) {
        if (X509_up_ref(c.get()) != 1) throw std::bad_alloc();
        pinned.emplace_back(c.get());
      }
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
    case Mode::kGeneral: {
      // The CAs are not added to the store one by one (quadratic in OpenSSL 3.0): sorted once
      // here, served by the lookup. The state owns them (the view holds the state; the store
      // takes its own reference to each CA it caches).
      by_subject.reserve(s.decoded.size());
      for (const auto& c : s.decoded) by_subject.push_back(c.get());
      std::sort(by_subject.begin(), by_subject.end(), subject_less);
      store.reset(X509_STORE_new());
      if (!store) throw std::bad_alloc();
      X509_LOOKUP_METHOD* method = index_lookup_method();
      X509_LOOKUP* lookup = method ? X509_STORE_add_lookup(store.get(), method) : nullptr;
      if (lookup == nullptr || X509_LOOKUP_set_method_data(lookup, &by_subject) != 1) throw std::bad_alloc();
      // 3.0 returns 1 for a duplicate: a failure is out of memory, and a CRL left out would
      // let a revoked certificate through (the provider would still serve it).
      crls.reset(sk_X509_CRL_new_reserve(nullptr, static_cast<int>(s.crls.size())));
      if (!crls) throw std::bad_alloc();
      crl_times.reserve(s.crls.size());
      for (const auto& c : s.crls) {
        if (X509_STORE_add_crl(store.get(), c.crl.get()) != 1) throw std::bad_alloc();
        X509_CRL_up_ref(c.crl.get());
        sk_X509_CRL_push(crls.get(), c.crl.get());  // reserved: cannot fail
        std::int64_t last = 0, next = INT64_MAX;
        const ASN1_TIME* nu = X509_CRL_get0_nextUpdate(c.crl.get());
        if (!epoch(X509_CRL_get0_lastUpdate(c.crl.get()), last) || (nu != nullptr && !epoch(nu, next)))
          crl_times_known = false;  // no verdict of this view is cached
        crl_times.emplace_back(last, next);
      }
      break;
    }
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
