// The X.509 helpers every part of ptrust prints with: hex, fingerprints, times, names.
// One home, so that `list`, the database, `probe` and the stunnel digests say the same.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "core/ossl.h"

namespace ptrust::x509 {

// "AB:CD:EF": upper-case, colon-separated, as xapi shows fingerprints.
std::string hex_colon(std::span<const unsigned char> bytes);
// "abcdef": lower-case, no separator (digests in file names and configuration comments).
std::string hex_lower(std::span<const unsigned char> bytes);

// hex_colon of the `md` digest of the DER encoding (SHA-256 and SHA-1 in the database).
std::string fingerprint(const X509* x, const EVP_MD* md);
std::string fingerprint(const X509_CRL* crl, const EVP_MD* md);
// SHA-256, fetched once from the default library context (EVP_sha256() would be re-fetched,
// under a lock, by every digest: this one is for the verify hook's per-handshake paths). The
// reference is kept for the life of the library that made it.
const EVP_MD* sha256() noexcept;
// SHA-256 fetched for one use and owned by the caller (null when the fetch fails, and a
// digest with a null EVP_MD fails). For what the provider runs: a reference kept in a static
// of ptrust.so outlives the module when the host unloads it (OSSL_PROVIDER_unload), and the
// default context's SHA-256 is then never freed (LeakSanitizer, tests/provider under
// scripts/asan.sh).
ossl::Ptr<EVP_MD, EVP_MD_free> fetch_sha256() noexcept;
// hex_lower of the SHA-256 of `data`.
std::string sha256_hex(std::string_view data);

// Seconds since the epoch, UTC; nullopt for a null or malformed time.
std::optional<std::int64_t> to_epoch(const ASN1_TIME* t) noexcept;
// "2026-11-22T19:08:14Z".
std::string format_time(std::int64_t t);

// RFC 2253 text of a name, UTF-8 left unescaped ("CN=Demo Root CA,O=ptrust").
std::string rfc2253(const X509_NAME* name);

// A key for finding names equal under X509_NAME_cmp from their rfc2253() text alone (the
// database keeps names as text): escapes undone, whitespace dropped, ASCII lower-cased, the
// values of a multi-valued RDN sorted. Names X509_NAME_cmp finds equal have equal keys (it
// compares OpenSSL's canonical form: values in UTF-8, trimmed, inner whitespace collapsed,
// ASCII lower-cased, sets in DER order); equal keys are only candidates, to be confirmed with
// X509_NAME_cmp on the decoded names.
std::string name_key(std::string_view rfc2253_text);

// A CRL's crlNumber in decimal; "" when it has none.
std::string crl_number(const X509_CRL* crl);
// A delta CRL's BaseCRLNumber (deltaCRLIndicator) in decimal; "" for a complete CRL.
std::string crl_delta_base(const X509_CRL* crl);

// Encodings; empty when OpenSSL cannot encode (callers refuse with their own code).
std::string der(const X509* x);
std::string pem(const X509* x);
std::string pem(const X509_CRL* crl);

}  // namespace ptrust::x509
