// Handshakes per second through stunnel 5.68 with `config = VerifyCAStore:ptrust://P`
// (--via provider) versus the same stunnel service with `CAfile` = the chosen bundle
// (--via files, CRL checking off so both do the same verification work), both rendered
// by `ptrust stunnel render`, both to the same `openssl s_server`, in one run.
//
//   stunnel_bench [CONNECTIONS] [ROUNDS]    (default 600 connections per tunnel, 6 rounds)
//
// Rounds alternate between the tunnels so that drift of the machine hits both alike.
// Every connection is a fresh TLS handshake (sessionResume = no) with full verification.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>
#include <thread>

#include "tests/stunnel/fixture.h"

using namespace ptrust::testing;
using Clock = std::chrono::steady_clock;

namespace {

struct Tunnel {
  int port = free_port();
  std::unique_ptr<Stunnel> st;
  double seconds = 0;
  int ok = 0;
};

void start(const Env& env, const TlsServer& server, const std::string& via, Tunnel& t) {
  std::string cnf = env.path("openssl.cnf");
  std::vector<std::string> args{"stunnel", "render", "--purpose", "licensing", "--name", via,
                                "--accept", "127.0.0.1:" + std::to_string(t.port), "--connect", server.address(),
                                "--check-host", "leaf.test", "--via", via};
  if (via == "provider") args.insert(args.end(), {"--openssl-conf", cnf, "--module", PTRUST_PROVIDER_MODULE});
  RunResult r = env.ptrust(args);
  if (r.status != 0) throw std::runtime_error("render: " + r.err);
  std::string log = env.path(via + ".log"), conf = env.path(via + ".conf");
  // debug = 4: the benchmark measures handshakes, not log writing.
  write_file(conf, "foreground = yes\ndebug = 4\noutput = " + log + "\npid = " + env.path(via + ".pid") + "\n" +
                       r.out);
  std::vector<std::string> e;
  if (via == "provider") e.push_back("OPENSSL_CONF=" + cnf);
  t.st = std::make_unique<Stunnel>(conf, log, e);
  // debug = 4 hides "Accepting new connections"; a first request proves the tunnel works.
  for (int i = 0; i < 200 && through(t.port, *t.st) != Outcome::kEstablished; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  if (through(t.port, *t.st) != Outcome::kEstablished) throw std::runtime_error(via + " tunnel does not work");
}

void round(Tunnel& t, int n) {
  auto t0 = Clock::now();
  for (int i = 0; i < n; ++i) t.ok += through(t.port, *t.st) == Outcome::kEstablished;
  t.seconds += std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  int connections = argc > 1 ? std::atoi(argv[1]) : 600;
  int rounds = argc > 2 ? std::atoi(argv[2]) : 6;
  if (connections <= 0 || rounds <= 0 || connections % rounds) {
    std::fprintf(stderr, "usage: stunnel_bench [CONNECTIONS] [ROUNDS] (CONNECTIONS a multiple of ROUNDS)\n");
    return 2;
  }
  try {
    Env env;
    // crl-policy off: the files form then has no CRLpath, as the provider form.
    write_file(env.config_file(), "purposes:\n  licensing: {crl-policy: off}\n");
    env.install("root", "ca", "licensing");
    TlsServer server(env, "leaf");
    Tunnel files, provider;
    start(env, server, "files", files);
    start(env, server, "provider", provider);
    for (int r = 0; r < rounds; ++r) {
      Tunnel& first = r % 2 ? provider : files;
      Tunnel& second = r % 2 ? files : provider;
      round(first, connections / rounds);
      round(second, connections / rounds);
    }
    double f = files.ok / files.seconds, p = provider.ok / provider.seconds;
    std::printf("connections per tunnel: %d in %d rounds\n", connections, rounds);
    std::printf("CAfile (--via files):              %8.1f handshakes/s (%d ok)\n", f, files.ok);
    std::printf("VerifyCAStore (--via provider):    %8.1f handshakes/s (%d ok)\n", p, provider.ok);
    std::printf("ratio provider/files:              %8.3f\n", p / f);
    return files.ok == connections && provider.ok == connections ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stunnel_bench: %s\n", e.what());
    return 1;
  }
}
