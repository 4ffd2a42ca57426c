// Certificate intake and description. Input is PEM or DER holding exactly one
// certificate; what ptrust stores is always its re-encoding, never the input text.
#pragma once

#include <cstdint>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

#include "core/ossl.h"

namespace ptrust {

struct CertInfo {
  std::string sha256;  // upper-case colon hex, as xapi shows fingerprints
  std::string sha1;
  std::string subject;  // RFC 2253
  std::string issuer;
  std::string serial;  // upper-case hex
  std::int64_t not_before = 0;  // seconds since the epoch, UTC
  std::int64_t not_after = 0;
  std::string key_type;  // RSA, EC, ED25519, ...
  int key_bits = 0;
  bool is_ca = false;  // basicConstraints CA:TRUE and, if keyUsage is present, keyCertSign
  bool operator==(const CertInfo&) const = default;
};

class Certificate {
 public:
  // Parses input that must hold exactly one certificate (PEM or DER) and nothing secret.
  // Refusals: TRUSTED_CERTIFICATE_INVALID (empty, garbage, truncated, none, several, other
  // PEM blocks such as CSRs or CRLs), PRIVATE_KEY_NOT_ALLOWED (any key, PEM or DER).
  // `libctx`: the library context whose decoders decode it (its public key); null is the
  // default one. The certificate must be freed before that context.
  static Certificate parse(std::string_view input, OSSL_LIB_CTX* libctx = nullptr);
  // A library context for parse() on a thread of its own, configured as the default one is
  // (the OpenSSL configuration file: the providers and properties an administrator chose), so
  // that a certificate decodes to the same key there. Null (use the default context) when it
  // cannot be made or configured.
  static ossl::LibCtxPtr decoding_context();

  // Wraps an already-parsed certificate (takes a reference).
  static Certificate from_x509(X509* x);

  X509* get() const noexcept { return x_.get(); }
  std::string der() const;
  std::string pem() const;  // exactly one re-encoded CERTIFICATE block
  CertInfo info() const;

  // TRUSTED_CERTIFICATE_EXPIRED / _NOT_VALID_YET relative to `now`.
  void check_validity(std::time_t now) const;

 private:
  explicit Certificate(ossl::X509Ptr x) : x_(std::move(x)) {}
  ossl::X509Ptr x_;
};

// Refuses (PRIVATE_KEY_NOT_ALLOWED) input holding a private key anywhere: a PEM key block of
// any kind, a DER key (plain, PKCS#8 or encrypted PKCS#8) alone or after a DER object, or a
// DER key beside the blocks of a PEM input. Every intake path (certificates and CRLs) runs it.
void refuse_private_keys(std::string_view input);

// Parses a bundle of CERTIFICATE blocks written by ptrust. Anything else in it (other
// blocks, trailing garbage, zero certificates) is STORE_CORRUPT: a consumer must fail
// closed rather than trust a partial bundle.
std::vector<ossl::X509Ptr> parse_bundle(std::string_view pem, const std::string& what);

// A certificate of a bundle as DER plus its subject, without decoding the rest. OpenSSL
// 3.0's d2i_X509 also decodes the public key through the provider decoders (tens of µs per
// certificate); consumers that hand DER to libcrypto anyway (the provider) need only this.
struct DerCert {
  std::string der;
  ossl::X509NamePtr subject;
};

// As parse_bundle (same refusals, STORE_CORRUPT), checking each block's DER structure
// (one Certificate SEQUENCE, nothing trailing) and decoding only the subject name.
std::vector<DerCert> scan_bundle(std::string_view pem, const std::string& what);

}  // namespace ptrust
