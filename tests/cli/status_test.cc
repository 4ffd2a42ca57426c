// `ptrust status` and `ptrust alerts` on stores made in the run: every alert window of every
// object kind, CRL staleness, drift, damaged stores, consumers, configured thresholds.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>

#include <boost/json.hpp>
#include <openssl/evp.h>

#include "tests/support/run.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;
constexpr long kDay = 24 * 3600;

// "@EPOCH" for --at.
std::string at(std::time_t t) { return "@" + std::to_string(t); }

class Status : public ::testing::Test {
 protected:
  RunResult pt(std::vector<std::string> args) { return ptrust(root.path(), std::move(args)); }
  std::string install(const Issued& c, std::vector<std::string> args) {
    std::string f = in / (std::to_string(++n_) + ".pem");
    write_file(f, c.pem());
    args.insert(args.begin(), f);
    args.insert(args.begin(), "install");
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.substr(0, 36);
  }
  json::array alerts(std::time_t when) {
    RunResult r = pt({"alerts", "--json", "--at", at(when)});
    EXPECT_EQ(r.status, 0) << r.err;
    return json::parse(r.out).at("alerts").as_array();
  }
  // The alert about `object`, or null.
  json::object alert_for(std::time_t when, const std::string& object) {
    json::object found;
    int n = 0;
    for (const auto& a : alerts(when))
      if (a.at("object").as_string() == object) found = a.as_object(), ++n;
    EXPECT_LE(n, 1) << "one alert per object";
    return found;
  }
  std::string name_at(std::time_t when, const std::string& object) {
    auto a = alert_for(when, object);
    return a.empty() ? "" : std::string(a.at("name").as_string()) + "/" + std::to_string(a.at("priority").as_int64());
  }
  void config(const std::string& yaml) {
    std::filesystem::create_directories(root / "etc/ptrust");
    write_file(root / "etc/ptrust/ptrust.yaml", yaml);
  }
  json::object status_json(std::vector<std::string> extra = {}) {
    std::vector<std::string> args{"status", "--json"};
    args.insert(args.end(), extra.begin(), extra.end());
    last = pt(args);
    EXPECT_TRUE(last.err.empty()) << last.err;
    return json::parse(last.out).as_object();
  }

  TempDir root, in;
  RunResult last;
  const std::time_t now = std::time(nullptr);
  int n_ = 0;
};

// xapi's rule: EXPIRED at 0 days left, _07 up to 7, _14 up to 14, _30 up to 30; priorities
// 1, 1, 2, 3. Checked around each boundary for CA, pinned and legacy certificates.
TEST_F(Status, ExpiryAlertWindowsAndPrioritiesForEveryTrustedKind) {
  Issued ca = self_signed({.cn = "Window CA", .ca = true, .not_after = 40 * kDay});
  Issued pin = self_signed({.cn = "pinned.example", .not_after = 40 * kDay});
  Issued legacy = self_signed({.cn = "Legacy CA", .ca = true, .not_after = 40 * kDay});
  std::string ca_uuid = install(ca, {"--ca", "--purpose", "licensing"});
  std::string pin_uuid = install(pin, {"--pinned", "--purpose", "ldaps"});
  write_file(in / "legacy.pem", legacy.pem());
  ASSERT_EQ(pt({"legacy", "install", "old.pem", in / "legacy.pem"}).status, 0);
  // notAfter as the certificates say (the test PKI counts from its own clock reading).
  auto not_after = [](const Issued& c) {
    std::tm tm{};
    ASN1_TIME_to_tm(X509_get0_notAfter(c.cert.get()), &tm);
    return timegm(&tm);
  };
  struct Case {
    std::string object, cls;
    std::time_t end;
  } cases[] = {{ca_uuid, "POOL_CA_CERTIFICATE", not_after(ca)},
               {pin_uuid, "POOL_PINNED_CERTIFICATE", not_after(pin)},
               {"old.pem", "POOL_CA_CERTIFICATE", not_after(legacy)}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.object);
    EXPECT_EQ(name_at(c.end - 30 * kDay - 1, c.object), "");
    EXPECT_EQ(name_at(c.end - 30 * kDay, c.object), c.cls + "_EXPIRING_30/3");
    EXPECT_EQ(name_at(c.end - 14 * kDay - 1, c.object), c.cls + "_EXPIRING_30/3");
    EXPECT_EQ(name_at(c.end - 14 * kDay, c.object), c.cls + "_EXPIRING_14/2");
    EXPECT_EQ(name_at(c.end - 7 * kDay - 1, c.object), c.cls + "_EXPIRING_14/2");
    EXPECT_EQ(name_at(c.end - 7 * kDay, c.object), c.cls + "_EXPIRING_07/1");
    EXPECT_EQ(name_at(c.end - 1, c.object), c.cls + "_EXPIRING_07/1");
    EXPECT_EQ(name_at(c.end, c.object), c.cls + "_EXPIRED/1");
    EXPECT_EQ(name_at(c.end + 100 * kDay, c.object), c.cls + "_EXPIRED/1");
  }
  // xapi's body: the message and the RFC 3339 date of notAfter.
  auto a = alert_for(not_after(ca) - kDay, ca_uuid);
  EXPECT_EQ(a.at("body").as_string(),
            "<body><message>The CA certificate is expiring soon.</message><date>" +
                std::string(a.at("date").as_string()) + "</date></body>");
  EXPECT_NE(std::string(a.at("subject").as_string()).find("CN=Window CA"), std::string::npos);
  // The status line follows: warning for a priority 2-3 alert, error for a priority 1.
  EXPECT_EQ(pt({"status", "--at", at(not_after(ca) - 20 * kDay)}).status, 3);
  EXPECT_EQ(pt({"status", "--at", at(not_after(ca) - 2 * kDay)}).status, 1);
  RunResult ok = pt({"status"});
  EXPECT_EQ(ok.status, 0) << ok.out;
  EXPECT_EQ(ok.out.rfind("ok (root ", 0), 0u) << ok.out;
}

// The host's own certificates: real files, really expired or expiring (no --at).
TEST_F(Status, HostIdentityCertificatesAlertAndUnsafeOnesAreErrors) {
  Issued ca = self_signed({.cn = "Host CA", .ca = true, .not_after = 400 * kDay});
  install(ca, {"--ca"});
  Issued expired = self_signed({.cn = "host.example", .not_before = -10 * kDay, .not_after = -kDay});
  Issued internal = self_signed({.cn = "host-internal", .not_after = 5 * kDay});
  std::filesystem::create_directories(root / "etc/xensource");
  write_file(root / "etc/xensource/xapi-ssl.pem", expired.key_pem() + expired.pem());
  write_file(root / "etc/xensource/xapi-pool-tls.pem", internal.key_pem() + internal.pem());
  std::string server = root / "etc/xensource/xapi-ssl.pem";
  std::string pool_tls = root / "etc/xensource/xapi-pool-tls.pem";
  EXPECT_EQ(name_at(now, server), "HOST_SERVER_CERTIFICATE_EXPIRED/1");
  EXPECT_EQ(name_at(now, pool_tls), "HOST_INTERNAL_CERTIFICATE_EXPIRING_07/1");
  auto s = status_json();
  EXPECT_EQ(last.status, 1);
  EXPECT_EQ(s.at("health"), "error");
  EXPECT_EQ(s.at("host_identity").at("host_server").at("file").as_string(), server);
  // The private key is never printed.
  EXPECT_EQ(last.out.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(pt({"alerts"}).out.find("PRIVATE"), std::string::npos);

  // A symlink in place of the host certificate is not followed: an error that says so.
  std::filesystem::remove(server);
  std::filesystem::create_symlink(pool_tls, server);
  s = status_json();
  EXPECT_EQ(last.status, 1);
  bool unsafe = false;
  for (const auto& f : s.at("findings").as_array())
    unsafe |= f.at("code") == "STORE_UNSAFE" && f.at("object").as_string() == server;
  EXPECT_TRUE(unsafe) << last.out;
  EXPECT_EQ(name_at(now, server), "");
}

TEST_F(Status, CrlNextUpdateSoonThenStaleNamesThePurposesThatFail) {
  Issued ca = self_signed({.cn = "CRL CA", .ca = true, .not_after = 400 * kDay});
  install(ca, {"--ca", "--purpose", "licensing"});
  auto crl = make_crl(ca, {}, -3600, 3 * kDay);
  write_file(in / "ca.crl", crl_pem(crl.get()));
  RunResult r = pt({"crl", "install", in / "ca.crl", "--name", "ca.crl"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::tm tm{};
  ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl.get()), &tm);
  std::time_t next = timegm(&tm);

  EXPECT_EQ(name_at(next - 8 * kDay, "ca.crl"), "");
  EXPECT_EQ(name_at(now, "ca.crl"), "CRL_NEXT_UPDATE_SOON/3");
  auto stale = alert_for(next + 1, "ca.crl");
  ASSERT_FALSE(stale.empty());
  EXPECT_EQ(stale.at("name"), "CRL_STALE");
  EXPECT_EQ(stale.at("priority"), 1);
  EXPECT_NE(std::string(stale.at("message").as_string()).find("every verification of licensing fails"),
            std::string::npos)
      << stale;

  auto s = status_json({"--at", at(next + 1)});
  EXPECT_EQ(last.status, 1);
  auto crls = s.at("crls").as_array();
  ASSERT_EQ(crls.size(), 1u);
  EXPECT_EQ(crls[0].at("stale"), true);
  EXPECT_EQ(crls[0].at("failing"), json::array({"licensing"}));
  EXPECT_TRUE(crls[0].at("this_update").is_string());
  // allow-expired-crl: the stale CRL fails nobody, so it is a warning.
  config(
             "purposes:\n  licensing: {allow-expired-crl: true}\n  ldaps: {}\n");
  s = status_json({"--at", at(next + 1)});
  EXPECT_EQ(last.status, 3) << last.out;
  EXPECT_EQ(name_at(next + 1, "ca.crl"), "CRL_STALE/2");
}

TEST_F(Status, DriftCorruptAndSymlinkedStoresAreReported) {
  Issued ca = self_signed({.cn = "Drift CA", .ca = true, .not_after = 400 * kDay});
  Issued ca2 = self_signed({.cn = "General CA", .ca = true, .not_after = 400 * kDay});
  std::string uuid = install(ca, {"--ca", "--purpose", "licensing"});
  install(ca2, {"--ca"});
  ASSERT_EQ(pt({"status"}).status, 0);

  std::filesystem::remove(root / ("etc/trusted-certs/ca-licensing/" + uuid + ".pem"));
  auto s = status_json();
  EXPECT_EQ(last.status, 3) << last.out;
  EXPECT_EQ(name_at(now, "stores"), "STORE_DRIFT/2");
  for (const auto& p : s.at("purposes").as_array()) {
    if (p.at("purpose") == "licensing") {
      EXPECT_EQ(p.at("drift"), 1) << p;
    }
  }
  ASSERT_EQ(pt({"sync"}).status, 0);
  EXPECT_EQ(pt({"status"}).status, 0);

  // A corrupt chosen bundle: the purpose fails, status is an error and says what to do.
  write_file(root / "etc/trusted-certs/ca-bundle-licensing.pem", "-----BEGIN CERTIFICATE-----\nnot base64\n");
  RunResult t = pt({"status"});
  EXPECT_EQ(t.status, 1);
  EXPECT_NE(t.out.find("STORE_CORRUPT"), std::string::npos) << t.out;
  EXPECT_NE(t.out.find("ptrust sync"), std::string::npos) << t.out;
  EXPECT_EQ(name_at(now, "purpose licensing"), "STORE_CORRUPT/1");
  ASSERT_EQ(pt({"sync"}).status, 0);

  // A symlinked bundle is never followed.
  std::filesystem::remove(root / "etc/trusted-certs/ca-bundle-licensing.pem");
  std::filesystem::create_symlink(root / "etc/trusted-certs/ca-bundle-general.pem",
                                  root / "etc/trusted-certs/ca-bundle-licensing.pem");
  s = status_json();
  EXPECT_EQ(last.status, 1);
  EXPECT_EQ(name_at(now, "purpose licensing"), "STORE_UNSAFE/1");
  EXPECT_EQ(name_at(now, "stores"), "STORE_UNSAFE/1");
}

TEST_F(Status, ThresholdsComeFromTheConfigurationAndAreValidated) {
  Issued ca = self_signed({.cn = "Cfg CA", .ca = true, .not_after = 50 * kDay});
  std::string uuid = install(ca, {"--ca", "--purpose", "licensing"});
  EXPECT_EQ(name_at(now, uuid), "");
  config(
             "purposes:\n  licensing: {}\n  ldaps: {}\nalerts:\n  certificate-expiring-days: [60, 20, 10]\n");
  EXPECT_EQ(name_at(now, uuid), "POOL_CA_CERTIFICATE_EXPIRING_30/3");
  EXPECT_EQ(name_at(now + 35 * kDay, uuid), "POOL_CA_CERTIFICATE_EXPIRING_14/2");
  for (std::string bad : {"[10, 20, 30]", "[30, 14]", "[30, 14, x]", "[30, 14, -1]"}) {
    config( "purposes:\n  licensing: {}\nalerts:\n  certificate-expiring-days: " + bad + "\n");
    RunResult r = pt({"alerts"});
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_EQ(r.err.rfind("ptrust: CONFIG_INVALID: ", 0), 0u) << r.err;
    EXPECT_NE(r.err.find("ptrust.yaml:4:"), std::string::npos) << r.err;
  }
  config( "purposes:\n  licensing: {}\nalerts:\n  certificate-expiring: 3\n");
  EXPECT_NE(pt({"status"}).err.find("unknown alerts setting 'certificate-expiring'"), std::string::npos);
}

// A declared service that caches trust and was never reloaded by ptrust: what it loaded is
// unknown, so it needs a reload; once not running it loads the current trust at start.
TEST_F(Status, ConsumersAreReportedWithTheirState) {
  Issued ca = self_signed({.cn = "Consumer CA", .ca = true, .not_after = 400 * kDay});
  install(ca, {"--ca", "--purpose", "licensing,ldaps"});
  pid_t child = fork();
  if (child == 0) {
    pause();
    _exit(0);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      if (pid <= 0) return;
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{child};
  write_file(in / "agent.pid", std::to_string(child) + "\n");
  config(
             "purposes:\n  licensing: {}\n  ldaps: {}\nconsumers:\n  - name: agent\n    purposes: [licensing]\n"
             "    pidfile: " + (in / "agent.pid") + "\n");
  auto s = status_json();
  EXPECT_EQ(last.status, 3) << last.out;
  auto consumers = s.at("consumers").as_array();
  ASSERT_EQ(consumers.size(), 1u);
  EXPECT_EQ(consumers[0].at("state"), "reload_needed");
  EXPECT_EQ(consumers[0].at("pid"), child);
  EXPECT_EQ(name_at(now, "agent"), "CONSUMER_RELOAD_NEEDED/2");
  // --purpose narrows the report: ldaps has no consumer.
  s = status_json({"--purpose", "ldaps"});
  EXPECT_TRUE(s.at("consumers").as_array().empty());
  ASSERT_EQ(s.at("purposes").as_array().size(), 1u);
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  reap.pid = 0;
  s = status_json();
  EXPECT_EQ(s.at("consumers").at(0).at("state"), "ok");
  EXPECT_EQ(last.status, 0) << last.out;

  config(
             "purposes:\n  licensing: {}\nconsumers:\n  - name: agent\n    purposes: [nope]\n    pidfile: /run/x.pid\n");
  RunResult bad = pt({"status"});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("purpose 'nope' is not declared"), std::string::npos) << bad.err;
  RunResult unknown = pt({"status", "--purpose", "nope"});
  EXPECT_EQ(unknown.status, 1);
}

TEST_F(Status, NothingInstalledIsAWarningThatSaysWhatToDo) {
  RunResult r = pt({"status"});
  EXPECT_EQ(r.status, 3) << r.out;
  EXPECT_NE(r.out.find("NO_TRUST_FOR_PURPOSE: purpose licensing"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("ptrust install FILE --ca|--pinned --purpose licensing"), std::string::npos) << r.out;
  // status writes nothing.
  EXPECT_FALSE(std::filesystem::exists(root / "var"));
}

// Decode verdicts kept on disk (<state>/cache/decode-verdicts, written by `ptrust serve`)
// spare `status --local` decoding every certificate again. An entry is the SHA-256 of a tag
// and one certificate's DER: it vouches only for those bytes. The file is believed only when it
// and its directory are owned by root (or the user) and writable by no one else; anything else
// is ignored. Even a believed entry never hides a certificate put into a store by hand: the
// drift check compares the bytes with the database.
TEST_F(Status, DecodeVerdictCacheIsBelievedOnlyWhenSafeAndNeverHidesDrift) {
  config("purposes:\n  licensing: {}\n");
  Issued ca = self_signed({.cn = "Cache CA", .ca = true, .not_after = 400 * kDay});
  install(ca, {"--ca", "--purpose", "licensing"});
  // A leaf (CA:FALSE) appended to the CA bundle by hand: the purpose fails closed.
  Issued leaf = self_signed({.cn = "Not a CA", .ca = false, .not_after = 400 * kDay});
  const std::string bundle = root / "etc/trusted-certs/ca-bundle-licensing.pem";
  write_file(bundle, read_file(bundle) + leaf.pem());
  auto licensing_failure = [&] {
    auto s = status_json({"--local"});
    for (const auto& p : s.at("purposes").as_array())
      if (p.at("purpose") == "licensing")
        return p.at("failure").is_null() ? std::string("none") : std::string(p.at("failure").as_string());
    return std::string("?");
  };
  ASSERT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;

  // A cache vouching that both certificates' bytes decode and are CAs (tag 'c').
  auto entry = [](const std::string& der) {
    std::string tagged = "c" + der;
    unsigned char md[32];
    unsigned int n = 0;
    EXPECT_EQ(EVP_Digest(tagged.data(), tagged.size(), md, &n, EVP_sha256(), nullptr), 1);
    return std::string(reinterpret_cast<char*>(md), n);
  };
  const std::string cache = "ptrust-decode-verdicts 1\n" + entry(ca.der()) + entry(leaf.der());
  const std::string dir = root / "var/lib/ptrust/cache";
  const std::string file = dir + "/decode-verdicts";
  std::filesystem::create_directories(dir);
  using std::filesystem::perms;
  auto plant = [&](const std::string& data, perms file_mode, perms dir_mode) {
    std::filesystem::remove(file);
    write_file(file, data);
    std::filesystem::permissions(file, file_mode);
    std::filesystem::permissions(dir, dir_mode);
  };
  const perms p644 = perms::owner_read | perms::owner_write | perms::group_read | perms::others_read;
  const perms p755 = perms::owner_all | perms::group_read | perms::group_exec | perms::others_read | perms::others_exec;

  plant(cache, p644 | perms::others_write, p755);  // writable by anyone: ignored
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  plant(cache, p644 | perms::group_write, p755);
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  plant(cache, p644, perms::all);  // in a directory anyone can write to: ignored
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  plant(cache.substr(0, cache.size() - 1), p644, p755);  // not whole entries: ignored
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  plant("ptrust-decode-verdicts 2\n" + cache.substr(cache.find('\n') + 1), p644, p755);  // another format
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  {  // a symlink to a good file elsewhere: never followed
    std::filesystem::remove(file);
    write_file(in / "elsewhere", cache);
    std::filesystem::permissions(in / "elsewhere", p644);
    std::filesystem::create_symlink(in / "elsewhere", file);
    EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  }
  // Safe: believed (the leaf is not decoded: the purpose no longer fails on it), yet the
  // bundle is still drift, so status is not ok and says so.
  plant(cache, p644, p755);
  EXPECT_EQ(licensing_failure(), "none") << last.out;
  EXPECT_NE(last.status, 0);
  bool bundle_drift = false;
  const json::value reported = json::parse(last.out);
  for (const auto& d : reported.at("drift").as_array())
    bundle_drift |= d.at("path").as_string().ends_with("ca-bundle-licensing.pem");
  EXPECT_TRUE(bundle_drift) << last.out;
  EXPECT_EQ(name_at(now, "stores"), "STORE_DRIFT/2");
  // An entry vouches only for its own bytes: without the leaf's, it is decoded again.
  plant("ptrust-decode-verdicts 1\n" + entry(ca.der()), p644, p755);
  EXPECT_EQ(licensing_failure().rfind("STORE_CORRUPT", 0), 0u) << last.out;
  // `ptrust sync` repairs the bundle; status is ok with the cache in place.
  ASSERT_EQ(pt({"sync"}).status, 0);
  EXPECT_EQ(licensing_failure(), "none") << last.out;
  EXPECT_EQ(last.status, 0) << last.out;
}

}  // namespace
}  // namespace ptrust::testing
