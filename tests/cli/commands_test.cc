// The `ptrust` command as a user drives it: output, JSON, exit codes, options.
#include <gtest/gtest.h>

#include <unistd.h>

#include <boost/json.hpp>

#include "tests/support/run.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;

class Commands : public ::testing::Test {
 protected:
  void SetUp() override {
    write_file(in / "ca.pem", ca.pem());
    write_file(in / "peer.pem", peer.pem());
  }
  RunResult pt(std::vector<std::string> args) { return ptrust(root.path(), std::move(args)); }
  std::string install(std::vector<std::string> args) {
    RunResult r = pt(std::move(args));
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.size(), 37u) << r.out;
    return r.out.substr(0, 36);
  }

  TempDir root, in;
  Issued ca = self_signed({.cn = "Cmd Root", .ca = true});
  Issued peer = self_signed({.cn = "peer.example"});
};

TEST_F(Commands, InstallPrintsTheUuidThatListAndResolveShow) {
  std::string ca_uuid = install({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  std::string pin_uuid = install({"install", in / "peer.pem", "--pinned", "--purpose", "ldaps"});
  RunResult l = pt({"list", "--json"});
  ASSERT_EQ(l.status, 0);
  json::value doc = json::parse(l.out);
  const auto& certs = doc.at("certificates").as_array();
  ASSERT_EQ(certs.size(), 2u);
  std::map<std::string, json::object> by_uuid;
  for (const auto& c : certs) by_uuid[std::string(c.at("uuid").as_string())] = c.as_object();
  EXPECT_EQ(by_uuid.at(ca_uuid).at("type").as_string(), "ca");
  EXPECT_EQ(by_uuid.at(pin_uuid).at("type").as_string(), "pinned");
  EXPECT_EQ(by_uuid.at(ca_uuid).at("subject").as_string(), "CN=Cmd Root");
  EXPECT_EQ(by_uuid.at(ca_uuid).at("purposes").as_array().size(), 1u);

  RunResult text = pt({"list"});
  EXPECT_NE(text.out.find(ca_uuid), std::string::npos);
  EXPECT_NE(text.out.find("purposes=licensing"), std::string::npos);

  json::value rl = json::parse(pt({"resolve", "licensing", "--json"}).out);
  EXPECT_EQ(rl.at("mode").as_string(), "ca");
  EXPECT_EQ(rl.at("bundle").as_string(), root / "etc/trusted-certs/ca-bundle-licensing.pem");
  json::value rp = json::parse(pt({"resolve", "ldaps", "--json"}).out);
  EXPECT_EQ(rp.at("mode").as_string(), "pinned");
  json::value rg = json::parse(pt({"resolve", "general", "--json"}).out);
  EXPECT_EQ(rg.at("mode").as_string(), "none");
  EXPECT_TRUE(rg.at("bundle").is_null());
}

TEST_F(Commands, UsageErrorsExitTwo) {
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {},
           {"frobnicate"},
           {"install"},
           {"install", in / "ca.pem"},
           {"install", in / "ca.pem", "--ca", "--pinned", "--purpose", "licensing"},
           {"install", in / "ca.pem", "--ca", "--bogus"},
           {"uninstall"},
           {"resolve"},
           {"list", "extra"},
       }) {
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 2) << "args: " << (args.empty() ? "" : args[0]) << " " << r.err;
    EXPECT_TRUE(r.err.find("USAGE") != std::string::npos || r.err.find("usage:") != std::string::npos) << r.err;
  }
}

TEST_F(Commands, HelpExplainsEveryCommand) {
  RunResult r = run({PTRUST_BIN, "--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* c : {"install", "uninstall", "list", "resolve", "sync", "--root", "--config", "exit status"})
    EXPECT_NE(r.out.find(c), std::string::npos) << c;
  RunResult i = run({PTRUST_BIN, "install", "--help"});
  EXPECT_EQ(i.status, 0);
  EXPECT_NE(i.out.find("--pinned"), std::string::npos);
  EXPECT_NE(i.out.find("--purpose"), std::string::npos);
}

TEST_F(Commands, SyncCheckReportsDriftAndExitsOne) {
  std::string uuid = install({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  EXPECT_EQ(pt({"sync", "--check"}).status, 0);
  ASSERT_EQ(::unlink((root / "etc/trusted-certs/ca-bundle-licensing.pem").c_str()), 0);
  RunResult c = pt({"sync", "--check", "--json"});
  EXPECT_EQ(c.status, 1);
  json::value doc = json::parse(c.out);
  EXPECT_FALSE(doc.at("clean").as_bool());
  ASSERT_EQ(doc.at("drift").as_array().size(), 1u);
  EXPECT_EQ(doc.at("drift").as_array()[0].at("kind").as_string(), "missing");
  EXPECT_EQ(doc.at("drift").as_array()[0].at("path").as_string(), "etc/trusted-certs/ca-bundle-licensing.pem");
  RunResult s = pt({"sync"});
  EXPECT_EQ(s.status, 0);
  EXPECT_NE(s.out.find("repaired missing: etc/trusted-certs/ca-bundle-licensing.pem"), std::string::npos) << s.out;
  EXPECT_EQ(pt({"sync", "--check"}).status, 0);
}

TEST_F(Commands, UninstallForceDropsARecordWhoseFilesAreGone) {
  std::string uuid = install({"install", in / "peer.pem", "--pinned", "--purpose", "ldaps"});
  ASSERT_EQ(::unlink((root / ("etc/trusted-certs/pinned-ldaps/" + uuid + ".pem")).c_str()), 0);
  RunResult r = pt({"uninstall", uuid});
  EXPECT_EQ(r.status, 1);
  EXPECT_EQ(r.err.rfind("ptrust: TRUSTED_CERTIFICATE_FILE_MISSING: ", 0), 0u) << r.err;
  EXPECT_EQ(pt({"uninstall", uuid, "--force"}).status, 0);
  EXPECT_EQ(json::parse(pt({"list", "--json"}).out).at("certificates").as_array().size(), 0u);
  EXPECT_EQ(json::parse(pt({"resolve", "ldaps", "--json"}).out).at("mode").as_string(), "none");
}

TEST_F(Commands, ConfigDeclaresPurposesAndErrorsNameTheLine) {
  write_file(in / "ptrust.yaml", "purposes:\n  wlb:\n    crl-policy: require\n");
  EXPECT_EQ(pt({"--config", in / "ptrust.yaml", "install", in / "ca.pem", "--ca", "--purpose", "wlb"}).status, 0);
  RunResult undeclared = pt({"--config", in / "ptrust.yaml", "resolve", "licensing"});
  EXPECT_EQ(undeclared.status, 1);
  EXPECT_EQ(undeclared.err.rfind("ptrust: UNKNOWN_PURPOSE: ", 0), 0u) << undeclared.err;

  write_file(in / "bad.yaml", "purposes:\n  wlb:\n    crl-policy: sometimes\n");
  RunResult bad = pt({"resolve", "wlb", "--config", in / "bad.yaml"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_EQ(bad.err.rfind("ptrust: CONFIG_INVALID: " + (in / "bad.yaml") + ":3:17: ", 0), 0u) << bad.err;
  RunResult missing = pt({"--config", in / "nope.yaml", "list"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.err.find("CONFIG_INVALID"), std::string::npos);
}

TEST_F(Commands, ConfigUnderTheRootIsPickedUp) {
  ASSERT_EQ(::mkdir((root / "etc").c_str(), 0755), 0);
  ASSERT_EQ(::mkdir((root / "etc/ptrust").c_str(), 0755), 0);
  write_file(root / "etc/ptrust/ptrust.yaml", "purposes:\n  appliance: {}\n");
  EXPECT_EQ(pt({"resolve", "appliance"}).status, 0);
  EXPECT_EQ(pt({"resolve", "licensing"}).status, 1) << "the file replaces the built-in purposes";
}

// A refusal writes nothing, not even the lock file (a root written by an older version, or
// one where only `stunnel sync` ran, has a state directory without one).
TEST_F(Commands, RefusalsCreateNoLockFile) {
  install({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  ASSERT_EQ(::unlink((root / "var/lib/ptrust/lock").c_str()), 0);
  Tree before = snapshot(root.path());
  for (std::vector<std::string> args : std::vector<std::vector<std::string>>{
           {"uninstall", "00000000-0000-4000-8000-000000000000"},
           {"crl", "uninstall", "nope.crl"},
           {"legacy", "uninstall", "nope.pem"},
           {"pool", "remove", "1c111a1f-412e-47c0-9003-60789b839bc3"},
           {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}}) {
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 1) << args[0] << ": " << r.err;
  }
  EXPECT_EQ(pt({"list"}).status, 0);
  EXPECT_EQ(pt({"sync", "--check"}).status, 0);
  EXPECT_EQ(diff(before, snapshot(root.path())), "");
}

// Options may come before the command, as README and --help say: the command's own options
// (--json, --dry-run) too, and before a group's action.
TEST_F(Commands, CommandOptionsBeforeTheCommandName) {
  install({"install", in / "ca.pem", "--ca"});
  RunResult list = pt({"--json", "list"});
  ASSERT_EQ(list.status, 0) << list.err;
  EXPECT_EQ(json::parse(list.out).at("certificates").as_array().size(), 1u);
  for (std::vector<std::string> args : {std::vector<std::string>{"--json", "crl", "list"}, {"crl", "--json", "list"}}) {
    RunResult crls = pt(args);
    ASSERT_EQ(crls.status, 0) << args[0] << " " << args[1] << ": " << crls.err;
    EXPECT_TRUE(json::parse(crls.out).at("crls").as_array().empty());
  }
  RunResult exported = pt({"export", in / "doc.json"});
  ASSERT_EQ(exported.status, 0) << exported.err;
  RunResult dry = pt({"--dry-run", "import", in / "doc.json"});
  EXPECT_EQ(dry.status, 0) << dry.err;
  EXPECT_EQ(pt({"crl"}).err.rfind("ptrust: USAGE: 'crl' needs an action", 0), 0u);
}

// Certificates are found by what people have: a UUID prefix, a fingerprint, the file.
TEST_F(Commands, SelectorsFindCertificatesAndShowDescribesThem) {
  std::string ca_uuid = install({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  std::string pin_uuid = install({"install", in / "peer.pem", "--pinned", "--purpose", "ldaps"});
  // The same CA pinned for ldaps too: one fingerprint, two records.
  std::string ca_pin = install({"install", in / "ca.pem", "--pinned", "--purpose", "ldaps"});
  auto uuid_of = [&](const std::string& sel) {
    RunResult r = pt({"show", sel, "--json"});
    return r.status == 0 ? std::string(json::parse(r.out).at("uuid").as_string()) : r.err;
  };
  EXPECT_EQ(uuid_of(pin_uuid), pin_uuid);
  EXPECT_EQ(uuid_of(pin_uuid.substr(0, 8)), pin_uuid);
  EXPECT_EQ(uuid_of(in / "peer.pem"), pin_uuid);
  RunResult shown = pt({"show", pin_uuid, "--json"});
  std::string fp(json::parse(shown.out).at("sha256").as_string());
  std::string bare;
  for (char ch : fp)
    if (ch != ':') bare += static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  EXPECT_EQ(uuid_of(bare), pin_uuid) << "lower case, no colons";
  EXPECT_EQ(uuid_of(fp), pin_uuid);

  RunResult amb = pt({"show", in / "ca.pem"});
  EXPECT_EQ(amb.status, 1);
  EXPECT_EQ(amb.err.rfind("ptrust: CERTIFICATE_SELECTOR_AMBIGUOUS: ", 0), 0u) << amb.err;
  EXPECT_NE(amb.err.find(ca_uuid), std::string::npos) << amb.err;
  EXPECT_NE(amb.err.find(ca_pin), std::string::npos) << amb.err;
  EXPECT_EQ(pt({"uninstall", in / "ca.pem"}).err.rfind("ptrust: CERTIFICATE_SELECTOR_AMBIGUOUS: ", 0), 0u);
  EXPECT_EQ(pt({"show", "0123456789"}).err.rfind("ptrust: TRUSTED_CERTIFICATE_NOT_FOUND: ", 0), 0u);
  EXPECT_EQ(pt({"show", "abc"}).err.rfind("ptrust: TRUSTED_CERTIFICATE_NOT_FOUND: ", 0), 0u) << "too short a prefix";

  RunResult text = pt({"show", ca_uuid.substr(0, 12)});
  ASSERT_EQ(text.status, 0) << text.err;
  for (const char* want : {"subject:     CN=Cmd Root", "constraints: CA:TRUE", "days left", "ca-bundle-licensing.pem"})
    EXPECT_NE(text.out.find(want), std::string::npos) << want << "\n" << text.out;

  RunResult un = pt({"uninstall", in / "peer.pem", "--allow-mode-change"});
  ASSERT_EQ(un.status, 0) << un.err;
  EXPECT_NE(un.out.find("removed pinned " + pin_uuid), std::string::npos) << un.out << un.err;

  write_file(in / "ca.crl", crl_pem(make_crl(ca, {peer.cert.get()}).get()));
  ASSERT_EQ(pt({"crl", "install", in / "ca.crl", "--name", "cmd.crl"}).status, 0);
  RunResult crl = pt({"crl", "show", "cmd.crl", "--json"});
  ASSERT_EQ(crl.status, 0) << crl.err;
  EXPECT_EQ(json::parse(crl.out).at("entries"), 1);
  EXPECT_EQ(pt({"crl", "show", "nope"}).err.rfind("ptrust: CRL_DOES_NOT_EXIST: ", 0), 0u);
}

TEST_F(Commands, ListFiltersAndOrderAndUnknownPurposeSaysHowToDeclareIt) {
  Issued zeta = self_signed({.cn = "Zeta CA", .ca = true, .not_after = 400L * 24 * 3600});
  Issued alpha = self_signed({.cn = "Alpha CA", .ca = true, .not_after = 5L * 24 * 3600});
  write_file(in / "zeta.pem", zeta.pem());
  write_file(in / "alpha.pem", alpha.pem());
  install({"install", in / "zeta.pem", "--ca", "--purpose", "licensing"});
  install({"install", in / "alpha.pem", "--ca", "--purpose", "licensing"});
  install({"install", in / "ca.pem", "--ca"});
  auto subjects = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"list", "--json"});
    RunResult r = pt(args);
    std::vector<std::string> out;
    if (r.status != 0) return std::vector<std::string>{r.err};
    json::value v = json::parse(r.out);  // kept: the loop reads into it
    for (const auto& c : v.at("certificates").as_array()) out.emplace_back(c.at("subject").as_string());
    return out;
  };
  EXPECT_EQ(subjects({}), (std::vector<std::string>{"CN=Cmd Root", "CN=Alpha CA", "CN=Zeta CA"})) << "general, then licensing by subject";
  EXPECT_EQ(subjects({"--purpose", "licensing"}), (std::vector<std::string>{"CN=Alpha CA", "CN=Zeta CA"}));
  EXPECT_EQ(subjects({"--purpose", "general"}), (std::vector<std::string>{"CN=Cmd Root"}));
  EXPECT_EQ(subjects({"--expiring", "10"}), (std::vector<std::string>{"CN=Alpha CA"}));
  RunResult text = pt({"list", "--expiring", "10"});
  EXPECT_NE(text.out.find("issuer:  CN=Alpha CA"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find(" days)"), std::string::npos) << text.out;

  RunResult unknown = pt({"install", in / "zeta.pem", "--ca", "--purpose", "wlb"});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("create " + root.path() + "/etc/ptrust/ptrust.yaml"), std::string::npos) << unknown.err;
  EXPECT_NE(unknown.err.find("`  wlb: {}`"), std::string::npos) << unknown.err;
  write_file(in / "ptrust.yaml", "purposes:\n  licensing: {}\n");
  RunResult declared = pt({"--config", in / "ptrust.yaml", "list", "--purpose", "wlb"});
  EXPECT_NE(declared.err.find("is not declared in " + in / "ptrust.yaml" + "; add `  wlb: {}` under `purposes:`"),
            std::string::npos)
      << declared.err;
}

// Usage that helps: names users see, "did you mean", group help, stdin, DER, relative times.
TEST_F(Commands, UsageThatHelps) {
  RunResult missing = pt({"uninstall"});
  EXPECT_EQ(missing.status, 2);
  EXPECT_EQ(missing.err.rfind("ptrust: USAGE: missing SELECTOR", 0), 0u) << missing.err;
  EXPECT_NE(pt({"instal", "x"}).err.find("did you mean 'install'?"), std::string::npos);
  EXPECT_NE(pt({"install", "--purpse", "x"}).err.find("did you mean '--purpose'?"), std::string::npos);
  EXPECT_NE(pt({"resolve", "a", "b"}).err.find("too many arguments"), std::string::npos);
  RunResult help = pt({"uninstall", "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("arguments:\n  SELECTOR"), std::string::npos) << help.out;
  EXPECT_EQ(help.out.find("--selector"), std::string::npos) << "no internal option in --help:\n" << help.out;
  RunResult group = pt({"crl", "--help"});
  EXPECT_EQ(group.status, 0);
  EXPECT_NE(group.out.find("crl install FILE"), std::string::npos) << group.out;
  EXPECT_NE(group.out.find("crl show NAME"), std::string::npos) << group.out;

  install({"install", in / "ca.pem", "--ca"});
  RunResult doc = pt({"export", "-"});
  ASSERT_EQ(doc.status, 0) << doc.err;
  TempDir other;
  RunResult imported = run({PTRUST_BIN, "--root", other.path(), "import", "-"}, doc.out);
  EXPECT_EQ(imported.status, 0) << imported.err;
  EXPECT_NE(imported.out.find("added"), std::string::npos) << imported.out;

  Issued leaf = issue({.cn = "leaf.example", .dns = {"leaf.example"}}, ca);
  write_file(in / "leaf.der", leaf.der());
  RunResult der = pt({"verify", "--purpose", "licensing", in / "leaf.der", "--host", "leaf.example"});
  EXPECT_EQ(der.status, 0) << der.out << der.err;
  EXPECT_NE(der.out.find(": verified reason=OK"), std::string::npos) << der.out;
  RunResult later = pt({"verify", "--purpose", "licensing", in / "leaf.der", "--at", "+400d"});
  EXPECT_NE(later.out.find("CERT_EXPIRED"), std::string::npos) << later.out << later.err;
  EXPECT_EQ(pt({"verify", "--purpose", "licensing", in / "leaf.der", "--at", "2026-01-01T00:00:00"}).err.find("USAGE"),
            std::string::npos);
  EXPECT_EQ(pt({"verify", "--purpose", "licensing", in / "leaf.der", "--at", "+3x"}).status, 2);
}

TEST_F(Commands, RootFromTheEnvironment) {
  ASSERT_EQ(::setenv("PTRUST_ROOT", root.path().c_str(), 1), 0);
  RunResult r = run({PTRUST_BIN, "install", in / "ca.pem", "--ca"});
  ::unsetenv("PTRUST_ROOT");
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(read_file(root / "etc/trusted-certs/ca-bundle-general.pem"), ca.pem());
}

}  // namespace
}  // namespace ptrust::testing

namespace ptrust::testing {
namespace {

// `resolve` reports what the provider and the hook trust, through the same trust state: the
// CRLs that apply under the purpose's policy, and the same refusal when a CRL is corrupt.
TEST_F(Commands, ResolveReportsWhatConsumersTrustIncludingCrlsAndTheirFailure) {
  install({"install", in / "ca.pem", "--ca", "--purpose", "licensing,ldaps"});
  write_file(in / "ca.crl", crl_pem(make_crl(ca, {}).get()));
  ASSERT_EQ(pt({"crl", "install", in / "ca.crl"}).status, 0);
  write_file(in / "ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {crl-policy: off}\n");
  auto resolve = [&](const char* p) { return ptrust(root.path(), {"--config", in / "ptrust.yaml", "resolve", p, "--json"}); };

  RunResult on = resolve("licensing");
  ASSERT_EQ(on.status, 0) << on.err;
  EXPECT_EQ(json::parse(on.out).at("crls").as_int64(), 1);
  RunResult off = resolve("ldaps");
  ASSERT_EQ(off.status, 0) << off.err;
  EXPECT_EQ(json::parse(off.out).at("crls").as_int64(), 0) << "crl-policy off: no CRLs";

  write_file(root / "etc/stunnel/crls/zz-broken.crl", "not a CRL");
  RunResult broken = resolve("licensing");
  EXPECT_EQ(broken.status, 1);
  EXPECT_EQ(broken.err.rfind("ptrust: STORE_CORRUPT: ", 0), 0u) << broken.err;
  EXPECT_EQ(resolve("ldaps").status, 0) << "a purpose that takes no CRLs is not failed by one";
}

}  // namespace
}  // namespace ptrust::testing
