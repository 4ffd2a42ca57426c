// The cluster CA's minimum serial (`ptrust ca revoke-below`) in real in-process handshakes: a
// long-lived SSL_CTX refuses the cluster CA's certificates below the minimum as soon as it is
// raised (the store generation moves), with SERIAL_BELOW_MINIMUM, and keeps accepting the
// others.
#include <gtest/gtest.h>

#include <fstream>

#include <openssl/pem.h>

#include "tests/hook/hook_util.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

class MinSerial : public ::testing::Test {
 protected:
  void SetUp() override {
    std::ofstream(root_.config(), std::ios::app) << "cluster: {name: server.test}\n";
    ASSERT_EQ(cli({"ca", "init"}).status, 0);
    ASSERT_EQ(cli({"ca", "trust", "--purpose", "licensing"}).status, 0);
  }
  RunResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", root_.config()});
    return ptrust(root_.path(), args);
  }
  // A certificate for server.test from the cluster CA, with its key.
  Issued signed_leaf() {
    Issued out;
    out.key = make_key(KeyKind::kP256);
    write_file(dir_ / "req.csr", csr_pem(out.key.get(), "server.test"));
    RunResult r = cli({"ca", "sign", dir_ / "req.csr", "--cn", "server.test"});
    EXPECT_EQ(r.status, 0) << r.err;
    ossl::BioPtr b(BIO_new_mem_buf(r.out.data(), static_cast<int>(r.out.size())));
    out.cert.reset(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
    return out;
  }
  std::string verdict(const Issued& leaf) {
    auto server = server_ctx(leaf, {}, TLS1_3_VERSION);
    Outcome o = handshake(client_.get(), server.get(), "server.test");
    return o.have_result ? ptrust_reason_string(o.result.reason) : "NO_RESULT";
  }
  Root root_;
  TempDir dir_;
  ossl::SslCtxPtr client_ = client_ctx(TLS1_3_VERSION);
};

TEST_F(MinSerial, RaisedMinimumRefusesOlderCertificatesInAHandshake) {
  Issued first = signed_leaf(), second = signed_leaf();
  PTRUST_CTX* pt = root_.open();
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt, "licensing"));
  ptrust_ctx_free(pt);
  EXPECT_EQ(verdict(first), "OK");
  EXPECT_EQ(verdict(second), "OK");
  RunResult rb = cli({"ca", "revoke-below", "2"});
  ASSERT_EQ(rb.status, 0) << rb.err;
  EXPECT_EQ(verdict(first), "SERIAL_BELOW_MINIMUM") << "the same SSL_CTX sees the new minimum";
  EXPECT_EQ(verdict(second), "OK");
  RunResult rb3 = cli({"ca", "revoke-below", "3"});
  ASSERT_EQ(rb3.status, 0) << rb3.err;
  EXPECT_EQ(verdict(second), "SERIAL_BELOW_MINIMUM");
  EXPECT_EQ(verdict(signed_leaf()), "OK");
}

TEST_F(MinSerial, UnreadableMinimumFailsClosed) {
  Issued leaf = signed_leaf();
  ASSERT_EQ(cli({"ca", "revoke-below", "1"}).status, 0);
  PTRUST_CTX* pt = root_.open();
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt, "licensing"));
  ptrust_ctx_free(pt);
  EXPECT_EQ(verdict(leaf), "OK");
  write_file(root_.path() + "/var/lib/ptrust/ca/min-serial", "garbage\n");
  root_.bump();
  EXPECT_EQ(verdict(leaf), "STORE_CORRUPT");
}

}  // namespace
}  // namespace ptrust::testing
