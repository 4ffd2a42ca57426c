// Crash safety: SIGKILL the command at random instants during hundreds of installs and
// uninstalls. After every kill each bundle still parses; after `sync` the check is clean
// and every acknowledged install (UUID printed) is present, every acknowledged uninstall
// absent.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include <boost/json.hpp>

#include "core/cert.h"
#include "tests/cli/mixed_ops.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace fsys = std::filesystem;
using namespace ptrust::testing::mixed;

void expect_bundles_parse(const std::string& root) {
  fsys::path dir = fsys::path(root) / "etc/trusted-certs";
  if (!fsys::exists(dir)) return;
  for (const auto& e : fsys::directory_iterator(dir)) {
    std::string name = e.path().filename();
    if (name.find("-bundle-") == std::string::npos) continue;
    ASSERT_TRUE(e.is_regular_file()) << name;
    ASSERT_NO_THROW(parse_bundle(read_file(e.path()), name)) << name << " does not parse after a kill";
  }
}

std::set<std::string> listed_uuids(const std::string& root) {
  RunResult r = ptrust(root, {"list", "--json"});
  EXPECT_EQ(r.status, 0) << r.err;
  std::set<std::string> out;
  boost::json::value doc = boost::json::parse(r.out);
  for (const auto& c : doc.at("certificates").as_array())
    out.insert(std::string(c.at("uuid").as_string()));
  return out;
}

TEST(CrashSafety, KillAtRandomInstantsNeverLosesAcknowledgedState) {
  TempDir root, in;
  constexpr int kCerts = 24;
  std::vector<std::string> files;
  for (int i = 0; i < kCerts; ++i) {
    Issued ca = self_signed({.cn = "Crash CA " + std::to_string(i), .ca = true});
    files.push_back(in / ("ca" + std::to_string(i) + ".pem"));
    write_file(files.back(), ca.pem());
  }
  const std::vector<std::string> purposes{"licensing", "ldaps", "licensing,ldaps", ""};

  // Measure one install to spread kills over the whole run of a command.
  auto t0 = std::chrono::steady_clock::now();
  RunResult probe = ptrust(root.path(), {"install", files[0], "--ca"});
  ASSERT_EQ(probe.status, 0) << probe.err;
  long span_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(ptrust(root.path(), {"uninstall", probe.out.substr(0, 36)}).status, 0);

  std::mt19937 rng(12345);
  std::map<std::string, bool> acknowledged;  // uuid → present (true) / absent (false)
  std::set<std::string> uncertain;           // killed uninstalls
  int kills = 0, installs = 0, uninstalls = 0;
  for (int i = 0; i < 300; ++i) {
    // Kill within the time a command currently takes (tracked below: machine load varies).
    long delay = std::uniform_int_distribution<long>(0, span_us)(rng);
    std::vector<std::string> live;
    for (const auto& [u, present] : acknowledged)
      if (present && !uncertain.count(u)) live.push_back(u);
    bool do_uninstall = !live.empty() && rng() % 2 == 0;
    std::vector<std::string> argv{PTRUST_BIN, "--root", root.path()};
    std::string target;
    if (do_uninstall) {
      target = live[rng() % live.size()];
      argv.insert(argv.end(), {"uninstall", target});
      ++uninstalls;
    } else {
      argv.insert(argv.end(), {"install", files[rng() % kCerts], "--ca"});
      const std::string& p = purposes[rng() % purposes.size()];
      if (!p.empty()) argv.insert(argv.end(), {"--purpose", p});
      ++installs;
    }
    // Every third command runs to completion, so acknowledged state keeps accumulating
    // however slow the machine is; the others are killed at a random instant.
    RunResult r;
    if (i % 3 == 0) {
      auto start = std::chrono::steady_clock::now();
      r = run(argv);
      long took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
      span_us = (span_us + took) / 2;
    } else {
      r = run_and_kill(argv, delay);
    }
    if (r.status == 137) ++kills;
    if (do_uninstall) {
      if (r.status == 0) acknowledged[target] = false;
      else uncertain.insert(target);
    } else if (r.status == 0) {
      ASSERT_EQ(r.out.size(), 37u) << r.out;
      acknowledged[r.out.substr(0, 36)] = true;
    }
    expect_bundles_parse(root.path());
    if (HasFatalFailure()) return;
  }
  EXPECT_GT(kills, 50) << "the kills must actually interrupt commands";
  EXPECT_GT(installs, 50);
  EXPECT_GT(uninstalls, 20);

  RunResult s = ptrust(root.path(), {"sync"});
  ASSERT_EQ(s.status, 0) << s.err;
  RunResult check = ptrust(root.path(), {"sync", "--check"});
  EXPECT_EQ(check.status, 0) << check.out;
  EXPECT_EQ(check.out, "in sync\n");
  for (const auto& e : fsys::recursive_directory_iterator(root.path()))
    EXPECT_EQ(e.path().filename().string().rfind(".ptrust-tmp-", 0), std::string::npos) << e.path();

  std::set<std::string> listed = listed_uuids(root.path());
  for (const auto& [uuid, present] : acknowledged) {
    if (uncertain.count(uuid)) continue;
    EXPECT_EQ(listed.count(uuid), present ? 1u : 0u) << uuid;
  }
  std::cerr << "kills=" << kills << " installs=" << installs << " uninstalls=" << uninstalls
            << " span_us=" << span_us << "\n";
}

// ---------------------------------------------------------------------------------------------
// Every writer, killed at random instants: install, uninstall, crl install / uninstall, legacy
// install / uninstall, pool add / remove, import and eject, mixed over 500 operations. What
// the test knows of each object (a trusted certificate by UUID, a CRL, legacy CA or pool
// certificate by name) is present, absent or unknown: an acknowledged command (exit 0) makes
// its objects known, a killed one makes them unknown. After every kill every bundle parses;
// every 20 operations `sync` makes `sync --check` clean and every known object is as
// acknowledged (nothing acknowledged as removed comes back), after which the unknown ones are
// taken as found.

// Every PEM file the stores serve parses (trusted bundles and the legacy and pool bundles).
void expect_all_bundles_parse(const std::string& root) {
  expect_bundles_parse(root);
  for (const char* b : {"etc/stunnel/xapi-stunnel-ca-bundle.pem", "etc/stunnel/xapi-pool-ca-bundle.pem"}) {
    fsys::path p = fsys::path(root) / b;
    if (!fsys::exists(p)) continue;
    std::string s = read_file(p);
    if (s.empty()) continue;  // an empty store's bundle
    ASSERT_NO_THROW(parse_bundle(s, b)) << b << " does not parse after a kill";
  }
}

TEST(CrashSafety, KillEveryWriterAtRandomInstantsAcross500Operations) {
  TempDir root(memory_tmp()), in, scratch;  // SIGKILL loses no page cache: fsync is not what is tested
  MixedInputs inputs(in, 16, "w0");
  std::mt19937 rng(20261130);
  Ledgers l;
  std::map<std::string, long> crl_numbers;
  std::map<std::string, long> span_us;  // per kind: how long it takes when not killed
  std::map<std::string, int> ops_by_kind, kills_by_kind;
  int ops = 0, kills = 0, mid_write = 0, repairs = 0, checks = 0, violations = 0;
  constexpr int kOps = 500;
  for (int i = 0; i < kOps; ++i) {
    MixedOp op = pick_op(rng, inputs, scratch, l, 0, crl_numbers, true);
    std::vector<std::string> argv{PTRUST_BIN, "--root", root.path()};
    argv.insert(argv.end(), op.args.begin(), op.args.end());
    ++ops;
    ++ops_by_kind[op.kind];
    RunResult r;
    Tree before;
    // Every fourth command runs to completion (acknowledged state keeps accumulating, and its
    // time calibrates the kills); the others are killed at a random instant around that time.
    bool kill = i % 4 != 0 && span_us.count(op.kind);
    if (!kill) {
      auto start = std::chrono::steady_clock::now();
      r = run(argv);
      long took = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - start).count();
      span_us[op.kind] = span_us.count(op.kind) ? (span_us[op.kind] + took) / 2 : took;
    } else {
      before = snapshot(root.path());
      // Most of a command's time is starting and reading; the writes come last. Kills land
      // anywhere from a quarter of the way in to the usual end.
      long span = span_us[op.kind];
      r = run_and_kill(argv, std::uniform_int_distribution<long>(span / 4, span)(rng));
    }
    if (r.status == 137) {
      ++kills;
      ++kills_by_kind[op.kind];
      op.killed();
      expect_all_bundles_parse(root.path());
      if (diff(before, snapshot(root.path())) != "") ++mid_write;  // it had started writing
    } else if (r.status == 0) {
      op.acknowledged(r.out);
    } else {
      // A refusal (an install of a certificate already there, a pool host already added by a
      // killed add, ...) changes nothing: what it names keeps its state.
      EXPECT_EQ(r.status, 1) << op.kind << ": " << r.err;
    }
    if (HasFatalFailure()) return;
    if (i % 20 == 19 || i == kOps - 1) {
      RunResult check0 = ptrust(root.path(), {"sync", "--check"});
      RunResult s = ptrust(root.path(), {"sync"});
      ASSERT_EQ(s.status, 0) << s.err;
      if (check0.status != 0) ++repairs;
      RunResult check = ptrust(root.path(), {"sync", "--check"});
      ASSERT_EQ(check.out, "in sync\n") << "after op " << i << ": " << check.out << check.err;
      ++checks;
      Holdings h = holdings(root.path());
      violations += l.trusted.settle(h.trusted, "trusted certificate") + l.crls.settle(h.crls, "CRL") +
                    l.legacy.settle(h.legacy, "legacy CA") + l.pool.settle(h.pool, "pool certificate");
      if (HasFailure()) return;
    }
  }
  for (const auto& e : fsys::recursive_directory_iterator(root.path()))
    EXPECT_EQ(e.path().filename().string().rfind(".ptrust-tmp-", 0), std::string::npos) << e.path();
  EXPECT_GE(kills, 150);
  EXPECT_GE(mid_write, 25) << "the kills must land inside writes";
  for (const char* k : {"install", "uninstall", "crl install", "crl uninstall", "legacy install", "legacy uninstall",
                        "pool add", "pool remove", "import", "eject"})
    EXPECT_GT(kills_by_kind[k], 0) << k << " was never killed";
  EXPECT_EQ(violations, 0);
  std::cout << "crash: " << ops << " operations, " << kills << " kills, " << mid_write
            << " landed mid-write (the root had changed); " << checks << " sync + check rounds, " << repairs
            << " found drift and repaired it; " << violations
            << " acknowledged changes lost or undone\n  kills by writer:";
  for (const auto& [k, n] : kills_by_kind) std::cout << " " << k << " " << n << "/" << ops_by_kind[k] << ";";
  std::cout << "\n";
}

}  // namespace
}  // namespace ptrust::testing
