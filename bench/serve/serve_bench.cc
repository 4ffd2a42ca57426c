// The issue's targets for `ptrust status` and `ptrust serve`, at N = 100, 1,000 and 10,000
// trusted certificates (N-5 CAs of purpose `licensing`, 5 general CAs, one CRL, one stunnel
// instance), every figure beside a baseline measured in the same run:
//   CliStatusJson   `ptrust status --json --local` as a whole process (fork/exec, read output,
//                   wait): it reads the stores itself; counter peak_rss_KiB: the child's own
//                   high-water mark (wait4 rusage of a fresh child)
//   CliStatusDaemon `ptrust status --json` with `ptrust serve` running on the root's socket:
//                   the daemon answers (what an operator's `ptrust status` does on a host)
//   CliListJson     `ptrust list --json`: the same database read, nothing else (baseline)
//   CliSyncCheck    `ptrust sync --check`: the drift check alone (baseline)
//   CatBundle       `cat` of the licensing bundle (baseline: a process reading the file)
//   Storeutl        `openssl storeutl -noout file:` of the licensing bundle (baseline: libcrypto
//                   decoding every certificate of it once)
//   DaemonNop       an unknown method over the daemon's socket: the transport (baseline)
//   DaemonAlerts    an `alerts` request (from the cached report)
//   DaemonStatus    a `status` request (the cached report as JSON)
//   DaemonMetrics   GET /metrics on 127.0.0.1, read to EOF; counters: the daemon's VmRSS after
//                   start and after the scrapes (KiB), the exposition's size
//   DaemonIdle      the daemon's utime+stime ticks over 3 s without requests (expect 0)
//   CliStatusCached `ptrust status --json --local` once a daemon has run on the root: the
//                   decode verdicts it keeps on disk (status.h) spare decoding the certificates
//   DaemonPeak      a fresh `ptrust serve` through start, a store change (`ptrust install` of
//                   one CA, until its generation shows), a `status` request and a metrics
//                   scrape: counter rss_hwm_KiB = its VmHWM (peak RSS) at the end. Goal at
//                   N=10,000: <= 64 MiB; above it the benchmark fails (exit status 1)
//   DaemonRefresh   `ptrust install` of one more CA, then `status` requests until the new
//                   generation shows; manual time = from install's exit until seen (includes
//                   the watch's 200 ms debounce); counter install_ms = the install process;
//                   rss_refresh_peak_KiB = the daemon's VmHWM across these refreshes (reset
//                   through /proc/PID/clear_refs before the first)
// Stores are built the fast honest way: records made as `install` makes them
// (make_cert_record) saved with save_database, then the real `ptrust sync` writes every
// store file and bundle; `sync --check` must then be clean.
// After the runs it prints each figure as a ratio to its baseline of the same N.
#include <benchmark/benchmark.h>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>

#include "bench/support/ratio_reporter.h"
#include "core/cert.h"
#include "core/db.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/ossl.h"
#include "core/records.h"
#include "tests/serve/util.h"
#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace {

using ptrust::testing::Client;
using ptrust::testing::free_port;
using ptrust::testing::proc_cpu_ticks;
using ptrust::testing::proc_rss_kib;
using ptrust::testing::scrape_metrics;

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using ptrust::testing::RunResult;

constexpr int kGeneralCas = 5;
int g_failures = 0;

void fail(benchmark::State& state, const std::string& why) {
  ++g_failures;
  state.SkipWithError(why.c_str());
}

// ---- clients --------------------------------------------------------------------------

// One JSON-lines request on a new connection (what `ptrust status --socket` does); the reply
// line, unparsed ("" when the daemon cannot be reached).
std::string request(const std::string& sock, const std::string& method) {
  try {
    Client c = Client::at_path(sock);
    if (!c.send(R"({"method":")" + method + R"(","id":1})" + "\n")) return {};
    std::string r = c.line(30s);
    return r == "<eof>" || r == "<timeout>" ? std::string{} : r;
  } catch (const std::exception&) {
    return {};
  }
}

std::string scrape(int port) { return scrape_metrics(port); }

std::uint64_t generation_of(const std::string& status_reply) {
  boost::system::error_code ec;
  json::value v = json::parse(status_reply, ec);
  if (ec || !v.is_object()) return 0;
  auto* r = v.as_object().if_contains("result");
  if (!r || !r->is_object()) return 0;
  auto* g = r->as_object().if_contains("generation");
  return g && g->is_number() ? g->to_number<std::uint64_t>() : 0;
}

long rss_kib(pid_t pid) { return proc_rss_kib(pid); }
long peak_rss_kib(pid_t pid) {  // VmHWM
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
long cpu_ticks(pid_t pid) { return proc_cpu_ticks(pid); }

// ---- the daemon -----------------------------------------------------------------------


class Daemon {
 public:
  // On the root's own socket, where `ptrust status` looks for it.
  Daemon(const std::string& root, const std::string& dir)
      : Daemon(root, dir,
               {PTRUST_BIN, "--root", root, "serve", "--socket", root + "/run/ptrust/ptrust.sock", "--metrics",
                "127.0.0.1:" + std::to_string(free_port())},
               root + "/run/ptrust/ptrust.sock") {}
  Daemon(const std::string& root, const std::string& dir, std::vector<std::string> argv, const std::string& sock)
      : sock_(sock), err_(dir + "/serve.err") {
    (void)root;
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(a.data());
    args.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int rc = posix_spawn(&pid_, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) throw std::runtime_error("cannot start ptrust serve");
    // Ready when it logs where it serves (the bound metrics port is in that line).
    auto t0 = Clock::now();
    const std::string marker = "metrics on http://127.0.0.1:";
    for (;;) {
      std::string e = ptrust::testing::read_file(err_);
      if (auto at = e.find(marker); at != std::string::npos && e.find("serving ", 0) != std::string::npos) {
        port_ = std::stoi(e.substr(at + marker.size()));
        break;
      }
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        throw std::runtime_error("ptrust serve exited: " + e);
      }
      if (Clock::now() - t0 > 120s) throw std::runtime_error("ptrust serve did not start: " + e);
      std::this_thread::sleep_for(5ms);
    }
    start_ms_ = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    rss_after_start_ = rss_kib(pid_);
  }
  ~Daemon() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  int port() const { return port_; }
  const std::string& sock() const { return sock_; }
  long rss_after_start() const { return rss_after_start_; }
  double start_ms() const { return start_ms_; }

 private:
  std::string sock_, err_;
  pid_t pid_ = -1;
  int port_ = 0;
  long rss_after_start_ = -1;
  double start_ms_ = 0;
};

// ---- the stores -----------------------------------------------------------------------

std::string cn(int i) { return "ptrust serve bench CA " + std::to_string(i); }

struct Host {
  std::string root, dir;
  std::unique_ptr<Daemon> daemon;
  ptrust::ossl::PkeyPtr key;  // shared by every CA (signing would dominate otherwise)
  int next_serial = 0;
};

class World {
 public:
  World() {
    char tmpl[] = "/tmp/ptrust-servebench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
  }
  ~World() {
    hosts_.clear();  // daemons stopped first
    if (std::getenv("PTRUST_BENCH_KEEP")) {  // to profile a command on the roots afterwards
      std::fprintf(stderr, "roots kept in %s\n", dir_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  Host& host(int n) {
    auto& h = hosts_[n];
    if (h) return *h;
    h = std::make_unique<Host>();
    h->dir = dir_ + "/" + std::to_string(n);
    h->root = h->dir + "/root";
    build(*h, n);
    return *h;
  }

  Daemon& daemon(int n) {
    Host& h = host(n);
    if (!h.daemon) h.daemon = std::make_unique<Daemon>(h.root, h.dir);
    return *h.daemon;
  }

 private:
  static void build(Host& h, int n) {
    using namespace ptrust;
    const std::string& root = h.root;
    std::filesystem::create_directories(root + "/etc/ptrust");
    std::filesystem::create_directories(root + "/etc/stunnel");
    std::filesystem::create_directories(root + "/run");
    testing::write_file(root + "/etc/ptrust/ptrust.yaml",
                        "purposes:\n  licensing: {}\n  ldaps: {}\n"
                        "stunnel:\n  - name: tunnels\n    config: " + root + "/etc/stunnel/ptrust.conf\n"
                        "    pidfile: " + root + "/run/stunnel-ptrust.pid\n    via: files\n    services:\n"
                        "      - name: licensing\n        purpose: licensing\n        accept: 127.0.0.1:8443\n"
                        "        connect: licensing.example.com:443\n        check-host: licensing.example.com\n");
    h.key.reset(EVP_EC_gen("P-256"));
    const std::int64_t now = std::time(nullptr);
    Database db;
    for (int i = 0; i < n; ++i) {
      Certificate c = Certificate::parse(testing::ca_with_key_pem(cn(i), ++h.next_serial, h.key.get(), 365));
      std::vector<std::string> purposes;
      if (i >= kGeneralCas) purposes = {"licensing"};
      CertRecord r = make_cert_record(c, CertType::kCa, std::move(purposes), now);
      r.uuid = new_uuid();
      db.certs.push_back(std::move(r));
    }
    // One CRL, from a CA of its own (installed too: its signature checks).
    testing::Issued crl_ca = testing::self_signed({.cn = "ptrust serve bench CRL CA", .ca = true, .not_after = 365L * 86400});
    auto crl = testing::make_crl(crl_ca, {}, -3600, 60L * 86400);  // far from CRL_NEXT_UPDATE_SOON
    db.crls.push_back(make_crl_record(testing::crl_pem(crl.get()), "", {}, now));
    CertRecord crl_rec = make_cert_record(Certificate::parse(crl_ca.pem()), CertType::kCa, {}, now);
    crl_rec.uuid = new_uuid();
    db.certs.push_back(std::move(crl_rec));
    db.canonicalize();
    {
      fs::Fd r = fs::open_root(root);
      fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, true);
      save_database(state.get(), db);
    }
    auto must = [&](std::vector<std::string> args, std::initializer_list<int> ok = {0}) {
      RunResult rr = testing::ptrust(root, args);
      for (int s : ok)
        if (rr.status == s) return rr;
      throw std::runtime_error("ptrust " + args[0] + " at N=" + std::to_string(n) + ": exit " +
                               std::to_string(rr.status) + ": " + rr.err + rr.out.substr(0, 2000));
    };
    must({"sync"});
    must({"stunnel", "sync"});
    must({"sync", "--check"});
    RunResult st = must({"status", "--json"}, {0, 3});
    json::object o = json::parse(st.out).as_object();
    for (const auto& p : o.at("purposes").as_array())
      if (p.at("purpose") == "licensing" && p.at("certificates").to_number<int>() != n - kGeneralCas)
        throw std::runtime_error("licensing holds " + json::serialize(p.at("certificates")));
    std::fprintf(stderr, "N=%d: stores written (health %s)\n", n, std::string(o.at("health").as_string()).c_str());
  }

  std::string dir_;
  std::map<int, std::unique_ptr<Host>> hosts_;
};

World& world() {
  static World w;
  return w;
}

// ---- benchmarks -----------------------------------------------------------------------

void cli(benchmark::State& state, std::vector<std::string> args, std::initializer_list<int> ok) {
  const int n = static_cast<int>(state.range(0));
  Host& h = world().host(n);
  size_t bytes = 0;
  for (auto _ : state) {
    RunResult r = ptrust::testing::ptrust(h.root, args);
    bool good = false;
    for (int s : ok) good |= r.status == s;
    if (!good) return fail(state, "exit " + std::to_string(r.status) + ": " + r.err);
    bytes = r.out.size();
  }
  state.counters["out_bytes"] = static_cast<double>(bytes);
}

// Runs `argv` with stdout and stderr to /dev/null; its exit status and its own peak RSS
// (KiB); -1 when it cannot run. A child's ru_maxrss starts from the high-water mark of the
// memory it was forked from (this benchmark's tens of MiB), so the command is started by a
// small process (this program re-executed with --measure-child: a fresh, small image) whose
// own child runs it and reports ru_maxrss from wait4.
int run_measured(const std::vector<std::string>& argv, long& peak_kib) {
  char tmpl[] = "/tmp/ptrust-servebench-rss-XXXXXX";
  int fd = ::mkstemp(tmpl);
  if (fd < 0) return -1;
  ::close(fd);
  std::vector<std::string> full = {"/proc/self/exe", "--measure-child", tmpl};
  full.insert(full.end(), argv.begin(), argv.end());
  std::vector<char*> args;
  for (const auto& a : full) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int st = 0;
  if (::waitpid(pid, &st, 0) != pid) return -1;
  std::string report = ptrust::testing::read_file(tmpl);
  ::unlink(tmpl);
  if (report.empty() || report.find(' ') == std::string::npos) return -1;
  peak_kib = std::stol(report.substr(report.find(' ') + 1));
  return std::stoi(report);
}

void process(benchmark::State& state, const std::vector<std::string>& argv, std::initializer_list<int> ok) {
  long peak = 0;
  for (auto _ : state) {
    int rc = run_measured(argv, peak);
    bool good = false;
    for (int s : ok) good |= rc == s;
    if (!good) return fail(state, argv[0] + ": exit " + std::to_string(rc));
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak);
}

std::string licensing_bundle(int n) { return world().host(n).root + "/etc/trusted-certs/ca-bundle-licensing.pem"; }

void CliStatusJson(benchmark::State& s) {
  const int n = static_cast<int>(s.range(0));
  process(s, {PTRUST_BIN, "--root", world().host(n).root, "status", "--json", "--local"}, {0, 3});
}
void CliStatusDaemon(benchmark::State& s) {
  const int n = static_cast<int>(s.range(0));
  world().daemon(n);
  process(s, {PTRUST_BIN, "--root", world().host(n).root, "status", "--json"}, {0, 3});
  // The answer must be the daemon's (not a fallback to reading the stores).
  RunResult r = ptrust::testing::ptrust(world().host(n).root, {"status", "--json"});
  if (r.out.find("\"source\":{\"daemon\"") == std::string::npos) fail(s, "not answered by the daemon: " + r.err);
}
void CatBundle(benchmark::State& s) { process(s, {"cat", licensing_bundle(static_cast<int>(s.range(0)))}, {0}); }
void Storeutl(benchmark::State& s) {
  process(s, {"openssl", "storeutl", "-noout", "file:" + licensing_bundle(static_cast<int>(s.range(0)))}, {0});
}
void CliListJson(benchmark::State& s) { cli(s, {"list", "--json"}, {0}); }
void CliSyncCheck(benchmark::State& s) { cli(s, {"sync", "--check"}, {0}); }

void daemon_request(benchmark::State& state, const std::string& method, const std::string& expect) {
  Daemon& d = world().daemon(static_cast<int>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    std::string r = request(d.sock(), method);
    if (r.find(expect) == std::string::npos) return fail(state, method + ": " + r.substr(0, 200));
    bytes = r.size();
  }
  state.counters["reply_bytes"] = static_cast<double>(bytes);
}

void DaemonNop(benchmark::State& s) { daemon_request(s, "nop", "\"USAGE\""); }
void DaemonAlerts(benchmark::State& s) { daemon_request(s, "alerts", "\"alerts\""); }
void DaemonStatus(benchmark::State& s) { daemon_request(s, "status", "\"generation\""); }

void DaemonMetrics(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Daemon& d = world().daemon(n);
  size_t bytes = 0;
  for (auto _ : state) {
    std::string body = scrape(d.port());
    if (body.find("x509_cert_not_after{") == std::string::npos) return fail(state, "scrape: " + body.substr(0, 200));
    bytes = body.size();
  }
  state.counters["body_bytes"] = static_cast<double>(bytes);
  state.counters["rss_start_KiB"] = static_cast<double>(d.rss_after_start());
  state.counters["rss_scraped_KiB"] = static_cast<double>(rss_kib(d.pid()));
  state.counters["rss_peak_KiB"] = static_cast<double>(peak_rss_kib(d.pid()));
  state.counters["start_ms"] = d.start_ms();
}

void DaemonIdle(benchmark::State& state) {
  Daemon& d = world().daemon(static_cast<int>(state.range(0)));
  long ticks = 0;
  for (auto _ : state) {
    std::this_thread::sleep_for(500ms);  // the last request's connection is closed by now
    long t0 = cpu_ticks(d.pid());
    std::this_thread::sleep_for(3s);
    ticks = cpu_ticks(d.pid()) - t0;
  }
  state.counters["idle_cpu_ticks_3s"] = static_cast<double>(ticks);
  if (ticks != 0) ++g_failures;
}

void CliStatusCached(benchmark::State& s) {
  const int n = static_cast<int>(s.range(0));
  world().daemon(n);  // it has written the verdicts after its first refresh
  process(s, {PTRUST_BIN, "--root", world().host(n).root, "status", "--json", "--local"}, {0, 3});
}

// The issue's memory goal for the daemon at 10,000 certificates.
constexpr long kPeakGoalKib = 64L * 1024;

void DaemonPeak(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Host& h = world().host(n);
  world().daemon(n).pid();  // the shared daemon runs too (as on a host: it refreshes beside)
  long hwm = 0, rss = 0;
  double start_ms = 0;
  for (auto _ : state) {
    const std::string dir = h.dir + "/peak";
    std::filesystem::create_directories(dir);
    std::string sock = dir + "/peak.sock";
    // A second daemon on its own socket, started now: its VmHWM covers its start.
    std::vector<std::string> argv = {PTRUST_BIN, "--root", h.root, "serve", "--socket", sock, "--metrics",
                                     "127.0.0.1:" + std::to_string(free_port())};
    Daemon d(h.root, dir, argv, sock);
    start_ms = d.start_ms();
    std::uint64_t before = generation_of(request(d.sock(), "status"));
    const int serial = ++h.next_serial;
    std::string f = h.dir + "/extra" + std::to_string(serial) + ".pem";
    ptrust::testing::write_file(f, ptrust::testing::ca_with_key_pem(cn(100000 + serial), serial, h.key.get(), 365));
    RunResult r = ptrust::testing::ptrust(h.root, {"install", f, "--ca", "--purpose", "licensing"});
    if (r.status != 0) return fail(state, "install: " + r.err);
    auto t1 = Clock::now();
    while (generation_of(request(d.sock(), "status")) <= before) {
      if (Clock::now() - t1 > 60s) return fail(state, "the new generation did not show within 60 s");
      std::this_thread::sleep_for(5ms);
    }
    if (request(d.sock(), "status").find("\"generation\"") == std::string::npos) return fail(state, "status");
    if (scrape(d.port()).find("x509_cert_not_after{") == std::string::npos) return fail(state, "scrape");
    hwm = peak_rss_kib(d.pid());
    rss = rss_kib(d.pid());
  }
  state.counters["rss_hwm_KiB"] = static_cast<double>(hwm);
  state.counters["rss_end_KiB"] = static_cast<double>(rss);
  state.counters["start_ms"] = start_ms;
  if (n >= 10000 && hwm > kPeakGoalKib)
    fail(state, "peak RSS " + std::to_string(hwm / 1024) + " MiB over the goal of " + std::to_string(kPeakGoalKib / 1024) + " MiB");
}

void DaemonRefresh(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Host& h = world().host(n);
  Daemon& d = world().daemon(n);
  double install_ms = 0, polls = 0;
  {  // reset the daemon's VmHWM: the peak below is that of these refreshes
    std::ofstream clear("/proc/" + std::to_string(d.pid()) + "/clear_refs");
    clear << "5";
  }
  for (auto _ : state) {
    std::uint64_t before = generation_of(request(d.sock(), "status"));
    const int serial = ++h.next_serial;
    std::string f = h.dir + "/extra" + std::to_string(serial) + ".pem";
    ptrust::testing::write_file(f, ptrust::testing::ca_with_key_pem(cn(100000 + serial), serial, h.key.get(), 365));
    auto t0 = Clock::now();
    RunResult r = ptrust::testing::ptrust(h.root, {"install", f, "--ca", "--purpose", "licensing"});
    auto t1 = Clock::now();
    if (r.status != 0) return fail(state, "install: " + r.err);
    install_ms += std::chrono::duration<double, std::milli>(t1 - t0).count();
    for (;;) {
      ++polls;
      if (generation_of(request(d.sock(), "status")) > before) break;
      if (Clock::now() - t1 > 30s) return fail(state, "the new generation did not show within 30 s");
      std::this_thread::sleep_for(2ms);
    }
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t1).count());
  }
  state.counters["install_ms"] = install_ms / static_cast<double>(state.iterations());
  state.counters["status_polls"] = polls / static_cast<double>(state.iterations());
  state.counters["rss_refresh_peak_KiB"] = static_cast<double>(peak_rss_kib(d.pid()));
  state.counters["rss_after_KiB"] = static_cast<double>(rss_kib(d.pid()));
}

#define SIZES Arg(100)->Arg(1000)->Arg(10000)
BENCHMARK(CliStatusJson)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(CliListJson)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(CliSyncCheck)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(CatBundle)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(Storeutl)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(DaemonNop)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(DaemonAlerts)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(DaemonStatus)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(DaemonMetrics)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(DaemonIdle)->SIZES->Iterations(1)->Unit(benchmark::kMillisecond);
BENCHMARK(CliStatusDaemon)->SIZES->Unit(benchmark::kMillisecond);
BENCHMARK(CliStatusCached)->SIZES->Unit(benchmark::kMillisecond);
// These add certificates.
BENCHMARK(DaemonPeak)->SIZES->Iterations(1)->Unit(benchmark::kMillisecond);
// Last: it adds certificates.
BENCHMARK(DaemonRefresh)->SIZES->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);


}  // namespace

// --measure-child FILE ARGV...: runs ARGV (stdout/stderr inherited), writes "STATUS MAXRSS_KIB".
int measure_child(char** argv) {
  pid_t pid = ::fork();
  if (pid < 0) return 1;
  if (pid == 0) {
    ::execvp(argv[3], argv + 3);
    ::_exit(127);
  }
  int st = 0;
  rusage ru{};
  if (::wait4(pid, &st, 0, &ru) != pid) return 1;
  std::ofstream(argv[2]) << (WIFEXITED(st) ? WEXITSTATUS(st) : -1) << " " << ru.ru_maxrss;
  return 0;
}

int main(int argc, char** argv) {
  if (argc > 3 && std::strcmp(argv[1], "--measure-child") == 0) return measure_child(argv);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ptrust::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratios to a baseline of the same N\n");
  const std::pair<const char*, const char*> pairs[] = {{"CliStatusDaemon", "CatBundle"},
                                                       {"CliStatusDaemon", "CliListJson"},
                                                       {"CliStatusJson", "Storeutl"},
                                                       {"CliStatusJson", "CliListJson"},
                                                       {"CliStatusJson", "CliSyncCheck"},
                                                       {"DaemonStatus", "DaemonNop"},
                                                       {"DaemonAlerts", "DaemonNop"},
                                                       {"DaemonMetrics", "DaemonNop"},
                                                       {"CliStatusJson", "DaemonStatus"},
                                                       {"CliStatusCached", "Storeutl"},
                                                       {"CliStatusCached", "CliSyncCheck"},
                                                       {"CliStatusCached", "CliListJson"},
                                                       {"CliStatusJson", "CliStatusCached"}};
  for (const char* n : {"100", "1000", "10000"})
    for (const auto& [a, b] : pairs) {
      auto x = reporter.times.find(std::string(a) + "/" + n);
      auto y = reporter.times.find(std::string(b) + "/" + n);
      if (x != reporter.times.end() && y != reporter.times.end())
        std::printf("  N=%-6s %-14s / %-13s %8.2fx\n", n, a, b, x->second / y->second);
    }
  bool ok = !reporter.times.empty() && g_failures == 0;
  benchmark::Shutdown();
  return ok ? 0 : 1;
}
