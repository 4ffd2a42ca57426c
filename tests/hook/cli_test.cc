// `ptrust verify` (offline) and `ptrust probe` (against openssl s_server on 127.0.0.1):
// the hook's decisions through the real binary, output and exit codes.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cstdio>
#include <future>
#include <thread>

#include "tests/hook/hook_util.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

constexpr long kDay = 24 * 3600;

const Chain& chain_of(KeyKind k) {
  static std::map<KeyKind, Chain> cache;
  auto it = cache.find(k);
  if (it == cache.end()) it = cache.emplace(k, make_chain(k, std::string(key_name(k)))).first;
  return it->second;
}

RunResult pt(const Root& r, std::vector<std::string> args) {
  args.insert(args.begin(), {"--config", r.config()});
  return ptrust(r.path(), args);
}

class VerifyCli : public ::testing::Test {
 protected:
  void SetUp() override {
    chain_file_ = root_.path() + "/chain.pem";
    write_file(chain_file_, pem_of({&c().leaf, &c().inter}));
  }
  static const Chain& c() { return chain_of(KeyKind::kP256); }
  Root root_;
  std::string chain_file_;
};

struct VerifyCase {
  const char* name;
  std::vector<std::string> args;  // after `verify --purpose licensing CHAIN`
  bool install_ca;
  bool revoke_leaf;
  int status;
  const char* reason;
};

TEST_F(VerifyCli, TableOfRuns) {
  const std::vector<VerifyCase> cases = {
      {"accepts", {}, true, false, 0, "OK"},
      {"accepts host", {"--host", "server.test"}, true, false, 0, "OK"},
      {"rejects host", {"--host", "other.test"}, true, false, 1, "HOSTNAME_MISMATCH"},
      {"accepts ip", {"--ip", "127.0.0.1"}, true, false, 0, "OK"},
      {"rejects ip", {"--ip", "127.0.0.2"}, true, false, 1, "IP_MISMATCH"},
      {"no trust", {}, false, false, 1, "NO_TRUST_FOR_PURPOSE"},
      {"at in the future", {"--at", "@" + std::to_string(std::time(nullptr) + 60 * kDay)}, true, false, 1, "CERT_EXPIRED"},
      {"at in the past", {"--at", "2001-01-01"}, true, false, 1, "CERT_NOT_YET_VALID"},
      {"at now-ish", {"--at", "@" + std::to_string(std::time(nullptr) + kDay)}, true, false, 0, "OK"},
      {"revoked", {}, true, true, 1, "CERT_REVOKED"},
      {"revoked, crl off for this run", {"--crl-policy", "off"}, true, true, 0, "OK"},
      {"no crl, require for this run", {"--crl-policy", "require"}, true, false, 1, "CRL_MISSING"},
      {"no crl, require leaf for this run", {"--crl-policy", "require", "--crl-scope", "leaf"}, true, false, 1, "CRL_MISSING"},
  };
  for (const auto& vc : cases) {
    SCOPED_TRACE(vc.name);
    Root root;
    write_file(root.path() + "/chain.pem", pem_of({&c().leaf, &c().inter}));
    if (vc.install_ca) root.install(c().root.cert.get(), CertType::kCa, {"licensing"});
    if (vc.revoke_leaf) root.write_crl("inter.crl", make_crl(c().inter, {c().leaf.cert.get()}).get());
    std::vector<std::string> args = {"verify", "--purpose", "licensing", root.path() + "/chain.pem", "--json"};
    args.insert(args.end(), vc.args.begin(), vc.args.end());
    RunResult r = pt(root, args);
    EXPECT_EQ(vc.status, r.status) << r.out << r.err;
    auto doc = boost::json::parse(r.out).as_object();
    EXPECT_EQ(vc.reason, doc.at("reason").as_string());
    EXPECT_EQ(vc.status == 0, doc.at("verified").as_bool());
    EXPECT_EQ("licensing", doc.at("purpose").as_string());
    EXPECT_TRUE(doc.contains("generation"));
  }
}

TEST_F(VerifyCli, HumanOutputNamesReasonModeAndGeneration) {
  root_.install(c().root.cert.get(), CertType::kCa, {"licensing"});
  RunResult ok = pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--host", "server.test"});
  EXPECT_EQ(0, ok.status) << ok.err;
  EXPECT_NE(std::string::npos, ok.out.find("attempt 1/1: verified reason=OK purpose=licensing mode=ca generation="));
  // People see the generation's last four digits; --json carries the whole counter.
  RunResult js = pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--host", "server.test", "--json"});
  auto g = boost::json::parse(js.out).at("generation").to_number<std::uint64_t>();
  char tail[16];
  std::snprintf(tail, sizeof tail, "..%04u", static_cast<unsigned>(g % 10000));
  EXPECT_NE(std::string::npos, ok.out.find(std::string("generation=") + tail + "\n")) << ok.out << js.out;
  RunResult bad = pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--host", "nope.test"});
  EXPECT_EQ(1, bad.status);
  EXPECT_NE(std::string::npos, bad.out.find("FAILED reason=HOSTNAME_MISMATCH")) << bad.out;
}

TEST_F(VerifyCli, CrlScopeOverride) {
  root_.install(c().root.cert.get(), CertType::kCa, {"licensing"});
  root_.write_crl("root.crl", make_crl(c().root, {c().inter.cert.get()}).get());
  root_.write_crl("inter.crl", make_crl(c().inter, {}).get());
  EXPECT_EQ(1, pt(root_, {"verify", "--purpose", "licensing", chain_file_}).status);
  EXPECT_EQ(0, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--crl-scope", "leaf"}).status);
}

TEST_F(VerifyCli, UsageAndInputErrors) {
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", chain_file_}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--at", "yesterday"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--at", "@99999999999999999999"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--host", ""}).status)
      << "an empty name would switch the host check off";
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--ip", "not-an-ip"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--crl-policy", "maybe"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--crl-scope", "all"}).status);
  EXPECT_EQ(2, pt(root_, {"verify", "--purpose", "licensing", chain_file_, "--host", "a", "--ip", "127.0.0.1"}).status);
  RunResult unknown = pt(root_, {"verify", "--purpose", "nope", chain_file_});
  EXPECT_EQ(1, unknown.status);
  EXPECT_NE(std::string::npos, unknown.err.find("UNKNOWN_PURPOSE"));
  write_file(root_.path() + "/empty.pem", "no certificates here\n");
  RunResult empty = pt(root_, {"verify", "--purpose", "licensing", root_.path() + "/empty.pem"});
  EXPECT_EQ(1, empty.status);
  EXPECT_NE(std::string::npos, empty.err.find("INPUT_UNREADABLE")) << empty.err;
}

// probe against openssl s_server: every key kind, TLS 1.2 and 1.3, accept and reject.
class ProbeCli : public ::testing::TestWithParam<std::tuple<KeyKind, int>> {};

TEST_P(ProbeCli, AcceptsTrustedAndRejectsUntrustedPeer) {
  auto [kind, version] = GetParam();
  const Chain& c = chain_of(kind);
  Root root;
  SServer server(TempDir(), c.leaf, {&c.inter}, version);
  RunResult none = pt(root, {"probe", server.target(), "--purpose", "licensing", "--servername", "server.test"});
  EXPECT_EQ(1, none.status) << none.out << none.err;
  EXPECT_NE(std::string::npos, none.out.find("reason=NO_TRUST_FOR_PURPOSE")) << none.out;

  root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  RunResult ok = pt(root, {"probe", server.target(), "--purpose", "licensing", "--servername", "server.test", "--json"});
  EXPECT_EQ(0, ok.status) << ok.out << ok.err;
  auto doc = boost::json::parse(ok.out).as_object();
  EXPECT_TRUE(doc.at("verified").as_bool());
  EXPECT_EQ("ca", doc.at("mode").as_string());

  RunResult by_ip = pt(root, {"probe", server.target(), "--purpose", "licensing"});  // checks 127.0.0.1
  EXPECT_EQ(0, by_ip.status) << by_ip.out;
  RunResult wrong_name = pt(root, {"probe", server.target(), "--purpose", "licensing", "--servername", "x.test"});
  EXPECT_EQ(1, wrong_name.status);
  EXPECT_NE(std::string::npos, wrong_name.out.find("reason=HOSTNAME_MISMATCH")) << wrong_name.out;
  RunResult empty_name = pt(root, {"probe", server.target(), "--purpose", "licensing", "--servername", ""});
  EXPECT_EQ(2, empty_name.status) << "an empty name would switch the host check off: " << empty_name.out;
}

INSTANTIATE_TEST_SUITE_P(SServer, ProbeCli,
                         ::testing::Combine(::testing::Values(KeyKind::kRsa2048, KeyKind::kP256, KeyKind::kEd25519),
                                            ::testing::Values(TLS1_2_VERSION, TLS1_3_VERSION)),
                         [](const auto& info) {
                           return std::string(key_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) == TLS1_3_VERSION ? "_TLS13" : "_TLS12");
                         });

// One probe process, one SSL_CTX: a CA removed between attempts fails the next attempt.
TEST(ProbeCliLive, TrustChangeBetweenAttemptsWithoutRestart) {
  const Chain& c = chain_of(KeyKind::kP256);
  Root root;
  std::string uuid = root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  SServer server(TempDir(), c.leaf, {&c.inter}, TLS1_3_VERSION);
  TempDir tmp;
  Background probe({PTRUST_BIN, "--root", root.path(), "--config", root.config(), "probe", server.target(), "--purpose",
                    "licensing", "--servername", "server.test", "--count", "2", "--interval", "2500"},
                   tmp.path());
  ASSERT_TRUE(probe.wait_for_output("attempt 1/2:"));  // the change lands 2.5 s before attempt 2
  root.uninstall(uuid);
  RunResult r = probe.wait();
  EXPECT_EQ(1, r.status);
  EXPECT_NE(std::string::npos, r.out.find("attempt 1/2: verified reason=OK")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("attempt 2/2: FAILED reason=NO_TRUST_FOR_PURPOSE")) << r.out;
}

// probe names the peer as verify does (--host / --ip) and takes verify's CRL overrides.
TEST(ProbeCliLive, HostIpAndCrlOverrides) {
  const Chain& c = chain_of(KeyKind::kP256);
  Root root;
  root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  root.write_crl("root.crl", make_crl(c.root, {c.inter.cert.get()}).get());  // the intermediate revoked
  root.write_crl("inter.crl", make_crl(c.inter, {}).get());
  SServer server(TempDir(), c.leaf, {&c.inter}, TLS1_3_VERSION);
  auto probe = [&](std::vector<std::string> extra) {
    std::vector<std::string> args{"probe", server.target(), "--purpose", "licensing"};
    args.insert(args.end(), extra.begin(), extra.end());
    return pt(root, args);
  };
  RunResult chain = probe({"--host", "server.test"});  // licensing: crl-scope chain
  EXPECT_EQ(1, chain.status) << chain.out << chain.err;
  EXPECT_NE(std::string::npos, chain.out.find("reason=CERT_REVOKED")) << chain.out;
  RunResult leaf = probe({"--host", "server.test", "--crl-scope", "leaf"});
  EXPECT_EQ(0, leaf.status) << leaf.out << leaf.err;
  RunResult off = probe({"--ip", "127.0.0.1", "--crl-policy", "off"});
  EXPECT_EQ(0, off.status) << off.out << off.err;
  RunResult wrong_host = probe({"--host", "x.test", "--crl-policy", "off"});
  EXPECT_NE(std::string::npos, wrong_host.out.find("reason=HOSTNAME_MISMATCH")) << wrong_host.out;
  RunResult wrong_ip = probe({"--ip", "10.9.8.7", "--crl-policy", "off"});
  EXPECT_NE(std::string::npos, wrong_ip.out.find("reason=IP_MISMATCH")) << wrong_ip.out;
  // The SNI is a name sent, so --servername checks it unless --host says otherwise.
  RunResult sni_and_host = probe({"--servername", "x.test", "--host", "server.test", "--crl-scope", "leaf"});
  EXPECT_EQ(0, sni_and_host.status) << sni_and_host.out;
  // An IP literal is never sent as SNI (RFC 6066) and never taken as a host name.
  EXPECT_EQ(2, probe({"--servername", "127.0.0.1"}).status);
  EXPECT_EQ(2, probe({"--host", "127.0.0.1"}).status);
  EXPECT_EQ(2, probe({"--host", "server.test", "--ip", "127.0.0.1"}).status);
  EXPECT_EQ(2, probe({"--crl-policy", "maybe"}).status);
}

TEST(ProbeCliLive, UsageAndConnectErrors) {
  Root root;
  EXPECT_EQ(2, pt(root, {"probe", "--purpose", "licensing"}).status);
  EXPECT_EQ(2, pt(root, {"probe", "127.0.0.1", "--purpose", "licensing"}).status);
  EXPECT_EQ(2, pt(root, {"probe", "127.0.0.1:1", "--purpose", "licensing", "--count", "0"}).status);
  RunResult refused = pt(root, {"probe", "127.0.0.1:1", "--purpose", "licensing", "--json"});
  EXPECT_EQ(1, refused.status);
  EXPECT_EQ("CONNECT_FAILED", boost::json::parse(refused.out).as_object().at("reason").as_string());
}

}  // namespace
}  // namespace ptrust::testing
