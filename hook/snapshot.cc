// Building a purpose's immutable trust snapshot from the on-disk stores (via core's
// selection: this file never decides which source serves a purpose).
#include <openssl/err.h>

#include <algorithm>
#include <ctime>
#include <vector>

#include "core/crl.h"
#include "core/error.h"
#include "hook/verifier.h"

namespace ptrust::hook {

namespace {

std::atomic<std::uint64_t> g_serial{0};

ptrust_reason reason_for_code(Code c) noexcept {
  switch (c) {
    case Code::kStoreCorrupt: return PTRUST_REASON_STORE_CORRUPT;
    case Code::kStoreUnreadable:
    case Code::kStoreUnsafe:
    case Code::kIoError:
    case Code::kInputUnreadable: return PTRUST_REASON_STORE_UNREADABLE;
    case Code::kUsage:
    case Code::kTrustedCertificateInvalid:
    case Code::kPrivateKeyNotAllowed:
    case Code::kTrustedCertificateExpired:
    case Code::kTrustedCertificateNotValidYet:
    case Code::kNotACaCertificate:
    case Code::kCertificateLacksPurpose:
    case Code::kUnknownPurpose:
    case Code::kTrustedCertificateAlreadyExists:
    case Code::kTrustedCertificateNotFound:
    case Code::kTrustedCertificateFileMissing:
    case Code::kCrlInvalid:
    case Code::kCrlNameInvalid:
    case Code::kCrlAlreadyExists:
    case Code::kCrlDoesNotExist:
    case Code::kCrlSignatureInvalid:
    case Code::kCertificateNameInvalid:
    case Code::kCaCertificateAlreadyExists:
    case Code::kCertificateDoesNotExist:
    case Code::kHostUuidInvalid:
    case Code::kPoolJoiningHostCaCertificatesConflict:
    case Code::kPoolJoiningHostTrustedCertificatesConflict:
    case Code::kPoolJoiningHostCrlsConflict:
    case Code::kImportInvalid:
    case Code::kNoTrustForPurpose:
    case Code::kSubjectCheckMissing:
    case Code::kStunnelSignalFailed:
    case Code::kConfigInvalid:
    case Code::kDatabaseInvalid:
    case Code::kLockFailed: return PTRUST_REASON_INTERNAL_ERROR;
  }
  return PTRUST_REASON_INTERNAL_ERROR;
}

const EVP_MD* sha256() noexcept {
  // Fetched once: the legacy EVP_sha256() would be re-fetched (with a lock) on every digest.
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

bool epoch(const ASN1_TIME* t, std::int64_t& out) {
  std::tm tm{};
  if (ASN1_TIME_to_tm(t, &tm) != 1) return false;
  out = timegm(&tm);
  return true;
}

bool add_pins(Snapshot& s, const PurposePolicy& policy) {
  for (auto& c : s.pinned) {
    Snapshot::Pin pin{{}, c.get(), 0, 0};
    if (!pin_digest(c.get(), policy.pin_match, pin.digest) || !epoch(X509_get0_notBefore(c.get()), pin.not_before) ||
        !epoch(X509_get0_notAfter(c.get()), pin.not_after))
      return false;
    s.pins.push_back(pin);
  }
  std::sort(s.pins.begin(), s.pins.end(), [](const auto& a, const auto& b) { return a.digest < b.digest; });
  return true;
}

// Feeds a DER encoding into the material digest.
template <typename T, int (*I2d)(const T*, unsigned char**)>
void digest_der(EVP_MD_CTX* md, const T* obj) {
  unsigned char* der = nullptr;
  int len = I2d(obj, &der);
  if (len <= 0) throw std::bad_alloc();
  EVP_DigestUpdate(md, der, static_cast<size_t>(len));
  OPENSSL_free(der);
}

void add_ca_store(Snapshot& s, const Context& ctx, const std::string& purpose, std::vector<ossl::X509Ptr>& certs,
                  EVP_MD_CTX* md) {
  s.store.reset(X509_STORE_new());
  if (!s.store) throw std::bad_alloc();
  for (auto& c : certs)
    if (X509_STORE_add_cert(s.store.get(), c.get()) != 1) ERR_clear_error();  // duplicates are fine
  // CRLs are always loaded so that a per-run override (`ptrust verify --crl-policy`) can use
  // them; a CRL that fails to load fails verification only when CRLs are checked.
  try {
    for (auto& n : load_crls(ctx, purpose)) {
      digest_der<X509_CRL, i2d_X509_CRL>(md, n.crl.get());
      if (X509_STORE_add_crl(s.store.get(), n.crl.get()) != 1) ERR_clear_error();
    }
  } catch (const Error& e) {
    s.crl_failure = reason_for_code(e.code());
    s.load_error = e.what();
  }
}

// Computes OpenSSL's lazily cached extension data now, while the snapshot is private to
// the builder: once published, verifications on many threads only read these objects.
void warm(std::vector<ossl::X509Ptr>& certs) {
  for (auto& c : certs) X509_check_purpose(c.get(), -1, 0);
}

}  // namespace

namespace {

// SHA-256 with a per-thread digest context and DER buffer: X509_digest would allocate
// both (and re-initialise the provider) on every call, tripling a pinned check's cost.
bool sha256_der(X509* cert, Digest& out) noexcept {
  struct Local {
    EVP_MD_CTX* md = EVP_MD_CTX_new();
    std::vector<unsigned char> der;
    ~Local() { EVP_MD_CTX_free(md); }
  };
  thread_local Local t;
  int len = i2d_X509(cert, nullptr);  // the cached encoding of a parsed certificate
  if (!t.md || len <= 0) return false;
  try {
    if (t.der.size() < static_cast<size_t>(len)) t.der.resize(static_cast<size_t>(len));
  } catch (const std::exception&) {
    return false;
  }
  unsigned char* p = t.der.data();
  if (i2d_X509(cert, &p) != len) return false;
  unsigned int n = 0;
  return EVP_DigestInit_ex(t.md, sha256(), nullptr) == 1 && EVP_DigestUpdate(t.md, t.der.data(), static_cast<size_t>(len)) == 1 &&
         EVP_DigestFinal_ex(t.md, out.data(), &n) == 1 && n == out.size();
}

}  // namespace

bool pin_digest(X509* cert, PinMatch match, Digest& out) noexcept {
  unsigned int len = 0;
  switch (match) {
    case PinMatch::kCertificate: return sha256_der(cert, out);
    case PinMatch::kSpki: return X509_pubkey_digest(cert, sha256(), out.data(), &len) == 1 && len == out.size();
  }
  return false;
}

std::shared_ptr<const Snapshot> build_snapshot(const Context& ctx, const std::string& purpose,
                                               const PurposePolicy& policy, std::uint64_t gen) noexcept {
  try {
    auto s = std::make_shared<Snapshot>();
    s->serial = g_serial.fetch_add(1, std::memory_order_relaxed) + 1;
    s->generation = gen;
    s->built_at = std::chrono::steady_clock::now();
    ossl::Ptr<EVP_MD_CTX, EVP_MD_CTX_free> md(EVP_MD_CTX_new());
    if (!md || EVP_DigestInit_ex(md.get(), sha256(), nullptr) != 1) throw std::bad_alloc();
    EVP_DigestUpdate(md.get(), purpose.data(), purpose.size() + 1);
    EVP_DigestUpdate(md.get(), &gen, sizeof gen);
    // The policy too: a worker with another configuration must not resume this one's sessions.
    const int pol[] = {static_cast<int>(policy.crl_policy), static_cast<int>(policy.crl_scope),
                       policy.allow_expired_crl, static_cast<int>(policy.pin_match), policy.enforce_pin_validity,
                       policy.report_only};
    EVP_DigestUpdate(md.get(), pol, sizeof pol);
    try {
      Material m = load_material(ctx, purpose);
      warm(m.certs);
      s->mode = m.resolution.mode;
      for (auto& c : m.certs) digest_der<X509, i2d_X509>(md.get(), c.get());
      switch (s->mode) {
        case Mode::kPinned:
          s->pinned = std::move(m.certs);
          if (!add_pins(*s, policy)) s->load_failure = PTRUST_REASON_INTERNAL_ERROR;
          break;
        case Mode::kCa:
        case Mode::kGeneral: add_ca_store(*s, ctx, purpose, m.certs, md.get()); break;
        case Mode::kNone: break;
      }
    } catch (const Error& e) {
      s->load_failure = reason_for_code(e.code());
      s->load_error = e.what();
      try {
        s->mode = resolve(ctx, purpose).mode;  // which source failed, for the report
      } catch (const std::exception&) {
      }
    }
    int mode = static_cast<int>(s->mode);
    EVP_DigestUpdate(md.get(), &mode, sizeof mode);
    EVP_DigestUpdate(md.get(), &s->load_failure, sizeof s->load_failure);
    EVP_DigestUpdate(md.get(), &s->crl_failure, sizeof s->crl_failure);
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(md.get(), s->material.data(), &n) != 1) throw std::bad_alloc();
    ERR_clear_error();
    return s;
  } catch (const std::exception&) {
    ERR_clear_error();
    return nullptr;
  }
}

}  // namespace ptrust::hook
