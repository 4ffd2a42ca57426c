// The console reporter of every ptrust benchmark that prints same-run ratios at the end: it
// keeps each run's mean real time per iteration, by benchmark name.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace ptrust::bench {

class RatioReporter : public benchmark::ConsoleReporter {
 public:
  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const auto& r : runs)
      if (!r.error_occurred && r.iterations > 0)
      {
        times[r.benchmark_name()] = r.real_accumulated_time / static_cast<double>(r.iterations);
        for (const auto& [k, c] : r.counters) counters[r.benchmark_name()][k] = c.value;
      }
  }
  std::map<std::string, double> times;  // seconds per iteration
  std::map<std::string, std::map<std::string, double>> counters;  // user counters, by benchmark name
};

}  // namespace ptrust::bench
