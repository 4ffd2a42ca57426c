#include "tests/hook/hook_util.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>
#include <fcntl.h>
#include <stdexcept>

#include "core/cert.h"
#include "core/crl.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/store.h"

namespace ptrust::testing {

namespace {

void check(bool ok, const std::string& what) {
  if (!ok) {
    ERR_print_errors_fp(stderr);
    throw std::runtime_error("hook_util: " + what);
  }
}

constexpr const char* kConfig = R"(purposes:
  licensing: {}
  off-leaf: { crl-policy: "off", crl-scope: leaf }
  off-chain: { crl-policy: "off", crl-scope: chain }
  ifp-leaf: { crl-policy: if-present, crl-scope: leaf }
  ifp-chain: { crl-policy: if-present, crl-scope: chain }
  req-leaf: { crl-policy: require, crl-scope: leaf }
  req-chain: { crl-policy: require, crl-scope: chain }
  expired-ok: { crl-policy: if-present, allow-expired-crl: true }
  report: { report-only: true }
  spki: { pin-match: spki }
  relaxed: { enforce-pin-validity: false }
)";

}  // namespace

const char* key_name(KeyKind k) {
  switch (k) {
    case KeyKind::kRsa2048: return "RSA";
    case KeyKind::kP256: return "ECDSA";
    case KeyKind::kEd25519: return "Ed25519";
  }
  return "?";
}

Chain make_chain(KeyKind kind, const std::string& tag) {
  CertSpec r;
  r.cn = tag + " Root";
  r.ca = true;
  Chain c{self_signed(r, kind), {}, {}};
  CertSpec i;
  i.cn = tag + " Intermediate";
  i.ca = true;
  c.inter = issue(i, c.root, kind);
  CertSpec l;
  l.cn = "server.test";
  l.dns = {"server.test"};
  l.ips = {"127.0.0.1"};
  c.leaf = issue(l, c.inter, kind);
  return c;
}

Root::Root() : config_(dir_ / "ptrust.yaml") {
  write_file(config_, kConfig);
  std::filesystem::create_directories(dir_ / "etc/trusted-certs");
  std::filesystem::create_directories(dir_ / std::string(layout::kStateDir));
  bump();  // readers map the generation file from the start
}

std::string Root::install(X509* cert, CertType type, const std::vector<std::string>& purposes) {
  Store store(open_context(path(), config_));
  InstallRequest req{type, purposes};
  return store.install(Certificate::from_x509(cert), req, std::time(nullptr)).uuid;
}

void Root::uninstall(const std::string& uuid) {
  Store store(open_context(path(), config_));
  store.uninstall(uuid, false);
}

void Root::bump() {
  fs::Fd root = fs::open_root(path());
  fs::Fd state = fs::open_dir(root.get(), layout::kStateDir, true);
  begin_change(state.get());
  end_change(state.get());
}

void Root::write_crl(const std::string& name, X509_CRL* crl) {
  std::filesystem::create_directories(dir_ / std::string(layout::kCrlDir));
  bump();
  write_file(dir_ / (std::string(layout::kCrlDir) + "/" + name), crl_pem(crl));
  bump();
}

void Root::write_bundle(const std::string& name, const std::string& content) {
  bump();
  std::string p = dir_ / ("etc/trusted-certs/" + name);
  std::filesystem::remove_all(p);
  write_file(p, content);
  // A bundle goes with its store directory (one without the other is a damaged store).
  if (auto key = layout::parse_bundle_file(name)) {
    std::string dir = dir_ / ("etc/trusted-certs/" + layout::store_dir(*key));
    std::filesystem::create_directories(dir);
    write_file(dir + "/hand-written.pem", content);
  }
  bump();
}

PTRUST_CTX* Root::open() const {
  char err[256];
  PTRUST_CTX* c = ptrust_ctx_new(path().c_str(), config_.c_str(), err, sizeof err);
  check(c != nullptr, std::string("ptrust_ctx_new: ") + err);
  return c;
}

ossl::SslCtxPtr server_ctx(const Issued& leaf, const std::vector<const Issued*>& extra, int version) {
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_server_method()));
  check(ctx != nullptr, "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), version);
  SSL_CTX_set_max_proto_version(ctx.get(), version);
  check(SSL_CTX_use_certificate(ctx.get(), leaf.cert.get()) == 1, "use cert");
  check(SSL_CTX_use_PrivateKey(ctx.get(), leaf.key.get()) == 1, "use key");
  for (const Issued* e : extra) check(SSL_CTX_add1_chain_cert(ctx.get(), e->cert.get()) == 1, "chain cert");
  SSL_CTX_set_session_id_context(ctx.get(), reinterpret_cast<const unsigned char*>("t"), 1);
  return ctx;
}

ossl::SslCtxPtr client_ctx(int version) {
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  check(ctx != nullptr, "SSL_CTX_new");
  SSL_CTX_set_min_proto_version(ctx.get(), version);
  SSL_CTX_set_max_proto_version(ctx.get(), version);
  return ctx;
}

Outcome handshake(SSL_CTX* client, SSL_CTX* server, const std::string& host, const std::string& ip,
                  SSL_SESSION* resume) {
  Outcome o;
  ossl::SslPtr c(SSL_new(client)), s(SSL_new(server));
  check(c && s, "SSL_new");
  BIO *cb = nullptr, *sb = nullptr;
  check(BIO_new_bio_pair(&cb, 0, &sb, 0) == 1, "bio pair");
  SSL_set_bio(c.get(), cb, cb);
  SSL_set_bio(s.get(), sb, sb);
  SSL_set_connect_state(c.get());
  SSL_set_accept_state(s.get());
  if (!host.empty()) SSL_set1_host(c.get(), host.c_str());
  if (!ip.empty()) check(X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c.get()), ip.c_str()) == 1, "ip");
  if (resume) SSL_set_session(c.get(), resume);
  bool cdone = false, sdone = false, failed = false;
  for (int i = 0; i < 64 && !(cdone && sdone) && !failed; ++i) {
    if (!cdone) {
      int r = SSL_do_handshake(c.get());
      if (r == 1) cdone = true;
      else if (SSL_get_error(c.get(), r) != SSL_ERROR_WANT_READ) failed = true;
    }
    if (!sdone && !failed) {
      int r = SSL_do_handshake(s.get());
      if (r == 1) sdone = true;
      else if (SSL_get_error(s.get(), r) != SSL_ERROR_WANT_READ) failed = true;
    }
  }
  o.ok = cdone && sdone && !failed;
  if (o.ok) {
    // Let the client read TLS 1.3 session tickets (no application data is pending).
    char b;
    check(SSL_read(c.get(), &b, 1) <= 0 && SSL_get_error(c.get(), -1) == SSL_ERROR_WANT_READ, "ticket read");
  }
  ERR_clear_error();
  o.have_result = ptrust_SSL_get_result(c.get(), &o.result) == 1;
  o.reused = SSL_session_reused(c.get()) == 1;
  o.server_have_result = ptrust_SSL_get_result(s.get(), &o.server_result) == 1;
  o.verify_result = SSL_get_verify_result(c.get());
  if (o.ok) {
    o.session.reset(SSL_get1_session(c.get()));
    // A connection freed without close_notify marks its session not resumable.
    SSL_shutdown(c.get());
    SSL_shutdown(s.get());
    ERR_clear_error();
  }
  return o;
}

std::string pem_of(const std::vector<const Issued*>& certs) {
  std::string s;
  for (const Issued* c : certs) s += c->pem();
  return s;
}

namespace {

std::vector<std::string> sserver_args(const TempDir& dir, const Issued& leaf, const std::vector<const Issued*>& extra,
                                      int version, std::string& log) {
  static int seq = 0;
  std::string tag = "sserver" + std::to_string(++seq);
  std::string cert = dir / (tag + "-cert.pem"), key = dir / (tag + "-key.pem"), chain = dir / (tag + "-chain.pem");
  write_file(cert, leaf.pem());
  write_file(key, leaf.key_pem());
  write_file(chain, pem_of(extra));
  log = dir / (tag + ".log");
  std::vector<std::string> args = {"-www", "-cert", cert, "-key", key,
                                   version == TLS1_3_VERSION ? "-tls1_3" : "-tls1_2"};
  if (!extra.empty()) args.insert(args.end(), {"-cert_chain", chain});
  return args;
}

}  // namespace

SServer::SServer(const TempDir& dir, const Issued& leaf, const std::vector<const Issued*>& extra, int version)
    : server_([&] {
        std::string log;
        auto args = sserver_args(dir, leaf, extra, version, log);
        return OpensslServer(args, log);
      }()) {}

}  // namespace ptrust::testing
