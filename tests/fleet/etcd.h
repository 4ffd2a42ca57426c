// A real etcd (Debian etcd-server 3.4) for one test: 127.0.0.1, ports not handed out before
// in this process, a data directory in the test's temporary directory. Stopped with SIGKILL
// (the harshest way to lose it) and started again on the same ports and data.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

// With TLS: the server's certificate and key, and the CA client certificates must chain to
// ("" = no client certificates asked for); `ca` verifies the server for etcdctl.
struct EtcdTls {
  std::string cert, key, ca, client_ca, client_cert, client_key;
};

class Etcd {
 public:
  explicit Etcd(const TempDir& dir, std::optional<EtcdTls> tls = std::nullopt)
      : dir_(dir.path()), client_(free_port()), peer_(free_port()), tls_(std::move(tls)) {}
  std::string url() const { return (tls_ ? "https" : "http") + std::string("://127.0.0.1:") + std::to_string(client_); }
  int port() const { return client_; }

  // Starts it and waits until it answers (false: it did not within 20 s).
  bool start() {
    std::string peer = "http://127.0.0.1:" + std::to_string(peer_);
    std::vector<std::string> argv = {ETCD_BIN, "--name", "t", "--data-dir", dir_ + "/etcd-data", "--listen-client-urls", url(),
                                     "--advertise-client-urls", url(), "--listen-peer-urls", peer,
                                     "--initial-advertise-peer-urls", peer, "--initial-cluster", "t=" + peer,
                                     "--max-request-bytes", "33554432", "--log-level", "warn"};
    if (tls_) {
      argv.insert(argv.end(), {"--cert-file", tls_->cert, "--key-file", tls_->key});
      if (!tls_->client_ca.empty()) argv.insert(argv.end(), {"--client-cert-auth", "--trusted-ca-file", tls_->client_ca});
    }
    proc_ = std::make_unique<Background>(argv, dir_);
    return eventually([&] { return ctl({"endpoint", "health", "--command-timeout=1s"}).status == 0; },
                      std::chrono::seconds(20));
  }
  void kill() { proc_.reset(); }

  // etcdctl against it; `in` is the value of a `put` given without one.
  RunResult ctl(std::vector<std::string> args, const std::string& in = "") const {
    if (tls_) {
      args.insert(args.begin(), {"--cacert", tls_->ca});
      if (!tls_->client_cert.empty()) args.insert(args.begin(), {"--cert", tls_->client_cert, "--key", tls_->client_key});
    }
    args.insert(args.begin(), {ETCDCTL_BIN, "--endpoints", url()});
    return run(args, in);
  }
  // Writes `value` under `key` as anyone with write access to etcd could (no ptrust check).
  bool put(const std::string& key, const std::string& value) const { return ctl({"put", key}, value).status == 0; }

 private:
  std::string dir_;
  int client_, peer_;
  std::optional<EtcdTls> tls_;
  std::unique_ptr<Background> proc_;
};

}  // namespace ptrust::testing
