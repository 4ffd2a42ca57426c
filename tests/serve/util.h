// What the serve I/O tests share: the loop on a thread, and plain blocking clients.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/post.hpp>
#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "helper/serve_io.h"
#include "tests/serve/dummy.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"

extern char** environ;

namespace ptrust::testing {

using namespace std::chrono_literals;

// An EventLoop running on its own thread. Calls into the loop go through on_loop (the loop
// is single-threaded by design).
class LoopThread {
 public:
  explicit LoopThread(serve::Limits limits = {}) : loop(limits) {}
  ~LoopThread() { stop(); }
  void start() { thread_ = std::thread([this] { loop.run(); }); }
  void stop() {
    if (!thread_.joinable()) return;
    loop.stop();
    thread_.join();
  }
  template <class F>
  auto on_loop(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(loop.context(), [&task] { task(); });
    return fut.get();
  }
  size_t connections() { return on_loop([this] { return loop.connections(); }); }
  serve::EventLoop loop;

 private:
  std::thread thread_;
};

// A blocking client on a stream socket, with a deadline on every read.
class Client {
 public:
  explicit Client(int fd) : fd_(fd) {}
  static Client at_path(const std::string& path) {
    int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      throw std::runtime_error("connect " + path + ": " + std::strerror(errno));
    }
    return Client(fd);
  }
  // A TCP connection to 127.0.0.1:`port`; throws when nothing accepts it.
  static Client at_loopback(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ::close(fd);
      throw std::runtime_error("connect 127.0.0.1:" + std::to_string(port) + ": " + std::strerror(errno));
    }
    return Client(fd);
  }
  Client(Client&& o) noexcept : fd_(o.fd_), buf_(std::move(o.buf_)) { o.fd_ = -1; }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  int fd() const { return fd_; }
  // False when the peer closed or failed (MSG_NOSIGNAL: no SIGPIPE).
  bool send(std::string_view s) {
    while (!s.empty()) {
      ssize_t n = ::send(fd_, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      s.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // The next line (without '\n'); "<eof>" when closed first, "<timeout>" after `limit`.
  std::string line(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      if (auto nl = buf_.find('\n'); nl != std::string::npos) {
        std::string l = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        return l;
      }
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) == 0) return "<timeout>";
      char b[65536];
      ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) return "<eof>";
      buf_.append(b, static_cast<size_t>(n));
    }
  }
  // Everything until the peer closes (HTTP), or until `limit` passes.
  std::string all(std::chrono::milliseconds limit = std::chrono::seconds(10)) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    std::string s = std::move(buf_);
    buf_.clear();
    char b[65536];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      pollfd p{fd_, POLLIN, 0};
      if (left.count() <= 0 || ::poll(&p, 1, static_cast<int>(left.count())) <= 0) return s;
      ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n <= 0) return s;
      s.append(b, static_cast<size_t>(n));
    }
  }
  boost::json::object call(const std::string& request) {
    if (!send(request + "\n")) return {{"send", "failed"}};
    std::string l = line();
    boost::system::error_code ec;
    auto v = boost::json::parse(l, ec);
    if (ec || !v.is_object()) return {{"unparsed", l}};
    return v.as_object();
  }

 private:
  int fd_;
  std::string buf_;
};

// A process's resident memory (VmRSS, KiB; -1 when gone) and CPU time (utime + stime ticks).
inline long proc_rss_kib(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}
inline long proc_cpu_ticks(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), {});
  std::istringstream rest(s.substr(s.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; i <= 15 && rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) stime = std::stol(field);
  }
  return utime + stime;
}

// A daemon `command` started through `sh -c 'LISTEN_PID=$$ exec COMMAND'` (so LISTEN_PID is the
// daemon's own pid, as systemd sets it), with `fd3` as its descriptor 3 when given.
class DaemonProcess {
 public:
  DaemonProcess(const TempDir& dir, const std::string& command, std::vector<std::string> env = {}, int fd3 = -1)
      : out_(dir / ("demo" + std::to_string(++seq_) + ".out")), err_(out_ + ".err") {
    for (char** e = environ; *e; ++e) env.push_back(*e);
    std::vector<char*> envp;
    for (auto& e : env) envp.push_back(e.data());
    envp.push_back(nullptr);
    std::string script = "LISTEN_PID=$$ exec " + command;
    const char* argv[] = {"/bin/sh", "-c", script.c_str(), nullptr};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    int high = -1;
    if (fd3 >= 0) {
      high = fcntl(fd3, F_DUPFD_CLOEXEC, 50);  // dup2 from a number other than 3 clears CLOEXEC on 3
      posix_spawn_file_actions_adddup2(&fa, high, 3);
    }
    if (posix_spawn(&pid_, "/bin/sh", &fa, nullptr, const_cast<char**>(argv), envp.data()) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&fa);
    if (high >= 0) ::close(high);
  }
  ~DaemonProcess() {
    if (pid_ > 0 && !reaped_) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  pid_t pid() const { return pid_; }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }
  bool says(const std::string& text, std::chrono::milliseconds limit = 10s) {
    return eventually([&] { return out().find(text) != std::string::npos; }, limit);
  }
  int wait() {  // exit status; -signal when killed
    int st = 0;
    ::waitpid(pid_, &st, 0);
    reaped_ = true;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
  }
  long cpu_ticks() const { return proc_cpu_ticks(pid_); }  // user + system CPU ticks so far

 private:
  static inline int seq_ = 0;
  std::string out_, err_;
  pid_t pid_ = -1;
  bool reaped_ = false;
};

// GET /metrics from a daemon's loopback endpoint: the body of a 200, else "".
inline std::string scrape_metrics(int port) {
  try {
    Client c = Client::at_loopback(port);
    if (!c.send("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")) return {};
    std::string all = c.all(std::chrono::seconds(30));
    auto body = all.find("\r\n\r\n");
    return all.rfind("HTTP/1.1 200", 0) == 0 && body != std::string::npos ? all.substr(body + 4) : std::string{};
  } catch (const std::exception&) {
    return {};
  }
}

inline std::string error_code_of(const boost::json::object& reply) {
  auto* e = reply.if_contains("error");
  return e && e->is_object() && e->as_object().contains("code") ? std::string(e->at("code").as_string()) : "<no error>";
}

}  // namespace ptrust::testing
