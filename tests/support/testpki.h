// A small PKI made in the test run: keys, CAs, intermediates, leaves, CRLs.
// Nothing opaque is checked in; every fixture is generated here.
#pragma once

#include <string>
#include <vector>

#include "core/ossl.h"

namespace ptrust::testing {

enum class KeyKind { kRsa2048, kP256, kEd25519 };

struct CertSpec {
  std::string cn = "test";
  std::string org;                   // optional O=
  bool ca = false;
  int path_len = -1;                 // CA only; -1 = unlimited
  bool key_usage = true;             // add keyUsage (keyCertSign+cRLSign for CAs)
  std::vector<std::string> dns;      // subjectAltName DNS entries
  std::vector<std::string> ips;      // subjectAltName IP entries
  long not_before = -3600;           // seconds relative to now
  long not_after = 30L * 24 * 3600;  // seconds relative to now
  long serial = 0;                   // 0 = random
};

struct Issued {
  ossl::X509Ptr cert;
  ossl::PkeyPtr key;
  std::string pem() const;
  std::string der() const;
  std::string key_pem() const;
};

ossl::PkeyPtr make_key(KeyKind kind);
Issued self_signed(const CertSpec& spec, KeyKind kind = KeyKind::kP256);
Issued issue(const CertSpec& spec, const Issued& issuer, KeyKind kind = KeyKind::kP256);
// Same subject and key-usage shape as `spec`, new key: an impostor or a rollover.
Issued issue_with_key(const CertSpec& spec, const Issued& issuer, ossl::PkeyPtr key);

// A CRL signed by `issuer` revoking `revoked`; times relative to now.
ossl::X509CrlPtr make_crl(const Issued& issuer, const std::vector<X509*>& revoked, long last_update = -3600,
                          long next_update = 7L * 24 * 3600);
// The same with a crlNumber and, for a delta CRL, a deltaCRLIndicator.
struct CrlSpec {
  long last_update = -3600;          // seconds relative to now
  long next_update = 7L * 24 * 3600;
  long number = -1;                  // crlNumber; -1 = none
  long delta_base = -1;              // BaseCRLNumber; -1 = a complete CRL
  std::string idp;                   // issuingDistributionPoint in openssl.cnf syntax ("fullname:URI:..."); "" = none
  std::string freshest;              // freshestCRL (where deltas are) in openssl.cnf syntax ("URI:..."); "" = none
};
ossl::X509CrlPtr make_crl_spec(const Issued& issuer, const std::vector<X509*>& revoked, const CrlSpec& spec);
std::string crl_pem(X509_CRL* crl);
std::string crl_der(X509_CRL* crl);

// A self-signed CA certificate (CN `cn`, serial `serial`) signed by `key`, in PEM: for
// stores of thousands of CAs, where making a key per certificate would dominate.
std::string ca_with_key_pem(const std::string& cn, long serial, EVP_PKEY* key, long days);

// A certificate signing request for `key` with subject CN `cn`, signed by `key`. `request_ca`
// and `request_san` ask for extensions a CA must not copy (CA:TRUE, other names).
std::string csr_pem(EVP_PKEY* key, const std::string& cn, bool request_ca = false, const std::string& request_san = "");

void write_file(const std::string& path, const std::string& content);
std::string read_file(const std::string& path);

// /dev/shm when it is a writable tmpfs, else the usual temporary directory: for tests of
// locking and of processes killed mid-write, where fsync (which only matters for power loss)
// would dominate the wall time.
std::string memory_tmp();

// A temporary directory removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  explicit TempDir(const std::string& parent);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

}  // namespace ptrust::testing
