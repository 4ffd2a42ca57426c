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
