// `ptrust serve` as a real process on a temporary root: store changes seen in status, alerts
// and metrics within 1 s; hostile clients; metrics parsed by python's prometheus_client;
// counters from a process running the hook; consumers reloaded; SIGHUP and SIGTERM.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <openssl/pem.h>

#include <filesystem>
#include <thread>

#include "core/ossl.h"
#include "ptrust/ptrust.h"
#include "tests/serve/util.h"
#include "tests/support/sserver.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;
constexpr long kDay = 24 * 3600;

class Serve : public ::testing::Test {
 protected:
  void SetUp() override {
    std::filesystem::create_directories(root / "etc/ptrust");
    config("");
  }
  void config(const std::string& extra) {
    write_file(root / "etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n" + extra);
  }
  RunResult pt(std::vector<std::string> args) { return ptrust(root.path(), std::move(args)); }
  std::string install(const Issued& c, std::vector<std::string> args) {
    std::string f = in / (std::to_string(++n_) + ".pem");
    write_file(f, c.pem());
    args.insert(args.begin(), {"install", f});
    RunResult r = pt(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out.substr(0, 36);
  }
  void start(const std::string& extra = "") {
    port = free_port();
    d = std::make_unique<DaemonProcess>(in, std::string(PTRUST_BIN) + " --root " + root.path() + " serve --socket " +
                                                sock + " --metrics 127.0.0.1:" + std::to_string(port) + extra);
    ASSERT_TRUE(logs("serving ")) << d->err();
  }
  bool logs(const std::string& text, std::chrono::milliseconds limit = 10s) {
    return eventually([&] { return d->err().find(text) != std::string::npos; }, limit);
  }
  json::object call(const std::string& method, json::object params = {}) {
    Client c = Client::at_path(sock);
    return c.call(json::serialize(json::object{{"method", method}, {"params", std::move(params)}, {"id", 7}}));
  }
  json::object result(const std::string& method, json::object params = {}) {
    json::object r = call(method, std::move(params));
    EXPECT_TRUE(r.contains("result")) << json::serialize(r);
    return r.contains("result") ? r.at("result").as_object() : json::object{};
  }
  std::string scrape() { return scrape_metrics(port); }
  bool has_alert(const std::string& name) {
    json::object r = result("alerts");  // kept: the loop reads into it
    for (const auto& a : r.at("alerts").as_array())
      if (a.at("name").as_string() == name) return true;
    return false;
  }
  long rss_kib() const { return proc_rss_kib(d->pid()); }

  TempDir root, in;
  std::string sock = root / "run/ptrust/ptrust.sock";
  int port = 0;
  std::unique_ptr<DaemonProcess> d;
  int n_ = 0;
};

TEST_F(Serve, StoreChangeIsSeenInStatusAlertsAndMetricsWithinOneSecond) {
  Issued far = self_signed({.cn = "Far CA", .ca = true, .not_after = 400 * kDay});
  install(far, {"--ca"});
  start();
  EXPECT_EQ(result("status").at("health"), "ok");  // both purposes verify with the general CA
  EXPECT_EQ(scrape().find("Soon CA"), std::string::npos);

  Issued soon = self_signed({.cn = "Soon CA", .ca = true, .not_after = 5 * kDay});
  std::string uuid = install(soon, {"--ca", "--purpose", "licensing"});
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(eventually([&] { return has_alert("POOL_CA_CERTIFICATE_EXPIRING_07"); }, 1s));
  EXPECT_TRUE(eventually([&] { return scrape().find("subject_CN=\"Soon CA\"") != std::string::npos; }, 1s));
  auto s = result("status");
  EXPECT_EQ(s.at("health"), "error");  // a priority 1 alert
  // The daemon keeps its decode verdicts on disk for `status --local` (one entry of 32 bytes
  // per certificate: both CAs, each as "decodes and is a CA"; the file is rewritten after a
  // refresh that changes them).
  const std::string verdicts = root / "var/lib/ptrust/cache/decode-verdicts";
  EXPECT_TRUE(eventually([&] { return std::filesystem::exists(verdicts) && read_file(verdicts).size() == 25 + 2 * 32; }, 1s))
      << (std::filesystem::exists(verdicts) ? read_file(verdicts).size() : 0);
  EXPECT_EQ(read_file(verdicts).rfind("ptrust-decode-verdicts 1\n", 0), 0u);
  EXPECT_EQ(std::filesystem::status(verdicts).permissions() & std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write | std::filesystem::perms::group_read |
                std::filesystem::perms::others_read);
  std::cout << "[ measured ] change visible after "
            << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0).count()
            << " ms\n";
  EXPECT_TRUE(logs("alert POOL_CA_CERTIFICATE_EXPIRING_07 (priority 1) " + uuid));

  // The same for the other direction, and the methods besides status and alerts.
  ASSERT_EQ(pt({"uninstall", uuid, "--allow-mode-change"}).status, 0);  // licensing: ca -> general
  EXPECT_TRUE(eventually([&] { return !has_alert("POOL_CA_CERTIFICATE_EXPIRING_07"); }, 1s));
  EXPECT_TRUE(logs("alert cleared POOL_CA_CERTIFICATE_EXPIRING_07 " + uuid));
  EXPECT_EQ(result("resolve", {{"purpose", "licensing"}}).at("mode"), "general");
  EXPECT_EQ(result("sync-check").at("clean"), true);
  std::filesystem::remove(root / "etc/trusted-certs/ca-bundle-general.pem");
  EXPECT_TRUE(eventually([&] { return has_alert("STORE_DRIFT"); }, 1s));
  EXPECT_EQ(result("sync-check").at("clean"), false);
  EXPECT_EQ(error_code_of(call("nope")), "USAGE");
  EXPECT_EQ(error_code_of(call("status", {{"purpose", "nope"}})), "UNKNOWN_PURPOSE");

  // The CLI as a client of the daemon.
  // (The general bundle is gone but its store directory is not: every purpose fails closed.)
  RunResult cli = pt({"status", "--socket", sock});
  EXPECT_EQ(cli.status, 1) << cli.err;
  EXPECT_EQ(cli.out.rfind("error: 3 errors, 1 warning", 0), 0u) << cli.out;
  EXPECT_EQ(cli.out, pt({"status", "--local"}).out) << "the daemon and the CLI report alike";
  RunResult cli_alerts = pt({"alerts", "--socket", sock, "--json"});
  EXPECT_NE(cli_alerts.out.find("STORE_DRIFT"), std::string::npos) << cli_alerts.out;
}

// A certificate with the right shape and subject (what scan_bundle checks) that libcrypto
// cannot decode: its TBS signature algorithm OID starts with 0x80 (invalid).
std::string undecodable_pem(const Issued& c) {
  std::string der = c.der();
  const std::string ecdsa_sha256("\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 10);
  size_t at = der.find(ecdsa_sha256);
  if (at == std::string::npos) throw std::runtime_error("not an ECDSA-SHA256 certificate");
  der[at + 2] = '\x80';
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio(b.get(), "CERTIFICATE", "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* p = nullptr;
  long n = BIO_get_mem_data(b.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

std::string source_of(const RunResult& r) {
  boost::system::error_code ec;
  json::value v = json::parse(r.out, ec);
  if (ec || !v.is_object() || !v.as_object().contains("source")) return "<none>";
  const json::value& s = v.at("source");
  return s.is_string() ? std::string(s.as_string()) : s.is_object() && s.as_object().contains("daemon") ? "daemon" : "?";
}

// `ptrust status` and `ptrust alerts` without --socket ask the daemon on the root's socket,
// which first takes in every change inotify reported (no 200 ms debounce): a change made just
// before is in the answer. Otherwise (--local, --at, another --config, no daemon, a stale
// socket) the CLI reads the stores itself, and both read each purpose as consumers do.
TEST_F(Serve, StatusWithoutSocketAsksTheDaemonWhichSeesEveryChangeBeforeAnswering) {
  Issued ca = self_signed({.cn = "Licensing CA", .ca = true, .not_after = 400 * kDay});
  install(ca, {"--ca", "--purpose", "licensing"});
  install(self_signed({.cn = "General CA", .ca = true, .not_after = 400 * kDay}), {"--ca"});
  start();
  RunResult ok = pt({"status", "--json"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_EQ(source_of(ok), "daemon") << ok.out;
  EXPECT_EQ(ok.err, "");
  EXPECT_EQ(source_of(pt({"status", "--json", "--local"})), "local");
  EXPECT_EQ(source_of(pt({"status", "--json", "--at", "+1d"})), "local");
  EXPECT_EQ(pt({"status"}).out, pt({"status", "--local"}).out);

  // A certificate libcrypto cannot decode, appended by hand: asked at once (well within the
  // debounce), the daemon already fails licensing with STORE_CORRUPT, as consumers do.
  const std::string bundle = root / "etc/trusted-certs/ca-bundle-licensing.pem";
  const std::string good = read_file(bundle);
  write_file(bundle, good + undecodable_pem(self_signed({.cn = "Broken CA", .ca = true})));
  RunResult bad = pt({"status"});
  EXPECT_EQ(bad.status, 1) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("purpose licensing: every verification fails: STORE_CORRUPT: " + bundle +
                         " holds a certificate libcrypto cannot decode"),
            std::string::npos)
      << bad.out;
  EXPECT_EQ(bad.out, pt({"status", "--local"}).out) << "the daemon and the CLI report alike";
  RunResult alerts = pt({"alerts", "--json"});
  EXPECT_NE(alerts.out.find("STORE_CORRUPT"), std::string::npos) << alerts.out;
  EXPECT_EQ(alerts.out, pt({"alerts", "--json", "--local"}).out);
  // Put back: healthy again at once (the certificates it decoded before are not decoded again).
  write_file(bundle, good);
  RunResult again = pt({"status", "--json"});
  EXPECT_EQ(again.status, 0) << again.out;
  EXPECT_EQ(source_of(again), "daemon");

  // Another configuration than the daemon's: the CLI reads for itself.
  write_file(in / "other.yaml", "purposes:\n  licensing: {}\n");
  RunResult other = ptrust(root.path(), {"--config", in / "other.yaml", "status", "--json"});
  EXPECT_EQ(source_of(other), "local") << other.out << other.err;

  // No daemon: a stale socket, then none at all; no note on stderr either way.
  ::kill(d->pid(), SIGKILL);
  d->wait();
  ASSERT_TRUE(std::filesystem::is_socket(sock));
  RunResult stale = pt({"status", "--json"});
  EXPECT_EQ(stale.status, 0) << stale.err;
  EXPECT_EQ(source_of(stale), "local");
  EXPECT_EQ(stale.err, "");
  std::filesystem::remove(sock);
  EXPECT_EQ(source_of(pt({"status", "--json"})), "local");
}

// Hostile clients at the real daemon: it keeps answering the others and its memory stays small.
TEST_F(Serve, GarbageHugeLinesSilentClientsAndManyClients) {
  install(self_signed({.cn = "CA", .ca = true, .not_after = 400 * kDay}), {"--ca"});
  start();
  long rss0 = rss_kib();
  Client silent = Client::at_path(sock);  // connects and never sends
  Client garbage = Client::at_path(sock);
  EXPECT_EQ(error_code_of(garbage.call("{not json")), "USAGE");
  EXPECT_EQ(error_code_of(garbage.call("[1,2]")), "USAGE");
  EXPECT_EQ(garbage.call(R"({"method":"alerts","id":2})").at("id"), 2) << "the connection stays usable";
  {
    Client huge = Client::at_path(sock);
    std::string chunk(1 << 20, 'x');
    for (int i = 0; i < 10 && huge.send(chunk); ++i) {
    }
    std::string reply = huge.line();
    EXPECT_NE(reply.find("LIMIT_EXCEEDED"), std::string::npos) << reply.substr(0, 200);
  }
  std::vector<std::thread> threads;
  std::atomic<int> answered{0};
  for (int i = 0; i < 100; ++i)
    threads.emplace_back([&] {
      try {
        Client c = Client::at_path(sock);
        if (c.call(R"({"method":"status","id":1})").contains("result")) ++answered;
      } catch (const std::exception&) {
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(answered, 100);
  long rss1 = rss_kib();
  std::cout << "[ measured ] daemon RSS " << rss0 << " KiB at start, " << rss1 << " KiB after the hostile clients\n";
  EXPECT_LT(rss1, 64 * 1024);
  EXPECT_LT(rss1 - rss0, 8 * 1024) << "a 10 MiB line must not be buffered";
}

// python3's prometheus_client parses the page; the x509-certificate-exporter names are there.
TEST_F(Serve, MetricsParseWithPrometheusClientAndCountHookVerdicts) {
  Issued ca = self_signed({.cn = "Metrics CA", .ca = true, .not_after = 100 * kDay});
  install(ca, {"--ca", "--purpose", "licensing"});
  auto crl = make_crl(ca, {});
  write_file(in / "ca.crl", crl_pem(crl.get()));
  ASSERT_EQ(pt({"crl", "install", in / "ca.crl", "--name", "metrics.crl"}).status, 0);
  start();

  // A process running the hook (this test) publishes its verdicts; the daemon serves them.
  ASSERT_TRUE(std::filesystem::exists(root / "run/ptrust/counters"));
  PTRUST_CTX* ctx = ptrust_ctx_new(root.path().c_str(), (root / "etc/ptrust/ptrust.yaml").c_str(), nullptr, 0);
  ASSERT_NE(ctx, nullptr);
  Issued leaf = issue({.cn = "leaf.test", .dns = {"leaf.test"}}, ca);
  Issued stranger = self_signed({.cn = "stranger"});
  for (const auto* c : {&leaf, &leaf, &leaf, &stranger}) {
    STACK_OF(X509)* chain = sk_X509_new_null();  // borrows the certificate
    sk_X509_push(chain, c->cert.get());
    PTRUST_RESULT r{};
    int rc = ptrust_verify_chain(ctx, "licensing", chain, nullptr, &r);
    sk_X509_free(chain);
    ASSERT_EQ(rc, 1);
  }
  std::string page = scrape();
  write_file(in / "metrics.txt", page);
  std::string py =
      "import sys\n"
      "from prometheus_client.parser import text_string_to_metric_families as parse\n"
      "fams = {f.name: f for f in parse(open(sys.argv[1]).read())}\n"
      "def one(name, **labels):\n"
      "    got = [s.value for s in fams[name].samples if all(s.labels.get(k) == v for k, v in labels.items())]\n"
      "    assert len(got) == 1, (name, labels, got)\n"
      "    return got[0]\n"
      "print(int(one('x509_cert_not_after', subject_CN='Metrics CA', purpose='licensing', type='ca')))\n"
      "print(int(one('x509_cert_expired', subject_CN='Metrics CA')))\n"
      "print(int(one('x509_crl_stale', issuer_CN='Metrics CA')))\n"
      "print(int(one('x509_crl_next_update', issuer_CN='Metrics CA')))\n"
      "print(int(one('ptrust_purpose_mode', purpose='licensing', mode='ca')))\n"
      "print(int(one('ptrust_verify', purpose='licensing', reason='OK')))\n"
      "print(int(one('ptrust_verify', purpose='licensing', reason='CHAIN_UNTRUSTED')))\n"
      "print(int(one('ptrust_drift', kind='missing')))\n";
  write_file(in / "parse.py", py);
  RunResult r = run({"/usr/bin/python3", in / "parse.py", in / "metrics.txt"});  // Debian's, with python3-prometheus-client
  ASSERT_EQ(r.status, 0) << r.err << page;
  std::tm tm{};
  ASN1_TIME_to_tm(X509_get0_notAfter(ca.cert.get()), &tm);
  std::tm crl_tm{};
  ASN1_TIME_to_tm(X509_CRL_get0_nextUpdate(crl.get()), &crl_tm);
  EXPECT_EQ(r.out, std::to_string(timegm(&tm)) + "\n0\n0\n" + std::to_string(timegm(&crl_tm)) + "\n1\n3\n1\n0\n");

  // The hook's process exits (here: frees its context; the file stays until the process is
  // gone, so the count must survive in status either way).
  ptrust_ctx_free(ctx);
  auto s = result("status");
  for (const auto& p : s.at("purposes").as_array()) {
    if (p.at("purpose") == "licensing") {
      EXPECT_EQ(p.at("verdicts").at("OK"), 3) << p;
    }
  }
}

// A service that caches trust is reloaded (its reload-signal) when the trust of its purpose
// changes, then reported ok; an unrelated purpose's change does not reload it.
TEST_F(Serve, DeclaredConsumerIsReloadedOnChangeAndReturnsToOk) {
  install(self_signed({.cn = "Agent CA", .ca = true, .not_after = 400 * kDay}), {"--ca", "--purpose", "licensing"});
  std::string pidfile = in / "agent.pid", reloads = in / "reloads";
  pid_t agent = fork();
  if (agent == 0) {
    execl("/bin/sh", "sh", "-c",
          ("trap 'echo r >> " + reloads + "' USR1; echo $$ > " + pidfile + "; while :; do sleep 0.05; done").c_str(),
          nullptr);
    _exit(127);
  }
  struct Reap {
    pid_t pid;
    ~Reap() {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  } reap{agent};
  ASSERT_TRUE(eventually([&] { return std::filesystem::exists(pidfile) && read_file(pidfile).size() > 1; }));
  config("consumers:\n  - name: agent\n    purposes: [licensing]\n    pidfile: " + pidfile +
         "\n    reload-signal: SIGUSR1\n");
  start();
  auto count = [&]() -> long {
    if (!std::filesystem::exists(reloads)) return 0;
    std::string s = read_file(reloads);
    return std::count(s.begin(), s.end(), 'r');
  };
  // Never reloaded by ptrust: what it loaded is unknown, so it is reloaded once at start.
  EXPECT_TRUE(eventually([&] { return count() == 1; })) << d->err();
  EXPECT_TRUE(logs("consumer agent: reload done"));
  EXPECT_EQ(result("status").at("consumers").at(0).at("state"), "ok");

  install(self_signed({.cn = "Agent CA 2", .ca = true, .not_after = 400 * kDay}), {"--ca", "--purpose", "licensing"});
  EXPECT_TRUE(eventually([&] { return count() == 2; }, 2s)) << d->err();
  install(self_signed({.cn = "Ldaps CA", .ca = true, .not_after = 400 * kDay}), {"--ca", "--purpose", "ldaps"});
  std::this_thread::sleep_for(1500ms);
  EXPECT_EQ(count(), 2) << "a change to another purpose reloaded it";
  EXPECT_EQ(result("reload-consumers").at("consumers").at(0).at("state"), "ok");
}

// Time alone moves a certificate into the next window: the daemon's one timer, set at the
// next boundary, raises it without any file changing (windows shortened to seconds here).
TEST_F(Serve, TheAlertTimerRaisesTheNextWindowWithoutAnyChange) {
  config("alerts:\n  certificate-expiring-days: [30, 14, 0.0002]\n");  // _07 window: 17.28 s
  Issued ca = self_signed({.cn = "Short CA", .ca = true, .not_before = -60, .not_after = 21});
  std::string uuid = install(ca, {"--ca", "--purpose", "licensing"});
  start();
  EXPECT_TRUE(has_alert("POOL_CA_CERTIFICATE_EXPIRING_14"));
  EXPECT_TRUE(eventually([&] { return has_alert("POOL_CA_CERTIFICATE_EXPIRING_07"); }, 8s)) << d->err();
  EXPECT_TRUE(logs("PTRUST_TRIGGER=timer")) << d->err();
}

TEST_F(Serve, SighupReloadsTheConfigurationSigtermExitsCleanly) {
  install(self_signed({.cn = "CA", .ca = true, .not_after = 400 * kDay}), {"--ca"});
  start();
  EXPECT_EQ(result("status").at("purposes").as_array().size(), 3u);
  // An edit is followed by itself; SIGHUP forces a re-read, a broken file keeps the old one.
  config("  extra: {}\n");
  EXPECT_TRUE(eventually([&] { return result("status").at("purposes").as_array().size() == 4u; }, 2s));
  write_file(root / "etc/ptrust/ptrust.yaml", "purposes: [broken\n");
  ASSERT_EQ(::kill(d->pid(), SIGHUP), 0);
  EXPECT_TRUE(logs("configuration not reloaded: CONFIG_INVALID"));
  EXPECT_EQ(result("status").at("purposes").as_array().size(), 4u);
  config("");
  ASSERT_EQ(::kill(d->pid(), SIGHUP), 0);
  EXPECT_TRUE(eventually([&] { return result("status").at("purposes").as_array().size() == 3u; }, 2s));

  ASSERT_EQ(::kill(d->pid(), SIGTERM), 0);
  EXPECT_EQ(d->wait(), 0) << d->err();
  EXPECT_FALSE(std::filesystem::exists(sock));
}

TEST_F(Serve, RefusesNonLoopbackMetricsAndASecondDaemon) {
  for (std::string bad : {"0.0.0.0:9100", "10.0.0.1:9100", "[::]:9100", "example.com:80"}) {
    RunResult r = pt({"serve", "--socket", sock, "--metrics", bad});
    EXPECT_EQ(r.status, 2) << bad << r.err;
    EXPECT_EQ(r.err.rfind("ptrust: USAGE: ", 0), 0u) << r.err;
    EXPECT_FALSE(std::filesystem::exists(sock)) << bad;
  }
  start();
  RunResult second = pt({"serve", "--socket", sock});
  EXPECT_EQ(second.status, 1);
  EXPECT_NE(second.err.find("IO_ERROR"), std::string::npos) << second.err;
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

}  // namespace
}  // namespace ptrust::testing
