// Revocation scenarios as one table: a root -> intermediate -> leaf PKI made in the run, CRLs
// from the root and the intermediate put in place with the real `ptrust crl install`
// (refreshed, older, forged, expired, delta with and without its base), and for each the
// verdict of every consumer ptrust serves:
//   hook     a real in-process TLS 1.3 handshake with the purpose attached
//   verify   `ptrust verify` on the chain the server sends
//   provider `openssl verify -CAstore ptrust://P -crl_check_all -extended_crl -use_deltas`
// stunnel (--via files) is covered by tests/stunnel (it expresses only the leaf's CRL).
// Indirect CRLs, separate CRL-signing keys and key rollover are covered by tests/pkits.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <functional>

#include "tests/hook/hook_util.h"
#include "tests/support/run.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

constexpr long kDay = 24 * 3600;

struct Pki {
  Chain c = make_chain(KeyKind::kP256, "Rev");
  Issued forger;  // the intermediate's name and key identifier, another key
  Pki() {
    X509_up_ref(c.inter.cert.get());
    forger.cert.reset(c.inter.cert.get());
    forger.key = make_key(KeyKind::kP256);
  }
};

const Pki& pki() {
  static Pki p;
  return p;
}

// One root with the chain's CA trusted for `licensing` (crl-policy if-present, crl-scope
// chain: the defaults) and `req-chain` (require, chain).
class Revocation : public ::testing::Test {
 protected:
  void SetUp() override {
    root_.install(pki().c.root.cert.get(), CertType::kCa, {"licensing", "req-chain"});
    write_file(in_ / "chain.pem", pem_of({&pki().c.leaf, &pki().c.inter}));
    write_file(in_ / "inter.pem", pki().c.inter.pem());
  }

  RunResult pt(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", root_.config()});
    return ptrust(root_.path(), args);
  }
  // `crl install` of a CRL signed by `issuer`; extra arguments after the file.
  RunResult crl(const std::string& file, const Issued& issuer, const std::vector<X509*>& revoked, const CrlSpec& spec,
                std::vector<std::string> extra = {}) {
    write_file(in_ / file, crl_pem(make_crl_spec(issuer, revoked, spec).get()));
    std::vector<std::string> args{"crl", "install", in_ / file};
    args.insert(args.end(), extra.begin(), extra.end());
    return pt(args);
  }

  // What each consumer decides for the chain the server sends, as a reason name.
  std::string hook(const char* purpose) {
    auto server = server_ctx(pki().c.leaf, {&pki().c.inter}, TLS1_3_VERSION);
    auto client = client_ctx(TLS1_3_VERSION);
    PTRUST_CTX* p = root_.open();
    EXPECT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), p, purpose));
    Outcome o = handshake(client.get(), server.get(), "server.test");
    ptrust_ctx_free(p);
    EXPECT_EQ(o.ok, o.have_result && o.result.verified == 1);
    return o.have_result ? ptrust_reason_string(o.result.reason) : "NO_RESULT";
  }
  std::string verify(const char* purpose) {
    RunResult r = pt({"verify", "--purpose", purpose, "--host", "server.test", in_ / "chain.pem", "--json"});
    auto doc = boost::json::parse(r.out);
    std::string reason(doc.as_object().at("reason").as_string());
    EXPECT_EQ(r.status == 0, reason == "OK") << r.out;
    return reason;
  }
  bool provider(const char* purpose) {
    RunResult r = run({"env", "-u", "OPENSSL_CONF", "-u", "OPENSSL_MODULES", "PTRUST_ROOT=" + root_.path(),
                       "PTRUST_CONFIG=" + root_.config(), "openssl", "verify", "-provider-path", PTRUST_PROVIDER_DIR, "-provider", "ptrust", "-provider",
                       "default", "-CAstore", std::string("ptrust://") + purpose, "-no-CAfile", "-no-CApath",
                       "-crl_check_all", "-extended_crl", "-use_deltas", "-untrusted", in_ / "inter.pem",
                       in_ / "chain.pem"});
    provider_out_ = r.out + r.err;
    return r.status == 0;
  }
  // Every consumer: the hook and verify give `reason`, the provider accepts iff it is OK.
  void expect_all(const char* purpose, const std::string& reason) {
    SCOPED_TRACE(purpose);
    EXPECT_EQ(reason, hook(purpose));
    EXPECT_EQ(reason, verify(purpose));
    EXPECT_EQ(reason == "OK", provider(purpose)) << provider_out_;
  }

  Root root_;
  TempDir in_;
  std::string provider_out_;
};

X509* leaf() { return pki().c.leaf.cert.get(); }
X509* inter() { return pki().c.inter.cert.get(); }
CrlSpec numbered(long n) { return {.number = n}; }

TEST_F(Revocation, GoodCrlsFromRootAndIntermediate) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  ASSERT_EQ(0, crl("inter.crl.pem", pki().c.inter, {}, numbered(1)).status);
  expect_all("licensing", "OK");
  expect_all("req-chain", "OK");
}

TEST_F(Revocation, RootCrlRevokesTheIntermediateUnderChainScope) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {inter()}, numbered(1)).status);
  ASSERT_EQ(0, crl("inter.crl.pem", pki().c.inter, {}, numbered(1)).status);
  expect_all("licensing", "CERT_REVOKED");
}

TEST_F(Revocation, RefreshReplacesTheCrlInOneChange) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  RunResult first = crl("i1.pem", pki().c.inter, {}, numbered(1));
  ASSERT_EQ(0, first.status) << first.err;
  expect_all("req-chain", "OK");
  RunResult next = crl("i2.pem", pki().c.inter, {leaf()}, numbered(2));
  ASSERT_EQ(0, next.status) << next.err;
  EXPECT_NE(std::string::npos, next.err.find("replaced")) << next.err;
  EXPECT_EQ(first.out, next.out) << "the refreshed CRL keeps its name";
  expect_all("req-chain", "CERT_REVOKED");
  expect_all("licensing", "CERT_REVOKED");
}

TEST_F(Revocation, OlderCrlIsRefusedAndChangesNothing) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  ASSERT_EQ(0, crl("i5.pem", pki().c.inter, {leaf()}, numbered(5)).status);
  Tree before = snapshot(root_.path());
  RunResult older = crl("i4.pem", pki().c.inter, {}, numbered(4));
  EXPECT_EQ(1, older.status);
  EXPECT_NE(std::string::npos, older.err.find("CRL_NOT_NEWER")) << older.err;
  EXPECT_EQ("", diff(before, snapshot(root_.path())));
  expect_all("req-chain", "CERT_REVOKED");
}

TEST_F(Revocation, ForgedIntermediateCrlIsRefusedWithItsIssuer) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  ASSERT_EQ(0, crl("i1.pem", pki().c.inter, {}, numbered(1)).status);
  Tree before = snapshot(root_.path());
  RunResult forged = crl("forged.pem", pki().forger, {}, numbered(9), {"--issuer", in_ / "inter.pem"});
  EXPECT_EQ(1, forged.status);
  EXPECT_NE(std::string::npos, forged.err.find("CRL_SIGNATURE_INVALID")) << forged.err;
  EXPECT_EQ("", diff(before, snapshot(root_.path())));
  expect_all("req-chain", "OK");
}

// Without --issuer nothing at install can check an intermediate's CRL: it is accepted with a
// warning, and every consumer then fails the chain it meets (the signature is checked there).
TEST_F(Revocation, ForgedIntermediateCrlWithoutIssuerFailsEveryConsumer) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  RunResult forged = crl("forged.pem", pki().forger, {}, numbered(1));
  ASSERT_EQ(0, forged.status) << forged.err;
  EXPECT_NE(std::string::npos, forged.err.find("--issuer")) << forged.err;
  expect_all("req-chain", "CRL_INVALID");
}

TEST_F(Revocation, ExpiredCrlFailsUnderTheDefaultPolicyAndInstallSaysWhere) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  RunResult expired = crl("i1.pem", pki().c.inter, {}, {.last_update = -10 * kDay, .next_update = -kDay, .number = 1},
                          {"--issuer", in_ / "inter.pem"});
  ASSERT_EQ(0, expired.status) << expired.err;
  EXPECT_NE(std::string::npos, expired.err.find("licensing")) << "names the purposes it fails: " << expired.err;
  expect_all("licensing", "CRL_EXPIRED");
}

TEST_F(Revocation, DeltaWithoutItsBaseIsRefused) {
  Tree before = snapshot(root_.path());
  RunResult delta = crl("d.pem", pki().c.inter, {leaf()}, {.number = 2, .delta_base = 1});
  EXPECT_EQ(1, delta.status);
  EXPECT_NE(std::string::npos, delta.err.find("CRL_DELTA_WITHOUT_BASE")) << delta.err;
  EXPECT_EQ("", diff(before, snapshot(root_.path())));
}

// OpenSSL (RFC 5280 5.2.6) applies a delta only when the base CRL or the certificate names
// where deltas are (freshestCRL): with such a base the delta revokes in every consumer.
TEST_F(Revocation, DeltaOnItsBaseRevokes) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  ASSERT_EQ(0, crl("base.pem", pki().c.inter, {}, {.number = 1, .freshest = "URI:http://crl.test/delta.crl"}).status);
  expect_all("req-chain", "OK");
  RunResult delta = crl("d.pem", pki().c.inter, {leaf()}, {.number = 2, .delta_base = 1});
  ASSERT_EQ(0, delta.status) << delta.err;
  EXPECT_EQ(std::string::npos, delta.err.find("freshestCRL")) << delta.err;
  expect_all("req-chain", "CERT_REVOKED");
}

// Without freshestCRL nothing applies the delta: install says so instead of letting the
// administrator believe the certificate is revoked.
TEST_F(Revocation, DeltaOnABaseWithoutFreshestCrlIsWarnedAbout) {
  ASSERT_EQ(0, crl("root.pem", pki().c.root, {}, numbered(1)).status);
  ASSERT_EQ(0, crl("base.pem", pki().c.inter, {}, numbered(1)).status);
  RunResult delta = crl("d.pem", pki().c.inter, {leaf()}, {.number = 2, .delta_base = 1});
  ASSERT_EQ(0, delta.status) << delta.err;
  EXPECT_NE(std::string::npos, delta.err.find("has no freshestCRL extension")) << delta.err;
  expect_all("req-chain", "OK");
}

}  // namespace
}  // namespace ptrust::testing
