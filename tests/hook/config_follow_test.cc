// The configuration is part of the trust state: a long-lived verify hook and a loaded provider
// follow the same edits of ptrust.yaml (policy changed, purpose added, purpose removed, file
// broken and fixed) the same way, without a restart.
#include <gtest/gtest.h>

#include <string>

#include "tests/hook/hook_util.h"
#include "tests/support/provider_ctx.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

class ConfigFollow : public ::testing::Test {
 protected:
  static const Chain& chain() {
    static Chain c = make_chain(KeyKind::kP256, "Cfg");
    return c;
  }

  void SetUp() override {
    write_config("purposes:\n  licensing: {}\n");
    root_.install(chain().root.cert.get(), CertType::kCa, {});  // general CA: every purpose
    root_.write_crl("inter.crl", make_crl(chain().inter, {chain().leaf.cert.get()}).get());  // leaf revoked
    pt_ = root_.open();
    client_ = client_ctx(TLS1_3_VERSION);
    ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, "licensing"));
    server_ = server_ctx(chain().leaf, {&chain().inter}, TLS1_3_VERSION);
  }
  void TearDown() override { ptrust_ctx_free(pt_); }

  void write_config(const std::string& yaml) { write_file(root_.config(), yaml); }

  // The long-lived SSL_CTX's verdict on a real handshake.
  std::string handshake_reason() {
    Outcome o = handshake(client_.get(), server_.get(), "server.test");
    return o.have_result ? ptrust_reason_string(o.result.reason) : "NO_RESULT";
  }
  // Offline through the same PTRUST_CTX, for a purpose the SSL_CTX is not attached to.
  std::string verify_reason(const char* purpose) {
    ossl::X509StackPtr chain(sk_X509_new_null());
    for (const Issued* c : {&ConfigFollow::chain().leaf, &ConfigFollow::chain().inter}) {
      X509_up_ref(c->cert.get());
      sk_X509_push(chain.get(), c->cert.get());
    }
    PTRUST_RESULT r;
    if (ptrust_verify_chain(pt_, purpose, chain.get(), nullptr, &r) != 1) return "REFUSED";
    return ptrust_reason_string(r.reason);
  }

  Root root_;
  TempDir dir_;
  PTRUST_CTX* pt_ = nullptr;
  ossl::SslCtxPtr client_, server_;
};

TEST_F(ConfigFollow, HookAndProviderFollowTheSameEdits) {
  ProviderCtx prov(PTRUST_PROVIDER_MODULE, root_.path(), dir_.path(), root_.config());

  // Default crl-policy if-present: the CRL applies and revokes the leaf; the provider serves it.
  EXPECT_EQ(handshake_reason(), "CERT_REVOKED");
  EXPECT_EQ(prov.open("licensing").crls, 1);
  EXPECT_EQ(prov.open("newp").reason, "UNKNOWN_PURPOSE");
  EXPECT_EQ(verify_reason("newp"), "REFUSED") << "not declared yet";

  // Policy changed: crl-policy off. No CRLs for the purpose, in either consumer.
  write_config("purposes:\n  licensing: {crl-policy: off}\n");
  EXPECT_TRUE(eventually([&] { return handshake_reason() == "OK"; })) << handshake_reason();
  EXPECT_TRUE(eventually([&] { return prov.open("licensing").crls == 0; }));
  EXPECT_EQ(prov.open("licensing").reason, "OK");

  // Purpose added: both serve it (general mode, CRLs on by default: the leaf is revoked).
  write_config("purposes:\n  licensing: {crl-policy: off}\n  newp: {}\n");
  EXPECT_TRUE(eventually([&] { return verify_reason("newp") == "CERT_REVOKED"; })) << verify_reason("newp");
  EXPECT_TRUE(eventually([&] { return prov.open("newp").reason == "OK"; }));
  EXPECT_EQ(prov.open("newp").crls, 1);

  // Purpose removed: the long-lived SSL_CTX attached to it now fails, as the provider does.
  write_config("purposes:\n  newp: {}\n");
  EXPECT_TRUE(eventually([&] { return handshake_reason() == "UNKNOWN_PURPOSE"; })) << handshake_reason();
  EXPECT_TRUE(eventually([&] { return prov.open("licensing").reason == "UNKNOWN_PURPOSE"; }));
  EXPECT_EQ(verify_reason("newp"), "CERT_REVOKED") << "other purposes unaffected";

  // The file stops parsing: every purpose fails with one named reason in both consumers.
  write_config("purposes: [\n");
  EXPECT_TRUE(eventually([&] { return verify_reason("newp") == "CONFIG_INVALID"; })) << verify_reason("newp");
  EXPECT_EQ(handshake_reason(), "CONFIG_INVALID");
  EXPECT_TRUE(eventually([&] { return prov.open("newp").reason == "CONFIG_INVALID"; }));
  EXPECT_EQ(prov.open("general").reason, "CONFIG_INVALID");
  RunResult cli = ptrust(root_.path(), {"--config", root_.config(), "list"});
  EXPECT_EQ(cli.status, 1);
  EXPECT_NE(cli.err.find("CONFIG_INVALID: " + root_.config() + ":"), std::string::npos) << cli.err;

  // Fixed: both recover without a restart.
  write_config("purposes:\n  licensing: {crl-policy: off}\n");
  EXPECT_TRUE(eventually([&] { return handshake_reason() == "OK"; })) << handshake_reason();
  EXPECT_TRUE(eventually([&] { return prov.open("licensing").reason == "OK"; }));
}

TEST_F(ConfigFollow, ABrokenConfigAtStartIsAnErrorForTheApplication) {
  write_config("purposes:\n  licensing: {crl-policy: sometimes}\n");
  char err[256];
  PTRUST_CTX* pt = ptrust_ctx_new(root_.path().c_str(), root_.config().c_str(), err, sizeof err);
  EXPECT_EQ(pt, nullptr);
  EXPECT_NE(std::string(err).find("CONFIG_INVALID: " + root_.config() + ":2:"), std::string::npos) << err;
}

}  // namespace
}  // namespace ptrust::testing
