// The CRL lifecycle through the real `ptrust` binary: a newer CRL replaces the installed one
// in one change, --issuer checks a CRL whose issuer is not installed, delta CRLs live and
// die with their base, and an unusable CRL says which purposes it fails.
#include <gtest/gtest.h>

#include <filesystem>

#include <boost/json.hpp>

#include "core/cert.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/layout.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;

struct Pki {
  Issued root = self_signed({.cn = "Life Root", .ca = true});
  Issued sub = issue({.cn = "Life Sub", .ca = true}, root);  // never installed
  Issued sub_forger = self_signed({.cn = "Life Sub", .ca = true});  // the same name, another key
  Issued leaf = issue({.cn = "leaf.example"}, root);
  Issued other = self_signed({.cn = "Other Root", .ca = true});
};

const Pki& pki() {
  static Pki p;
  return p;
}

class CrlLifecycle : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(in / "root.pem", pki().root.pem());
    write_file(in / "sub.pem", pki().sub.pem());
    write_file(in / "sub.der", pki().sub.der());
    write_file(in / "other.pem", pki().other.pem());
  }
  RunResult pt(std::vector<std::string> args) { return ptrust(root.path(), std::move(args)); }
  RunResult ok(std::vector<std::string> args) {
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 0) << args[0] << " " << args[1] << ": " << r.err;
    return r;
  }
  // Refused with `code` in one line, and the root byte-identical.
  void refused(std::vector<std::string> args, const std::string& code) {
    Tree before = snapshot(root.path());
    RunResult r = pt(args);
    std::string cmd;
    for (const auto& a : args) cmd += (cmd.empty() ? "" : " ") + a;
    EXPECT_EQ(r.status, 1) << cmd << ": " << r.err;
    EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << "for " << cmd << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_EQ(diff(before, snapshot(root.path())), "") << cmd;
  }
  // A CRL file in `in`.
  std::string crl(const std::string& name, const Issued& issuer, const CrlSpec& spec, std::vector<X509*> revoked = {}) {
    auto c = make_crl_spec(issuer, revoked, spec);
    write_file(in / name, crl_pem(c.get()));
    return in / name;
  }
  std::uint64_t generation() {
    fs::Fd r = fs::open_root(root.path());
    fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, false);
    return state ? read_generation(state.get()) : 0;
  }
  json::array crls() { return json::parse(ok({"crl", "list", "--json"}).out).at("crls").as_array(); }
  json::object show(const std::string& name) { return json::parse(ok({"crl", "show", name, "--json"}).out).as_object(); }
  bool stored(const std::string& name) { return std::filesystem::exists(root / ("etc/stunnel/crls/" + name)); }

  TempDir root, in;
};

TEST_F(CrlLifecycle, ANewerCrlReplacesTheInstalledOneInOneChangeKeepingItsName) {
  ok({"install", in / "root.pem", "--ca"});
  EXPECT_EQ(ok({"crl", "install", crl("3.crl", pki().root, {.number = 3})}).out, "Life_Root.crl\n");
  const std::uint64_t before = generation();
  const std::string next = crl("4.crl", pki().root, {.number = 4}, {pki().leaf.cert.get()});
  RunResult r = ok({"crl", "install", next});
  EXPECT_EQ(r.out, "Life_Root.crl\n");
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Root.crl (crlNumber 3 -> 4)\n");
  EXPECT_EQ(generation(), before + 2) << "one change: one odd step, one even step";
  ASSERT_EQ(crls().size(), 1u);
  EXPECT_EQ(show("Life_Root.crl").at("crl_number"), "4");
  EXPECT_EQ(read_file(root / "etc/stunnel/crls/Life_Root.crl"), read_file(next)) << "the new CRL under the old name";
  int hash_entries = 0;
  for (const auto& e : std::filesystem::directory_iterator(root / "etc/stunnel/crls")) {
    if (e.path().filename() == "Life_Root.crl") continue;
    ++hash_entries;
    EXPECT_EQ(read_file(e.path()), read_file(next)) << e.path();
  }
  EXPECT_EQ(hash_entries, 1);

  // --name renames it in the same change.
  r = ok({"crl", "install", crl("5.crl", pki().root, {.number = 5}), "--name", "life.crl"});
  EXPECT_EQ(r.out, "life.crl\n");
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Root.crl with life.crl (crlNumber 4 -> 5)\n");
  EXPECT_FALSE(stored("Life_Root.crl"));
  EXPECT_TRUE(stored("life.crl"));
  ASSERT_EQ(crls().size(), 1u);
}

TEST_F(CrlLifecycle, AnOlderOrEqualCrlIsRefusedAndChangesNothing) {
  ok({"install", in / "root.pem", "--ca"});
  ok({"crl", "install", crl("4.crl", pki().root, {.number = 4})});
  refused({"crl", "install", crl("3.crl", pki().root, {.number = 3})}, "CRL_NOT_NEWER");
  refused({"crl", "install", in / "4.crl"}, "CRL_NOT_NEWER");
  // The crlNumber decides when both have one: a later thisUpdate does not make #4 newer.
  refused({"crl", "install", crl("4-later.crl", pki().root, {.last_update = -60, .number = 4})}, "CRL_NOT_NEWER");
  RunResult r = pt({"crl", "install", in / "3.crl"});
  EXPECT_NE(r.err.find("has crlNumber 4, this one crlNumber 3"), std::string::npos) << r.err;
}

TEST_F(CrlLifecycle, WithoutCrlNumbersTheLaterThisUpdateIsNewer) {
  ok({"install", in / "root.pem", "--ca"});
  ok({"crl", "install", crl("mid.crl", pki().root, {.last_update = -3600})});
  refused({"crl", "install", crl("early.crl", pki().root, {.last_update = -7200})}, "CRL_NOT_NEWER");
  RunResult r = ok({"crl", "install", crl("late.crl", pki().root, {.last_update = -60})});
  EXPECT_EQ(r.err.rfind("ptrust: replaced CRL Life_Root.crl (thisUpdate ", 0), 0u) << r.err;
  // One with a number, one without: thisUpdate decides.
  refused({"crl", "install", crl("numbered-early.crl", pki().root, {.last_update = -600, .number = 9})}, "CRL_NOT_NEWER");
  EXPECT_EQ(ok({"crl", "install", crl("numbered.crl", pki().root, {.last_update = -30, .number = 9})}).out,
            "Life_Root.crl\n");
  ASSERT_EQ(crls().size(), 1u);
  EXPECT_EQ(show("Life_Root.crl").at("crl_number"), "9");
}

TEST_F(CrlLifecycle, EachPurposeSetIsItsOwnScope) {
  ok({"install", in / "root.pem", "--ca"});
  ok({"crl", "install", crl("3.crl", pki().root, {.number = 3})});
  // The same issuer for other purpose sets: installed beside it, under a derived name of its own.
  EXPECT_EQ(ok({"crl", "install", in / "3.crl", "--purpose", "ldaps"}).out, "Life_Root-2.crl\n");
  ok({"crl", "install", in / "3.crl", "--purpose", "licensing", "--name", "lic.crl"});
  ok({"crl", "install", in / "3.crl", "--purpose", "licensing,ldaps", "--name", "both.crl"});
  ASSERT_EQ(crls().size(), 4u);
  // A newer one for licensing replaces lic.crl only.
  RunResult r = ok({"crl", "install", crl("4.crl", pki().root, {.number = 4}), "--purpose", "licensing"});
  EXPECT_EQ(r.out, "lic.crl\n");
  EXPECT_EQ(r.err, "ptrust: replaced CRL lic.crl (crlNumber 3 -> 4)\n");
  EXPECT_EQ(show("lic.crl").at("crl_number"), "4");
  EXPECT_EQ(show("Life_Root.crl").at("crl_number"), "3");
  EXPECT_EQ(show("both.crl").at("crl_number"), "3");
  EXPECT_EQ(show("Life_Root-2.crl").at("crl_number"), "3");
  // The scope is the set, not the order it was given in.
  EXPECT_EQ(ok({"crl", "install", in / "4.crl", "--purpose", "ldaps,licensing"}).out, "both.crl\n");
  refused({"crl", "install", in / "3.crl", "--purpose", "licensing"}, "CRL_NOT_NEWER");
  // Another issuer under a taken name is no replacement.
  refused({"crl", "install", crl("o.crl", pki().other, {.number = 7}), "--name", "lic.crl", "--purpose", "licensing"},
          "CRL_ALREADY_EXISTS");
}

TEST_F(CrlLifecycle, ConcurrentCrlsOfOneIssuerNameLiveSideBySide) {
  // A rolled-over key (another AKID) and CRLs partitioned by distribution point are not
  // successors of each other: neither replaces (nor is refused by) the other.
  Issued rolled_self = self_signed({.cn = "Life Root", .ca = true});
  write_file(in / "rolled.pem", rolled_self.pem());
  ok({"install", in / "root.pem", "--ca"});
  ok({"install", in / "rolled.pem", "--ca"});
  ok({"crl", "install", crl("5.crl", pki().root, {.number = 5})});
  RunResult r = ok({"crl", "install", crl("rolled-1.crl", rolled_self, {.number = 1})});
  EXPECT_EQ(r.out, "Life_Root-2.crl\n");
  EXPECT_EQ(r.err, "");
  const std::string part_a = crl("a.crl", pki().root, {.number = 1, .idp = "fullname:URI:http://crl.example/a.crl"});
  const std::string part_b = crl("b.crl", pki().root, {.number = 1, .idp = "fullname:URI:http://crl.example/b.crl"});
  EXPECT_EQ(ok({"crl", "install", part_a}).out, "Life_Root-3.crl\n");
  EXPECT_EQ(ok({"crl", "install", part_b}).out, "Life_Root-4.crl\n");
  ASSERT_EQ(crls().size(), 4u);
  // Within one line the rules hold: partition a's next CRL replaces it, its older one is refused.
  r = ok({"crl", "install", crl("a2.crl", pki().root, {.number = 2, .idp = "fullname:URI:http://crl.example/a.crl"})});
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Root-3.crl (crlNumber 1 -> 2)\n");
  refused({"crl", "install", part_a}, "CRL_NOT_NEWER");
  refused({"crl", "install", crl("4.crl", pki().root, {.number = 4})}, "CRL_NOT_NEWER");
  EXPECT_EQ(show("Life_Root.crl").at("crl_number"), "5");
  EXPECT_EQ(show("Life_Root-2.crl").at("crl_number"), "1");
  EXPECT_EQ(show("Life_Root-4.crl").at("crl_number"), "1");
  // A delta finds its base only in its own line.
  refused({"crl", "install", crl("d.crl", rolled_self, {.number = 6, .delta_base = 5})}, "CRL_DELTA_WITHOUT_BASE");
}

TEST_F(CrlLifecycle, IssuerChecksACrlWhoseIssuerIsNotInstalled) {
  ok({"install", in / "root.pem", "--ca"});
  const std::string genuine = crl("sub.crl", pki().sub, {.number = 1}, {pki().leaf.cert.get()});
  const std::string forged = crl("forged.crl", pki().sub_forger, {.number = 1});
  write_file(in / "sub.key", pki().sub.key_pem());
  write_file(in / "sub+key.pem", pki().sub.pem() + pki().sub.key_pem());
  write_file(in / "root+sub.pem", pki().root.pem() + pki().sub.pem());

  refused({"crl", "install", forged, "--issuer", in / "sub.pem"}, "CRL_SIGNATURE_INVALID");
  refused({"crl", "install", genuine, "--issuer", in / "root.pem"}, "CRL_SIGNATURE_INVALID");  // not its issuer's name
  refused({"crl", "install", genuine, "--issuer", in / "sub.key"}, "PRIVATE_KEY_NOT_ALLOWED");
  refused({"crl", "install", genuine, "--issuer", in / "sub+key.pem"}, "PRIVATE_KEY_NOT_ALLOWED");
  refused({"crl", "install", genuine, "--issuer", genuine}, "TRUSTED_CERTIFICATE_INVALID");
  RunResult bad = pt({"crl", "install", forged, "--issuer", in / "sub.pem"});
  EXPECT_NE(bad.err.find("did not sign this CRL"), std::string::npos) << bad.err;

  const std::string bundle = read_file(root / "etc/trusted-certs/ca-bundle-general.pem");
  RunResult r = ok({"crl", "install", genuine, "--issuer", in / "root+sub.pem"});
  EXPECT_EQ(r.out, "Life_Sub.crl\n");
  EXPECT_EQ(r.err, "") << "checked: no warning";
  EXPECT_EQ(show("Life_Sub.crl").at("issuer_certificate"), json::value(Certificate::parse(pki().sub.pem()).info().sha256));
  EXPECT_EQ(read_file(root / "etc/trusted-certs/ca-bundle-general.pem"), bundle) << "an --issuer certificate is never trusted";
  EXPECT_EQ(json::parse(ok({"list", "--json"}).out).at("certificates").as_array().size(), 1u);

  // The recorded signer checks its next CRL without --issuer; a DER --issuer works too.
  refused({"crl", "install", crl("forged2.crl", pki().sub_forger, {.number = 2})}, "CRL_SIGNATURE_INVALID");
  r = ok({"crl", "install", crl("sub2.crl", pki().sub, {.number = 2})});
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Sub.crl (crlNumber 1 -> 2)\n");
  EXPECT_EQ(show("Life_Sub.crl").at("issuer_certificate"), json::value(Certificate::parse(pki().sub.pem()).info().sha256));
  r = ok({"crl", "install", crl("sub3.crl", pki().sub, {.number = 3}), "--issuer", in / "sub.der"});
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Sub.crl (crlNumber 2 -> 3)\n");
}

TEST_F(CrlLifecycle, WithoutIssuerAnUncheckableCrlIsAcceptedWithAWarning) {
  // The documented gap --issuer closes: nothing installed is named like the issuer.
  RunResult r = ok({"crl", "install", crl("forged.crl", pki().sub_forger, {.number = 1})});
  EXPECT_EQ(r.out, "Life_Sub.crl\n");
  EXPECT_EQ(r.err, "ptrust: warning: CRL 'Life_Sub.crl': no installed CA is named 'CN=Life Sub', so its signature is "
                   "checked only at verification time; give its signer with --issuer FILE to check it now\n");
  EXPECT_EQ(show("Life_Sub.crl").at("issuer_certificate"), nullptr);
}

TEST_F(CrlLifecycle, DeltaCrlsNeedTheirBaseAndGoWithIt) {
  ok({"install", in / "root.pem", "--ca"});
  const std::string delta = crl("d4.crl", pki().root, {.number = 4, .delta_base = 3});
  refused({"crl", "install", delta}, "CRL_DELTA_WITHOUT_BASE");
  ok({"crl", "install", crl("2.crl", pki().root, {.number = 2})});
  refused({"crl", "install", delta}, "CRL_DELTA_WITHOUT_BASE");  // the installed base is #2
  // A base that says where its deltas are (freshestCRL): OpenSSL applies deltas only then.
  ok({"crl", "install", crl("3.crl", pki().root, {.number = 3, .freshest = "URI:http://crl.test/delta.crl"})});
  refused({"crl", "install", delta, "--purpose", "licensing"}, "CRL_DELTA_WITHOUT_BASE");  // no base in that scope

  RunResult r = ok({"crl", "install", delta});
  EXPECT_EQ(r.out, "Life_Root-delta.crl\n");
  EXPECT_EQ(r.err, "");
  EXPECT_TRUE(stored("Life_Root-delta.crl"));
  ASSERT_EQ(crls().size(), 2u);
  EXPECT_EQ(show("Life_Root-delta.crl").at("delta"), true);
  EXPECT_EQ(show("Life_Root-delta.crl").at("delta_base"), "3");
  EXPECT_EQ(show("Life_Root.crl").at("delta_base"), nullptr);
  EXPECT_NE(ok({"crl", "list"}).out.find("Life_Root-delta.crl  status=ok  issuer=CN=Life Root  purposes=all  delta-of=3"),
            std::string::npos);
  EXPECT_NE(ok({"crl", "show", "Life_Root-delta.crl"}).out.find("crlNumber:   4 (delta CRL of base crlNumber 3)"),
            std::string::npos);

  // A newer delta replaces the delta, never the complete CRL; an older one is refused.
  r = ok({"crl", "install", crl("d5.crl", pki().root, {.number = 5, .delta_base = 3})});
  EXPECT_EQ(r.out, "Life_Root-delta.crl\n");
  EXPECT_EQ(r.err, "ptrust: replaced delta CRL Life_Root-delta.crl (crlNumber 4 -> 5)\n");
  EXPECT_EQ(show("Life_Root.crl").at("crl_number"), "3");
  refused({"crl", "install", delta}, "CRL_NOT_NEWER");

  // A complete CRL beyond the delta's base replaces the base and drops the delta, in one change.
  const std::uint64_t before = generation();
  r = ok({"crl", "install", crl("6.crl", pki().root, {.number = 6})});
  EXPECT_EQ(r.err, "ptrust: replaced CRL Life_Root.crl (crlNumber 3 -> 6)\n"
                   "ptrust: removed delta CRL Life_Root-delta.crl (base crlNumber 3, superseded)\n");
  EXPECT_EQ(generation(), before + 2);
  EXPECT_FALSE(stored("Life_Root-delta.crl"));
  ASSERT_EQ(crls().size(), 1u);

  // Uninstalling the base takes its delta with it, and says so.
  ok({"crl", "install", crl("d7.crl", pki().root, {.number = 7, .delta_base = 6})});
  ASSERT_EQ(crls().size(), 2u);
  r = ok({"crl", "uninstall", "Life_Root.crl"});
  EXPECT_EQ(r.err, "removed CRL Life_Root.crl\nremoved delta CRL Life_Root-delta.crl (its base Life_Root.crl is gone)\n");
  EXPECT_EQ(crls().size(), 0u);
  EXPECT_FALSE(stored("Life_Root-delta.crl"));
}

TEST_F(CrlLifecycle, AnUnusableCrlNamesThePurposesItFails) {
  // licensing: its own CA; ldaps: general mode but allow-expired-crl; wlb: crl-policy off;
  // general: the general CA.
  std::filesystem::create_directories(root / "etc/ptrust");
  write_file(root / "etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps:\n    allow-expired-crl: true\n"
                                               "  wlb:\n    crl-policy: off\n");
  ok({"install", in / "root.pem", "--ca"});
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  RunResult r = ok({"crl", "install", crl("old.crl", pki().root, {.last_update = -7200, .next_update = -3600, .number = 1})});
  const std::string warning = "ptrust: warning: CRL 'Life_Root.crl' is past its nextUpdate (";
  ASSERT_EQ(r.err.rfind(warning, 0), 0u) << r.err;
  EXPECT_NE(r.err.find("): verification for purposes licensing, general fails until it is replaced\n"), std::string::npos)
      << r.err;
  EXPECT_NE(ok({"crl", "list"}).out.find("Life_Root.crl  status=expired (fails licensing,general)  "), std::string::npos);
  json::object listed = crls().at(0).as_object();
  EXPECT_EQ(listed.at("status"), "expired");
  EXPECT_EQ(listed.at("failing"), (json::array{"licensing", "general"}));
  // The same purposes `status` finds failing through the consumers' trust path.
  json::value st = json::parse(pt({"status", "--json"}).out);
  EXPECT_EQ(st.at("crls").at(0).at("failing"), (json::array{"licensing", "general"}));

  // Scoped to ldaps (allow-expired-crl): nothing fails, and it says so.
  r = ok({"crl", "install", crl("o.crl", pki().other, {.last_update = -7200, .next_update = -3600}), "--purpose", "ldaps"});
  EXPECT_NE(r.err.find("no purpose fails because of it"), std::string::npos) << r.err;
  EXPECT_EQ(crls().at(1).at("failing"), json::array{});

  // A current CRL replaces the expired one: ok.
  ok({"crl", "install", crl("new.crl", pki().root, {.number = 2})});
  EXPECT_EQ(crls().at(0).at("status"), "ok");
  // Not yet valid: every purpose that verifies with it fails, allow-expired-crl or not.
  r = ok({"crl", "install", crl("future.crl", pki().root, {.last_update = 3600, .next_update = 7200, .number = 3})});
  EXPECT_NE(r.err.find("is not valid before its thisUpdate ("), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("): verification for purposes ldaps, licensing, general fails until then\n"), std::string::npos)
      << r.err;
  EXPECT_EQ(crls().at(0).at("status"), "not-yet-valid");
}

// An expired delta CRL fails nothing (OpenSSL skips it; its base decides): `crl list` and
// `status` say the same.
TEST_F(CrlLifecycle, AnExpiredDeltaFailsNoPurposeInListOrStatus) {
  ok({"install", in / "root.pem", "--ca", "--purpose", "licensing"});
  ok({"crl", "install", crl("base.crl", pki().root, {.number = 1})});
  ok({"crl", "install", crl("d.crl", pki().root, {.last_update = -7200, .next_update = -3600, .number = 2, .delta_base = 1})});
  json::value st = json::parse(pt({"status", "--json"}).out);
  for (const auto& c : st.at("crls").as_array()) {
    EXPECT_EQ(c.at("failing"), json::array{}) << json::serialize(c);
  }
  for (const auto& c : crls()) EXPECT_EQ(c.at("failing"), json::array{}) << json::serialize(c);
}

}  // namespace
}  // namespace ptrust::testing
