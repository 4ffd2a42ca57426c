// Loading every object of a purpose whose bundle holds N certificates:
//   File        OSSL_STORE_open("file:<bundle>") and load all (what `openssl storeutl file:` does)
//   PtrustWarm  OSSL_STORE_open("ptrust://bench") and load all, snapshot cached (the usual case)
//   PtrustCold  the same after a writer moved the store generation (as every `ptrust` change
//               does): re-read and re-parse every time
//   PtrustSubject  one subject search (what an X509_STORE lookup asks), cached
// After the runs it prints each ptrust figure as a ratio to File of the same N.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <openssl/x509v3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <stdexcept>
#include <string>

#include "bench/support/ratio_reporter.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/layout.h"
#include "core/ossl.h"
#include "tests/support/testpki.h"

namespace {

using ptrust::ossl::PkeyPtr;
using ptrust::ossl::X509Ptr;

void write(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f << text;
  if (!f) throw std::runtime_error("cannot write " + path);
}

std::string cn(int i) { return "ptrust bench CA " + std::to_string(i); }

// N self-signed CA certificates sharing one key (signing dominates generation time; the
// loaders' work per certificate does not depend on the key).
std::string make_bundle(int n, EVP_PKEY* key) {
  std::string out;
  for (int i = 0; i < n; ++i) out += ptrust::testing::ca_with_key_pem(cn(i), i + 1, key, 365);
  return out;
}

// One temporary root per size: purpose `bench` served by ca-bundle-bench.pem.
struct World {
  std::string dir;
  OSSL_LIB_CTX* lib = nullptr;
  std::map<int, std::string> roots;  // n -> bundle path

  World() {
    char tmpl[] = "/tmp/ptrust-bench-XXXXXX";
    if (::mkdtemp(tmpl) == nullptr) throw std::runtime_error("mkdtemp");
    dir = tmpl;
  }
  ~World() {
    if (lib != nullptr) OSSL_LIB_CTX_free(lib);
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  // The library context for size n (the provider reads `root =` when it is loaded, so
  // each size gets its own root and its own context).
  // The state directory of size n's root (to move its generation).
  int state_dir(int n) {
    static std::map<int, ptrust::fs::Fd> dirs;
    auto& fd = dirs[n];
    if (!fd) {
      ptrust::fs::Fd r = ptrust::fs::open_root(dir + "/root" + std::to_string(n));
      fd = ptrust::fs::open_dir(r.get(), ptrust::layout::kStateDir, false);
    }
    return fd.get();
  }

  std::pair<OSSL_LIB_CTX*, std::string> get(int n) {
    static std::map<int, OSSL_LIB_CTX*> libs;
    if (auto it = libs.find(n); it != libs.end()) return {it->second, roots[n]};
    std::string root = dir + "/root" + std::to_string(n);
    std::filesystem::create_directories(root + "/etc/trusted-certs");
    std::filesystem::create_directories(root + "/etc/ptrust");
    write(root + "/etc/ptrust/ptrust.yaml", "purposes:\n  bench: {}\n");
    PkeyPtr key(EVP_EC_gen("P-256"));
    std::string bundle = root + "/etc/trusted-certs/ca-bundle-bench.pem";
    write(bundle, make_bundle(n, key.get()));
    std::filesystem::create_directories(root + "/etc/trusted-certs/ca-bench");  // a bundle goes with its store
    write(root + "/etc/trusted-certs/ca-bench/all.pem", "");
    {  // a generation file, as a ptrust writer leaves it: consumers follow its counter
      ptrust::fs::Fd r = ptrust::fs::open_root(root);
      ptrust::fs::Fd state = ptrust::fs::open_dir(r.get(), ptrust::layout::kStateDir, true);
      ptrust::begin_change(state.get());
      ptrust::end_change(state.get());
    }
    std::string conf = root + "/openssl.cnf";
    write(conf, std::string("openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n"
                            "[provider_sect]\ndefault = default_sect\nptrust = ptrust_sect\n"
                            "[default_sect]\nactivate = 1\n[ptrust_sect]\nmodule = ") +
                    PTRUST_PROVIDER_MODULE + "\nroot = " + root + "\nactivate = 1\n");
    OSSL_LIB_CTX* l = OSSL_LIB_CTX_new();
    if (OSSL_LIB_CTX_load_config(l, conf.c_str()) != 1) throw std::runtime_error("cannot load " + conf);
    libs[n] = l;
    roots[n] = bundle;
    return {l, bundle};
  }
};

World& world() {
  static World w;
  return w;
}

int load_all(OSSL_LIB_CTX* lib, const std::string& uri, X509_NAME* subject = nullptr) {
  OSSL_STORE_CTX* s = OSSL_STORE_open_ex(uri.c_str(), lib, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (s == nullptr) return -1;
  if (subject != nullptr) {
    OSSL_STORE_SEARCH* q = OSSL_STORE_SEARCH_by_name(subject);
    OSSL_STORE_find(s, q);
    OSSL_STORE_SEARCH_free(q);
  }
  int n = 0;
  while (!OSSL_STORE_eof(s)) {
    OSSL_STORE_INFO* info = OSSL_STORE_load(s);
    if (info == nullptr) break;
    n += OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CERT;
    OSSL_STORE_INFO_free(info);
  }
  OSSL_STORE_close(s);
  return n;
}

int g_failures = 0;

void check_count(benchmark::State& state, int got, int want) {
  if (got == want) return;
  ++g_failures;
  state.SkipWithError(("loaded " + std::to_string(got) + ", want " + std::to_string(want)).c_str());
}

void File(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto [lib, bundle] = world().get(n);
  for (auto _ : state) check_count(state, load_all(lib, "file:" + bundle), n);
}

void PtrustWarm(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto [lib, bundle] = world().get(n);
  load_all(lib, "ptrust://bench");
  for (auto _ : state) check_count(state, load_all(lib, "ptrust://bench"), n);
}

void PtrustCold(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto [lib, bundle] = world().get(n);
  const int dir = world().state_dir(n);
  for (auto _ : state) {
    state.PauseTiming();
    ptrust::begin_change(dir);  // what a writer does around a change (same bytes here)
    ptrust::end_change(dir);
    state.ResumeTiming();
    check_count(state, load_all(lib, "ptrust://bench"), n);
  }
}

void PtrustSubject(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto [lib, bundle] = world().get(n);
  ptrust::ossl::Ptr<X509_NAME, X509_NAME_free> name(X509_NAME_new());
  X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn(n / 2).c_str()), -1, -1, 0);
  load_all(lib, "ptrust://bench");
  for (auto _ : state) check_count(state, load_all(lib, "ptrust://bench", name.get()), 1);
}

BENCHMARK(File)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(PtrustWarm)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(PtrustCold)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);
BENCHMARK(PtrustSubject)->Arg(100)->Arg(1000)->Arg(10000)->Unit(benchmark::kMicrosecond);


}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  ptrust::bench::RatioReporter reporter;
  benchmark::RunSpecifiedBenchmarks(&reporter);
  std::printf("\nratio to File (same N; < 1 is faster than file:)\n");
  bool ok = !reporter.times.empty() && g_failures == 0;
  for (const char* n : {"100", "1000", "10000"}) {
    auto base = reporter.times.find(std::string("File/") + n);
    if (base == reporter.times.end()) continue;
    for (const char* b : {"PtrustWarm", "PtrustCold", "PtrustSubject"}) {
      auto it = reporter.times.find(std::string(b) + "/" + n);
      if (it != reporter.times.end()) std::printf("  %-14s N=%-6s %6.2fx\n", b, n, it->second / base->second);
    }
  }
  benchmark::Shutdown();
  return ok ? 0 : 1;
}
