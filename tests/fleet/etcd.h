// A real etcd (Debian etcd-server 3.4) for one test: 127.0.0.1, ports not handed out before
// in this process, a data directory in the test's temporary directory. Stopped with SIGKILL
// (the harshest way to lose it) and started again on the same ports and data.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

class Etcd {
 public:
  explicit Etcd(const TempDir& dir) : dir_(dir.path()), client_(free_port()), peer_(free_port()) {}
  std::string url() const { return "http://127.0.0.1:" + std::to_string(client_); }
  int port() const { return client_; }

  // Starts it and waits until it answers (false: it did not within 20 s).
  bool start() {
    std::string peer = "http://127.0.0.1:" + std::to_string(peer_);
    proc_ = std::make_unique<Background>(
        std::vector<std::string>{ETCD_BIN, "--name", "t", "--data-dir", dir_ + "/etcd-data", "--listen-client-urls", url(),
                                 "--advertise-client-urls", url(), "--listen-peer-urls", peer,
                                 "--initial-advertise-peer-urls", peer, "--initial-cluster", "t=" + peer,
                                 "--max-request-bytes", "33554432", "--log-level", "warn"},
        dir_);
    return eventually([&] { return ctl({"endpoint", "health", "--command-timeout=1s"}).status == 0; },
                      std::chrono::seconds(20));
  }
  void kill() { proc_.reset(); }

  // etcdctl against it; `in` is the value of a `put` given without one.
  RunResult ctl(std::vector<std::string> args, const std::string& in = "") const {
    args.insert(args.begin(), {ETCDCTL_BIN, "--endpoints", url()});
    return run(args, in);
  }
  // Writes `value` under `key` as anyone with write access to etcd could (no ptrust check).
  bool put(const std::string& key, const std::string& value) const { return ctl({"put", key}, value).status == 0; }

 private:
  std::string dir_;
  int client_, peer_;
  std::unique_ptr<Background> proc_;
};

}  // namespace ptrust::testing
