// The verify hook inside a 64 KiB thread (stunnel 5.68's worker stack): offline decisions
// and real TLS handshakes against `openssl s_server` on 127.0.0.1, across store changes with
// a CRL present, so the snapshot is rebuilt (bundle and CRLs re-read) on that stack. A frame
// that does not fit kills this binary with SIGSEGV. Verdicts are asserted after the join.
#include <gtest/gtest.h>
#include <openssl/err.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "tests/hook/hook_util.h"
#include "tests/support/small_stack.h"

namespace ptrust::testing {
namespace {

struct Verdict {
  bool handshake_ok = false;  // TLS only: the client completed the handshake
  bool have_result = false;
  PTRUST_RESULT result{};
};

Verdict offline(PTRUST_CTX* pt, const std::vector<const Issued*>& chain) {
  Verdict v;
  ossl::X509StackPtr sk(sk_X509_new_null());
  for (const Issued* c : chain) sk_X509_push(sk.get(), c->cert.get());
  PTRUST_VERIFY_OPTIONS opts{};
  opts.host = "server.test";
  v.have_result = ptrust_verify_chain(pt, "licensing", sk.get(), &opts, &v.result) == 1;
  while (sk_X509_num(sk.get()) > 0) (void)sk_X509_pop(sk.get());  // borrowed
  return v;
}

// A TLS client handshake over TCP to 127.0.0.1:port on `ctx` (ptrust's purpose attached).
Verdict over_tcp(SSL_CTX* ctx, int port) {
  Verdict v;
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (s < 0) return v;
  timeval tv{10, 0};  // a stuck peer fails the case instead of hanging the test
  ::setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(s);
    return v;
  }
  ossl::SslPtr ssl(SSL_new(ctx));
  SSL_set_fd(ssl.get(), s);
  SSL_set1_host(ssl.get(), "server.test");
  v.handshake_ok = SSL_connect(ssl.get()) == 1;
  v.have_result = ptrust_SSL_get_result(ssl.get(), &v.result) == 1;
  if (v.handshake_ok) SSL_shutdown(ssl.get());
  ERR_clear_error();
  ssl.reset();
  ::close(s);
  return v;
}

std::string describe(const Verdict& v) {
  if (!v.have_result) return "no result";
  return std::string(ptrust_reason_string(v.result.reason)) + " mode=" + ptrust_mode_string(v.result.mode) +
         " handshake=" + (v.handshake_ok ? "ok" : "failed");
}

class HookSmallStack : public ::testing::Test {
 protected:
  void SetUp() override {
    CertSpec l;
    l.cn = "server.test";
    l.dns = {"server.test"};
    l.ips = {"127.0.0.1"};
    revoked_ = issue(l, a_.inter);
    crl_ = make_crl(a_.inter, {revoked_.cert.get()});
    a_uuid_ = root_.install(a_.root.cert.get(), CertType::kCa, {"licensing"});
    root_.write_crl("A_Intermediate.crl", crl_.get());
    pt_ = root_.open();
    client_ = client_ctx(TLS1_3_VERSION);
    ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, "licensing"));
  }
  void TearDown() override {
    client_.reset();
    ptrust_ctx_free(pt_);
  }

  // Each (chain, server) pair is decided offline and by a TLS handshake, in one 64 KiB thread
  // (the first decision after a change rebuilds the snapshot there); both must give `want`.
  struct Expect {
    const char* name;
    std::vector<const Issued*> chain;
    const SServer* server;
    ptrust_reason want;
    Verdict off, tls;
  };
  void check_all(std::vector<Expect>& cases) {
    size_t used = on_small_stack([&] {
      for (auto& c : cases) {
        c.tls = over_tcp(client_.get(), c.server->port());
        c.off = offline(pt_, c.chain);
      }
    });
    std::fprintf(stderr, "hook checks used %zu of %zu stack bytes\n", used, kStunnelStack);
    EXPECT_LT(used, kStunnelStack / 2) << "half of stunnel's stack is the most ptrust may take (measured ~12 KiB)";
    for (const auto& c : cases) {
      SCOPED_TRACE(c.name);
      ASSERT_TRUE(c.off.have_result);
      ASSERT_TRUE(c.tls.have_result) << "the hook ran in the handshake";
      EXPECT_EQ(c.off.result.reason, c.want) << describe(c.off);
      EXPECT_EQ(c.tls.result.reason, c.want) << describe(c.tls);
      EXPECT_EQ(c.off.result.verified == 1, c.want == PTRUST_REASON_OK);
      EXPECT_EQ(c.tls.handshake_ok, c.want == PTRUST_REASON_OK) << "failures are enforced";
      EXPECT_EQ(c.tls.result.generation, c.off.result.generation) << "same snapshot";
    }
  }

  Root root_;
  TempDir dir_;
  Chain a_ = make_chain(KeyKind::kP256, "A"), b_ = make_chain(KeyKind::kP256, "B");
  Issued revoked_;
  ossl::X509CrlPtr crl_;
  std::string a_uuid_;
  PTRUST_CTX* pt_ = nullptr;
  ossl::SslCtxPtr client_;
};

TEST_F(HookSmallStack, VerifiesOfflineAndOverTlsAcrossStoreChangesIn64KiBThread) {
  SServer a(dir_, a_.leaf, {&a_.inter}, TLS1_3_VERSION), rev(dir_, revoked_, {&a_.inter}, TLS1_3_VERSION),
      b(dir_, b_.leaf, {&b_.inter}, TLS1_3_VERSION);

  std::vector<Expect> first{
      {"A chain", {&a_.leaf, &a_.inter}, &a, PTRUST_REASON_OK, {}, {}},
      {"revoked A leaf", {&revoked_, &a_.inter}, &rev, PTRUST_REASON_CERT_REVOKED, {}, {}},
      {"B chain, B not trusted", {&b_.leaf, &b_.inter}, &b, PTRUST_REASON_CHAIN_UNTRUSTED, {}, {}},
      {"A chain again (verified-chain cache)", {&a_.leaf, &a_.inter}, &a, PTRUST_REASON_OK, {}, {}},
  };
  check_all(first);

  std::string b_uuid = root_.install(b_.root.cert.get(), CertType::kCa, {"licensing"});
  std::vector<Expect> second{
      {"B chain, B installed", {&b_.leaf, &b_.inter}, &b, PTRUST_REASON_OK, {}, {}},
      {"revoked A leaf", {&revoked_, &a_.inter}, &rev, PTRUST_REASON_CERT_REVOKED, {}, {}},
      {"A chain", {&a_.leaf, &a_.inter}, &a, PTRUST_REASON_OK, {}, {}},
  };
  check_all(second);
  EXPECT_GT(second[0].off.result.generation, first[0].off.result.generation);

  root_.uninstall(a_uuid_);
  std::vector<Expect> third{
      {"A chain, A removed", {&a_.leaf, &a_.inter}, &a, PTRUST_REASON_CHAIN_UNTRUSTED, {}, {}},
      {"B chain", {&b_.leaf, &b_.inter}, &b, PTRUST_REASON_OK, {}, {}},
  };
  check_all(third);
  EXPECT_GT(third[0].off.result.generation, second[0].off.result.generation);
}

}  // namespace
}  // namespace ptrust::testing
