#include "core/records.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <cctype>

#include "core/crl.h"
#include "core/error.h"
#include "core/x509.h"

namespace ptrust {

namespace {

// "Demo Root CA" → "Demo_Root_CA.crl"
std::string name_from_issuer(const X509_NAME* issuer) {
  std::string base;
  int idx = X509_NAME_get_index_by_NID(issuer, NID_commonName, -1);
  if (idx >= 0) {
    const ASN1_STRING* s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(issuer, idx));
    base.assign(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
  } else {
    base = x509::rfc2253(issuer);
  }
  std::string out;
  for (char c : base) {
    bool ok = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_';
    if (!ok && !out.empty() && out.back() == '_') continue;
    out += ok ? c : '_';
  }
  if (out.size() > 64) out.resize(64);
  if (out.empty() || out[0] == '.') out = "crl" + out;
  return out + ".crl";
}

}  // namespace

CertRecord make_cert_record(const Certificate& cert, CertType type, std::vector<std::string> purposes,
                            std::int64_t installed_at) {
  CertInfo info = cert.info();
  CertRecord r;
  r.type = type;
  r.purposes = std::move(purposes);
  std::sort(r.purposes.begin(), r.purposes.end());
  r.sha256 = info.sha256;
  r.sha1 = info.sha1;
  r.subject = info.subject;
  r.issuer = info.issuer;
  r.serial = info.serial;
  r.not_before = info.not_before;
  r.not_after = info.not_after;
  r.key_type = info.key_type;
  r.key_bits = info.key_bits;
  r.installed_at = installed_at;
  r.pem = cert.pem();
  return r;
}

CrlRecord make_crl_record(std::string_view data, std::string name, std::vector<std::string> purposes,
                          std::int64_t installed_at) {
  refuse_private_keys(data);
  auto crl = parse_crl(data);
  if (!crl) throw Error(Code::kCrlInvalid, "input is not exactly one CRL (PEM or DER)");
  CrlRecord r;
  r.name = name.empty() ? name_from_issuer(X509_CRL_get_issuer(crl.get())) : std::move(name);
  r.purposes = std::move(purposes);
  std::sort(r.purposes.begin(), r.purposes.end());
  r.issuer = x509::rfc2253(X509_CRL_get_issuer(crl.get()));
  r.sha256 = x509::fingerprint(crl.get(), EVP_sha256());
  r.last_update = x509::to_epoch(X509_CRL_get0_lastUpdate(crl.get())).value_or(0);
  r.next_update = x509::to_epoch(X509_CRL_get0_nextUpdate(crl.get())).value_or(0);  // optional field
  r.installed_at = installed_at;
  r.pem = x509::pem(crl.get());
  if (r.pem.empty()) throw Error(Code::kCrlInvalid, "cannot encode the CRL");
  return r;
}

LegacyRecord make_legacy_record(const std::string& name, const Certificate& cert, std::int64_t installed_at) {
  CertInfo i = cert.info();
  return {name, i.sha256, i.subject, i.not_after, installed_at, cert.pem()};
}

PoolRecord make_pool_record(const std::string& host, bool staged, const Certificate& cert, std::int64_t installed_at) {
  CertInfo i = cert.info();
  return {host, staged, i.sha256, i.subject, i.not_after, installed_at, cert.pem()};
}

CertRecord vet_trusted(const Certificate& cert, CertType type, std::vector<std::string> purposes, const Config& cfg,
                       std::int64_t installed_at, std::optional<std::time_t> now) {
  if (type == CertType::kCa && !cert.info().is_ca)
    throw Error(Code::kNotACaCertificate,
                "'" + cert.info().subject + "' is not a CA certificate (needs basicConstraints CA:TRUE and keyCertSign); "
                "use --pinned to trust this peer certificate itself");
  if (type == CertType::kPinned && purposes.empty())
    throw Error(Code::kCertificateLacksPurpose, "a pinned certificate needs --purpose (pins are per purpose)");
  check_purposes(purposes, cfg);
  if (now) cert.check_validity(*now);
  return make_cert_record(cert, type, std::move(purposes), installed_at);
}

CrlRecord vet_crl(std::string_view data, std::string name, std::vector<std::string> purposes, const Config& cfg,
                  std::int64_t installed_at) {
  check_purposes(purposes, cfg);
  CrlRecord r = make_crl_record(data, std::move(name), std::move(purposes), installed_at);
  if (!layout::valid_file_name(r.name))
    throw Error(Code::kCrlNameInvalid, "CRL name '" + r.name + "' must use [A-Za-z0-9._-], not start with '.', "
                                       "and not look like an OpenSSL hash entry");
  return r;
}

LegacyRecord vet_legacy(const std::string& name, const Certificate& cert, std::int64_t installed_at,
                        std::optional<std::time_t> now) {
  if (!layout::valid_legacy_name(name))
    throw Error(Code::kCertificateNameInvalid,
                "certificate name '" + name + "' must use [A-Za-z0-9._-], not start with '.', and end in .pem");
  if (now) cert.check_validity(*now);
  return make_legacy_record(name, cert, installed_at);
}

PoolRecord vet_pool(const std::string& host, bool staged, const Certificate& cert, std::int64_t installed_at,
                    std::optional<std::time_t> now) {
  if (!valid_uuid(host)) throw Error(Code::kHostUuidInvalid, "'" + host + "' is not a host UUID (lower-case 8-4-4-4-12 hex)");
  if (now) cert.check_validity(*now);
  return make_pool_record(host, staged, cert, installed_at);
}

void check_crl_signature(const Database& db, const CrlRecord& r) {
  auto crl = parse_crl(r.pem);
  std::vector<const std::string*> pems;
  for (const auto& c : db.certs)
    if (c.type == CertType::kCa) pems.push_back(&c.pem);
  for (const auto& c : db.legacy) pems.push_back(&c.pem);
  bool issuer_known = false;
  for (const auto* pem : pems) {
    ossl::BioPtr b(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    ossl::X509Ptr ca(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    if (!ca || X509_NAME_cmp(X509_get_subject_name(ca.get()), X509_CRL_get_issuer(crl.get())) != 0) continue;
    issuer_known = true;
    if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) == 1) {
      ERR_clear_error();
      return;
    }
  }
  ERR_clear_error();
  if (issuer_known)
    throw Error(Code::kCrlSignatureInvalid,
                "the CRL names '" + r.issuer + "' as issuer but no installed CA of that name signed it");
}

}  // namespace ptrust
