// The issue's fleet benchmark: publish-to-converged time for 3 hosts at N = 10, 1,000 and
// 10,000 trusted certificates, against a local `ptrust import` of the same document, in one
// run:
//   LocalImport       `ptrust import DOC` as a whole process into an empty root (baseline)
//   PublishConverged  `ptrust fleet publish` of DOC (a process) to a real etcd on 127.0.0.1,
//                     until each of 3 `ptrust serve --follow` hosts (3 roots, 3 processes on
//                     this machine) answers on its socket that it applied that revision; the
//                     hosts start each iteration from an empty store (an empty document
//                     published and applied beforehand, not timed), as the import does
// Manual time in both. The document: N CA certificates of purpose ldaps (one key, N names),
// as `export` writes it. After the runs it prints PublishConverged / LocalImport per N.
// Ports are picked by the kernel, everything lives in temporary directories, and every
// process is killed at the end.
#include <benchmark/benchmark.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "bench/support/ratio_reporter.h"
#include "tests/fleet/etcd.h"
#include "tests/serve/util.h"
#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using namespace ptrust::testing;

int g_failures = 0;
constexpr const char* kFleet = "bench";

void configure(const std::string& root) {
  std::filesystem::create_directories(root + "/etc/ptrust");
  write_file(root + "/etc/ptrust/ptrust.yaml", "purposes:\n  licensing: {}\n  ldaps: {}\n");
}

std::string document(int n) {
  static std::map<int, std::string> docs;
  if (auto it = docs.find(n); it != docs.end()) return it->second;
  auto key = make_key(KeyKind::kP256);
  json::array trusted;
  for (int i = 0; i < n; ++i) {
    char uuid[37];
    std::snprintf(uuid, sizeof uuid, "%08x-0000-4000-8000-%012x", i, i);
    trusted.emplace_back(json::object{{"uuid", uuid}, {"type", "ca"}, {"purposes", json::array{"ldaps"}},
                                      {"installed_at", 1700000000},
                                      {"pem", ca_with_key_pem("Bulk " + std::to_string(i), 1000 + i, key.get(), 400)}});
  }
  return docs[n] = json::serialize(json::object{{"format", "ptrust-export"}, {"version", 1}, {"trusted", std::move(trusted)},
                                                {"legacy", json::array{}}, {"crls", json::array{}}});
}
const std::string kEmpty = R"({"format":"ptrust-export","version":1,"trusted":[],"legacy":[],"crls":[]})";

void fail(benchmark::State& s, const std::string& why) {
  ++g_failures;
  s.SkipWithError(why.c_str());
}

void LocalImport(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  TempDir dir;
  write_file(dir / "doc.json", document(n));
  for (auto _ : state) {
    TempDir root;
    configure(root.path());
    auto t0 = Clock::now();
    RunResult r = ptrust::testing::ptrust(root.path(), {"import", dir / "doc.json"});
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
    if (r.status != 0) return fail(state, "import: " + r.err);
  }
  state.counters["doc_KiB"] = static_cast<double>(document(n).size()) / 1024;
}

struct Host {
  TempDir root, logs;
  std::string uuid, sock;
  std::unique_ptr<DaemonProcess> d;
};

// The applied revision a host's daemon reports (0 while it has none or cannot answer).
std::int64_t applied(const Host& h) {
  try {
    Client c = Client::at_path(h.sock);
    json::object r = c.call(R"({"id":1,"method":"status","params":{}})");
    return r.at("result").at("fleet").at("applied_revision").as_int64();
  } catch (const std::exception&) {
    return 0;
  }
}

void PublishConverged(benchmark::State& state) {
  int n = static_cast<int>(state.range(0));
  TempDir dir, src;
  configure(src.path());
  Etcd etcd(dir);
  if (!etcd.start()) return fail(state, "etcd did not start");
  std::vector<std::unique_ptr<Host>> hosts;
  for (int i = 1; i <= 3; ++i) {
    auto h = std::make_unique<Host>();
    configure(h->root.path());
    h->uuid = "0000000" + std::to_string(i) + "-1111-2222-3333-444444444444";
    h->sock = h->root / "ptrust.sock";
    h->d = std::make_unique<DaemonProcess>(h->logs, std::string(PTRUST_BIN) + " --root " + h->root.path() + " serve --socket " +
                                                        h->sock + " --follow etcd://127.0.0.1:" + std::to_string(etcd.port()) +
                                                        "/" + kFleet + " --host-uuid " + h->uuid);
    hosts.push_back(std::move(h));
  }
  write_file(dir / "doc.json", document(n));
  write_file(dir / "empty.json", kEmpty);
  auto publish = [&](const std::string& file) -> std::int64_t {
    RunResult r = run({PTRUST_BIN, "--root", src.path(), "fleet", "publish", "--etcd", etcd.url(), "--fleet", kFleet, "--json", file});
    if (r.status != 0) return -1;
    return json::parse(r.out).at("revision").as_int64();
  };
  auto converged = [&](std::int64_t rev) {
    return eventually([&] {
      for (const auto& h : hosts)
        if (applied(*h) != rev) return false;
      return true;
    }, 120s);
  };
  for (auto _ : state) {
    std::int64_t empty = publish(dir / "empty.json");
    if (empty < 0 || !converged(empty)) return fail(state, "the empty document did not converge: " + hosts[0]->d->err());
    auto t0 = Clock::now();
    std::int64_t rev = publish(dir / "doc.json");
    if (rev < 0) return fail(state, "publish refused");
    if (!converged(rev)) return fail(state, "3 hosts did not converge within 120 s: " + hosts[0]->d->err());
    state.SetIterationTime(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  // The stores are what the import writes (spot check: the number of certificate files).
  size_t pems = 0;
  for (const auto& e : std::filesystem::directory_iterator(hosts[2]->root / "etc/trusted-certs/ca-ldaps"))
    pems += e.path().extension() == ".pem";
  if (pems != static_cast<size_t>(n)) return fail(state, "host 3 has " + std::to_string(pems) + " certificates, not " + std::to_string(n));
}

}  // namespace

BENCHMARK(LocalImport)->Arg(10)->Arg(1000)->Arg(10000)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);
BENCHMARK(PublishConverged)->Arg(10)->Arg(1000)->Arg(10000)->Iterations(3)->UseManualTime()->Unit(benchmark::kMillisecond);

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ptrust::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratio to a local import of the same document (same run)\n");
  for (const char* n : {"10", "1000", "10000"}) {
    auto x = reporter.times.find(std::string("PublishConverged/") + n + "/iterations:3/manual_time");
    auto y = reporter.times.find(std::string("LocalImport/") + n + "/iterations:3/manual_time");
    if (x != reporter.times.end() && y != reporter.times.end())
      std::printf("  N=%-6s PublishConverged / LocalImport %8.2fx  (%.0f ms / %.0f ms)\n", n, x->second / y->second,
                  x->second * 1000, y->second * 1000);
  }
  bool ok = !reporter.times.empty() && g_failures == 0;
  benchmark::Shutdown();
  return ok ? 0 : 1;
}
