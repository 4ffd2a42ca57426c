// Runs the real `ptrust` binary (or any program) and captures its exit status and output.
#pragma once

#include <string>
#include <vector>

namespace ptrust::testing {

struct RunResult {
  int status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
};

RunResult run(const std::vector<std::string>& argv, const std::string& stdin_data = "");

// `ptrust --root ROOT args...`
RunResult ptrust(const std::string& root, const std::vector<std::string>& args);

}  // namespace ptrust::testing

namespace ptrust::testing {

// Starts argv, sends SIGKILL after `kill_after_us` (if it is still running), and
// returns how it ended: status 137 when the kill landed, the exit code otherwise.
RunResult run_and_kill(const std::vector<std::string>& argv, long kill_after_us);

}  // namespace ptrust::testing

#include <chrono>

namespace ptrust::testing {

// A process running in the background with its output in files, for tests that act while
// it runs (waiting for what it prints, not for a guessed amount of time). Killed on
// destruction if it is still running.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const std::string& dir);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  // Waits until stdout contains `text`; false when the process exited first or time ran out.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds limit = std::chrono::seconds(30));
  RunResult wait();  // waits for the exit (at most 60 s, then kills it)

 private:
  int pid_ = -1;
  bool reaped_ = false;
  int status_ = -1;
  std::string out_path_, err_path_;
};

}  // namespace ptrust::testing

#include <functional>
#include <thread>

namespace ptrust::testing {

// Changes made without ptrust (hand edits, a config edit) reach running consumers within
// TrustSource::kRecheck (1 s): polls `done` until it holds, at most `limit`.
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(5)) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

}  // namespace ptrust::testing
