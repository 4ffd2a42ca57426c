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
