#include "core/cert.h"

#include <openssl/conf.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <unistd.h>

#include <cstdio>

#include "core/error.h"
#include "core/x509.h"

namespace ptrust {

namespace {

// Names of all PEM blocks in the input, in order ("CERTIFICATE", "PRIVATE KEY", ...).
std::vector<std::string> pem_block_names(std::string_view in) {
  std::vector<std::string> names;
  constexpr std::string_view kBegin = "-----BEGIN ";
  size_t pos = 0;
  while ((pos = in.find(kBegin, pos)) != std::string_view::npos) {
    size_t start = pos + kBegin.size();
    size_t end = in.find("-----", start);
    size_t eol = in.find('\n', start);
    if (end == std::string_view::npos || (eol != std::string_view::npos && end > eol)) {
      names.emplace_back("<malformed>");
    } else {
      names.emplace_back(in.substr(start, end - start));
    }
    pos = start;
  }
  return names;
}

bool is_key_block(std::string_view name) {
  return name.find("PRIVATE KEY") != std::string_view::npos;
}

bool is_cert_block(std::string_view name) {
  return name == "CERTIFICATE" || name == "X509 CERTIFICATE";
}

ossl::X509Ptr der_to_x509(const unsigned char* p, long len, OSSL_LIB_CTX* libctx = nullptr) {
  const unsigned char* q = p;
  if (!libctx) {
    ossl::X509Ptr x(d2i_X509(nullptr, &q, len));
    if (!x || q != p + len) return nullptr;  // trailing bytes are not one certificate
    return x;
  }
  X509* made = X509_new_ex(libctx, nullptr);  // d2i into it: decoded by libctx's providers
  if (!made) return nullptr;
  const bool decoded = d2i_X509(&made, &q, len) != nullptr;
  ossl::X509Ptr x(made);  // a failed decode has freed and cleared it
  if (!decoded || q != p + len) return nullptr;
  return x;
}

// True when `d2i` decodes the whole of `in` as one object of its type.
template <typename Ptr, typename D2i>
bool decodes_as(std::string_view in, D2i d2i) {
  const unsigned char* q = reinterpret_cast<const unsigned char*>(in.data());
  return Ptr(d2i(nullptr, &q, static_cast<long>(in.size()))) != nullptr;
}

bool der_is_private_key(std::string_view in) {
  return decodes_as<ossl::PkeyPtr>(in, d2i_AutoPrivateKey) ||
         decodes_as<ossl::Pkcs8PrivKeyInfoPtr>(in, d2i_PKCS8_PRIV_KEY_INFO) ||
         decodes_as<ossl::X509SigPtr>(in, d2i_X509_SIG);  // encrypted PKCS#8
}

[[noreturn]] void invalid(const std::string& why) {
  ERR_clear_error();
  throw Error(Code::kTrustedCertificateInvalid, why);
}

// The regions of a PEM input outside its blocks (text before, between and after them).
std::vector<std::string_view> outside_pem_blocks(std::string_view in) {
  std::vector<std::string_view> out;
  constexpr std::string_view kBegin = "-----BEGIN ", kEnd = "-----END ", kDashes = "-----";
  size_t pos = 0;
  for (;;) {
    size_t b = in.find(kBegin, pos);
    out.push_back(in.substr(pos, b == std::string_view::npos ? std::string_view::npos : b - pos));
    if (b == std::string_view::npos) break;
    size_t e = in.find(kEnd, b);
    size_t close = e == std::string_view::npos ? e : in.find(kDashes, e + kEnd.size());
    if (close == std::string_view::npos) break;  // unterminated: the parsers refuse it
    pos = close + kDashes.size();
  }
  return out;
}

// True when a DER private key starts anywhere in `bytes` (a SEQUENCE header is checked first,
// so only plausible offsets are decoded).
bool holds_der_private_key(std::string_view bytes) {
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (static_cast<unsigned char>(bytes[i]) != 0x30) continue;
    const unsigned char* p = reinterpret_cast<const unsigned char*>(bytes.data()) + i;
    const unsigned char* q = p;
    long len = 0;
    int tag = 0, cls = 0;
    int r = ASN1_get_object(&q, &len, &tag, &cls, static_cast<long>(bytes.size() - i));
    ERR_clear_error();
    if ((r & 0x80) || len > static_cast<long>(bytes.size() - i) - (q - p)) continue;
    if (der_is_private_key(bytes.substr(i, static_cast<size_t>(q - p) + static_cast<size_t>(len)))) return true;
  }
  return false;
}

}  // namespace

void refuse_private_keys(std::string_view in) {
  for (const auto& n : pem_block_names(in))
    if (is_key_block(n))
      throw Error(Code::kPrivateKeyNotAllowed,
                  "input holds a " + n + " block; trust stores are public, install the certificate only");
  if (in.find("-----BEGIN ") == std::string_view::npos) {
    if (der_is_private_key(in))
      throw Error(Code::kPrivateKeyNotAllowed, "input is a DER private key; install the certificate only");
    // A key concatenated after a DER object is still a key in the input.
    const unsigned char* p = reinterpret_cast<const unsigned char*>(in.data());
    const unsigned char* q = p;
    long len = 0;
    int tag = 0, cls = 0;
    int r = ASN1_get_object(&q, &len, &tag, &cls, static_cast<long>(in.size()));
    ERR_clear_error();
    if (!(r & 0x80) && len <= static_cast<long>(in.size()) - (q - p)) {
      size_t first = static_cast<size_t>(q - p) + static_cast<size_t>(len);
      if (first < in.size() && holds_der_private_key(in.substr(first)))
        throw Error(Code::kPrivateKeyNotAllowed, "input holds a DER private key after its first object");
    }
    ERR_clear_error();
    return;
  }
  // PEM: a DER key beside the blocks (before, between or after them) is a key too.
  for (std::string_view region : outside_pem_blocks(in))
    if (holds_der_private_key(region))
      throw Error(Code::kPrivateKeyNotAllowed, "input holds a DER private key beside its PEM blocks");
  ERR_clear_error();
}

Certificate Certificate::parse(std::string_view in, OSSL_LIB_CTX* libctx) {
  if (in.empty()) invalid("input is empty; expected one PEM or DER certificate");
  refuse_private_keys(in);
  auto names = pem_block_names(in);
  if (names.empty()) {
    auto x = der_to_x509(reinterpret_cast<const unsigned char*>(in.data()), static_cast<long>(in.size()), libctx);
    if (!x) invalid("input is neither a PEM certificate nor exactly one DER certificate");
    return Certificate(std::move(x));
  }
  size_t certs = 0;
  for (const auto& n : names) {
    if (is_cert_block(n)) {
      ++certs;
    } else {
      invalid("input holds a '" + n + "' PEM block; expected exactly one CERTIFICATE");
    }
  }
  if (certs != 1) invalid("input holds " + std::to_string(certs) + " certificates; expected exactly one");

  ossl::BioPtr bio(BIO_new_mem_buf(in.data(), static_cast<int>(in.size())));
  char* name = nullptr;
  char* header = nullptr;
  unsigned char* data = nullptr;
  long len = 0;
  if (!PEM_read_bio(bio.get(), &name, &header, &data, &len)) invalid("truncated or malformed PEM certificate");
  ossl::OsslStr n(name), h(header), d(reinterpret_cast<char*>(data));
  if (header && *header) invalid("PEM certificate has encryption headers");
  auto x = der_to_x509(data, len, libctx);
  if (!x) invalid("PEM block does not hold a valid DER certificate");
  return Certificate(std::move(x));
}

ossl::LibCtxPtr Certificate::decoding_context() {
  ossl::LibCtxPtr ctx(OSSL_LIB_CTX_new());
  if (!ctx) return nullptr;
  // The file the default context loaded at initialisation (OPENSSL_CONF, else the built-in
  // path); a missing one is no configuration, as it is for the default context.
  ossl::OsslStr file(CONF_get1_default_config_file());
  if (!file) return nullptr;
  if (::access(file.get(), F_OK) == 0 && OSSL_LIB_CTX_load_config(ctx.get(), file.get()) != 1) {
    ERR_clear_error();
    return nullptr;
  }
  return ctx;
}

Certificate Certificate::from_x509(X509* x) {
  X509_up_ref(x);
  return Certificate(ossl::X509Ptr(x));
}

std::string Certificate::der() const {
  std::string d = x509::der(x_.get());
  if (d.empty()) throw Error(Code::kTrustedCertificateInvalid, "cannot encode certificate");
  return d;
}

std::string Certificate::pem() const {
  std::string p = x509::pem(x_.get());
  if (p.empty()) throw Error(Code::kTrustedCertificateInvalid, "cannot encode certificate");
  return p;
}

CertInfo Certificate::info() const {
  X509* x = x_.get();
  CertInfo i;
  i.sha256 = x509::fingerprint(x, EVP_sha256());
  i.sha1 = x509::fingerprint(x, EVP_sha1());
  i.subject = x509::rfc2253(X509_get_subject_name(x));
  i.issuer = x509::rfc2253(X509_get_issuer_name(x));
  if (ossl::BnPtr bn{ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), nullptr)}) {
    ossl::OsslStr hex(BN_bn2hex(bn.get()));
    i.serial = hex ? hex.get() : "";
  }
  i.not_before = x509::to_epoch(X509_get0_notBefore(x)).value_or(0);
  i.not_after = x509::to_epoch(X509_get0_notAfter(x)).value_or(0);
  if (EVP_PKEY* k = X509_get0_pubkey(x)) {
    const char* tn = EVP_PKEY_get0_type_name(k);
    i.key_type = tn ? tn : "unknown";
    for (auto& c : i.key_type) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    i.key_bits = EVP_PKEY_get_bits(k);
  }
  uint32_t flags = X509_get_extension_flags(x);
  bool ca = (flags & EXFLAG_CA) != 0;
  if (ca && (flags & EXFLAG_KUSAGE)) ca = (X509_get_key_usage(x) & KU_KEY_CERT_SIGN) != 0;
  i.is_ca = ca;
  ERR_clear_error();
  return i;
}

void Certificate::check_validity(std::time_t now) const {
  auto text = [](const ASN1_TIME* t) { return x509::format_time(x509::to_epoch(t).value_or(0)); };
  const ASN1_TIME* not_before = X509_get0_notBefore(x_.get());
  const ASN1_TIME* not_after = X509_get0_notAfter(x_.get());
  if (X509_cmp_time(not_before, &now) > 0)
    throw Error(Code::kTrustedCertificateNotValidYet, "certificate is not valid before " + text(not_before));
  if (X509_cmp_time(not_after, &now) < 0)
    throw Error(Code::kTrustedCertificateExpired, "certificate expired on " + text(not_after));
}

namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

// A bundle is nothing but CERTIFICATE blocks and whitespace around them: trailing garbage,
// binary junk or a truncated last block (PEM_read_bio would skip or ignore them) is
// STORE_CORRUPT, so every reader of a bundle reaches the same verdict.
void check_framing(std::string_view pem, const std::string& what) {
  size_t pos = 0;
  for (;;) {
    while (pos < pem.size() && is_space(pem[pos])) ++pos;
    if (pos == pem.size()) return;
    std::string_view rest = pem.substr(pos);
    std::string_view name;
    for (std::string_view n : {"CERTIFICATE", "X509 CERTIFICATE"})
      if (rest.starts_with("-----BEGIN " + std::string(n) + "-----")) name = n;
    if (name.empty()) throw Error(Code::kStoreCorrupt, what + " holds something other than certificates");
    const std::string end = "-----END " + std::string(name) + "-----";
    size_t e = pem.find(end, pos);
    size_t next_begin = pem.find("-----BEGIN ", pos + 1);
    if (e == std::string_view::npos || (next_begin != std::string_view::npos && next_begin < e))
      throw Error(Code::kStoreCorrupt, what + " holds a truncated or malformed certificate");
    pos = e + end.size();
  }
}

// Calls `f(der, len)` for each CERTIFICATE block of a bundle; STORE_CORRUPT on anything else.
template <typename F>
void for_each_bundle_block(std::string_view pem, const std::string& what, F f) {
  check_framing(pem, what);
  auto names = pem_block_names(pem);
  for (const auto& n : names)
    if (!is_cert_block(n)) throw Error(Code::kStoreCorrupt, what + " holds a '" + n + "' block");
  if (names.empty()) throw Error(Code::kStoreCorrupt, what + " holds no certificate");
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  for (size_t i = 0; i < names.size(); ++i) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (!PEM_read_bio(bio.get(), &name, &header, &data, &len)) {
      ERR_clear_error();
      throw Error(Code::kStoreCorrupt, what + " holds a truncated or malformed certificate");
    }
    ossl::OsslStr n(name), h(header), d(reinterpret_cast<char*>(data));
    if (!f(static_cast<const unsigned char*>(data), len)) {
      ERR_clear_error();
      throw Error(Code::kStoreCorrupt, what + " holds an unparsable certificate");
    }
  }
}

// One DER element: advances `p` past it; returns false on malformed or indefinite lengths.
struct Tlv {
  const unsigned char* start;   // header
  const unsigned char* content;
  long length;
  int tag, cls;
};

bool next_tlv(const unsigned char*& p, const unsigned char* end, Tlv& t) {
  t.start = p;
  const unsigned char* q = p;
  int r = ASN1_get_object(&q, &t.length, &t.tag, &t.cls, end - p);
  if ((r & 0x80) || r == (V_ASN1_CONSTRUCTED | 1)) return false;  // error, or indefinite length
  if (t.length > end - q) return false;
  t.content = q;
  p = q + t.length;
  return true;
}

// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
//   signature, issuer, validity, subject, ... }, signatureAlgorithm, signatureValue }
ossl::X509NamePtr certificate_subject(const unsigned char* der, long len) {
  const unsigned char* p = der;
  const unsigned char* end = der + len;
  Tlv cert, tbs, e, alg, sig;
  if (!next_tlv(p, end, cert) || cert.tag != V_ASN1_SEQUENCE || p != end) return nullptr;
  p = cert.content;
  const unsigned char* cert_end = cert.content + cert.length;
  if (!next_tlv(p, cert_end, tbs) || tbs.tag != V_ASN1_SEQUENCE) return nullptr;
  if (!next_tlv(p, cert_end, alg) || alg.tag != V_ASN1_SEQUENCE) return nullptr;
  if (!next_tlv(p, cert_end, sig) || sig.tag != V_ASN1_BIT_STRING || p != cert_end) return nullptr;
  p = tbs.content;
  const unsigned char* tbs_end = tbs.content + tbs.length;
  if (!next_tlv(p, tbs_end, e)) return nullptr;
  if (e.cls == V_ASN1_CONTEXT_SPECIFIC && e.tag == 0 && !next_tlv(p, tbs_end, e)) return nullptr;  // version
  if (e.tag != V_ASN1_INTEGER) return nullptr;                                                  // serial
  static constexpr int kShape[] = {V_ASN1_SEQUENCE, V_ASN1_SEQUENCE, V_ASN1_SEQUENCE};          // sig, issuer, validity
  for (int tag : kShape)
    if (!next_tlv(p, tbs_end, e) || e.tag != tag) return nullptr;
  if (!next_tlv(p, tbs_end, e) || e.tag != V_ASN1_SEQUENCE) return nullptr;  // subject
  const unsigned char* q = e.start;
  ossl::X509NamePtr name(d2i_X509_NAME(nullptr, &q, p - e.start));
  if (name && q != p) return nullptr;
  return name;
}

}  // namespace

std::vector<ossl::X509Ptr> parse_bundle(std::string_view pem, const std::string& what) {
  std::vector<ossl::X509Ptr> out;
  for_each_bundle_block(pem, what, [&](const unsigned char* der, long len) {
    auto x = der_to_x509(der, len);
    if (!x) return false;
    out.push_back(std::move(x));
    return true;
  });
  return out;
}

std::vector<DerCert> scan_bundle(std::string_view pem, const std::string& what) {
  std::vector<DerCert> out;
  for_each_bundle_block(pem, what, [&](const unsigned char* der, long len) {
    ossl::X509NamePtr subject = certificate_subject(der, len);
    if (!subject) return false;
    out.push_back({std::string(reinterpret_cast<const char*>(der), static_cast<size_t>(len)), std::move(subject)});
    return true;
  });
  return out;
}

}  // namespace ptrust
