// The decision: one function for the TLS callback and for offline `ptrust verify`.
#include <openssl/err.h>

#include <algorithm>
#include <ctime>

#include "core/cluster_ca.h"
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

}  // namespace

Verdict decide(const HookView& view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param) noexcept {
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
        case Mode::kGeneral: v = decide_chain(view, leaf, untrusted, param); break;
      }
    }
  } catch (const std::exception&) {
    v = fail(PTRUST_REASON_INTERNAL_ERROR, X509_V_ERR_OUT_OF_MEM);
  }
  ERR_pop_to_mark();  // the nested verification's errors are in the verdict, not the host's queue
  return v;
}

}  // namespace ptrust::hook
