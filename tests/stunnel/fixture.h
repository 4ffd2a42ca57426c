// Real stunnel (Debian stunnel4, 5.68) in front of real `openssl s_server`, on 127.0.0.1,
// in a temporary root. Every process started here is killed by its RAII owner.
#pragma once

#include <sys/types.h>

#include <ostream>
#include <string>
#include <vector>

#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

// Generated once per test binary. Host names: leaf.test (and 127.0.0.1).
struct StunnelPki {
  Issued root, leaf, revoked;        // licensing CA, a good leaf, a revoked leaf (both issued by root)
  Issued other_ca, other_leaf;       // trusted nowhere; other_leaf has leaf's names
  Issued general_ca, general_leaf;   // the general store
  Issued pinned, impostor;           // self-signed peer.test; impostor: same subject, other key
  Issued inter, inter_leaf;          // root -> inter (revoked by root) -> inter_leaf (leaf.test)
  ossl::X509CrlPtr crl;              // root's CRL revoking `revoked` and `inter`
  ossl::X509CrlPtr inter_crl;        // inter's CRL, revoking nothing
  ossl::X509CrlPtr other_crl;        // other_ca's CRL, revoking nothing
  ossl::X509CrlPtr general_crl;      // general_ca's CRL, revoking nothing
  Issued cn_only;                    // root -> CN=leaf.test, no subjectAltName
  Issued pinned_reissued;            // pinned's subject and key, new serial and dates, self-signed
  Issued pinned_renamed;             // pinned's key, CN=renamed.test, issued by pinned
  Issued leaf_reissued;              // leaf's subject, names and key, new serial, issued by root
  static const StunnelPki& get();
};


// A temporary root declaring licensing, ldaps and peer, with the PKI as PEM files.
class Env {
 public:
  Env();
  const std::string& root() const { return root_; }
  std::string path(const std::string& rel) const { return dir_ / rel; }
  std::string pem(const std::string& name) const { return dir_ / ("pki/" + name + ".pem"); }
  std::string key(const std::string& name) const { return dir_ / ("pki/" + name + ".key"); }
  std::string config_file() const { return root_ + "/etc/ptrust/ptrust.yaml"; }
  // Replaces ptrust.yaml: the three purposes plus `extra` (e.g. a stunnel: section).
  void write_config(const std::string& extra) const;

  std::string install(const std::string& name, const std::string& type, const std::string& purposes = "") const;
  void uninstall(const std::string& uuid) const;
  // pki/<name>.crl via `ptrust crl install` as <name>.crl (--purpose `purposes` when given).
  void install_crl(const std::string& name = "root", const std::string& purposes = "") const;
  RunResult ptrust(const std::vector<std::string>& args) const;

 private:
  TempDir dir_;
  std::string root_;
};

// `openssl s_server -www` on a free port with the named cert/key, killed on destruction.
class TlsServer {
 public:
  // Serves pki/<name>.pem (+ pki/<chain>.pem as its chain when given).
  TlsServer(const Env& env, const std::string& name, const std::string& chain = "");
  int port() const { return server_.port(); }
  std::string address() const { return server_.address(); }

 private:
  OpensslServer server_;
};

// stunnel CONF in the foreground, output to `log`, killed on destruction. `env` adds
// "K=V" entries (OPENSSL_CONF=...); PTRUST_* and OPENSSL_* are cleared otherwise.
class Stunnel {
 public:
  Stunnel(const std::string& conf, const std::string& log, const std::vector<std::string>& env = {});
  ~Stunnel();
  Stunnel(const Stunnel&) = delete;
  Stunnel& operator=(const Stunnel&) = delete;

  // Waits (at most 10 s) until configuration number `n` is loaded and listening (for a
  // reload, n > 1: until `services` sockets are bound again); false if stunnel exited or
  // the time ran out.
  bool wait_configured(int n = 1, int services = 0);
  // Waits (at most 10 s) for the process to exit; its exit status, or -1 if still running.
  int wait_exit();
  std::string log() const;
  pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int status_ = -1;
  std::string log_;
};

// Global stunnel lines for a test instance: foreground, debug log to `log`, pid file.
std::string stunnel_globals(const std::string& log, const std::string& pidfile);

enum class Outcome { kEstablished, kRefused, kOther };
const char* to_string(Outcome o);
inline std::ostream& operator<<(std::ostream& os, Outcome o) { return os << to_string(o); }

// One request through a tunnel: connects to 127.0.0.1:`port`, sends an HTTP request and
// reads to EOF (at most 10 s). Established: s_server's "HTTP/1.0 200 ok" came back.
// Refused: nothing came back and stunnel logged one more certificate rejection.
Outcome through(int port, const Stunnel& st);

}  // namespace ptrust::testing
