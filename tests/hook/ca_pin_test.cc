// A pin trusts the pinned certificate itself and nothing it signs, through every consumer.
// A pin that is a CA (a default `openssl req -x509` certificate is CA:TRUE) would let a
// chain-verifying program trust whatever it signs, so the consumers that build chains from
// what ptrust serves (the provider, the capath directories, stunnel's provider form) refuse
// the purpose with PIN_IS_CA; the verify hook and stunnel --via files verify it as a pin.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "tests/hook/hook_util.h"
#include "tests/support/provider_ctx.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

class CaPin : public ::testing::Test {
 protected:
  static const Issued& pin() {  // an appliance's self-signed certificate that is also a CA
    static Issued c = self_signed({.cn = "appliance", .ca = true, .dns = {"server.test"}});
    return c;
  }
  static const Issued& forged() {  // signed with the pinned key, for the name the client wants
    static Issued c = issue({.cn = "forged", .dns = {"server.test"}}, pin());
    return c;
  }
  RunResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", root_.config()});
    return ptrust(root_.path(), args);
  }
  std::string verdict(const Issued& server_cert) {
    auto server = server_ctx(server_cert, {}, TLS1_3_VERSION);
    Outcome o = handshake(client_.get(), server.get(), "server.test");
    return o.have_result ? ptrust_reason_string(o.result.reason) : "NO_RESULT";
  }
  Root root_;
  TempDir dir_;
  ossl::SslCtxPtr client_ = client_ctx(TLS1_3_VERSION);
};

TEST_F(CaPin, OnlyThePinnedCertificateIsTrustedThroughEveryConsumer) {
  write_file(dir_ / "pin.pem", pin().pem());
  RunResult install = cli({"install", dir_ / "pin.pem", "--pinned", "--purpose", "licensing"});
  ASSERT_EQ(install.status, 0) << install.err;
  EXPECT_NE(install.err.find("warning: PIN_IS_CA:"), std::string::npos) << "said at install: " << install.err;

  // The verify hook: the pin itself, never what it signs.
  PTRUST_CTX* pt = root_.open();
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt, "licensing"));
  EXPECT_EQ(verdict(pin()), "OK");
  EXPECT_EQ(verdict(forged()), "PIN_MISMATCH");

  // The provider: an X509_STORE would chain `forged` to the pin, so the purpose is refused.
  ProviderCtx prov(PTRUST_PROVIDER_MODULE, root_.path(), dir_.path(), root_.config());
  EXPECT_EQ(prov.open("licensing").reason, "PIN_IS_CA");

  // The capath directory holds nothing a program could chain to (fail closed).
  const std::string capath = root_.path() + "/etc/trusted-certs/capath/licensing";
  ASSERT_TRUE(std::filesystem::is_directory(capath));
  for (const auto& e : std::filesystem::directory_iterator(capath))
    EXPECT_EQ(e.path().filename().string()[0], '.') << "a hash entry a program would trust: " << e.path();

  // stunnel: the provider form is refused; the files form pins with verifyPeer.
  std::vector<std::string> render = {"stunnel", "render", "--purpose", "licensing", "--name", "svc", "--accept",
                                     "127.0.0.1:1", "--connect", "127.0.0.1:2"};
  auto via = [&](const char* v) {
    auto args = render;
    args.insert(args.end(), {"--via", v});
    return cli(args);
  };
  RunResult provider_form = via("provider");
  EXPECT_EQ(provider_form.status, 1);
  EXPECT_EQ(provider_form.err.rfind("ptrust: PIN_IS_CA: ", 0), 0u) << provider_form.err;
  RunResult files_form = via("files");
  EXPECT_EQ(files_form.status, 0) << files_form.err;
  EXPECT_NE(files_form.out.find("verifyPeer = yes"), std::string::npos);
  ptrust_ctx_free(pt);
}

TEST_F(CaPin, ALeafPinIsServedByEveryConsumer) {  // the control: not a CA, nothing to refuse
  Issued leaf = self_signed({.cn = "leaf-appliance", .dns = {"server.test"}});
  write_file(dir_ / "leaf.pem", leaf.pem());
  RunResult install = cli({"install", dir_ / "leaf.pem", "--pinned", "--purpose", "licensing"});
  ASSERT_EQ(install.status, 0) << install.err;
  EXPECT_EQ(install.err.find("PIN_IS_CA"), std::string::npos);
  ProviderCtx prov(PTRUST_PROVIDER_MODULE, root_.path(), dir_.path(), root_.config());
  EXPECT_EQ(prov.open("licensing").reason, "OK");
  EXPECT_EQ(prov.open("licensing").certs, 1);
  EXPECT_FALSE(std::filesystem::is_empty(root_.path() + "/etc/trusted-certs/capath/licensing"));
}

}  // namespace
}  // namespace ptrust::testing
