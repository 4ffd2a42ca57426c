// Real peers for tests: `openssl s_server` on 127.0.0.1, and free loopback ports.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

namespace ptrust::testing {

// A TCP port on 127.0.0.1 that nothing listens on right now (for programs that cannot be
// told to pick their own, such as stunnel's `accept`).
int free_port();

// `openssl s_server -accept 127.0.0.1:0 ARGS...`: the kernel picks the port (no race), the
// constructor waits (at most 10 s) until s_server reports it, the destructor kills it.
// Output goes to `log` (a file, not a pipe: s_server keeps writing after startup).
class OpensslServer {
 public:
  OpensslServer(const std::vector<std::string>& args, const std::string& log);
  ~OpensslServer();
  OpensslServer(const OpensslServer&) = delete;
  OpensslServer& operator=(const OpensslServer&) = delete;
  int port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace ptrust::testing
