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
  r.subject_hash = static_cast<std::uint32_t>(X509_NAME_hash_ex(X509_get_subject_name(cert.get()), nullptr, nullptr, nullptr));
  return r;
}

CrlRecord make_crl_record(std::string_view data, std::string name, std::vector<std::string> purposes,
                          std::int64_t installed_at) {
  refuse_private_keys(data);
  auto crl = parse_crl(data);
  if (!crl) throw Error(Code::kCrlInvalid, "input is not exactly one CRL (PEM or DER)");
  // The two integer extensions the replacement and delta rules read must decode.
  for (int nid : {NID_crl_number, NID_delta_crl}) {
    int crit = -1;
    auto* n = static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(crl.get(), nid, &crit, nullptr));
    ASN1_INTEGER_free(n);
    if (!n && crit != -1)
      throw Error(Code::kCrlInvalid, std::string("the CRL's ") + OBJ_nid2ln(nid) + " extension is malformed or repeated");
  }
  CrlRecord r;
  r.delta_base = x509::crl_delta_base(crl.get());
  if (!r.delta_base.empty() && x509::crl_number(crl.get()).empty())
    throw Error(Code::kCrlInvalid, "a delta CRL must carry a crlNumber (RFC 5280 5.2.4)");
  if (name.empty()) {
    name = name_from_issuer(X509_CRL_get_issuer(crl.get()));
    if (!r.delta_base.empty()) name.insert(name.size() - 4, "-delta");  // beside its base: X.crl, X-delta.crl
  }
  r.name = std::move(name);
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

std::vector<Certificate> parse_crl_issuers(std::string_view input) {
  refuse_private_keys(input);
  std::vector<Certificate> out;
  if (input.find("-----BEGIN") == std::string_view::npos) {  // DER: exactly one certificate
    out.push_back(Certificate::parse(input));
    return out;
  }
  // PEM: each block a certificate of its own (anything else is refused as `install` refuses it).
  for (size_t at = 0; (at = input.find("-----BEGIN ", at)) != std::string_view::npos;) {
    size_t end = input.find("-----END ", at);
    size_t stop = end == std::string_view::npos ? end : input.find("-----", end + 9);
    if (stop == std::string_view::npos) throw Error(Code::kTrustedCertificateInvalid, "a PEM block is not closed");
    try {
      out.push_back(Certificate::parse(input.substr(at, stop + 5 - at)));
    } catch (const Error& e) {
      throw Error(e.code(), "block " + std::to_string(out.size() + 1) + ": " + e.what());
    }
    at = stop + 5;
  }
  return out;
}

std::vector<const std::string*> crl_signer_candidates(const Database& db, const std::string& issuer) {
  // Compared on the names' keys (text the records already hold): nothing is decoded here, so
  // the cost is that of the few certificates that carry the issuer's name, not of the store.
  const std::string key = x509::name_key(issuer);
  std::vector<const std::string*> out;
  for (const auto& c : db.certs)
    if (c.type == CertType::kCa && x509::name_key(c.subject) == key) out.push_back(&c.pem);
  for (const auto& c : db.legacy)
    if (x509::name_key(c.subject) == key) out.push_back(&c.pem);
  for (const auto& c : db.crls)
    if (!c.issuer_pem.empty() && x509::name_key(c.issuer) == key) out.push_back(&c.issuer_pem);
  return out;
}

CrlSigner check_crl_signature(const Database& db, const CrlRecord& r, const std::vector<Certificate>& given) {
  auto crl = parse_crl(r.pem);
  if (!crl) throw Error(Code::kCrlInvalid, "the CRL does not parse");
  const X509_NAME* issuer = X509_CRL_get_issuer(crl.get());
  struct Clear {
    ~Clear() { ERR_clear_error(); }
  } clear;
  CrlSigner out;
  if (!given.empty()) {
    // --issuer: only these, and one of them must have signed it.
    bool named = false;
    for (const auto& c : given) {
      if (X509_NAME_cmp(X509_get_subject_name(c.get()), issuer) != 0) continue;
      named = true;
      if (X509_CRL_verify(crl.get(), X509_get0_pubkey(c.get())) == 1) {
        out.how = CrlSigner::How::kGivenIssuer;
        out.pem = c.pem();
        return out;
      }
    }
    throw Error(Code::kCrlSignatureInvalid,
                named ? "the --issuer certificate named '" + r.issuer + "' did not sign this CRL"
                      : "no --issuer certificate is named '" + r.issuer + "', the CRL's issuer");
  }
  bool issuer_known = false;
  for (const std::string* pem : crl_signer_candidates(db, r.issuer)) {
    ossl::BioPtr b(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
    ossl::X509Ptr ca(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    if (!ca || X509_NAME_cmp(X509_get_subject_name(ca.get()), issuer) != 0) continue;
    issuer_known = true;
    if (X509_CRL_verify(crl.get(), X509_get0_pubkey(ca.get())) == 1) {
      // An --issuer certificate recorded with an earlier CRL of this issuer stays recorded.
      bool recorded = std::any_of(db.crls.begin(), db.crls.end(), [&](const CrlRecord& o) { return &o.issuer_pem == pem; });
      out.how = recorded ? CrlSigner::How::kRecordedIssuer : CrlSigner::How::kInstalledCa;
      if (recorded) out.pem = *pem;
      return out;
    }
  }
  if (issuer_known)
    throw Error(Code::kCrlSignatureInvalid,
                "the CRL names '" + r.issuer + "' as issuer but no installed CA (or --issuer certificate recorded "
                "with an earlier CRL) of that name signed it; give its signer with --issuer FILE");
  return out;  // kUnchecked
}

}  // namespace ptrust
