#include "tests/support/sserver.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <mutex>
#include <set>
#include <cstdlib>
#include <stdexcept>
#include <thread>

#include "tests/support/testpki.h"

extern char** environ;

namespace ptrust::testing {

namespace {

int any_free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (s < 0 || ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    if (s >= 0) ::close(s);
    throw std::runtime_error("no free port");
  }
  ::close(s);
  return ntohs(a.sin_port);
}

}  // namespace

// The kernel may hand the same ephemeral port to two binds in a row once the first socket is
// closed: a test that asks for several ports before anything listens (stunnel services)
// would get one twice. Never return a port this process was given before.
int free_port() {
  static std::mutex mu;
  static std::set<int> given;
  std::lock_guard lk(mu);
  for (int i = 0; i < 1000; ++i)
    if (int p = any_free_port(); given.insert(p).second) return p;
  throw std::runtime_error("no free port not handed out before");
}

namespace {

// The port of "ACCEPT 127.0.0.1:PORT" (or "ACCEPT [::1]:PORT") once the line is complete.
int reported_port(const std::string& text) {
  size_t at = text.find("ACCEPT ");
  if (at == std::string::npos) return 0;
  size_t eol = text.find('\n', at);
  if (eol == std::string::npos) return 0;
  size_t colon = text.rfind(':', eol);
  return colon == std::string::npos || colon < at ? 0 : std::atoi(text.c_str() + colon + 1);
}

}  // namespace

OpensslServer::OpensslServer(const std::vector<std::string>& args, const std::string& log) {
  std::vector<std::string> argv{"openssl", "s_server", "-accept", "127.0.0.1:0"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::vector<char*> cargv;
  for (auto& a : argv) cargv.push_back(a.data());
  cargv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  int rc = posix_spawnp(&pid_, "openssl", &fa, nullptr, cargv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot start openssl s_server");
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    try {
      text = read_file(log);
    } catch (const std::exception&) {
      text.clear();
    }
    if ((port_ = reported_port(text)) > 0) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
  throw std::runtime_error("openssl s_server did not report its port: " + text);
}

OpensslServer::~OpensslServer() {
  ::kill(pid_, SIGKILL);
  ::waitpid(pid_, nullptr, 0);
}

}  // namespace ptrust::testing
