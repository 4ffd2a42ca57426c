// CRLs, legacy stores, pool certificates, reconcile of every store, and the pool exchange.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include <boost/json.hpp>
#include <openssl/x509_vfy.h>

#include <sqlite3.h>

#include <algorithm>
#include <functional>

#include "core/crl.h"
#include "core/db.h"
#include "core/fs.h"
#include "core/layout.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;
const std::string kHost1 = "1c111a1f-412e-47c0-9003-60789b839bc3";
const std::string kHost2 = "960abfff-6017-4d97-bd56-0a8f1a43e51a";

struct Pki {
  Issued root = self_signed({.cn = "Stores Root", .ca = true});
  Issued leaf = issue({.cn = "srv.example", .dns = {"srv.example"}}, root);
  Issued revoked = issue({.cn = "revoked.example"}, root);
  Issued other = self_signed({.cn = "Other Root", .ca = true});
  Issued legacy_ca = self_signed({.cn = "Legacy CA", .ca = true});
  Issued host1 = self_signed({.cn = "host1"});
  Issued host1_next = self_signed({.cn = "host1 next"});
  // Same issuer name as `root`, different key: its CRLs must not verify.
  Issued forger = self_signed({.cn = "Stores Root", .ca = true});
};

const Pki& pki() {
  static Pki p;
  return p;
}

class Stores : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(in / "root.pem", pki().root.pem());
    write_file(in / "other.pem", pki().other.pem());
    write_file(in / "legacy.pem", pki().legacy_ca.pem());
    write_file(in / "host1.pem", pki().host1.pem());
    write_file(in / "host1-next.pem", pki().host1_next.pem());
    auto crl = make_crl(pki().root, {pki().revoked.cert.get()});
    write_file(in / "root.crl", crl_pem(crl.get()));
    write_file(in / "root.der.crl", crl_der(crl.get()));
  }
  RunResult pt(std::vector<std::string> args, const TempDir* r = nullptr) {
    return ptrust((r ? *r : root).path(), std::move(args));
  }
  void ok(std::vector<std::string> args, const TempDir* r = nullptr) {
    RunResult res = pt(args, r);
    ASSERT_EQ(res.status, 0) << args[0] << ": " << res.err;
  }
  void refused(std::vector<std::string> args, const std::string& code) {
    Tree before = snapshot(root.path());
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 1) << r.err;
    std::string cmd;
    for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
    EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << "for " << cmd << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(diff(before, snapshot(root.path())), "");
  }
  std::string file(const std::string& rel) { return read_file(root / rel); }

  TempDir root, in;
};

TEST_F(Stores, CrlRefusals) {
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  ok({"crl", "install", in / "root.crl", "--name", "root.crl"});
  auto forged = make_crl(pki().forger, {pki().leaf.cert.get()});
  write_file(in / "forged.crl", crl_pem(forged.get()));
  auto c1 = make_crl(pki().other, {});
  auto c2 = make_crl(pki().legacy_ca, {});
  write_file(in / "two.crl", crl_pem(c1.get()) + crl_pem(c2.get()));
  write_file(in / "keyed.crl", crl_pem(c1.get()) + pki().other.key_pem());
  write_file(in / "garbage.crl", "-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n");
  write_file(in / "other.crl", crl_pem(c1.get()));

  refused({"crl", "install", in / "root.pem"}, "CRL_INVALID");
  refused({"crl", "install", in / "garbage.crl"}, "CRL_INVALID");
  refused({"crl", "install", in / "two.crl"}, "CRL_INVALID");
  refused({"crl", "install", in / "keyed.crl"}, "PRIVATE_KEY_NOT_ALLOWED");
  {  // a DER key beside a PEM CRL, or after a DER CRL, is a key in the input too
    unsigned char* k = nullptr;
    int n = i2d_PrivateKey(pki().other.key.get(), &k);
    std::string der_key(reinterpret_cast<char*>(k), static_cast<size_t>(n));
    OPENSSL_free(k);
    write_file(in / "pem-der-key.crl", crl_pem(c1.get()) + der_key);
    write_file(in / "der-der-key.crl", crl_der(c1.get()) + der_key);
    refused({"crl", "install", in / "pem-der-key.crl"}, "PRIVATE_KEY_NOT_ALLOWED");
    refused({"crl", "install", in / "der-der-key.crl"}, "PRIVATE_KEY_NOT_ALLOWED");
  }
  refused({"crl", "install", in / "forged.crl", "--name", "forged.crl"}, "CRL_SIGNATURE_INVALID");
  refused({"crl", "install", in / "root.der.crl", "--name", "root.crl"}, "CRL_NOT_NEWER");  // the same CRL again
  refused({"crl", "install", in / "other.crl", "--name", "root.crl"}, "CRL_ALREADY_EXISTS");  // another issuer's name
  for (std::string bad : {".hidden", "a/b", "../x", "8fbbd419.r0", "8fbbd419.0", "sp ace", ""})
    refused({"crl", "install", in / "other.crl", "--name", bad}, "CRL_NAME_INVALID");
  refused({"crl", "install", in / "other.crl", "--purpose", "wlb"}, "UNKNOWN_PURPOSE");
  refused({"crl", "uninstall", "nope.crl"}, "CRL_DOES_NOT_EXIST");
  refused({"crl", "uninstall", "../db.json"}, "CRL_DOES_NOT_EXIST");
}

TEST_F(Stores, CrlInstallDefaultsItsNameAndWarnsWhenExpired) {
  RunResult r = pt({"crl", "install", in / "root.der.crl"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "Stores_Root.crl\n");
  // No CA of its issuer is installed and no --issuer given: accepted, and said so.
  EXPECT_EQ(r.err, "ptrust: warning: CRL 'Stores_Root.crl': no installed CA is named 'CN=Stores Root', so its "
                   "signature is checked only at verification time; give its signer with --issuer FILE to check it now\n");
  EXPECT_EQ(file("etc/stunnel/crls/Stores_Root.crl").rfind("-----BEGIN X509 CRL-----", 0), 0u) << "re-encoded PEM";
  auto old = make_crl(pki().other, {}, -7200, -3600);
  write_file(in / "old.crl", crl_pem(old.get()));
  RunResult w = pt({"crl", "install", in / "old.crl"});
  EXPECT_EQ(w.status, 0);
  EXPECT_NE(w.err.find("warning"), std::string::npos) << w.err;
  json::value l = json::parse(pt({"crl", "list", "--json"}).out);
  ASSERT_EQ(l.at("crls").as_array().size(), 2u);
  EXPECT_TRUE(l.at("crls").as_array()[0].at("expired").as_bool());   // Other_Root.crl
  EXPECT_FALSE(l.at("crls").as_array()[1].at("expired").as_bool());  // Stores_Root.crl
  EXPECT_EQ(json::parse(pt({"list", "--json"}).out).at("crls").as_array().size(), 2u) << "list shows CRLs";
}

TEST_F(Stores, HashEntriesLetOpensslFindCasAndCrlsByDirectory) {
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  ok({"crl", "install", in / "root.crl"});
  auto verify = [&](X509* leaf) {
    ossl::X509StorePtr store(X509_STORE_new());
    X509_LOOKUP* dir = X509_STORE_add_lookup(store.get(), X509_LOOKUP_hash_dir());
    X509_LOOKUP_add_dir(dir, (root / "etc/trusted-certs/ca-licensing").c_str(), X509_FILETYPE_PEM);
    X509_LOOKUP_add_dir(dir, (root / "etc/stunnel/crls").c_str(), X509_FILETYPE_PEM);
    X509_STORE_set_flags(store.get(), X509_V_FLAG_CRL_CHECK);
    ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), leaf, nullptr);
    X509_verify_cert(ctx.get());
    return X509_STORE_CTX_get_error(ctx.get());
  };
  EXPECT_EQ(verify(pki().leaf.cert.get()), X509_V_OK);
  EXPECT_EQ(verify(pki().revoked.cert.get()), X509_V_ERR_CERT_REVOKED);
  for (const auto& e : std::filesystem::recursive_directory_iterator(root.path()))
    EXPECT_FALSE(e.is_symlink()) << e.path() << ": hash entries are copies, never symlinks";
}

TEST_F(Stores, CrlScopeLimitsWhichPurposesSeeACrl) {
  ok({"crl", "install", in / "root.crl", "--name", "all.crl"});
  auto c = make_crl(pki().other, {});
  write_file(in / "o.crl", crl_pem(c.get()));
  ok({"crl", "install", in / "o.crl", "--name", "ldaps-only.crl", "--purpose", "ldaps"});
  Context ctx{root.path(), default_config()};
  auto names = [&](const char* p) {
    std::vector<std::string> v;
    for (const auto& n : load_crls(ctx, p)) v.push_back(n.name);
    return v;
  };
  EXPECT_EQ(names("licensing"), (std::vector<std::string>{"all.crl"}));
  EXPECT_EQ(names("ldaps"), (std::vector<std::string>{"all.crl", "ldaps-only.crl"}));
  EXPECT_EQ(names("general"), (std::vector<std::string>{"all.crl"}));
  ok({"crl", "uninstall", "ldaps-only.crl"});
  EXPECT_FALSE(std::filesystem::exists(root / "var/lib/ptrust/crl-scope.json")) << "no scoped CRL, no index";
}

// The scope index is written in name order whatever order the CRLs were installed in: two
// scoped installs in reverse name order used to leave `sync --check` reporting it stale.
TEST_F(Stores, CrlScopeIndexIsTheSameWhateverTheInstallOrder) {
  auto c = make_crl(pki().other, {});
  write_file(in / "o.crl", crl_pem(c.get()));
  ok({"crl", "install", in / "o.crl", "--name", "zeta.crl", "--purpose", "ldaps"});
  ok({"crl", "install", in / "root.crl", "--name", "alpha.crl", "--purpose", "licensing"});
  RunResult check = pt({"sync", "--check"});
  EXPECT_EQ(check.status, 0) << check.out;
  EXPECT_EQ(file("var/lib/ptrust/crl-scope.json"), "{\"alpha.crl\":[\"licensing\"],\"zeta.crl\":[\"ldaps\"]}\n");
}

// A change that widens a purpose's trust is refused, the root byte-identical, unless
// --allow-mode-change; every mode change is reported; eject needs --yes.
TEST_F(Stores, ModeChangesAreExplicitAndWideningIsRefused) {
  ok({"install", in / "other.pem", "--ca"});  // general
  RunResult first = pt({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  ASSERT_EQ(first.status, 0) << first.err;
  EXPECT_NE(first.err.find("ptrust: mode: licensing: general -> ca"), std::string::npos) << first.err;
  std::string ca = first.out.substr(0, 36);

  refused({"uninstall", ca}, "MODE_CHANGE_WIDENS_TRUST");
  RunResult why = pt({"uninstall", ca});
  EXPECT_NE(why.err.find("licensing ca -> general"), std::string::npos) << why.err;
  EXPECT_NE(why.err.find("--allow-mode-change"), std::string::npos) << why.err;

  // A pin narrows (ca -> pinned): allowed and reported; removing it again widens.
  write_file(in / "pin.pem", pki().host1.pem());
  RunResult pin = pt({"install", in / "pin.pem", "--pinned", "--purpose", "licensing"});
  ASSERT_EQ(pin.status, 0) << pin.err;
  EXPECT_NE(pin.err.find("ptrust: mode: licensing: ca -> pinned"), std::string::npos) << pin.err;
  refused({"uninstall", pin.out.substr(0, 36)}, "MODE_CHANGE_WIDENS_TRUST");
  RunResult allowed = pt({"uninstall", pin.out.substr(0, 36), "--allow-mode-change"});
  ASSERT_EQ(allowed.status, 0) << allowed.err;
  EXPECT_NE(allowed.err.find("ptrust: mode: licensing: pinned -> ca (wider trust"), std::string::npos) << allowed.err;

  // To none is narrowing (fail closed): allowed, reported.
  ok({"install", in / "legacy.pem", "--ca", "--purpose", "ldaps"});
  RunResult eject = pt({"eject"});
  EXPECT_EQ(eject.status, 2);
  EXPECT_NE(eject.err.find("--yes"), std::string::npos) << eject.err;
  RunResult yes = pt({"eject", "--yes"});
  ASSERT_EQ(yes.status, 0) << yes.err;
  EXPECT_NE(yes.err.find("ptrust: mode: licensing: ca -> none"), std::string::npos) << yes.err;
}

// A corporate bundle: each certificate its own record, all or nothing.
TEST_F(Stores, BundleInstallIsAllOrNothing) {
  write_file(in / "bundle.pem", "# corporate roots\n" + pki().root.pem() + "\n" + pki().other.pem() + pki().legacy_ca.pem());
  RunResult r = pt({"install", in / "bundle.pem", "--ca", "--purpose", "licensing", "--each"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 3) << r.out;
  EXPECT_EQ(file("etc/trusted-certs/ca-bundle-licensing.pem").size(),
            pki().root.pem().size() + pki().other.pem().size() + pki().legacy_ca.pem().size());

  ok({"uninstall", r.out.substr(0, 36)});
  write_file(in / "with-leaf.pem", pki().other.pem() + pki().host1.pem() + pki().root.pem());
  refused({"install", in / "with-leaf.pem", "--ca", "--purpose", "ldaps", "--each"}, "NOT_A_CA_CERTIFICATE");
  RunResult why = pt({"install", in / "with-leaf.pem", "--ca", "--purpose", "ldaps", "--each"});
  EXPECT_NE(why.err.find("certificate 2 of 3"), std::string::npos) << why.err;
  write_file(in / "with-key.pem", pki().other.pem() + pki().other.key_pem());
  refused({"install", in / "with-key.pem", "--ca", "--purpose", "ldaps", "--each"}, "PRIVATE_KEY_NOT_ALLOWED");
  write_file(in / "twice.pem", pki().other.pem() + pki().other.pem());
  refused({"install", in / "twice.pem", "--ca", "--purpose", "ldaps", "--each"}, "TRUSTED_CERTIFICATE_ALREADY_EXISTS");
  refused({"install", in / "bundle.pem", "--ca", "--purpose", "licensing", "--each"}, "TRUSTED_CERTIFICATE_ALREADY_EXISTS");

  RunResult ps = pt({"purposes", "--json"});
  ASSERT_EQ(ps.status, 0) << ps.err;
  auto v = boost::json::parse(ps.out);
  EXPECT_EQ(v.at("source"), "<built-in>");
  EXPECT_EQ(v.at("purposes").at(1).at("purpose"), "licensing");
  EXPECT_EQ(v.at("purposes").at(1).at("mode"), "ca");
}

TEST_F(Stores, LegacyStore) {
  ok({"legacy", "install", "wlb.pem", in / "legacy.pem"});
  EXPECT_EQ(file("etc/stunnel/certs/wlb.pem"), pki().legacy_ca.pem());
  EXPECT_EQ(file("etc/stunnel/xapi-stunnel-ca-bundle.pem"), pki().legacy_ca.pem());
  ok({"legacy", "install", "a-other.pem", in / "other.pem"});
  EXPECT_EQ(file("etc/stunnel/xapi-stunnel-ca-bundle.pem"), pki().other.pem() + pki().legacy_ca.pem()) << "by name";
  for (std::string bad : {"wlb", ".wlb.pem", "a/b.pem", "../x.pem", ".pem", "x y.pem", "a\nb.pem"})
    refused({"legacy", "install", bad, in / "legacy.pem"}, "CERTIFICATE_NAME_INVALID");
  refused({"legacy", "install", "wlb.pem", in / "other.pem"}, "CA_CERTIFICATE_ALREADY_EXISTS");
  write_file(in / "keyed.pem", pki().other.pem() + pki().other.key_pem());
  refused({"legacy", "install", "k.pem", in / "keyed.pem"}, "PRIVATE_KEY_NOT_ALLOWED");
  refused({"legacy", "uninstall", "nope.pem"}, "CERTIFICATE_DOES_NOT_EXIST");
  ASSERT_EQ(::unlink((root / "etc/stunnel/certs/wlb.pem").c_str()), 0);
  refused({"legacy", "uninstall", "wlb.pem"}, "TRUSTED_CERTIFICATE_FILE_MISSING");
  ok({"legacy", "uninstall", "wlb.pem", "--force"});
  ok({"legacy", "uninstall", "a-other.pem"});
  EXPECT_FALSE(std::filesystem::exists(root / "etc/stunnel/xapi-stunnel-ca-bundle.pem"));
  EXPECT_EQ(json::parse(pt({"legacy", "list", "--json"}).out).at("legacy").as_array().size(), 0u);
}

TEST_F(Stores, PoolBundlePutsTheStagedRotationFirst) {
  ok({"pool", "add", kHost1, in / "host1.pem"});
  ok({"pool", "add", kHost2, in / "other.pem"});
  ok({"pool", "add", kHost1, in / "host1-next.pem", "--new"});
  EXPECT_EQ(file("etc/stunnel/certs-pool/" + kHost1 + ".new.pem"), pki().host1_next.pem());
  EXPECT_EQ(file("etc/stunnel/xapi-pool-ca-bundle.pem"),
            pki().host1_next.pem() + pki().host1.pem() + pki().other.pem());
  refused({"pool", "add", "not-a-uuid", in / "host1.pem"}, "HOST_UUID_INVALID");
  refused({"pool", "add", "../" + kHost1.substr(3), in / "host1.pem"}, "HOST_UUID_INVALID");
  ok({"pool", "remove", kHost1, "--new"});
  EXPECT_EQ(file("etc/stunnel/xapi-pool-ca-bundle.pem"), pki().host1.pem() + pki().other.pem());
  ok({"pool", "remove", kHost1});
  refused({"pool", "remove", kHost1}, "CERTIFICATE_DOES_NOT_EXIST");
}

TEST_F(Stores, SyncNamesAndRepairsDriftInEveryStore) {
  std::string uuid = pt({"install", in / "root.pem", "--ca", "--purpose", "licensing"}).out.substr(0, 36);
  ok({"crl", "install", in / "root.crl", "--name", "root.crl"});
  ok({"legacy", "install", "wlb.pem", in / "legacy.pem"});
  ok({"pool", "add", kHost1, in / "host1.pem"});
  Tree clean = snapshot(root.path());
  clean.erase("var/lib/ptrust/generation");
  ASSERT_EQ(pt({"sync", "--check"}).status, 0);

  std::string hash_link;
  for (const auto& e : std::filesystem::directory_iterator(root / "etc/stunnel/crls"))
    if (e.path().filename().string().find(".r") == 8) hash_link = e.path().filename();
  ASSERT_FALSE(hash_link.empty());
  ASSERT_EQ(::unlink((root / "etc/stunnel/certs/wlb.pem").c_str()), 0);                 // delete a file
  write_file(root / "etc/stunnel/crls/stray.crl", "x");                                  // stray file
  write_file(root / "etc/stunnel/xapi-pool-ca-bundle.pem", "corrupt\n");                 // corrupt a bundle
  ASSERT_EQ(::chmod((root / ("etc/trusted-certs/ca-licensing/" + uuid + ".pem")).c_str(), 0600), 0);  // chmod
  ASSERT_EQ(::unlink((root / ("etc/stunnel/crls/" + hash_link)).c_str()), 0);          // delete a hash link

  RunResult check = pt({"sync", "--check", "--json"});
  EXPECT_EQ(check.status, 1);
  json::value doc = json::parse(check.out);
  std::set<std::string> seen;
  for (const auto& d : doc.at("drift").as_array())
    seen.insert(std::string(d.at("kind").as_string()) + " " + std::string(d.at("path").as_string()));
  // The CA's hash entry is a hard link to its file: the chmod shows on both names.
  std::string ca_link;
  for (const auto& e : std::filesystem::directory_iterator(root / "etc/trusted-certs/ca-licensing"))
    if (e.path().filename().string().find('.') == 8) ca_link = e.path().filename();
  ASSERT_FALSE(ca_link.empty());
  std::set<std::string> want{"missing etc/stunnel/certs/wlb.pem", "remnant etc/stunnel/crls/stray.crl",
                             "stale etc/stunnel/xapi-pool-ca-bundle.pem",
                             "mode etc/trusted-certs/ca-licensing/" + uuid + ".pem",
                             "mode etc/trusted-certs/ca-licensing/" + ca_link,
                             "missing etc/stunnel/crls/" + hash_link};
  EXPECT_EQ(seen, want);
  ok({"sync"});
  RunResult again = pt({"sync", "--check"});
  EXPECT_EQ(again.status, 0) << again.out;
  Tree after = snapshot(root.path());
  after.erase("var/lib/ptrust/generation");
  EXPECT_EQ(diff(clean, after), "");
}

TEST_F(Stores, EjectEmptiesEverythingButThePool) {
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  ok({"install", in / "other.pem", "--ca"});
  ok({"crl", "install", in / "root.crl"});
  ok({"legacy", "install", "wlb.pem", in / "legacy.pem"});
  ok({"pool", "add", kHost1, in / "host1.pem"});
  ok({"eject", "--yes"});
  json::value l = json::parse(pt({"list", "--json"}).out);
  EXPECT_EQ(l.at("certificates").as_array().size(), 0u);
  EXPECT_EQ(l.at("crls").as_array().size(), 0u);
  EXPECT_EQ(l.at("legacy").as_array().size(), 0u);
  EXPECT_EQ(l.at("pool").as_array().size(), 1u);
  for (const char* gone : {"etc/trusted-certs/ca-bundle-licensing.pem", "etc/trusted-certs/ca-bundle-general.pem",
                           "etc/stunnel/xapi-stunnel-ca-bundle.pem", "etc/stunnel/crls/Stores_Root.crl"})
    EXPECT_FALSE(std::filesystem::exists(root / gone)) << gone;
  EXPECT_TRUE(std::filesystem::exists(root / "etc/stunnel/xapi-pool-ca-bundle.pem"));
  EXPECT_EQ(pt({"sync", "--check"}).status, 0);
}

// Nothing to eject (a fresh root, or only the pool left): nothing is created or bumped.
TEST_F(Stores, EjectWithNothingToEjectTouchesNothing) {
  Tree fresh = snapshot(root.path());
  ok({"eject", "--yes"});
  EXPECT_EQ(diff(fresh, snapshot(root.path())), "") << "a no-op eject on a fresh root creates nothing";
  ok({"pool", "add", kHost1, in / "host1.pem"});
  Tree pool_only = snapshot(root.path());
  ok({"eject", "--yes"});
  EXPECT_EQ(diff(pool_only, snapshot(root.path())), "") << "a no-op eject touches nothing, not even the generation";
}

// Three hosts with different contents exchange documents and converge.
TEST(Exchange, ThreeHostsConvergeToByteIdenticalStoresAndDatabases) {
  TempDir a, b, c, in;
  std::vector<Issued> cas;
  for (int i = 0; i < 4; ++i) cas.push_back(self_signed({.cn = "X CA " + std::to_string(i), .ca = true}));
  Issued peer = self_signed({.cn = "peer"});
  for (int i = 0; i < 4; ++i) write_file(in / ("ca" + std::to_string(i) + ".pem"), cas[i].pem());
  write_file(in / "peer.pem", peer.pem());
  auto crl = make_crl(cas[0], {});
  write_file(in / "c.crl", crl_pem(crl.get()));
  auto must = [](const RunResult& r) { ASSERT_EQ(r.status, 0) << r.err; };
  must(ptrust(a.path(), {"install", in / "ca0.pem", "--ca", "--purpose", "licensing"}));
  must(ptrust(a.path(), {"crl", "install", in / "c.crl", "--purpose", "licensing"}));
  must(ptrust(b.path(), {"install", in / "ca1.pem", "--ca"}));
  must(ptrust(b.path(), {"install", in / "peer.pem", "--pinned", "--purpose", "ldaps"}));
  must(ptrust(b.path(), {"legacy", "install", "wlb.pem", in / "ca2.pem"}));
  must(ptrust(c.path(), {"install", in / "ca3.pem", "--ca", "--purpose", "ldaps,licensing"}));
  ::sleep(1);  // the same legacy CA installed a second later: the hosts must still converge
  must(ptrust(c.path(), {"legacy", "install", "wlb.pem", in / "ca2.pem"}));  // same on both sides: fine

  auto exchange = [&](const TempDir& from, const TempDir& to) {
    must(ptrust(from.path(), {"export", in / "doc.json"}));
    must(ptrust(to.path(), {"import", in / "doc.json"}));
  };
  exchange(a, b);
  exchange(b, c);  // c now has a's, b's and its own
  exchange(c, a);
  exchange(c, b);
  auto state = [](const TempDir& d) {
    Tree t = snapshot(d.path());
    t.erase("var/lib/ptrust/generation");
    t.erase("var/lib/ptrust/ptrust.db");  // SQLite's pages depend on each root's history
    return t;
  };
  Tree ta = state(a), tb = state(b), tc = state(c);
  EXPECT_EQ(diff(ta, tb), "");
  EXPECT_EQ(diff(ta, tc), "");
  // The same records (the database's interchange form, which includes install times).
  EXPECT_EQ(ptrust(a.path(), {"export", "-"}).out, ptrust(c.path(), {"export", "-"}).out);
  EXPECT_EQ(json::parse(ptrust(a.path(), {"list", "--json"}).out).at("certificates").as_array().size(), 4u);
  EXPECT_EQ(ptrust(a.path(), {"sync", "--check"}).status, 0);

  // Import again: nothing changes.
  must(ptrust(a.path(), {"export", in / "again.json"}));
  Tree before = snapshot(b.path());
  RunResult r = ptrust(b.path(), {"import", in / "again.json"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("nothing to import"), std::string::npos) << r.out;
  EXPECT_EQ(diff(before, snapshot(b.path())), "") << "a no-op import touches nothing, not even the generation";
}

TEST(Exchange, ConflictingImportChangesNothingOnEitherSide) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Shared", .ca = true});
  Issued x = self_signed({.cn = "X", .ca = true});
  Issued y = self_signed({.cn = "Y", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  write_file(in / "x.pem", x.pem());
  write_file(in / "y.pem", y.pem());
  ASSERT_EQ(ptrust(a.path(), {"install", in / "y.pem", "--ca"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}).status, 0);
  ASSERT_EQ(ptrust(b.path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing,ldaps"}).status, 0);
  ASSERT_EQ(ptrust(b.path(), {"legacy", "install", "n.pem", in / "x.pem"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"export", in / "a.json"}).status, 0);
  ASSERT_EQ(ptrust(b.path(), {"export", in / "b.json"}).status, 0);
  Tree ta = snapshot(a.path()), tb = snapshot(b.path());
  RunResult r = ptrust(b.path(), {"import", in / "a.json"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("ptrust: POOL_JOINING_HOST_TRUSTED_CERTIFICATES_CONFLICT: ", 0), 0u) << r.err;
  RunResult dry = ptrust(a.path(), {"import", in / "b.json", "--dry-run"});
  EXPECT_EQ(dry.status, 1);
  EXPECT_EQ(diff(ta, snapshot(a.path())), "");
  EXPECT_EQ(diff(tb, snapshot(b.path())), "");

  // Legacy name conflict, and a CRL name conflict.
  TempDir c;
  ASSERT_EQ(ptrust(c.path(), {"legacy", "install", "n.pem", in / "y.pem"}).status, 0);
  Tree tc = snapshot(c.path());
  RunResult l = ptrust(c.path(), {"import", in / "b.json"});
  EXPECT_EQ(l.err.rfind("ptrust: POOL_JOINING_HOST_CA_CERTIFICATES_CONFLICT: ", 0), 0u) << l.err;
  EXPECT_EQ(diff(tc, snapshot(c.path())), "");
  TempDir d, e;
  auto c1 = make_crl(x, {});
  auto c2 = make_crl(y, {});
  write_file(in / "1.crl", crl_pem(c1.get()));
  write_file(in / "2.crl", crl_pem(c2.get()));
  ASSERT_EQ(ptrust(d.path(), {"crl", "install", in / "1.crl", "--name", "n.crl"}).status, 0);
  ASSERT_EQ(ptrust(e.path(), {"crl", "install", in / "2.crl", "--name", "n.crl"}).status, 0);
  ASSERT_EQ(ptrust(d.path(), {"export", in / "d.json"}).status, 0);
  Tree te = snapshot(e.path());
  RunResult cr = ptrust(e.path(), {"import", in / "d.json"});
  EXPECT_EQ(cr.err.rfind("ptrust: POOL_JOINING_HOST_CRLS_CONFLICT: ", 0), 0u) << cr.err;
  EXPECT_EQ(diff(te, snapshot(e.path())), "");
}

TEST(Exchange, DryRunAndMalformedDocumentsChangeNothing) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "D", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(a.path(), {"install", in / "ca.pem", "--ca"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"export", in / "a.json"}).status, 0);
  Tree tb = snapshot(b.path());
  RunResult dry = ptrust(b.path(), {"import", in / "a.json", "--dry-run", "--json"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(json::parse(dry.out).at("added").as_array().size(), 1u);
  EXPECT_EQ(diff(tb, snapshot(b.path())), "");
  std::string doc = read_file(in / "a.json");
  std::string with_key = doc;
  with_key.insert(with_key.find("-----END CERTIFICATE-----") + 25, "\\n" + std::string("-----BEGIN PRIVATE KEY-----\\nAA\\n-----END PRIVATE KEY-----"));
  for (auto [name, text, code] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"notjson", "{", "IMPORT_INVALID"},
           {"wrongformat", "{\"format\":\"x\",\"version\":1}", "IMPORT_INVALID"},
           {"version", std::string(doc).replace(doc.find("\"version\":1"), 11, "\"version\":9"), "IMPORT_INVALID"},
           {"key", with_key, "PRIVATE_KEY_NOT_ALLOWED"},
       }) {
    write_file(in / name, text);
    RunResult r = ptrust(b.path(), {"import", in / name});
    EXPECT_EQ(r.status, 1) << name;
    EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << name << ": " << r.err;
    EXPECT_EQ(diff(tb, snapshot(b.path())), "") << name;
  }
}

// A crafted document must not turn a name into a path: legacy and CRL names are file names.
TEST(Exchange, NamesInADocumentCannotEscapeTheirStore) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Planted", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(a.path(), {"legacy", "install", "x.pem", in / "ca.pem"}).status, 0);
  auto crl = make_crl(ca, {});
  write_file(in / "c.crl", crl_pem(crl.get()));
  ASSERT_EQ(ptrust(a.path(), {"crl", "install", in / "c.crl", "--name", "c.crl"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"export", in / "doc.json"}).status, 0);
  std::string doc = read_file(in / "doc.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string d = doc;
    d.replace(d.find(from), from.size(), to);
    return d;
  };
  Tree before = snapshot(b.path());
  for (auto [name, text] : std::vector<std::pair<std::string, std::string>>{
           {"legacy-dotdot", with("\"name\":\"x.pem\"", "\"name\":\"../../trusted-certs/ca-bundle-licensing.pem\"")},
           {"legacy-slash", with("\"name\":\"x.pem\"", "\"name\":\"a/x.pem\"")},
           {"legacy-no-pem", with("\"name\":\"x.pem\"", "\"name\":\"x\"")},
           {"crl-dotdot", with("\"name\":\"c.crl\"", "\"name\":\"../../trusted-certs/pinned-bundle-ldaps.pem\"")},
           {"crl-hash-entry", with("\"name\":\"c.crl\"", "\"name\":\"deadbeef.r0\"")},
       }) {
    write_file(in / name, text);
    RunResult r = ptrust(b.path(), {"import", in / name});
    EXPECT_EQ(r.status, 1) << name;
    EXPECT_EQ(r.err.rfind("ptrust: IMPORT_INVALID: ", 0), 0u) << name << ": " << r.err;
    EXPECT_EQ(diff(before, snapshot(b.path())), "") << name;
  }
  EXPECT_EQ(json::parse(ptrust(b.path(), {"resolve", "licensing", "--json"}).out).at("mode").as_string(), "none");
}

// Import runs the checks install runs, through the same code: what install refuses, an
// export document cannot smuggle in.
TEST(Exchange, ImportRefusesWhatInstallRefuses) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Twice", .ca = true});
  Issued leaf = issue({.cn = "leaf.example"}, ca);
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(a.path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"export", in / "doc.json"}).status, 0);
  std::string doc = read_file(in / "doc.json");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string d = doc;
    EXPECT_NE(d.find(from), std::string::npos) << from;
    d.replace(d.find(from), from.size(), to);
    return d;
  };
  json::value v = json::parse(doc);
  std::string installed = "\"installed_at\":" + json::serialize(v.at("trusted").as_array()[0].at("installed_at"));
  std::string leaf_pem = leaf.pem();
  std::string leaf_json = json::serialize(json::value(leaf_pem));
  std::string ca_json = json::serialize(json::value(ca.pem()));
  Tree before = snapshot(b.path());
  for (auto [name, text, code] : std::vector<std::tuple<std::string, std::string, std::string>>{
           {"purpose-twice", with("[\"licensing\"]", "[\"licensing\",\"licensing\"]"), "UNKNOWN_PURPOSE"},
           {"purpose-general", with("[\"licensing\"]", "[\"general\"]"), "UNKNOWN_PURPOSE"},
           {"purpose-malformed", with("[\"licensing\"]", "[\"../x\"]"), "UNKNOWN_PURPOSE"},
           {"installed-at-min", with(installed, "\"installed_at\":-9223372036854775808"), "IMPORT_INVALID"},
           {"installed-at-negative", with(installed, "\"installed_at\":-1"), "IMPORT_INVALID"},
           {"leaf-as-ca", with(ca_json, leaf_json), "NOT_A_CA_CERTIFICATE"},
           {"pinned-without-purpose", with("\"type\":\"ca\",\"purposes\":[\"licensing\"]", "\"type\":\"pinned\",\"purposes\":[]"),
            "CERTIFICATE_LACKS_PURPOSE"},
       }) {
    write_file(in / name, text);
    RunResult r = ptrust(b.path(), {"import", in / name});
    EXPECT_EQ(r.status, 1) << name;
    EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << name << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(diff(before, snapshot(b.path())), "") << name;
  }
}

// An export carries the declarations of the purposes it uses: a host lacking one is told the
// exact line to add, or gets it added with --declare-purposes (comments and order kept).
TEST(Exchange, ImportDeclaresThePurposesItNeedsOnlyWhenAsked) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Wlb CA", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  write_file(in / "a.yaml", "purposes:\n  wlb:\n    crl-policy: require\n    crl-scope: leaf\n");
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "install", in / "ca.pem", "--ca", "--purpose", "wlb"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "export", in / "doc.json"}).status, 0);
  json::value doc = json::parse(read_file(in / "doc.json"));
  EXPECT_EQ(json::serialize(doc.at("purposes")), R"({"wlb":{"crl-policy":"require","crl-scope":"leaf"}})");

  const std::string b_yaml = "# site trust policy\npurposes:\n    licensing: {}   # the agent\n\n    # ldap\n"
                             "    ldaps: {}\nroot: " + b.path() + "  # this host\n";
  write_file(in / "b.yaml", b_yaml);
  Tree before = snapshot(b.path());
  RunResult refused = ptrust(b.path(), {"--config", in / "b.yaml", "import", in / "doc.json"});
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.err.rfind("ptrust: UNKNOWN_PURPOSE: ", 0), 0u) << refused.err;
  EXPECT_NE(refused.err.find("`  wlb: { crl-policy: require, crl-scope: leaf }`"), std::string::npos) << refused.err;
  EXPECT_NE(refused.err.find("--declare-purposes"), std::string::npos) << refused.err;
  EXPECT_EQ(std::count(refused.err.begin(), refused.err.end(), '\n'), 1) << refused.err;
  EXPECT_EQ(diff(before, snapshot(b.path())), "");
  EXPECT_EQ(read_file(in / "b.yaml"), b_yaml);

  RunResult dry = ptrust(b.path(), {"--config", in / "b.yaml", "import", in / "doc.json", "--dry-run", "--declare-purposes"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_NE(dry.err.find("would declare purpose wlb"), std::string::npos) << dry.err;
  EXPECT_EQ(read_file(in / "b.yaml"), b_yaml);
  EXPECT_EQ(diff(before, snapshot(b.path())), "");

  RunResult ok = ptrust(b.path(), {"--config", in / "b.yaml", "import", in / "doc.json", "--declare-purposes"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  // The entry joins the block at its indentation; every other byte is kept.
  EXPECT_EQ(read_file(in / "b.yaml"), "# site trust policy\npurposes:\n    licensing: {}   # the agent\n\n    # ldap\n"
                                      "    ldaps: {}\n    wlb: { crl-policy: require, crl-scope: leaf }\nroot: " +
                                          b.path() + "  # this host\n");
  RunResult purposes = ptrust(b.path(), {"--config", in / "b.yaml", "purposes", "--json"});
  EXPECT_NE(purposes.out.find("\"wlb\""), std::string::npos) << purposes.out;
  EXPECT_NE(purposes.out.find("\"require\""), std::string::npos) << purposes.out;
  // Both hosts now hold the same records.
  RunResult la = ptrust(a.path(), {"--config", in / "a.yaml", "list", "--json"});
  RunResult lb = ptrust(b.path(), {"--config", in / "b.yaml", "list", "--json"});
  EXPECT_EQ(json::parse(la.out).at("certificates").as_array()[0].at("uuid"),
            json::parse(lb.out).at("certificates").as_array()[0].at("uuid"));
}

TEST(Exchange, DeclarePurposesWithTheBuiltInConfigurationCreatesTheFile) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Wlb CA", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  write_file(in / "a.yaml", "purposes:\n  wlb: {}\n");
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "install", in / "ca.pem", "--ca", "--purpose", "wlb"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "export", in / "doc.json"}).status, 0);
  RunResult ok = ptrust(b.path(), {"import", in / "doc.json", "--declare-purposes"});
  ASSERT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(read_file(b / "etc/ptrust/ptrust.yaml"), "purposes:\n  ldaps: {}\n  licensing: {}\n  wlb: {}\n");
  EXPECT_EQ(ptrust(b.path(), {"resolve", "wlb"}).status, 0);
}

TEST(Exchange, DeclarePurposesRefusesAFlowMappingAndChangesNothing) {
  TempDir a, b, in;
  Issued ca = self_signed({.cn = "Wlb CA", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  write_file(in / "a.yaml", "purposes:\n  wlb: {}\n");
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "install", in / "ca.pem", "--ca", "--purpose", "wlb"}).status, 0);
  ASSERT_EQ(ptrust(a.path(), {"--config", in / "a.yaml", "export", in / "doc.json"}).status, 0);
  const std::string flow = "purposes: { licensing: {} }\n";
  write_file(in / "b.yaml", flow);
  Tree before = snapshot(b.path());
  RunResult r = ptrust(b.path(), {"--config", in / "b.yaml", "import", in / "doc.json", "--declare-purposes"});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("ptrust: CONFIG_INVALID: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("`  wlb: {}`"), std::string::npos) << r.err;
  EXPECT_EQ(read_file(in / "b.yaml"), flow);
  EXPECT_EQ(diff(before, snapshot(b.path())), "");
}

// A missing database never wipes the stores: every writer and sync refuse with
// DATABASE_MISSING (root byte-identical); `sync --adopt` adopts what is on disk, validated
// as the intake commands validate it, with UUIDs, types and purposes from where files are.
TEST_F(Stores, MissingDatabaseIsRefusedThenAdopted) {
  std::string uuid = pt({"install", in / "root.pem", "--ca", "--purpose", "licensing,ldaps"}).out.substr(0, 36);
  ok({"install", in / "other.pem", "--ca"});
  ok({"crl", "install", in / "root.crl", "--name", "root.crl", "--purpose", "licensing"});
  ok({"legacy", "install", "wlb.pem", in / "legacy.pem"});
  ok({"pool", "add", kHost1, in / "host1.pem"});
  ok({"pool", "add", kHost1, in / "host1-next.pem", "--new"});
  json::value listed = json::parse(pt({"list", "--json"}).out);
  auto stores = [&] {
    Tree t = snapshot(root.path());
    t.erase("var/lib/ptrust/generation");
    t.erase("var/lib/ptrust/ptrust.db");
    return t;
  };
  Tree installed = stores();
  ASSERT_EQ(::unlink((root / "var/lib/ptrust/ptrust.db").c_str()), 0);

  refused({"sync"}, "DATABASE_MISSING");
  refused({"sync", "--check"}, "DATABASE_MISSING");
  refused({"install", in / "legacy.pem", "--ca", "--purpose", "licensing"}, "DATABASE_MISSING");
  refused({"uninstall", uuid}, "DATABASE_MISSING");
  refused({"eject", "--yes"}, "DATABASE_MISSING");
  refused({"legacy", "install", "x.pem", in / "other.pem"}, "DATABASE_MISSING");
  write_file(root / "var/lib/ptrust/ptrust.db", "");  // an empty file is no database either
  refused({"sync"}, "DATABASE_MISSING");
  write_file(root / "var/lib/ptrust/db.json", "");  // nor an empty db.json of an older root
  refused({"sync"}, "DATABASE_MISSING");
  ASSERT_EQ(::unlink((root / "var/lib/ptrust/ptrust.db").c_str()), 0);
  ASSERT_EQ(::unlink((root / "var/lib/ptrust/db.json").c_str()), 0);

  RunResult adopt = pt({"sync", "--adopt"});
  ASSERT_EQ(adopt.status, 0) << adopt.err;
  EXPECT_NE(adopt.out.find("adopted ca " + uuid + " purposes=ldaps,licensing"), std::string::npos) << adopt.out;
  EXPECT_NE(adopt.out.find("adopted crl root.crl"), std::string::npos) << adopt.out;
  EXPECT_NE(adopt.out.find("adopted legacy wlb.pem"), std::string::npos) << adopt.out;
  EXPECT_NE(adopt.out.find("adopted pool " + kHost1 + ".new.pem"), std::string::npos) << adopt.out;
  EXPECT_EQ(diff(installed, stores()), "") << "adopting rewrites nothing: the records are what the files say";
  EXPECT_EQ(pt({"sync", "--check"}).status, 0);
  json::value after = json::parse(pt({"list", "--json"}).out);
  for (const char* k : {"certificates", "crls", "legacy", "pool"}) {
    auto strip = [](json::value v) {
      for (auto& r : v.as_array()) {
        r.as_object().erase("installed_at");
        r.as_object().erase("days_left");  // moves with the clock between the two listings
      }
      return v;
    };
    EXPECT_EQ(json::serialize(strip(after.at(k))), json::serialize(strip(listed.at(k)))) << k;
  }
  RunResult again = pt({"sync", "--adopt"});
  EXPECT_EQ(again.status, 2) << "a root with a database is not adopted over: " << again.err;
}

// Adoption validates every file exactly as its intake command would; anything it cannot
// account for refuses the whole adoption and changes nothing.
TEST_F(Stores, AdoptRefusesWhatIntakeRefuses) {
  const std::string u = "11111111-2222-4333-8444-555555555555";
  Issued expired = self_signed({.cn = "Old", .ca = true, .not_before = -7200, .not_after = -3600});
  const Issued& leaf = pki().leaf;
  struct Plant {
    std::string name, rel, content, code;
  };
  for (const auto& p : std::vector<Plant>{
           {"expired", "etc/trusted-certs/ca-licensing/" + u + ".pem", expired.pem(), "TRUSTED_CERTIFICATE_EXPIRED"},
           {"leaf-as-ca", "etc/trusted-certs/ca-licensing/" + u + ".pem", leaf.pem(), "NOT_A_CA_CERTIFICATE"},
           {"keyed", "etc/trusted-certs/pinned-ldaps/" + u + ".pem", leaf.pem() + pki().leaf.key_pem(),
            "PRIVATE_KEY_NOT_ALLOWED"},
           {"undeclared", "etc/trusted-certs/pinned-wlb/" + u + ".pem", leaf.pem(), "UNKNOWN_PURPOSE"},
           {"bad-name", "etc/trusted-certs/ca-licensing/root.pem", pki().root.pem(), "TRUSTED_CERTIFICATE_INVALID"},
           {"bundle-extra", "etc/trusted-certs/ca-bundle-licensing.pem", pki().other.pem(), "STORE_CORRUPT"},
           {"legacy-name", "etc/stunnel/certs/wlb", pki().legacy_ca.pem(), "CERTIFICATE_NAME_INVALID"},
           {"pool-name", "etc/stunnel/certs-pool/host1.pem", pki().host1.pem(), "HOST_UUID_INVALID"},
           {"crl-garbage", "etc/stunnel/crls/x.crl", "garbage", "CRL_INVALID"},
       }) {
    TempDir r;
    std::filesystem::create_directories(std::filesystem::path(r / p.rel).parent_path());
    write_file(r / p.rel, p.content);
    Tree before = snapshot(r.path());
    RunResult sync = ptrust(r.path(), {"sync"});
    EXPECT_EQ(sync.err.rfind("ptrust: DATABASE_MISSING: ", 0), 0u) << p.name << ": " << sync.err;
    RunResult res = ptrust(r.path(), {"sync", "--adopt"});
    EXPECT_EQ(res.status, 1) << p.name;
    EXPECT_EQ(res.err.rfind("ptrust: " + p.code + ": ", 0), 0u) << p.name << ": " << res.err;
    EXPECT_EQ(std::count(res.err.begin(), res.err.end(), '\n'), 1) << res.err;
    EXPECT_EQ(diff(before, snapshot(r.path())), "") << p.name;
  }
}

// State files that would jam a writer after its commit point, or hide from `sync --check`:
// each is refused before the database commits (root byte-identical) or reported by
// `sync --check`, and `sync` repairs it.
TEST_F(Stores, StateFilesThatJamOrHideAreReportedAndRepaired) {
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  const std::string gen = root / "var/lib/ptrust/generation", lock = root / "var/lib/ptrust/lock";
  auto check_reports = [&](const std::string& what) {
    RunResult c = pt({"sync", "--check"});
    EXPECT_EQ(c.status, 1) << what << ": " << c.out << c.err;
    EXPECT_NE(c.out.find(what), std::string::npos) << c.out << c.err;
    RunResult s = pt({"sync"});
    EXPECT_EQ(s.status, 0) << s.err;
    RunResult clean = pt({"sync", "--check"});
    EXPECT_EQ(clean.status, 0) << what << " after sync: " << clean.out << clean.err;
  };
  for (int variant = 0; variant < 2; ++variant) {  // generation: a symlink, a directory
    ASSERT_EQ(::unlink(gen.c_str()), 0);
    if (variant == 0) ASSERT_EQ(::symlink("/dev/null", gen.c_str()), 0);
    else ASSERT_EQ(::mkdir(gen.c_str(), 0755), 0);
    refused({"install", in / "other.pem", "--ca", "--purpose", "licensing"}, "STORE_UNSAFE");
    refused({"legacy", "install", "x.pem", in / "other.pem"}, "STORE_UNSAFE");
    check_reports("unsafe: var/lib/ptrust/generation");
    struct stat st;
    ASSERT_EQ(::lstat(gen.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
  }
  for (int variant = 0; variant < 3; ++variant) {  // lock: a directory, a symlink, a FIFO
    ASSERT_EQ(::unlink(lock.c_str()), 0);
    if (variant == 0) ASSERT_EQ(::mkdir(lock.c_str(), 0755), 0);
    else if (variant == 1) ASSERT_EQ(::symlink("/tmp", lock.c_str()), 0);
    else ASSERT_EQ(::mkfifo(lock.c_str(), 0600), 0);
    refused({"install", in / "other.pem", "--ca", "--purpose", "licensing"}, "LOCK_FAILED");
    check_reports("unsafe: var/lib/ptrust/lock");
    struct stat st;
    ASSERT_EQ(::lstat(lock.c_str(), &st), 0);
    EXPECT_TRUE(S_ISREG(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
  }
  ASSERT_EQ(::chmod(lock.c_str(), 0666), 0);
  check_reports("mode: var/lib/ptrust/lock");
  for (const char* dir : {"etc/trusted-certs", "etc/stunnel", "var/lib/ptrust"}) {
    std::filesystem::create_directories(root / dir);
    ASSERT_EQ(::chmod((root / dir).c_str(), 0), 0);
    check_reports(std::string("mode: ") + dir);
    struct stat st;
    ASSERT_EQ(::stat((root / dir).c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0755u) << dir;
  }
  // A writer killed in `legacy install` or `pool add` leaves its temp file beside the bundle.
  write_file(root / "etc/stunnel/.ptrust-tmp-0123456789abcdef", "half a bundle");
  check_reports("remnant: etc/stunnel/.ptrust-tmp-0123456789abcdef");
  EXPECT_FALSE(std::filesystem::exists(root / "etc/stunnel/.ptrust-tmp-0123456789abcdef"));
  ok({"install", in / "other.pem", "--ca", "--purpose", "licensing"});
}

// Rewrites the database of `root` into the db.json of a root written before ptrust.db, as
// that version wrote it (the same serialize), and removes ptrust.db.
void make_older_root(const TempDir& root, const std::function<void(std::string&)>& edit = {}) {
  fs::Fd state = fs::open_dir(fs::open_root(root.path()).get(), layout::kStateDir, false);
  ASSERT_TRUE(state);
  std::string text = load_database(state.get()).serialize();
  if (edit) edit(text);
  write_file(root / "var/lib/ptrust/db.json", text);
  ASSERT_EQ(::chmod((root / "var/lib/ptrust/db.json").c_str(), 0600), 0);
  ASSERT_EQ(::unlink((root / "var/lib/ptrust/ptrust.db").c_str()), 0);
}

// The database is input too: a name in it that is not a file name is refused, not followed;
// in ptrust.db (a row edited with SQLite) and in the db.json of an older root.
TEST(Database, PathsInTheDatabaseAreRefused) {
  for (bool older : {false, true}) {
    TempDir root, in;
    Issued ca = self_signed({.cn = "DB", .ca = true});
    write_file(in / "ca.pem", ca.pem());
    ASSERT_EQ(ptrust(root.path(), {"legacy", "install", "x.pem", in / "ca.pem"}).status, 0);
    const std::string evil = "\"name\":\"../../trusted-certs/ca-bundle-ldaps.pem\"";
    if (older) {
      make_older_root(root, [&](std::string& db) { db.replace(db.find("\"name\":\"x.pem\""), 14, evil); });
    } else {
      sqlite3* db = nullptr;
      ASSERT_EQ(sqlite3_open((root / "var/lib/ptrust/ptrust.db").c_str(), &db), SQLITE_OK);
      const std::string sql = "UPDATE legacy SET record = replace(record, '\"name\":\"x.pem\"', '" + evil + "')";
      EXPECT_EQ(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db);
      EXPECT_EQ(sqlite3_changes(db), 1);
      sqlite3_close(db);
    }
    Tree before = snapshot(root.path());
    RunResult r = ptrust(root.path(), {"sync"});
    EXPECT_EQ(r.status, 1) << older;
    EXPECT_EQ(r.err.rfind("ptrust: DATABASE_INVALID: ", 0), 0u) << r.err;
    EXPECT_EQ(diff(before, snapshot(root.path())), "") << older;
  }
}

// A database file that is not one (garbage, another SQLite file, a symlink) is refused with
// nothing changed; a symlink is never followed.
TEST(Database, ForeignOrLinkedDatabaseIsRefused) {
  TempDir root, in;
  Issued ca = self_signed({.cn = "DB", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(root.path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}).status, 0);
  const auto db = root / "var/lib/ptrust/ptrust.db";
  const std::string good = read_file(db);
  auto refused = [&](const std::string& code, const std::string& what) {
    Tree before = snapshot(root.path());
    for (std::vector<std::string> args : {std::vector<std::string>{"sync", "--check"}, {"sync"}, {"list"},
                                          {"install", in / "ca.pem", "--ca", "--purpose", "ldaps"}}) {
      RunResult r = ptrust(root.path(), args);
      EXPECT_EQ(r.status, 1) << what << " " << args[0];
      EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << what << ": " << r.err;
      EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    }
    EXPECT_EQ(diff(before, snapshot(root.path())), "") << what;
  };
  write_file(db, std::string(4096, 'x'));
  refused("DATABASE_INVALID", "garbage");
  {
    std::filesystem::remove(db);
    sqlite3* other = nullptr;
    ASSERT_EQ(sqlite3_open(db.c_str(), &other), SQLITE_OK);
    ASSERT_EQ(sqlite3_exec(other, "CREATE TABLE certs(x)", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(other);
    ASSERT_EQ(::chmod(db.c_str(), 0600), 0);
  }
  refused("DATABASE_INVALID", "another SQLite database");
  std::filesystem::remove(db);
  write_file(in / "real.db", good);
  std::filesystem::create_symlink(in / "real.db", db);
  refused("STORE_UNSAFE", "a symlink");
  std::filesystem::remove(db);
  write_file(db, good);
  ASSERT_EQ(::chmod(db.c_str(), 0600), 0);
  EXPECT_EQ(ptrust(root.path(), {"sync", "--check"}).out, "in sync\n");
}

// A writer killed in the middle of its SQLite commit leaves a hot journal (and pages of its
// uncommitted change in ptrust.db): the next reader rolls it back and reads the database as
// it was, and the root is left without the journal.
TEST(Database, KilledCommitIsRolledBackByTheNextReader) {
  TempDir root, in;
  Issued ca = self_signed({.cn = "Hot", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(root.path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}).status, 0);
  // The export, not `list` (whose days_left can move by one while the test runs).
  const std::string listed = ptrust(root.path(), {"export", "-"}).out;
  const auto db = root / "var/lib/ptrust/ptrust.db";
  const auto journal = root / "var/lib/ptrust/ptrust.db-journal";
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {  // a writer that dies mid-transaction after its cache spilled into the file
    sqlite3* c = nullptr;
    if (sqlite3_open(db.c_str(), &c) != SQLITE_OK) ::_exit(2);
    const char* sql =
        "PRAGMA cache_size=1; BEGIN; DELETE FROM certs;"
        "INSERT INTO crls(name, record) VALUES('x', hex(randomblob(300000)));";
    if (sqlite3_exec(c, sql, nullptr, nullptr, nullptr) != SQLITE_OK) ::_exit(3);
    ::_exit(0);  // no COMMIT, no close
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ASSERT_TRUE(std::filesystem::exists(journal));
  RunResult r = ptrust(root.path(), {"export", "-"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, listed);
  EXPECT_FALSE(std::filesystem::exists(journal));
  EXPECT_EQ(ptrust(root.path(), {"sync", "--check"}).out, "in sync\n");
}

// A root written before ptrust.db (db.json) is read as it is, and its first write moves it to
// ptrust.db in one step: the same records, db.json gone, nothing else changed.
TEST(Database, OlderRootIsMigratedByItsFirstWrite) {
  TempDir root, in;
  Issued a = self_signed({.cn = "Mig A", .ca = true}), b = self_signed({.cn = "Mig B", .ca = true});
  write_file(in / "a.pem", a.pem());
  write_file(in / "b.pem", b.pem());
  auto pt = [&](std::vector<std::string> args) { return ptrust(root.path(), args); };
  ASSERT_EQ(pt({"install", in / "a.pem", "--ca", "--purpose", "licensing"}).status, 0);
  ASSERT_EQ(pt({"legacy", "install", "wlb.pem", in / "a.pem"}).status, 0);
  const std::string exported = pt({"export", "-"}).out;  // (not `list`: its days_left moves with the clock)
  make_older_root(root);
  ASSERT_FALSE(std::filesystem::exists(root / "var/lib/ptrust/ptrust.db"));
  // Readers read db.json and create nothing.
  Tree before = snapshot(root.path());
  EXPECT_EQ(pt({"export", "-"}).out, exported);
  EXPECT_EQ(pt({"sync", "--check"}).out, "in sync\n");
  EXPECT_EQ(diff(before, snapshot(root.path())), "");
  // The first write migrates.
  RunResult w = pt({"install", in / "b.pem", "--ca", "--purpose", "ldaps"});
  ASSERT_EQ(w.status, 0) << w.err;
  EXPECT_TRUE(std::filesystem::exists(root / "var/lib/ptrust/ptrust.db"));
  EXPECT_FALSE(std::filesystem::exists(root / "var/lib/ptrust/db.json"));
  struct stat st;
  ASSERT_EQ(::stat((root / "var/lib/ptrust/ptrust.db").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  json::value now = json::parse(pt({"list", "--json"}).out);
  EXPECT_EQ(now.at("certificates").as_array().size(), 2u);
  ASSERT_EQ(pt({"uninstall", std::string(now.at("certificates").as_array()[0].at("subject").as_string()) == "CN=Mig B"
                                 ? std::string(now.at("certificates").as_array()[0].at("uuid").as_string())
                                 : std::string(now.at("certificates").as_array()[1].at("uuid").as_string())})
                .status,
            0);
  EXPECT_EQ(pt({"export", "-"}).out, exported);
  EXPECT_EQ(pt({"sync", "--check"}).out, "in sync\n");
}

}  // namespace
}  // namespace ptrust::testing
