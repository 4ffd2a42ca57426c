// Shared fixtures of the provider tests: one generated PKI, a store root populated
// through the real `ptrust` CLI, and runners for the real `openssl` binary.
#pragma once

#include <sys/types.h>

#include <string>
#include <utility>
#include <vector>

#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

// Generated once per test binary.
struct Pki {
  Issued root, inter, leaf, revoked;  // licensing: root -> inter -> leaf / revoked
  Issued other_ca, other_leaf;        // trusted nowhere
  Issued general_ca, general_leaf;    // the general store
  Issued pinned, impostor;            // self-signed leaf pinned for `peer`; same subject, other key
  ossl::X509CrlPtr crl;               // signed by inter, revokes `revoked`
  static const Pki& get();
};

// (type, DER) of one object a store serves: 'C' certificate, 'R' CRL.
using Obj = std::pair<char, std::string>;
Obj cert_obj(const Issued& c);
Obj crl_obj(X509_CRL* c);

// A temporary root with purposes licensing, ldaps and peer declared, and PEM files of the
// whole PKI under <dir>/pki/<name>.pem (+ <name>.key). Populated by populate():
//   licensing: CA `root`   ldaps: nothing (falls to general)   general: `general_ca`
//   peer: pinned `pinned` and CA `root` (pinned wins)           CRL `inter.crl`
class StoreRoot {
 public:
  StoreRoot();
  const std::string& path() const { return root_; }
  const std::string& dir() const { return dir_.path(); }
  std::string pki(const std::string& name) const { return dir_.path() + "/pki/" + name; }
  std::string bundle(const std::string& name) const { return root_ + "/etc/trusted-certs/" + name; }
  std::string crl_dir() const { return root_ + "/etc/stunnel/crls"; }

  void populate();
  std::string install(const std::string& pem_name, const std::string& type, const std::string& purposes = "");
  void uninstall(const std::string& uuid);
  void add_crl(const std::string& name, X509_CRL* crl);

  std::string root_uuid, general_uuid, pinned_uuid, peer_ca_uuid;

 private:
  TempDir dir_;
  std::string root_;
};

// The provider arguments of the openssl CLI.
std::vector<std::string> provider_args();

// Runs `openssl args...` with a clean ptrust/OpenSSL environment plus `env` ("K=V"),
// in `cwd` when given.
RunResult openssl(const std::vector<std::string>& args, const std::vector<std::string>& env = {},
                  const std::string& cwd = "");

// Objects in `openssl storeutl` output (PEM blocks), in order.
std::vector<Obj> parse_storeutl(const std::string& out);

// `openssl s_server -www -naccept 1` on 127.0.0.1, killed on destruction.
class Server {
 public:
  Server(const std::string& cert, const std::string& key, const std::string& chain);
  ~Server();
  int port() const { return server_.port(); }

 private:
  std::string log_;
  OpensslServer server_;
};

}  // namespace ptrust::testing
