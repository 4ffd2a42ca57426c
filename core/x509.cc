#include "core/x509.h"

#include <openssl/bn.h>
#include <openssl/x509v3.h>

#include <openssl/pem.h>

#include <algorithm>
#include <ctime>
#include <vector>

#include "core/ossl.h"

namespace ptrust::x509 {

namespace {

std::string hex(std::span<const unsigned char> bytes, const char* digits, std::string_view sep) {
  std::string out;
  out.reserve(bytes.size() * (2 + sep.size()));
  for (size_t i = 0; i < bytes.size(); ++i) {
    if (i) out += sep;
    out += digits[bytes[i] >> 4];
    out += digits[bytes[i] & 15];
  }
  return out;
}

// Everything written to a memory BIO, as one string.
std::string mem_text(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return n > 0 ? std::string(p, static_cast<size_t>(n)) : std::string();
}

template <typename T, typename Write>
std::string pem_of(const T* obj, Write write) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || !write(b.get(), obj)) return {};
  return mem_text(b.get());
}

}  // namespace

std::string hex_colon(std::span<const unsigned char> bytes) { return hex(bytes, "0123456789ABCDEF", ":"); }

std::string hex_lower(std::span<const unsigned char> bytes) { return hex(bytes, "0123456789abcdef", ""); }

std::string fingerprint(const X509* x, const EVP_MD* md) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_digest(x, md, buf, &n)) return {};
  return hex_colon({buf, n});
}

std::string fingerprint(const X509_CRL* crl, const EVP_MD* md) {
  unsigned char buf[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!X509_CRL_digest(crl, md, buf, &n)) return {};
  return hex_colon({buf, n});
}

const EVP_MD* sha256() noexcept {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}

ossl::Ptr<EVP_MD, EVP_MD_free> fetch_sha256() noexcept {
  return ossl::Ptr<EVP_MD, EVP_MD_free>(EVP_MD_fetch(nullptr, "SHA256", nullptr));
}

std::string sha256_hex(std::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  if (!EVP_Digest(data.data(), data.size(), md, &n, EVP_sha256(), nullptr)) return {};
  return hex_lower({md, n});
}

std::optional<std::int64_t> to_epoch(const ASN1_TIME* t) noexcept {
  struct tm tm {};
  if (!t || ASN1_TIME_to_tm(t, &tm) != 1) return std::nullopt;
  return static_cast<std::int64_t>(timegm(&tm));
}

std::string format_time(std::int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  struct tm tm {};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string rfc2253(const X509_NAME* name) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  // ESC_MSB off: UTF-8 subjects stay readable instead of becoming \XX escapes.
  if (!b || X509_NAME_print_ex(b.get(), name, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) < 0) return {};
  return mem_text(b.get());
}

namespace {

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

std::string name_key(std::string_view text) {
  std::string key;
  std::vector<std::string> avas;
  std::string ava;
  auto end_ava = [&] {
    avas.push_back(std::move(ava));
    ava.clear();
  };
  auto end_rdn = [&] {
    end_ava();
    std::sort(avas.begin(), avas.end());
    for (size_t i = 0; i < avas.size(); ++i) key += (i ? "+" : "") + avas[i];
    key += ',';
    avas.clear();
  };
  auto add = [&](unsigned char c) {
    if (c == ' ' || (c >= '\t' && c <= '\r')) return;  // OpenSSL's isspace: dropped, not collapsed
    ava += static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  };
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '\\' && i + 1 < text.size()) {
      int hi = hex_digit(text[i + 1]), lo = i + 2 < text.size() ? hex_digit(text[i + 2]) : -1;
      if (hi >= 0 && lo >= 0) {
        add(static_cast<unsigned char>(hi * 16 + lo));
        i += 2;
      } else {
        add(static_cast<unsigned char>(text[++i]));
      }
    } else if (c == ',') {
      end_rdn();
    } else if (c == '+') {
      end_ava();
    } else {
      add(static_cast<unsigned char>(c));
    }
  }
  end_rdn();
  return key;
}

std::string der(const X509* x) {
  unsigned char* buf = nullptr;
  int n = i2d_X509(x, &buf);
  if (n <= 0) return {};
  ossl::OsslStr guard(reinterpret_cast<char*>(buf));
  return std::string(guard.get(), static_cast<size_t>(n));
}

std::string pem(const X509* x) {
  return pem_of(x, [](BIO* b, const X509* o) { return PEM_write_bio_X509(b, o) == 1; });
}

std::string pem(const X509_CRL* crl) {
  return pem_of(crl, [](BIO* b, const X509_CRL* o) { return PEM_write_bio_X509_CRL(b, o) == 1; });
}

namespace {

// A CRL's INTEGER extension `nid` in decimal; "" when absent.
std::string integer_ext(const X509_CRL* crl, int nid) {
  auto* n = static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl, nid, nullptr, nullptr));
  if (!n) return "";
  BIGNUM* bn = ASN1_INTEGER_to_BN(n, nullptr);
  ASN1_INTEGER_free(n);
  char* dec = bn ? BN_bn2dec(bn) : nullptr;
  BN_free(bn);
  std::string out = dec ? dec : "";
  OPENSSL_free(dec);
  return out;
}

}  // namespace

std::string crl_number(const X509_CRL* crl) { return integer_ext(crl, NID_crl_number); }
std::string crl_delta_base(const X509_CRL* crl) { return integer_ext(crl, NID_delta_crl); }

}  // namespace ptrust::x509
