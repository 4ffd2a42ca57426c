// Issue 16: a write costs O(change), not O(store). At N = 100, 1,000 and 10,000 CAs of one
// purpose (`licensing`), each figure beside a baseline measured in the same run:
//   Install       `ptrust install` of one more CA (then, untimed, its uninstall)
//   Uninstall     `ptrust uninstall` of one CA (installed untimed before)
//   CrlInstall    `ptrust crl install` of a CRL (then, untimed, its crl uninstall)
//   SyncCheck     `ptrust sync --check` (must report no drift)
//   Import        `ptrust import` of the N-root's export into an empty root
//   Cat           baseline: `cat ca-licensing/*.pem > bundle` (the one bundle a write rewrites)
//   Storeutl      baseline: `openssl storeutl -noout file:ca-bundle-licensing.pem`
// Every command is a whole process (posix_spawn, wait4); counter peak_rss_KiB is the largest
// ru_maxrss of the timed ptrust processes. Stores are built the fast honest way: records made
// as `install` makes them (make_cert_record) saved with save_database, then the real
// `ptrust sync` writes every store file; `sync --check` must then be clean.
// After the runs it prints the ratios the goals are stated in.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench/support/ratio_reporter.h"
#include "core/cert.h"
#include "core/db.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/ossl.h"
#include "core/records.h"
#include "tests/support/testpki.h"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;
int g_failures = 0;

void fail(benchmark::State& state, const std::string& why) {
  ++g_failures;
  state.SkipWithError(why.c_str());
}

struct Ran {
  int status = -1;
  double seconds = 0;
  long maxrss_kib = 0;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  try {
    return ptrust::testing::read_file(path);
  } catch (...) {
    return {};
  }
}

// One process, its wall time from spawn to reaped, and its own peak RSS (wait4's rusage).
Ran spawn(const std::vector<std::string>& argv, const std::string& scratch) {
  const std::string out = scratch + "/out", err = scratch + "/err";
  std::vector<char*> args;
  std::vector<std::string> copy = argv;
  for (auto& a : copy) args.push_back(a.data());
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  Ran r;
  pid_t pid = -1;
  auto t0 = Clock::now();
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start " + argv[0]);
  int st = 0;
  struct rusage ru {};
  if (::wait4(pid, &st, 0, &ru) != pid) throw std::runtime_error("wait4");
  r.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  r.maxrss_kib = ru.ru_maxrss;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

const std::string kConfig = "purposes:\n  licensing: {}\n";
std::string cn(int i) { return "ptrust store bench CA " + std::to_string(i); }

struct Host {
  std::string root, dir;
  ptrust::ossl::PkeyPtr key;  // shared by every CA (signing would dominate otherwise)
  int next_serial = 0;
  std::string exported;  // the root's export document (file), made on first use
};

void make_root(const std::string& root) {
  std::filesystem::create_directories(root + "/etc/ptrust");
  ptrust::testing::write_file(root + "/etc/ptrust/ptrust.yaml", kConfig);
}

class World {
 public:
  World() {
    const char* base = std::getenv("PTRUST_BENCH_DIR");  // default /tmp; must be a real disk for fsync figures
    std::string tmpl = std::string(base ? base : "/tmp") + "/ptrust-storebench-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp");
    dir_ = tmpl;
  }
  ~World() {
    if (std::getenv("PTRUST_BENCH_KEEP")) {
      std::fprintf(stderr, "roots kept in %s\n", dir_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  const std::string& dir() const { return dir_; }

  Host& host(int n) {
    auto& h = hosts_[n];
    if (h) return *h;
    h = std::make_unique<Host>();
    h->dir = dir_ + "/" + std::to_string(n);
    h->root = h->dir + "/root";
    build(*h, n);
    return *h;
  }

 private:
  static void build(Host& h, int n) {
    using namespace ptrust;
    make_root(h.root);
    h.key.reset(EVP_EC_gen("P-256"));
    const std::int64_t now = std::time(nullptr);
    Database db;
    for (int i = 0; i < n; ++i) {
      Certificate c = Certificate::parse(testing::ca_with_key_pem(cn(i), ++h.next_serial, h.key.get(), 365));
      CertRecord r = make_cert_record(c, CertType::kCa, {"licensing"}, now);
      r.uuid = new_uuid();
      db.certs.push_back(std::move(r));
    }
    db.canonicalize();
    {
      fs::Fd r = fs::open_root(h.root);
      fs::Fd state = fs::open_dir(r.get(), layout::kStateDir, true);
      save_database(state.get(), db);
    }
    for (auto args : {std::vector<std::string>{"sync"}, std::vector<std::string>{"sync", "--check"}}) {
      args.insert(args.begin(), {PTRUST_BIN, "--root", h.root});
      Ran r = spawn(args, h.dir);
      if (r.status != 0)
        throw std::runtime_error("ptrust " + args[3] + " at N=" + std::to_string(n) + ": exit " +
                                 std::to_string(r.status) + ": " + r.err + r.out.substr(0, 2000));
    }
    std::fprintf(stderr, "N=%d: stores written\n", n);
  }

  std::string dir_;
  std::map<int, std::unique_ptr<Host>> hosts_;
};

World& world() {
  static World w;
  return w;
}

Ran ptrust_cmd(Host& h, std::vector<std::string> args, const std::string& root = "") {
  args.insert(args.begin(), {PTRUST_BIN, "--root", root.empty() ? h.root : root});
  return spawn(args, h.dir);
}

std::string new_ca_file(Host& h) {
  const int serial = ++h.next_serial;
  std::string f = h.dir + "/extra.pem";
  ptrust::testing::write_file(f, ptrust::testing::ca_with_key_pem(cn(1000000 + serial), serial, h.key.get(), 365));
  return f;
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

struct Peak {
  long kib = 0;
  void see(const Ran& r) { kib = std::max(kib, r.maxrss_kib); }
};

// ---- the writes -----------------------------------------------------------------------

void Install(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  Peak peak;
  for (auto _ : state) {
    std::string f = new_ca_file(h);
    Ran r = ptrust_cmd(h, {"install", f, "--ca", "--purpose", "licensing"});
    if (r.status != 0) return fail(state, "install: " + r.err);
    state.SetIterationTime(r.seconds);
    peak.see(r);
    Ran u = ptrust_cmd(h, {"uninstall", first_line(r.out)});
    if (u.status != 0) return fail(state, "uninstall: " + u.err);
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak.kib);
}

void Uninstall(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  Peak peak;
  for (auto _ : state) {
    Ran i = ptrust_cmd(h, {"install", new_ca_file(h), "--ca", "--purpose", "licensing"});
    if (i.status != 0) return fail(state, "install: " + i.err);
    Ran r = ptrust_cmd(h, {"uninstall", first_line(i.out)});
    if (r.status != 0) return fail(state, "uninstall: " + r.err);
    state.SetIterationTime(r.seconds);
    peak.see(r);
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak.kib);
}

void CrlInstall(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  Peak peak;
  const std::string f = h.dir + "/bench.crl";
  for (auto _ : state) {
    // A CRL of an issuer not installed: no signature check at install (that cost is
    // O(candidates) and measured elsewhere); what is measured here is the write.
    auto issuer = ptrust::testing::self_signed({.cn = "ptrust store bench CRL issuer", .ca = true});
    auto crl = ptrust::testing::make_crl(issuer, {});
    ptrust::testing::write_file(f, ptrust::testing::crl_pem(crl.get()));
    Ran r = ptrust_cmd(h, {"crl", "install", f, "--name", "bench.crl"});
    if (r.status != 0) return fail(state, "crl install: " + r.err);
    state.SetIterationTime(r.seconds);
    peak.see(r);
    Ran u = ptrust_cmd(h, {"crl", "uninstall", "bench.crl"});
    if (u.status != 0) return fail(state, "crl uninstall: " + u.err);
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak.kib);
}

void SyncCheck(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  Peak peak;
  for (auto _ : state) {
    Ran r = ptrust_cmd(h, {"sync", "--check"});
    if (r.status != 0) return fail(state, "sync --check (exit " + std::to_string(r.status) + "): " + r.out + r.err);
    state.SetIterationTime(r.seconds);
    peak.see(r);
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak.kib);
}

void Import(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  Host& h = world().host(n);
  if (h.exported.empty()) {
    h.exported = h.dir + "/export.json";
    Ran e = ptrust_cmd(h, {"export", h.exported});
    if (e.status != 0) return fail(state, "export: " + e.err);
  }
  Peak peak;
  int k = 0;
  for (auto _ : state) {
    const std::string root = h.dir + "/import-" + std::to_string(k++);
    make_root(root);
    Ran r = ptrust_cmd(h, {"import", h.exported}, root);
    if (r.status != 0) return fail(state, "import: " + r.err);
    state.SetIterationTime(r.seconds);
    peak.see(r);
    Ran c = ptrust_cmd(h, {"sync", "--check"}, root);
    if (c.status != 0) return fail(state, "sync --check after import: " + c.out + c.err);
    std::error_code ec;
    std::filesystem::remove_all(root, ec);
  }
  state.counters["peak_rss_KiB"] = static_cast<double>(peak.kib);
}

// ---- the baselines ----------------------------------------------------------------------

void Cat(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  const std::string trusted = h.root + "/etc/trusted-certs";
  for (auto _ : state) {
    Ran r = spawn({"/bin/sh", "-c", "cat '" + trusted + "'/ca-licensing/*.pem > '" + h.dir + "/cat-bundle.pem'"}, h.dir);
    if (r.status != 0) return fail(state, "cat: " + r.err);
    state.SetIterationTime(r.seconds);
  }
}

void Storeutl(benchmark::State& state) {
  Host& h = world().host(static_cast<int>(state.range(0)));
  const std::string bundle = h.root + "/etc/trusted-certs/ca-bundle-licensing.pem";
  for (auto _ : state) {
    Ran r = spawn({"openssl", "storeutl", "-noout", "file:" + bundle}, h.dir);
    if (r.status != 0) return fail(state, "storeutl: " + r.err);
    state.SetIterationTime(r.seconds);
  }
}

#define SIZES Arg(100)->Arg(1000)->Arg(10000)
BENCHMARK(Cat)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Storeutl)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(SyncCheck)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Install)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Uninstall)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(CrlInstall)->SIZES->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(Import)->SIZES->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ptrust::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  auto t = [&](const std::string& name, const char* n) -> double {
    auto it = reporter.times.find(name + "/" + n + "/manual_time");
    if (it == reporter.times.end()) it = reporter.times.find(name + "/" + n + "/iterations:1/manual_time");
    return it == reporter.times.end() ? 0 : it->second;
  };
  std::printf("\nratios (same run; goals at 10,000: writes <= 3x N=100 and <= 1.5x Cat, SyncCheck <= 1x Storeutl,\n"
              "Import <= 2x Storeutl)\n");
  for (const char* n : {"100", "1000", "10000"}) {
    for (const char* w : {"Install", "Uninstall", "CrlInstall"}) {
      double x = t(w, n), base = t(w, "100"), cat = t("Cat", n);
      if (x > 0 && base > 0 && cat > 0)
        std::printf("  N=%-6s %-11s %8.1f ms  %6.2fx N=100  %6.2fx Cat\n", n, w, x * 1e3, x / base, x / cat);
    }
    for (const char* w : {"SyncCheck", "Import"}) {
      double x = t(w, n), s = t("Storeutl", n);
      if (x > 0 && s > 0) std::printf("  N=%-6s %-11s %8.1f ms  %6.2fx Storeutl\n", n, w, x * 1e3, x / s);
    }
  }
  bool ok = !reporter.times.empty() && g_failures == 0;
  benchmark::Shutdown();
  return ok ? 0 : 1;
}
