// The real `openssl` binary loading ptrust.so: storeutl, verify, s_client, OPENSSL_CONF.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>

#include "tests/provider/fixture.h"

namespace ptrust::testing {
namespace {

class ProviderCli : public ::testing::Test {
 protected:
  void SetUp() override { store_.populate(); }

  std::vector<std::string> env() const { return {"PTRUST_ROOT=" + store_.path()}; }

  RunResult verify(const std::string& uri, const std::string& leaf, const std::string& untrusted = "",
                   bool crl_check = false, const std::string& cwd = "") {
    std::vector<std::string> args{"verify"};
    auto p = provider_args();
    args.insert(args.end(), p.begin(), p.end());
    args.insert(args.end(), {"-CAstore", uri, "-no-CAfile", "-no-CApath"});
    if (!untrusted.empty()) args.insert(args.end(), {"-untrusted", store_.pki(untrusted + ".pem")});
    if (crl_check) args.push_back("-crl_check");
    args.push_back(store_.pki(leaf + ".pem"));
    return openssl(args, env(), cwd);
  }

  RunResult storeutl(const std::string& uri, const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{"storeutl"};
    auto p = provider_args();
    args.insert(args.end(), p.begin(), p.end());
    args.insert(args.end(), extra.begin(), extra.end());
    args.push_back(uri);
    return openssl(args, env());
  }

  StoreRoot store_;
};

struct VerifyCase {
  const char* name;
  const char* uri;
  const char* leaf;
  const char* untrusted;
  bool crl_check;
  bool ok;
  const char* says;  // expected in stdout+stderr
};

const VerifyCase kVerifyCases[] = {
    {"ChainThroughIntermediate", "ptrust://licensing", "leaf", "inter", false, true, "OK"},
    {"WrongCaFails", "ptrust://licensing", "other_leaf", "", false, false, "unable to get local issuer"},
    {"GeneralNotUsedWhenPurposeHasCa", "ptrust://licensing", "general_leaf", "", false, false,
     "unable to get local issuer"},
    {"GeneralUsedWhenPurposeHasNone", "ptrust://ldaps", "general_leaf", "", false, true, "OK"},
    {"PurposeCaNotUsedForOtherPurpose", "ptrust://ldaps", "leaf", "inter", false, false,
     "unable to get local issuer"},
    {"GeneralUri", "ptrust://general", "general_leaf", "", false, true, "OK"},
    {"GeneralUriHasNoPurposeCa", "ptrust://general", "leaf", "inter", false, false, "unable to get local issuer"},
    {"PinnedSelfSignedLeaf", "ptrust://peer", "pinned", "", false, true, "OK"},
    {"PinnedImpostorSameSubjectOtherKey", "ptrust://peer", "impostor", "", false, false, "error"},
    {"PinnedModeIgnoresCaOfSamePurpose", "ptrust://peer", "leaf", "inter", false, false,
     "unable to get local issuer"},
    {"RevokedLeafWithCrlCheck", "ptrust://licensing", "revoked", "inter", true, false, "certificate revoked"},
    {"GoodLeafWithCrlCheck", "ptrust://licensing", "leaf", "inter", true, true, "OK"},
    {"UnknownPurposeFails", "ptrust://nosuch", "leaf", "inter", false, false, "UNKNOWN_PURPOSE"},
    {"UpperCasePurposeIsMalformed", "ptrust://LICENSING", "leaf", "inter", false, false, "MALFORMED_URI"},
    {"TrailingSlashIsMalformed", "ptrust://licensing/", "leaf", "inter", false, false, "MALFORMED_URI"},
    {"SchemeWithoutSlashesIsMalformed", "ptrust:licensing", "leaf", "inter", false, false, "MALFORMED_URI"},
};

TEST_F(ProviderCli, VerifyTable) {
  for (const auto& c : kVerifyCases) {
    SCOPED_TRACE(c.name);
    RunResult r = verify(c.uri, c.leaf, c.untrusted ? c.untrusted : "", c.crl_check);
    EXPECT_EQ(r.status == 0, c.ok) << r.out << r.err;
    EXPECT_NE((r.out + r.err).find(c.says), std::string::npos) << r.out << r.err;
  }
}

TEST_F(ProviderCli, CorruptChosenBundleFailsAndDoesNotFallBack) {
  write_file(store_.bundle("ca-bundle-licensing.pem"), "-----BEGIN CERTIFICATE-----\ngarbage\n");
  for (const char* leaf : {"leaf", "general_leaf"}) {
    RunResult r = verify("ptrust://licensing", leaf, leaf == std::string("leaf") ? "inter" : "");
    EXPECT_NE(r.status, 0) << leaf;
    EXPECT_NE(r.err.find("STORE_CORRUPT"), std::string::npos) << r.err;
  }
  // Only the corrupt purpose is affected.
  EXPECT_EQ(verify("ptrust://ldaps", "general_leaf").status, 0);
}

TEST_F(ProviderCli, FileNamedLikeTheUriInWorkingDirectoryChangesNothing) {
  TempDir cwd;
  write_file(cwd / "ptrust:licensing", read_file(store_.pki("other_ca.pem")));
  write_file(cwd / "ptrust%3Alicensing", read_file(store_.pki("other_ca.pem")));
  EXPECT_NE(verify("ptrust://licensing", "other_leaf", "", false, cwd.path()).status, 0);
  EXPECT_EQ(verify("ptrust://licensing", "leaf", "inter", false, cwd.path()).status, 0);
}

std::vector<Obj> sorted(std::vector<Obj> v) {
  std::sort(v.begin(), v.end());
  return v;
}

TEST_F(ProviderCli, StoreutlListsExactlyTheSelectedObjects) {
  const Pki& p = Pki::get();
  const std::string inter_dn = "/CN=ptrust test intermediate", root_dn = "/CN=ptrust test root";
  const struct {
    const char* name;
    const char* uri;
    std::vector<std::string> extra;
    std::vector<Obj> want;
  } cases[] = {
      {"Pinned", "ptrust://peer", {}, {cert_obj(p.pinned)}},
      {"Ca", "ptrust://licensing", {}, {cert_obj(p.root), crl_obj(p.crl.get())}},
      {"GeneralForPurposeWithoutStore", "ptrust://ldaps", {}, {cert_obj(p.general_ca), crl_obj(p.crl.get())}},
      {"GeneralUri", "ptrust://general", {}, {cert_obj(p.general_ca), crl_obj(p.crl.get())}},
      {"CertsOnly", "ptrust://licensing", {"-certs"}, {cert_obj(p.root)}},
      {"CrlsOnly", "ptrust://licensing", {"-crls"}, {crl_obj(p.crl.get())}},
      {"SubjectMatchesCert", "ptrust://licensing", {"-subject", root_dn}, {cert_obj(p.root)}},
      {"SubjectMatchesCrlIssuer", "ptrust://licensing", {"-subject", inter_dn}, {crl_obj(p.crl.get())}},
      {"SubjectMiss", "ptrust://licensing", {"-subject", "/CN=nobody"}, {}},
      {"PinnedHasNoCrls", "ptrust://peer", {"-crls"}, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RunResult r = storeutl(c.uri, c.extra);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(sorted(parse_storeutl(r.out)), sorted(c.want)) << r.out;
    EXPECT_EQ(r.err, "");
  }
}

TEST_F(ProviderCli, StoreutlOnEmptyRootListsNothingAndFailsOnUnknownPurpose) {
  StoreRoot empty;
  for (const char* uri : {"ptrust://licensing", "ptrust://general"}) {
    RunResult r = openssl({"storeutl", "-provider-path", PTRUST_PROVIDER_DIR, "-provider", "ptrust", "-provider",
                           "default", uri},
                          {"PTRUST_ROOT=" + empty.path()});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(parse_storeutl(r.out).empty()) << r.out;
  }
  RunResult r = storeutl("ptrust://nosuch");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.err.find("UNKNOWN_PURPOSE"), std::string::npos) << r.err;
}

TEST_F(ProviderCli, SClientVerifiesRealServerByPurpose) {
  auto client = [&](int port, const std::string& uri) {
    std::vector<std::string> args{"s_client"};
    auto p = provider_args();
    args.insert(args.end(), p.begin(), p.end());
    args.insert(args.end(), {"-connect", "127.0.0.1:" + std::to_string(port), "-CAstore", uri, "-no-CAfile",
                             "-no-CApath", "-verify_return_error", "-brief"});
    return openssl(args, env());
  };
  {
    Server good(store_.pki("leaf.pem"), store_.pki("leaf.key"), store_.pki("inter.pem"));
    RunResult r = client(good.port(), "ptrust://licensing");
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("Verification: OK"), std::string::npos) << r.err;
  }
  {
    Server bad(store_.pki("other_leaf.pem"), store_.pki("other_leaf.key"), "");
    RunResult r = client(bad.port(), "ptrust://licensing");
    EXPECT_NE(r.status, 0) << r.out << r.err;
    EXPECT_NE(r.err.find("unable to get local issuer"), std::string::npos) << r.err;
  }
}

// The sample config/openssl.cnf as shipped, with only `root =` pointed at `root`.
std::string sample_conf(const std::string& dir, const std::string& root) {
  std::string text = read_file(PTRUST_SAMPLE_CONF);
  auto pos = text.find("\nroot = /\n");
  if (pos == std::string::npos) throw std::runtime_error("sample openssl.cnf has no 'root = /' line");
  text.replace(pos, 10, "\nroot = " + root + "\n");
  std::string path = dir + "/openssl.cnf";
  write_file(path, text);
  return path;
}

TEST_F(ProviderCli, OpensslConfLoadsProviderWithRootFromConfigAndEnvOverride) {
  TempDir tmp;
  StoreRoot empty;
  auto run_verify = [&](const std::string& conf, const std::string& leaf, std::vector<std::string> env) {
    env.push_back("OPENSSL_CONF=" + conf);
    env.push_back(std::string("OPENSSL_MODULES=") + PTRUST_PROVIDER_DIR);
    return openssl({"verify", "-CAstore", "ptrust://licensing", "-no-CAfile", "-no-CApath", "-untrusted",
                    store_.pki("inter.pem"), store_.pki(leaf + ".pem")},
                   env);
  };
  std::string good = sample_conf(tmp.path(), store_.path());
  EXPECT_EQ(run_verify(good, "leaf", {}).status, 0);
  EXPECT_NE(run_verify(good, "other_leaf", {}).status, 0);

  std::filesystem::create_directories(tmp / "e");
  std::string wrong_root = sample_conf(tmp / "e", empty.path());
  EXPECT_NE(run_verify(wrong_root, "leaf", {}).status, 0);
  EXPECT_EQ(run_verify(wrong_root, "leaf", {"PTRUST_ROOT=" + store_.path()}).status, 0);
}

}  // namespace
}  // namespace ptrust::testing
