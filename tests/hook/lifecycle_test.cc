// One long-lived SSL_CTX across store changes: every change applies on the next handshake,
// and a session from before a change is not resumed.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include "core/generation.h"
#include "tests/hook/hook_util.h"

namespace ptrust::testing {
namespace {

class Lifecycle : public ::testing::TestWithParam<int> {
 protected:
  void SetUp() override {
    pt_ = root_.open();
    client_ = client_ctx(GetParam());
    ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, "licensing"));
  }
  void TearDown() override { ptrust_ctx_free(pt_); }

  Outcome connect(const Chain& c, SSL_SESSION* resume = nullptr) {
    auto& server = servers_[&c];
    if (!server) server = server_ctx(c.leaf, {&c.inter}, GetParam());
    return handshake(client_.get(), server.get(), "server.test", "", resume);
  }

  static const Chain& a() {
    static Chain c = make_chain(KeyKind::kP256, "A");
    return c;
  }
  static const Chain& b() {
    static Chain c = make_chain(KeyKind::kP256, "B");
    return c;
  }

  Root root_;
  PTRUST_CTX* pt_ = nullptr;
  ossl::SslCtxPtr client_;
  std::map<const Chain*, ossl::SslCtxPtr> servers_;
};

TEST_P(Lifecycle, CaRemovedNextHandshakeFails) {
  std::string uuid = root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome before = connect(a());
  ASSERT_TRUE(before.ok);
  EXPECT_EQ(PTRUST_REASON_OK, before.result.reason);
  root_.uninstall(uuid);
  Outcome after = connect(a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, after.result.reason);
  EXPECT_GT(after.result.generation, before.result.generation);
}

TEST_P(Lifecycle, CaKeyRolloverWithSameSubject) {
  Chain rolled = make_chain(KeyKind::kP256, "A");  // same names as a(), new keys
  std::string uuid = root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  EXPECT_TRUE(connect(a()).ok);
  Outcome not_yet = connect(rolled);
  EXPECT_FALSE(not_yet.ok);
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, not_yet.result.reason);

  root_.install(rolled.root.cert.get(), CertType::kCa, {"licensing"});
  root_.uninstall(uuid);
  Outcome now = connect(rolled);
  EXPECT_TRUE(now.ok);
  EXPECT_EQ(PTRUST_REASON_OK, now.result.reason);
  Outcome old = connect(a());
  EXPECT_FALSE(old.ok) << "the old root's key must no longer be trusted";
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, old.result.reason);
}

TEST_P(Lifecycle, PinnedCertInstalledTakesOver) {
  root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome ca = connect(a());
  EXPECT_TRUE(ca.ok);
  EXPECT_EQ(PTRUST_MODE_CA, ca.result.mode);
  root_.install(b().leaf.cert.get(), CertType::kPinned, {"licensing"});
  Outcome pinned_other = connect(a());
  EXPECT_FALSE(pinned_other.ok);
  EXPECT_EQ(PTRUST_MODE_PINNED, pinned_other.result.mode);
  EXPECT_EQ(PTRUST_REASON_PIN_MISMATCH, pinned_other.result.reason);
  root_.install(a().leaf.cert.get(), CertType::kPinned, {"licensing"});
  Outcome pinned_ok = connect(a());
  EXPECT_TRUE(pinned_ok.ok);
  EXPECT_EQ(PTRUST_MODE_PINNED, pinned_ok.result.mode);
}

TEST_P(Lifecycle, CrlAddedRevokes) {
  root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  EXPECT_TRUE(connect(a()).ok);
  root_.write_crl("inter.crl", make_crl(a().inter, {a().leaf.cert.get()}).get());
  Outcome revoked = connect(a());
  EXPECT_FALSE(revoked.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_REVOKED, revoked.result.reason);
}

TEST_P(Lifecycle, SessionResumesOnlyWithinOneGeneration) {
  std::string uuid = root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome first = connect(a());
  ASSERT_TRUE(first.ok);
  ASSERT_TRUE(first.session);
  Outcome resumed = connect(a(), first.session.get());
  ASSERT_TRUE(resumed.ok);
  EXPECT_TRUE(resumed.reused) << "control: the server resumes sessions";
  EXPECT_EQ(1, resumed.result.resumed);
  EXPECT_EQ(1, resumed.result.verified);

  // A change that keeps the peer trusted: the session is not resumed, the peer re-verified.
  root_.install(b().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome reverified = connect(a(), resumed.session.get());
  ASSERT_TRUE(reverified.ok);
  EXPECT_FALSE(reverified.reused);
  EXPECT_EQ(0, reverified.result.resumed);
  EXPECT_GT(reverified.result.generation, first.result.generation);

  // A change that removes trust: the old session must not get the client in.
  root_.uninstall(uuid);
  Outcome refused = connect(a(), reverified.session.get());
  EXPECT_FALSE(refused.ok);
  EXPECT_FALSE(refused.reused);
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, refused.result.reason);
}

// A server verifying client certificates with the hook: sessions are keyed to the purpose
// and the store generation, so a client's session from before a change is not resumed.
TEST_P(Lifecycle, ServerSessionsAreKeyedToTheGeneration) {
  auto server = server_ctx(b().leaf, {&b().inter}, GetParam());
  // What an application does: a fixed session id context, client certificates required.
  const unsigned char app_sid[] = "app";
  ASSERT_EQ(1, SSL_CTX_set_session_id_context(server.get(), app_sid, 3));
  SSL_CTX_set_verify(server.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(server.get(), pt_, "licensing"));
  ossl::SslCtxPtr client(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_min_proto_version(client.get(), GetParam());
  SSL_CTX_set_max_proto_version(client.get(), GetParam());
  ASSERT_EQ(1, SSL_CTX_use_certificate(client.get(), a().leaf.cert.get()));
  ASSERT_EQ(1, SSL_CTX_use_PrivateKey(client.get(), a().leaf.key.get()));
  X509_up_ref(a().inter.cert.get());
  ASSERT_EQ(1, SSL_CTX_add_extra_chain_cert(client.get(), a().inter.cert.get()));

  std::string uuid = root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome first = handshake(client.get(), server.get());
  ASSERT_TRUE(first.ok);
  Outcome resumed = handshake(client.get(), server.get(), "", "", first.session.get());
  ASSERT_TRUE(resumed.ok);
  EXPECT_TRUE(resumed.reused) << "control: within one generation the server resumes";
  // The server resumed from a session ticket (OpenSSL's default, TLS 1.2 and 1.3): it still
  // reports the original verdict, marked resumed.
  ASSERT_TRUE(first.server_have_result);
  EXPECT_EQ(0, first.server_result.resumed);
  ASSERT_TRUE(resumed.server_have_result) << "no verdict for a ticket-resumed session";
  EXPECT_EQ(1, resumed.server_result.resumed);
  EXPECT_EQ(1, resumed.server_result.verified);
  EXPECT_EQ(PTRUST_REASON_OK, resumed.server_result.reason);
  EXPECT_STREQ("licensing", resumed.server_result.purpose);
  EXPECT_EQ(first.server_result.generation, resumed.server_result.generation);

  root_.install(b().root.cert.get(), CertType::kCa, {"licensing"});  // a change that keeps trust
  Outcome again = handshake(client.get(), server.get(), "", "", resumed.session.get());
  ASSERT_TRUE(again.ok);
  EXPECT_FALSE(again.reused) << "a session from the previous generation was resumed";

  root_.uninstall(uuid);  // the client's CA is gone: its old session must not get it in
  Outcome refused = handshake(client.get(), server.get(), "", "", again.session.get());
  EXPECT_FALSE(refused.ok);
  EXPECT_FALSE(refused.reused);
}

// Control for the test above: plain OpenSSL resumes across the same change.
TEST_P(Lifecycle, ControlPlainOpenSslResumesAcrossChanges) {
  auto plain = client_ctx(GetParam());
  SSL_CTX_set_verify(plain.get(), SSL_VERIFY_PEER, nullptr);
  X509_STORE_add_cert(SSL_CTX_get_cert_store(plain.get()), a().root.cert.get());
  auto server = server_ctx(a().leaf, {&a().inter}, GetParam());
  Outcome first = handshake(plain.get(), server.get(), "server.test");
  ASSERT_TRUE(first.ok);
  root_.bump();
  Outcome again = handshake(plain.get(), server.get(), "server.test", "", first.session.get());
  EXPECT_TRUE(again.reused);
}

TEST_P(Lifecycle, SessionFromAnotherPurposeIsNotResumed) {
  root_.install(a().root.cert.get(), CertType::kCa, {"licensing", "spki"});
  auto other = client_ctx(GetParam());
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(other.get(), pt_, "spki"));
  auto server = server_ctx(a().leaf, {&a().inter}, GetParam());
  Outcome first = handshake(other.get(), server.get(), "server.test");
  ASSERT_TRUE(first.ok);
  Outcome cross = handshake(client_.get(), server.get(), "server.test", "", first.session.get());
  EXPECT_TRUE(cross.ok);
  EXPECT_FALSE(cross.reused);
  EXPECT_STREQ("licensing", cross.result.purpose);
}

// Without a generation file (no ptrust writer ever ran on the root) changes are still
// seen, within the documented bound of one second.
TEST_P(Lifecycle, WithoutGenerationFileChangesAreSeenWithinASecond) {
  Root bare;
  std::filesystem::remove(bare.path() + "/var/lib/ptrust/generation");
  write_file(bare.path() + "/etc/trusted-certs/ca-bundle-licensing.pem", a().root.pem());
  std::filesystem::create_directories(bare.path() + "/etc/trusted-certs/ca-licensing");
  write_file(bare.path() + "/etc/trusted-certs/ca-licensing/root.pem", a().root.pem());
  PTRUST_CTX* pt = bare.open();
  auto client = client_ctx(GetParam());
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), pt, "licensing"));
  auto server = server_ctx(a().leaf, {&a().inter}, GetParam());
  EXPECT_TRUE(handshake(client.get(), server.get(), "server.test").ok);
  std::filesystem::remove(bare.path() + "/etc/trusted-certs/ca-bundle-licensing.pem");
  std::filesystem::remove_all(bare.path() + "/etc/trusted-certs/ca-licensing");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Outcome after = handshake(client.get(), server.get(), "server.test");
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, after.result.reason);
  ptrust_ctx_free(pt);
}

INSTANTIATE_TEST_SUITE_P(Tls, Lifecycle, ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION),
                         [](const auto& info) { return info.param == TLS1_3_VERSION ? "TLS13" : "TLS12"; });

}  // namespace
}  // namespace ptrust::testing
