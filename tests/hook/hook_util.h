// Shared by the hook tests and benchmarks: chains per key kind, a ptrust root with test
// purposes, and in-process TLS handshakes over a BIO pair.
#pragma once

#include <string>
#include <vector>

#include "core/layout.h"
#include "core/ossl.h"
#include "ptrust/ptrust.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

using SessionPtr = ossl::Ptr<SSL_SESSION, SSL_SESSION_free>;

const char* key_name(KeyKind k);

// root -> intermediate -> leaf (DNS server.test, IP 127.0.0.1), all of one key kind.
struct Chain {
  Issued root, inter, leaf;
};
Chain make_chain(KeyKind kind, const std::string& tag);

// A ptrust root in a temporary directory with a configuration declaring the test purposes:
//   licensing (defaults), off-leaf, off-chain, ifp-leaf, ifp-chain, req-leaf, req-chain,
//   expired-ok (allow-expired-crl), report (report-only), spki (pin-match spki),
//   relaxed (enforce-pin-validity false).
class Root {
 public:
  Root();
  const std::string& path() const { return dir_.path(); }
  const std::string& config() const { return config_; }
  // Installs through core's Store (as `ptrust install`); returns the UUID.
  std::string install(X509* cert, CertType type, const std::vector<std::string>& purposes);
  void uninstall(const std::string& uuid);
  // Writes a CRL where `ptrust crl install` puts it and bumps the generation.
  void write_crl(const std::string& name, X509_CRL* crl);
  // Replaces a bundle by hand (corruption tests) and bumps the generation.
  void write_bundle(const std::string& name, const std::string& content);
  void bump();
  PTRUST_CTX* open() const;  // new reference; aborts the test on failure

 private:
  TempDir dir_;
  std::string config_;
};

ossl::SslCtxPtr server_ctx(const Issued& leaf, const std::vector<const Issued*>& extra, int version);
ossl::SslCtxPtr client_ctx(int version);

struct Outcome {
  bool ok = false;           // both sides completed the handshake
  bool have_result = false;  // ptrust_SSL_get_result returned 1
  PTRUST_RESULT result{};
  bool reused = false;
  long verify_result = -1;
  bool server_have_result = false;  // ptrust_SSL_get_result on the server's SSL returned 1
  PTRUST_RESULT server_result{};
  SessionPtr session;  // the client's session after the handshake (tickets processed)
};

// One handshake between a new client SSL of `client` and a new server SSL of `server`.
// `host` / `ip` name the peer on the client (empty: not named).
Outcome handshake(SSL_CTX* client, SSL_CTX* server, const std::string& host = "", const std::string& ip = "",
                  SSL_SESSION* resume = nullptr);

std::string pem_of(const std::vector<const Issued*>& certs);

// `openssl s_server -www` on 127.0.0.1 (a free port), serving `leaf` + `extra` with the
// given TLS version (TLS1_2_VERSION / TLS1_3_VERSION). Killed on destruction.
class SServer {
 public:
  SServer(const TempDir& dir, const Issued& leaf, const std::vector<const Issued*>& extra, int version);
  int port() const { return server_.port(); }
  std::string target() const { return server_.address(); }

 private:
  OpensslServer server_;
};

}  // namespace ptrust::testing
