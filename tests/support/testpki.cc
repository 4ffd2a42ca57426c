#include "tests/support/testpki.h"

#include <sys/vfs.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace ptrust::testing {

namespace {

void check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("testpki: ") + what);
}

std::string bio_string(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<size_t>(n));
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  check(ext != nullptr, "extension");
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

const EVP_MD* digest_for(EVP_PKEY* k) {
  return EVP_PKEY_get_id(k) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256();
}

Issued build(const CertSpec& spec, ossl::PkeyPtr key, X509* issuer_cert, EVP_PKEY* issuer_key) {
  ossl::X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  long serial = spec.serial;
  if (serial == 0) {
    RAND_bytes(reinterpret_cast<unsigned char*>(&serial), sizeof serial);
    serial = (serial & 0x7fffffffffffL) | 1;
  }
  ASN1_INTEGER_set_int64(X509_get_serialNumber(x.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), spec.not_before);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), spec.not_after);
  X509_NAME* name = X509_get_subject_name(x.get());
  if (!spec.org.empty())
    X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(spec.org.c_str()), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(spec.cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), issuer_cert ? X509_get_subject_name(issuer_cert) : name);
  X509_set_pubkey(x.get(), key.get());
  X509* iss = issuer_cert ? issuer_cert : x.get();
  add_ext(x.get(), iss, NID_subject_key_identifier, "hash");
  if (issuer_cert) add_ext(x.get(), iss, NID_authority_key_identifier, "keyid:always");
  if (spec.ca) {
    std::string bc = "critical,CA:TRUE";
    if (spec.path_len >= 0) bc += ",pathlen:" + std::to_string(spec.path_len);
    add_ext(x.get(), iss, NID_basic_constraints, bc);
    if (spec.key_usage) add_ext(x.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    if (spec.key_usage) add_ext(x.get(), iss, NID_key_usage, "critical,digitalSignature,keyEncipherment");
    add_ext(x.get(), iss, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  std::string san;
  for (const auto& d : spec.dns) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& i : spec.ips) san += (san.empty() ? "" : ",") + std::string("IP:") + i;
  if (!san.empty()) add_ext(x.get(), iss, NID_subject_alt_name, san);
  EVP_PKEY* signer = issuer_key ? issuer_key : key.get();
  check(X509_sign(x.get(), signer, digest_for(signer)) > 0, "sign");
  return Issued{std::move(x), std::move(key)};
}

}  // namespace

std::string Issued::pem() const {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(b.get(), cert.get());
  return bio_string(b.get());
}

std::string Issued::der() const {
  unsigned char* out = nullptr;
  int n = i2d_X509(cert.get(), &out);
  std::string s(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  OPENSSL_free(out);
  return s;
}

std::string Issued::key_pem() const {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(b.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr);
  return bio_string(b.get());
}

ossl::PkeyPtr make_key(KeyKind kind) {
  EVP_PKEY* k = nullptr;
  switch (kind) {
    case KeyKind::kRsa2048: k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(2048)); break;
    case KeyKind::kP256: k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256"); break;
    case KeyKind::kEd25519: k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"); break;
  }
  check(k != nullptr, "keygen");
  return ossl::PkeyPtr(k);
}

Issued self_signed(const CertSpec& spec, KeyKind kind) { return build(spec, make_key(kind), nullptr, nullptr); }

Issued issue(const CertSpec& spec, const Issued& issuer, KeyKind kind) {
  return build(spec, make_key(kind), issuer.cert.get(), issuer.key.get());
}

Issued issue_with_key(const CertSpec& spec, const Issued& issuer, ossl::PkeyPtr key) {
  return build(spec, std::move(key), issuer.cert.get(), issuer.key.get());
}

ossl::X509CrlPtr make_crl(const Issued& issuer, const std::vector<X509*>& revoked, long last_update, long next_update) {
  return make_crl_spec(issuer, revoked, {.last_update = last_update, .next_update = next_update});
}

ossl::X509CrlPtr make_crl_spec(const Issued& issuer, const std::vector<X509*>& revoked, const CrlSpec& spec) {
  const long last_update = spec.last_update, next_update = spec.next_update;
  ossl::X509CrlPtr crl(X509_CRL_new());
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(issuer.cert.get()));
  ossl::Ptr<ASN1_TIME, ASN1_TIME_free> lu(X509_gmtime_adj(nullptr, last_update)), nu(X509_gmtime_adj(nullptr, next_update));
  X509_CRL_set1_lastUpdate(crl.get(), lu.get());
  X509_CRL_set1_nextUpdate(crl.get(), nu.get());
  for (X509* r : revoked) {
    X509_REVOKED* rev = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(rev, X509_get_serialNumber(r));
    ossl::Ptr<ASN1_TIME, ASN1_TIME_free> when(X509_gmtime_adj(nullptr, -60));
    X509_REVOKED_set_revocationDate(rev, when.get());
    X509_CRL_add0_revoked(crl.get(), rev);
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer.cert.get(), nullptr, nullptr, crl.get(), 0);
  if (X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always")) {
    X509_CRL_add_ext(crl.get(), ext, -1);
    X509_EXTENSION_free(ext);
  }
  for (auto [nid, value] : {std::pair{NID_crl_number, spec.number}, std::pair{NID_delta_crl, spec.delta_base}}) {
    if (value < 0) continue;
    ossl::Ptr<ASN1_INTEGER, ASN1_INTEGER_free> n(ASN1_INTEGER_new());
    ASN1_INTEGER_set(n.get(), value);
    check(X509_CRL_add1_ext_i2d(crl.get(), nid, n.get(), nid == NID_delta_crl, 0) == 1, "crl ext");
  }
  if (!spec.freshest.empty()) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_freshest_crl, spec.freshest.c_str());
    check(ext != nullptr && X509_CRL_add_ext(crl.get(), ext, -1) == 1, "crl freshest");
    X509_EXTENSION_free(ext);
  }
  if (!spec.idp.empty()) {
    X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, NID_issuing_distribution_point, spec.idp.c_str());
    check(ext != nullptr && X509_CRL_add_ext(crl.get(), ext, -1) == 1, "crl idp");
    X509_EXTENSION_free(ext);
  }
  X509_CRL_sort(crl.get());
  check(X509_CRL_sign(crl.get(), issuer.key.get(), digest_for(issuer.key.get())) > 0, "crl sign");
  return crl;
}

std::string crl_pem(X509_CRL* crl) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_CRL(b.get(), crl);
  return bio_string(b.get());
}

std::string crl_der(X509_CRL* crl) {
  unsigned char* out = nullptr;
  int n = i2d_X509_CRL(crl, &out);
  std::string s(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  OPENSSL_free(out);
  return s;
}

std::string ca_with_key_pem(const std::string& cn, long serial, EVP_PKEY* key, long days) {
  ossl::X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), serial);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 86400L * days);
  X509_NAME* name = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), name);
  X509_set_pubkey(x.get(), key);
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x.get(), x.get(), nullptr, nullptr, 0);
  ossl::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, NID_basic_constraints, "critical,CA:TRUE"));
  if (!ext || !X509_add_ext(x.get(), ext.get(), -1) || X509_sign(x.get(), key, EVP_sha256()) <= 0)
    throw std::runtime_error("cannot make CA certificate " + cn);
  ossl::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), x.get());
  char* d = nullptr;
  long len = BIO_get_mem_data(bio.get(), &d);
  return std::string(d, static_cast<size_t>(len));
}

std::string csr_pem(EVP_PKEY* key, const std::string& cn, bool request_ca, const std::string& request_san) {
  ossl::Ptr<X509_REQ, X509_REQ_free> req(X509_REQ_new());
  check(req != nullptr, "csr");
  X509_REQ_set_version(req.get(), 0);
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req.get()), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req.get(), key);
  STACK_OF(X509_EXTENSION)* exts = sk_X509_EXTENSION_new_null();
  if (request_ca) sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE"));
  if (!request_san.empty())
    sk_X509_EXTENSION_push(exts, X509V3_EXT_conf_nid(nullptr, nullptr, NID_subject_alt_name, request_san.c_str()));
  if (sk_X509_EXTENSION_num(exts) > 0) X509_REQ_add_extensions(req.get(), exts);
  sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
  check(X509_REQ_sign(req.get(), key, digest_for(key)) > 0, "csr sign");
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509_REQ(b.get(), req.get());
  return bio_string(b.get());
}

void write_file(const std::string& path, const std::string& content) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  check(static_cast<bool>(f), "open for write");
  f << content;
  check(static_cast<bool>(f), "write");
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  check(static_cast<bool>(f), "open for read");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TempDir::TempDir() : TempDir(std::filesystem::temp_directory_path().string()) {}

TempDir::TempDir(const std::string& parent) {
  std::string tmpl = (std::filesystem::path(parent) / "ptrust-test-XXXXXX").string();
  check(::mkdtemp(tmpl.data()) != nullptr, "mkdtemp");
  path_ = tmpl;
}

std::string memory_tmp() {
  struct statfs fs;
  if (::statfs("/dev/shm", &fs) == 0 && fs.f_type == 0x01021994 /* TMPFS_MAGIC */ && ::access("/dev/shm", W_OK) == 0)
    return "/dev/shm";
  return std::filesystem::temp_directory_path().string();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::permissions(path_, std::filesystem::perms::owner_all, std::filesystem::perm_options::add, ec);
  std::filesystem::remove_all(path_, ec);
}

}  // namespace ptrust::testing
