#include "core/identity.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <cctype>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>

#include "core/cert.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/x509.h"

namespace ptrust::identity {

namespace {

[[noreturn]] void fail(Code code, const std::string& what) {
  ERR_clear_error();
  throw Error(code, what);
}

// Never prompts: an encrypted key fails to load (a daemon has no one to ask).
int no_password(char*, int, int, void*) { return -1; }

std::string bio_text(BIO* b) {
  char* p = nullptr;
  long n = BIO_get_mem_data(b, &p);
  return std::string(p, static_cast<size_t>(n));
}

void add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  ossl::X509ExtensionPtr ext(X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str()));
  if (!ext || X509_add_ext(cert, ext.get(), -1) != 1) fail(Code::kIoError, "cannot add extension " + value);
}

// Ed25519 signs without a separate digest.
const EVP_MD* digest_for(EVP_PKEY* k) { return EVP_PKEY_get_id(k) == EVP_PKEY_ED25519 ? nullptr : EVP_sha256(); }

bool valid_dns(std::string_view n) {
  if (n.empty() || n.size() > 253) return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '.' && c != '*') return false;
  return n.front() != '.' && n.front() != '-';
}

bool valid_ip(std::string_view ip) {
  std::string s(ip);
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

struct Block {
  std::string name;
  std::string der;
};

// The PEM blocks of `pem`, in order; anything that is not PEM (trailing garbage) refuses.
std::vector<Block> blocks(std::string_view pem, Code code, const std::string& what) {
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  if (!bio) throw std::bad_alloc();
  std::vector<Block> out;
  for (;;) {
    char *name = nullptr, *header = nullptr;
    unsigned char* data = nullptr;
    long len = 0;
    if (PEM_read_bio(bio.get(), &name, &header, &data, &len) != 1) break;
    out.push_back({name, std::string(reinterpret_cast<char*>(data), static_cast<size_t>(len))});
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(data);
  }
  ERR_clear_error();
  if (out.empty()) fail(code, what + " holds no PEM block");
  return out;
}

bool is_key_block(const std::string& n) { return n.find("PRIVATE KEY") != std::string::npos; }

ossl::PkeyPtr key_from_block(const Block& b, Code code, const std::string& what) {
  if (b.name == "ENCRYPTED PRIVATE KEY" || b.name.find("ENCRYPTED") != std::string::npos)
    fail(code, what + " holds an encrypted private key; decrypt it first (`openssl pkey -in KEY -out PLAIN`)");
  ossl::BioPtr out(BIO_new(BIO_s_mem()));
  if (!out || PEM_write_bio(out.get(), b.name.c_str(), "", reinterpret_cast<const unsigned char*>(b.der.data()),
                            static_cast<long>(b.der.size())) <= 0)
    throw std::bad_alloc();
  ossl::PkeyPtr k(PEM_read_bio_PrivateKey(out.get(), nullptr, no_password, nullptr));
  if (!k) fail(code, what + " holds a private key that does not parse (or is encrypted)");
  return k;
}

ossl::X509Ptr cert_from_block(const Block& b, Code code, const std::string& what) {
  auto p = reinterpret_cast<const unsigned char*>(b.der.data());
  ossl::X509Ptr x(d2i_X509(nullptr, &p, static_cast<long>(b.der.size())));
  if (!x || p != reinterpret_cast<const unsigned char*>(b.der.data()) + b.der.size())
    fail(code, what + " holds a certificate that does not parse");
  return x;
}

fs::Fd open_identity_dir(int root, bool create) {
  fs::Fd d = fs::open_dir(root, kDir, create);
  if (!d && create) throw Error(Code::kIoError, "cannot create " + std::string(kDir));
  return d;
}

}  // namespace

ossl::PkeyPtr generate_key(std::string_view t) {
  EVP_PKEY* k = nullptr;
  if (t == "rsa:2048") k = EVP_RSA_gen(2048);
  else if (t == "rsa:3072") k = EVP_RSA_gen(3072);
  else if (t == "ec:p256") k = EVP_EC_gen("P-256");
  else if (t == "ed25519") k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  else throw Error(Code::kUsage, "--key-type must be one of rsa:2048, rsa:3072, ec:p256, ed25519, not '" + std::string(t) + "'");
  if (!k) fail(Code::kIoError, "key generation failed (" + std::string(t) + ")");
  return ossl::PkeyPtr(k);
}

std::string key_pem(EVP_PKEY* key) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio_PrivateKey(b.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1)
    fail(Code::kIoError, "cannot encode the private key");
  return bio_text(b.get());
}

ossl::X509Ptr make_certificate(const CertProfile& p, EVP_PKEY* key, X509* issuer, EVP_PKEY* signer_key) {
  ossl::X509Ptr x(X509_new());
  if (!x || X509_set_version(x.get(), 2) != 1) throw std::bad_alloc();
  ASN1_INTEGER* sn = X509_get_serialNumber(x.get());
  if (p.serial != 0) {
    if (ASN1_INTEGER_set_uint64(sn, p.serial) != 1) throw std::bad_alloc();
  } else {
    unsigned char rnd[16];
    if (RAND_bytes(rnd, sizeof rnd) != 1) fail(Code::kIoError, "no randomness for a serial number");
    rnd[0] &= 0x7f;  // positive
    rnd[0] |= 0x01;  // 16 bytes, never a short encoding
    ossl::BnPtr bn(BN_bin2bn(rnd, sizeof rnd, nullptr));
    if (!bn || !BN_to_ASN1_INTEGER(bn.get(), sn)) throw std::bad_alloc();
  }
  time_t nb = static_cast<time_t>(p.not_before), na = static_cast<time_t>(p.not_after);
  if (!ASN1_TIME_set(X509_getm_notBefore(x.get()), nb) || !ASN1_TIME_set(X509_getm_notAfter(x.get()), na))
    throw std::bad_alloc();
  X509_NAME* name = X509_get_subject_name(x.get());
  if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, reinterpret_cast<const unsigned char*>(p.cn.c_str()), -1,
                                 -1, 0) != 1)
    fail(Code::kUsage, "cannot use '" + p.cn + "' as a common name");
  X509_set_issuer_name(x.get(), issuer ? X509_get_subject_name(issuer) : name);
  if (X509_set_pubkey(x.get(), key) != 1) throw std::bad_alloc();
  X509* iss = issuer ? issuer : x.get();
  add_ext(x.get(), iss, NID_subject_key_identifier, "hash");
  if (p.ca) {
    add_ext(x.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
    add_ext(x.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign");
  } else {
    add_ext(x.get(), iss, NID_authority_key_identifier, "keyid:always");
    add_ext(x.get(), iss, NID_basic_constraints, "critical,CA:FALSE");
    bool rsa = EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA;
    add_ext(x.get(), iss, NID_key_usage, rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature");
    add_ext(x.get(), iss, NID_ext_key_usage, "serverAuth,clientAuth");
  }
  std::string san;
  for (const auto& s : p.san) san += (san.empty() ? "" : ",") + s;
  if (!san.empty()) add_ext(x.get(), iss, NID_subject_alt_name, san);
  if (X509_sign(x.get(), signer_key, digest_for(signer_key)) <= 0) fail(Code::kIoError, "signing failed");
  return x;
}

std::vector<std::string> parse_san(std::string_view csv) {
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos <= csv.size()) {
    size_t comma = csv.find(',', pos);
    std::string_view e = csv.substr(pos, comma == std::string_view::npos ? csv.npos : comma - pos);
    pos = comma == std::string_view::npos ? csv.size() + 1 : comma + 1;
    if (e.substr(0, 4) == "DNS:" && valid_dns(e.substr(4))) out.emplace_back(e);
    else if (e.substr(0, 3) == "IP:" && valid_ip(e.substr(3))) out.emplace_back(e);
    else throw Error(Code::kUsage, "--san entries must be DNS:<name> or IP:<address>, not '" + std::string(e) + "'");
  }
  return out;
}

std::string_view to_string(Kind k) noexcept {
  switch (k) {
    case Kind::kServer: return "server";
    case Kind::kInternal: return "internal";
  }
  return "?";
}

std::optional<Kind> kind_from(std::string_view s) noexcept {
  if (s == "server") return Kind::kServer;
  if (s == "internal") return Kind::kInternal;
  return std::nullopt;
}

std::string_view file_name(Kind k) noexcept {
  switch (k) {
    case Kind::kServer: return "xapi-ssl.pem";
    case Kind::kInternal: return "xapi-pool-tls.pem";
  }
  return "?";
}

ossl::PkeyPtr parse_private_key(std::string_view pem) {
  std::vector<Block> bs = blocks(pem, Code::kHostKeyInvalid, "the key file");
  if (bs.size() != 1 || !is_key_block(bs[0].name))
    fail(Code::kHostKeyInvalid, "the key file must hold exactly one PEM private key, and nothing else");
  return key_from_block(bs[0], Code::kHostKeyInvalid, "the key file");
}

std::vector<ossl::X509Ptr> parse_certificates(std::string_view pem, const std::string& what) {
  refuse_private_keys(pem);  // PRIVATE_KEY_NOT_ALLOWED: a key belongs in --key only
  std::vector<ossl::X509Ptr> out;
  for (const auto& b : blocks(pem, Code::kTrustedCertificateInvalid, what)) {
    if (b.name != "CERTIFICATE") fail(Code::kTrustedCertificateInvalid, what + " holds a " + b.name + " block; only certificates belong there");
    out.push_back(cert_from_block(b, Code::kTrustedCertificateInvalid, what));
  }
  return out;
}

Identity parse_identity(std::string_view pem, const std::string& what) {
  Identity id;
  for (const auto& b : blocks(pem, Code::kStoreCorrupt, what)) {
    if (is_key_block(b.name)) {
      if (id.key) fail(Code::kStoreCorrupt, what + " holds two private keys");
      id.key = key_from_block(b, Code::kStoreCorrupt, what);
    } else if (b.name == "CERTIFICATE") {
      id.certs.push_back(cert_from_block(b, Code::kStoreCorrupt, what));
    } else {
      fail(Code::kStoreCorrupt, what + " holds a " + b.name + " block");
    }
  }
  if (!id.key || id.certs.empty()) fail(Code::kStoreCorrupt, what + " must hold a private key and a certificate");
  return id;
}

void vet_identity(const Identity& id, std::time_t now) {
  X509* leaf = id.certs.front().get();
  Certificate::from_x509(leaf).check_validity(now);
  if (X509_check_ca(leaf) != 0)
    fail(Code::kHostCertificateIsCa, "the certificate (" + x509::rfc2253(X509_get_subject_name(leaf)) +
                                         ") is a CA certificate; a host identity must be a leaf");
  if (X509_check_private_key(leaf, id.key.get()) != 1)
    fail(Code::kHostKeyMismatch, "the private key does not belong to the certificate (" +
                                     x509::rfc2253(X509_get_subject_name(leaf)) + ")");
  for (size_t i = 1; i < id.certs.size(); ++i) {
    X509* child = id.certs[i - 1].get();
    X509* parent = id.certs[i].get();
    EVP_PKEY* pk = X509_get0_pubkey(parent);
    if (X509_check_issued(parent, child) != X509_V_OK || !pk || X509_verify(child, pk) != 1)
      fail(Code::kHostChainInvalid, "chain certificate " + std::to_string(i) + " (" +
                                        x509::rfc2253(X509_get_subject_name(parent)) + ") did not issue " +
                                        x509::rfc2253(X509_get_subject_name(child)) +
                                        "; give the chain leaf-first, each certificate followed by its issuer");
  }
}

std::string identity_pem(const Identity& id) {
  std::string out = key_pem(id.key.get());
  for (const auto& c : id.certs) out += x509::pem(c.get());
  return out;
}

std::optional<std::string> read_file(int root, std::string_view name) {
  fs::Fd d = open_identity_dir(root, false);
  if (!d) return std::nullopt;
  return fs::read_at(d.get(), std::string(name), 1u << 20);
}

void write_file(int root, std::string_view name, std::string_view data) {
  fs::Fd d = open_identity_dir(root, true);
  // A writer killed half-way leaves a 0400 temp file holding a key: removed by the next one.
  for (const auto& e : fs::list_dir(d.get()))
    if (e.name.rfind(fs::kTempPrefix, 0) == 0 && e.type == S_IFREG) fs::remove_at(d.get(), e.name);
  fs::write_atomic(d.get(), std::string(name), data, 0400);
}

void rename_file(int root, std::string_view from, std::string_view to) {
  fs::Fd d = open_identity_dir(root, false);
  if (!d) throw Error(Code::kCertificateDoesNotExist, std::string(kDir) + " does not exist");
  auto st = fs::stat_at(d.get(), std::string(from));
  if (!st) throw Error(Code::kCertificateDoesNotExist, std::string(kDir) + "/" + std::string(from) + " does not exist");
  if (!S_ISREG(st->st_mode)) throw Error(Code::kStoreUnsafe, std::string(from) + " is not a regular file");
  if (::renameat(d.get(), std::string(from).c_str(), d.get(), std::string(to).c_str()) != 0)
    throw_errno(Code::kIoError, "cannot rename " + std::string(from));
  if (::fsync(d.get()) != 0) throw_errno(Code::kIoError, "cannot fsync " + std::string(kDir));
}

}  // namespace ptrust::identity
