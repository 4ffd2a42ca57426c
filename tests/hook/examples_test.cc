// The examples, built and run against openssl s_server on 127.0.0.1.
#include <gtest/gtest.h>

#include <future>
#include <set>
#include <thread>

#include "tests/hook/hook_util.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

const Chain& chain() {
  static Chain c = make_chain(KeyKind::kP256, "Ex");
  return c;
}

// The leaf carries IP SAN 127.0.0.1; SSL_set1_host on an IP literal checks the IP SAN.
TEST(Examples, CustomClientVerifiesAndRefuses) {
  Root root;
  TempDir tmp;
  SServer server(tmp, chain().leaf, {&chain().inter}, TLS1_3_VERSION);
  std::string port = std::to_string(server.port());
  RunResult none = run({CUSTOM_CLIENT, "127.0.0.1", port, "licensing", root.path(), root.config()});
  EXPECT_EQ(1, none.status) << none.out << none.err;
  EXPECT_NE(std::string::npos, none.out.find("reason=NO_TRUST_FOR_PURPOSE")) << none.out;
  EXPECT_NE(std::string::npos, none.out.find("handshake refused"));

  root.install(chain().root.cert.get(), CertType::kCa, {"licensing"});
  RunResult ok = run({CUSTOM_CLIENT, "127.0.0.1", port, "licensing", root.path(), root.config()});
  EXPECT_EQ(0, ok.status) << ok.out << ok.err;
  EXPECT_NE(std::string::npos, ok.out.find("verdict: verified reason=OK mode=ca generation=..")) << ok.out;
  EXPECT_NE(std::string::npos, ok.out.find("response: HTTP/1.0 200 ok")) << ok.out;

  RunResult bad_purpose = run({CUSTOM_CLIENT, "127.0.0.1", port, "nope", root.path(), root.config()});
  EXPECT_EQ(1, bad_purpose.status);
  EXPECT_EQ(2, run({CUSTOM_CLIENT, "127.0.0.1"}).status);
}

TEST(Examples, LicensingAgentFollowsTrustChangesWithoutRestart) {
  Root root;
  TempDir tmp;
  std::string uuid = root.install(chain().root.cert.get(), CertType::kCa, {"licensing"});
  SServer server(tmp, chain().leaf, {&chain().inter}, TLS1_2_VERSION);
  // Each change is made right after the agent reports a check-in, 2 s before the next one.
  Background agent({LICENSING_AGENT, "127.0.0.1", std::to_string(server.port()), "2000", "3", root.path(), root.config()},
                   tmp.path());
  ASSERT_TRUE(agent.wait_for_output("check-in 1:"));
  root.uninstall(uuid);
  ASSERT_TRUE(agent.wait_for_output("check-in 2:"));
  root.install(chain().leaf.cert.get(), CertType::kPinned, {"licensing"});  // pinned takes over
  RunResult r = agent.wait();
  EXPECT_EQ(0, r.status) << r.out << r.err;
  EXPECT_NE(std::string::npos, r.out.find("check-in 1: verified reason=OK mode=ca")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("check-in 2: FAILED reason=NO_TRUST_FOR_PURPOSE")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("check-in 3: verified reason=OK mode=pinned")) << r.out;
}

// CRLs refreshed again and again under a running agent (crl-policy require, chain scope):
// each refresh replaces the CRL in one change, so no check-in ever sees the store without one.
TEST(Examples, LicensingAgentSeesNoGapAcrossCrlRefreshes) {
  Root root;
  TempDir tmp;
  write_file(tmp / "ptrust.yaml", "purposes:\n  licensing: { crl-policy: require, crl-scope: chain }\n");
  auto pt = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", tmp / "ptrust.yaml"});
    return ptrust(root.path(), args);
  };
  write_file(tmp / "root.pem", chain().root.pem());
  ASSERT_EQ(0, pt({"install", tmp / "root.pem", "--ca", "--purpose", "licensing"}).status);
  auto install_crl = [&](const Issued& issuer, long number) {
    std::string file = tmp / ("crl-" + std::to_string(number) + ".pem");
    write_file(file, crl_pem(make_crl_spec(issuer, {}, {.number = number}).get()));
    return pt({"crl", "install", file});
  };
  ASSERT_EQ(0, install_crl(chain().root, 1).status);
  ASSERT_EQ(0, install_crl(chain().inter, 1).status);
  SServer server(tmp, chain().leaf, {&chain().inter}, TLS1_3_VERSION);
  Background agent({LICENSING_AGENT, "127.0.0.1", std::to_string(server.port()), "20", "150", root.path(),
                    tmp / "ptrust.yaml"},
                   tmp.path());
  ASSERT_TRUE(agent.wait_for_output("check-in 1:"));
  int refreshed = 0;
  for (long n = 2; n <= 25; ++n) {
    RunResult r = install_crl(n % 5 == 0 ? chain().root : chain().inter, n);
    EXPECT_EQ(0, r.status) << r.err;
    EXPECT_NE(std::string::npos, r.err.find("replaced")) << r.err;
    refreshed += r.status == 0;
  }
  RunResult r = agent.wait();
  EXPECT_EQ(0, r.status) << r.out << r.err;
  EXPECT_EQ(std::string::npos, r.out.find("FAILED")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("check-in 150: verified")) << r.out;
  // The refreshes landed while it ran: the check-ins saw several store generations.
  std::set<std::string> generations;
  for (size_t at = r.out.find("generation=.."); at != std::string::npos; at = r.out.find("generation=..", at + 1))
    generations.insert(r.out.substr(at + 13, 4));
  EXPECT_GE(generations.size(), 5u) << r.out;
  EXPECT_EQ(24, refreshed);
}

TEST(Examples, DemoScriptRuns) {
  TempDir root;
  RunResult r = run({"bash", DEMO_SCRIPT, root.path(), PTRUST_BIN, BUILD_DIR});
  EXPECT_EQ(0, r.status) << r.out << r.err;
  for (const char* want : {"FAILED reason=NO_TRUST_FOR_PURPOSE", "verdict: verified reason=OK",
                           "check-in 2: FAILED reason=NO_TRUST_FOR_PURPOSE", "check-in 3: verified",
                           "FAILED reason=CERT_EXPIRED"})
    EXPECT_NE(std::string::npos, r.out.find(want)) << want << "\n" << r.out;
}

// Users copy the examples: built with LeakSanitizer, no exit path may leak (an early return
// after attach() failed used to leak the SSL_CTX).
TEST(Examples, NoExitPathLeaks) {
  Root root;
  TempDir tmp;
  write_file(tmp / "other.yaml", "purposes:\n  other: {}\n");
  auto clean = [](const RunResult& r) { return r.err.find("LeakSanitizer") == std::string::npos; };
  SServer server(tmp, chain().leaf, {&chain().inter}, TLS1_3_VERSION);
  std::string port = std::to_string(server.port());
  RunResult bad_purpose = run({CUSTOM_CLIENT_LSAN, "127.0.0.1", port, "nope", root.path(), root.config()});
  EXPECT_EQ(1, bad_purpose.status) << bad_purpose.err;
  EXPECT_TRUE(clean(bad_purpose)) << bad_purpose.err;
  RunResult unreachable = run({CUSTOM_CLIENT_LSAN, "127.0.0.1", "1", "licensing", root.path(), root.config()});
  EXPECT_EQ(1, unreachable.status) << unreachable.err;
  EXPECT_TRUE(clean(unreachable)) << unreachable.err;
  root.install(chain().root.cert.get(), CertType::kCa, {"licensing"});
  RunResult ok = run({CUSTOM_CLIENT_LSAN, "127.0.0.1", port, "licensing", root.path(), root.config()});
  EXPECT_EQ(0, ok.status) << ok.out << ok.err;
  EXPECT_TRUE(clean(ok)) << ok.err;
  RunResult agent_undeclared = run({LICENSING_AGENT_LSAN, "127.0.0.1", port, "0", "1", root.path(), tmp / "other.yaml"});
  EXPECT_EQ(1, agent_undeclared.status) << agent_undeclared.err;
  EXPECT_TRUE(clean(agent_undeclared)) << agent_undeclared.err;
  RunResult agent = run({LICENSING_AGENT_LSAN, "127.0.0.1", port, "0", "2", root.path(), root.config()});
  EXPECT_EQ(0, agent.status) << agent.out << agent.err;
  EXPECT_TRUE(clean(agent)) << agent.err;
}

}  // namespace
}  // namespace ptrust::testing
