// `ptrust stunnel render` refusals and stanza shape (no stunnel process needed).
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>

#include <filesystem>

#include "core/config.h"
#include "core/error.h"
#include "tests/stunnel/fixture.h"

namespace ptrust::testing {
namespace {

RunResult render(const Env& env, const std::string& purpose, std::vector<std::string> extra) {
  std::vector<std::string> args{"stunnel", "render", "--purpose", purpose, "--name", "svc",
                                "--accept", "127.0.0.1:1", "--connect", "127.0.0.1:2"};
  args.insert(args.end(), extra.begin(), extra.end());
  return env.ptrust(args);
}

bool has_line(const std::string& text, const std::string& line) {
  return ("\n" + text).find("\n" + line + "\n") != std::string::npos;
}

TEST(StunnelRenderTest, ModeNoneIsRefusedNeverAnUnverifiedTunnel) {
  Env env;
  for (const char* via : {"files", "provider"}) {
    RunResult r = render(env, "licensing", {"--check-host", "leaf.test", "--via", via});
    EXPECT_EQ(r.status, 1);
    EXPECT_NE(r.err.find("NO_TRUST_FOR_PURPOSE"), std::string::npos) << r.err;
    EXPECT_EQ(r.out, "");
  }
  env.install("root", "ca", "licensing");
  EXPECT_EQ(render(env, "licensing", {"--check-host", "leaf.test"}).status, 0);
}

// stunnel resolves relative paths against its own working directory: never render one.
TEST(StunnelRenderTest, ARelativeRootIsRenderedAsAnAbsolutePath) {
  Env env;
  env.install("root", "ca", "licensing");
  std::filesystem::path root(env.root());
  RunResult r = run({"env", "-C", root.parent_path().string(), PTRUST_BIN, "--root", root.filename().string(),
                     "stunnel", "render", "--purpose", "licensing", "--name", "svc", "--accept", "127.0.0.1:1",
                     "--connect", "127.0.0.1:2", "--check-host", "leaf.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has_line(r.out, "CAfile = " + env.root() + "/etc/trusted-certs/ca-bundle-licensing.pem")) << r.out;
}

TEST(StunnelRenderTest, ChainModeNeedsASubjectCheckUnlessExplicitlyWaived) {
  Env env;
  env.install("root", "ca", "licensing");
  RunResult r = render(env, "licensing", {});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("SUBJECT_CHECK_MISSING"), std::string::npos) << r.err;
  r = render(env, "licensing", {"--no-subject-check"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has_line(r.out, "verifyChain = yes"));
  EXPECT_EQ(r.out.find("checkHost"), std::string::npos);
  EXPECT_EQ(render(env, "licensing", {"--check-host", "a", "--check-ip", "127.0.0.1"}).status, 2);
  EXPECT_EQ(render(env, "licensing", {"--check-ip", "not-an-ip"}).status, 2);
}

TEST(StunnelRenderTest, CaModeFilesStanzaUsesChosenBundleAndCrlFile) {
  Env env;
  env.install("root", "ca", "licensing");
  env.install("general_ca", "ca");
  env.install_crl();
  RunResult r = render(env, "licensing", {"--check-host", "leaf.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char* l : {"[svc]", "client = yes", "sessionResume = no", "verifyChain = yes", "checkHost = leaf.test"})
    EXPECT_TRUE(has_line(r.out, l)) << l << "\n" << r.out;
  EXPECT_TRUE(has_line(r.out, "CAfile = " + env.root() + "/etc/trusted-certs/ca-bundle-licensing.pem")) << r.out;
  // The CRLs that can matter for licensing, in a file named by purpose and content.
  std::string prefix = "\nCRLfile = " + env.root() + "/etc/ptrust/stunnel-crls/licensing.";
  auto at = r.out.find(prefix);
  ASSERT_NE(at, std::string::npos) << r.out;
  std::string file = r.out.substr(at + 11, r.out.find('\n', at + 1) - at - 11);
  struct stat st{};
  ASSERT_EQ(::lstat(file.c_str(), &st), 0) << file;
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  EXPECT_EQ(r.out.find("CRLpath"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("verifyPeer"), std::string::npos);
  // Rendering again gives the same text and leaves the file as it was.
  EXPECT_EQ(render(env, "licensing", {"--check-host", "leaf.test"}).out, r.out);
  // A symlink in its place is never followed: refused, nothing printed.
  ASSERT_EQ(::unlink(file.c_str()), 0);
  ASSERT_EQ(::symlink(env.pem("root").c_str(), file.c_str()), 0);
  RunResult bad = render(env, "licensing", {"--check-host", "leaf.test"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("STORE_UNSAFE"), std::string::npos) << bad.err;
  EXPECT_EQ(bad.out, "");
  ASSERT_EQ(::unlink(file.c_str()), 0);
  // ldaps has no CA of its own: the general bundle.
  r = render(env, "ldaps", {"--check-host", "general.test"});
  EXPECT_TRUE(has_line(r.out, "CAfile = " + env.root() + "/etc/trusted-certs/ca-bundle-general.pem")) << r.out;
}

TEST(StunnelRenderTest, CrlPolicyOffRendersNoCrlPath) {
  Env env;
  write_file(env.config_file(), "purposes:\n  licensing: {crl-policy: off}\n");
  env.install("root", "ca", "licensing");
  env.install_crl();
  RunResult r = render(env, "licensing", {"--check-host", "leaf.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out.find("\nCRLpath"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("\nCRLfile"), std::string::npos) << r.out;
}

// crl-policy require with no CRL of the purpose's CAs: stunnel must still demand one, from a
// directory that never holds a CRL (every peer refused, as ptrust refuses it).
TEST(StunnelRenderTest, RequireWithoutAnApplicableCrlPointsAtADirectoryWithoutCrls) {
  Env env;
  write_file(env.config_file(), "purposes:\n  licensing: {crl-policy: require}\n  ldaps: {}\n");
  env.install("root", "ca", "licensing");
  env.install("other_ca", "ca", "ldaps");
  env.install_crl("other_ca");
  RunResult r = render(env, "licensing", {"--check-host", "leaf.test"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has_line(r.out, "CRLpath = " + env.root() + "/etc/ptrust/stunnel-crls")) << r.out;
  EXPECT_EQ(r.out.find("CRLfile"), std::string::npos) << r.out;
}

TEST(StunnelRenderTest, PinnedModeStanzaIsVerifyPeerWithoutHostCheck) {
  Env env;
  env.install("root", "ca", "peer");
  env.install("pinned", "pinned", "peer");
  for (const char* via : {"files", "provider"}) {
    RunResult r = render(env, "peer", {"--check-host", "peer.test", "--via", via});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has_line(r.out, "verifyPeer = yes")) << r.out;
    EXPECT_EQ(r.out.find("verifyChain"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("checkHost"), std::string::npos) << r.out;
    EXPECT_EQ(r.out.find("CRLpath"), std::string::npos) << r.out;
  }
}

TEST(StunnelRenderTest, CorruptChosenBundleIsAnErrorNotAFallback) {
  Env env;
  env.install("root", "ca", "licensing");
  env.install("general_ca", "ca");
  write_file(env.root() + "/etc/trusted-certs/ca-bundle-licensing.pem", "not a certificate\n");
  RunResult r = render(env, "licensing", {"--check-host", "leaf.test"});
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("STORE_CORRUPT"), std::string::npos) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(StunnelRenderTest, ProviderFormUsesPlaceholderThatGrantsNothing) {
  Env env;
  env.install("root", "ca", "licensing");
  std::string cnf = env.path("o.cnf");
  RunResult r = render(env, "licensing",
                       {"--check-host", "leaf.test", "--via", "provider", "--openssl-conf", cnf, "--module", "/m.so"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string ph = env.root() + "/etc/ptrust/stunnel-placeholder.pem";
  EXPECT_TRUE(has_line(r.out, "CAfile = " + ph)) << r.out;
  EXPECT_TRUE(has_line(r.out, "config = VerifyCAStore:ptrust://licensing")) << r.out;
  std::string text = read_file(cnf);
  EXPECT_TRUE(has_line(text, "module = /m.so")) << text;
  EXPECT_TRUE(has_line(text, "root = " + env.root())) << text;
  EXPECT_TRUE(has_line(text, "activate = 1")) << text;

  struct stat st{};
  ASSERT_EQ(::stat(ph.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  std::string pem = read_file(ph);
  EXPECT_EQ(pem.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(pem.find("-----BEGIN"), pem.rfind("-----BEGIN"));  // exactly one block
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ossl::X509Ptr x(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  ASSERT_TRUE(x);
  EXPECT_EQ(X509_check_ca(x.get()), 0);                         // cannot be an issuer
  EXPECT_EQ(X509_get_key_usage(x.get()) & KU_KEY_CERT_SIGN, 0u);
  // Stable: rendering again reuses it (the stanza text does not change).
  EXPECT_EQ(render(env, "licensing", {"--check-host", "leaf.test", "--via", "provider"}).out, r.out);
  EXPECT_EQ(read_file(ph), pem);
}

}  // namespace
}  // namespace ptrust::testing
