#include "tests/support/run.h"

#include <fcntl.h>
#include <signal.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <stdexcept>

extern char** environ;

namespace ptrust::testing {

namespace {

// posix_spawnp of argv (searched in PATH) with the given file actions and this environment.
int spawn(pid_t* pid, const std::vector<std::string>& argv, const posix_spawn_file_actions_t* fa) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  return posix_spawnp(pid, args[0], fa, nullptr, args.data(), environ);
}

}  // namespace

RunResult run(const std::vector<std::string>& argv, const std::string& stdin_data) {
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC)) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  pid_t pid;
  int rc = spawn(&pid, argv, &fa);
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) throw std::runtime_error("spawn " + argv[0]);
  if (!stdin_data.empty()) (void)!::write(in[1], stdin_data.data(), stdin_data.size());
  ::close(in[1]);
  RunResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open = 2;
  char buf[4096];
  while (open > 0) {
    if (::poll(fds, 2, -1) < 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
      }
    }
  }
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

RunResult ptrust(const std::string& root, const std::vector<std::string>& args) {
  std::vector<std::string> argv{PTRUST_BIN, "--root", root};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

}  // namespace ptrust::testing

namespace ptrust::testing {

RunResult run_and_kill(const std::vector<std::string>& argv, long kill_after_us) {
  int out[2];
  if (pipe2(out, O_CLOEXEC)) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = spawn(&pid, argv, &fa);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  if (rc != 0) throw std::runtime_error("spawn " + argv[0]);
  ::usleep(static_cast<useconds_t>(kill_after_us));
  ::kill(pid, SIGKILL);  // a no-op on a child that already exited (still a zombie)
  int st = 0;
  ::waitpid(pid, &st, 0);
  RunResult r;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(out[0], buf, sizeof buf)) > 0) r.out.append(buf, static_cast<size_t>(n));
  ::close(out[0]);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

}  // namespace ptrust::testing

#include <thread>

#include "tests/support/testpki.h"

namespace ptrust::testing {

Background::Background(const std::vector<std::string>& argv, const std::string& dir) {
  static int seq = 0;
  std::string tag = dir + "/background-" + std::to_string(::getpid()) + "-" + std::to_string(++seq);
  out_path_ = tag + ".out";
  err_path_ = tag + ".err";
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  pid_t pid;
  int rc = spawn(&pid, argv, &fa);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("spawn " + argv[0]);
  pid_ = pid;
}

Background::~Background() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ::unlink(out_path_.c_str());
  ::unlink(err_path_.c_str());
}

bool Background::wait_for_output(const std::string& text, std::chrono::milliseconds limit) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (read_file(out_path_).find(text) != std::string::npos) return true;
    int st = 0;
    if (!reaped_ && ::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    }
    if (reaped_) return read_file(out_path_).find(text) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return false;
}

RunResult Background::wait() {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!reaped_) {
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      reaped_ = true;
      status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
      break;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      continue;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return {status_, read_file(out_path_), read_file(err_path_)};
}

}  // namespace ptrust::testing
