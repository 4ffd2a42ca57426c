// Four processes installing and uninstalling at once lose no update.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <chrono>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>

#include <boost/json.hpp>

#include "tests/cli/mixed_ops.h"
#include "tests/support/run.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {
namespace {

TEST(Concurrency, FourWritersLoseNoUpdate) {
  TempDir root, in;
  constexpr int kWriters = 4, kEach = 12;
  std::vector<std::vector<std::string>> files(kWriters);
  for (int w = 0; w < kWriters; ++w)
    for (int i = 0; i < kEach; ++i) {
      Issued ca = self_signed({.cn = "W" + std::to_string(w) + " CA " + std::to_string(i), .ca = true});
      files[w].push_back(in / ("w" + std::to_string(w) + "-" + std::to_string(i) + ".pem"));
      write_file(files[w].back(), ca.pem());
    }
  std::vector<std::set<std::string>> kept(kWriters), removed(kWriters);
  std::vector<std::string> errors(kWriters);
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      for (int i = 0; i < kEach; ++i) {
        // Every writer touches the same bundles: licensing and the shared general store.
        RunResult r = ptrust(root.path(), {"install", files[w][i], "--ca", "--purpose", i % 2 ? "licensing" : "licensing,ldaps"});
        if (r.status != 0) { errors[w] += r.err; continue; }
        std::string uuid = r.out.substr(0, 36);
        if (i % 3 == 0) {
          RunResult u = ptrust(root.path(), {"uninstall", uuid});
          if (u.status != 0) errors[w] += u.err;
          removed[w].insert(uuid);
        } else {
          kept[w].insert(uuid);
        }
      }
    });
  for (auto& t : threads) t.join();
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(errors[w], "") << "writer " << w;

  RunResult l = ptrust(root.path(), {"list", "--json"});
  ASSERT_EQ(l.status, 0);
  std::set<std::string> listed;
  boost::json::value doc = boost::json::parse(l.out);
  for (const auto& c : doc.at("certificates").as_array())
    listed.insert(std::string(c.at("uuid").as_string()));
  std::set<std::string> want;
  for (int w = 0; w < kWriters; ++w) want.insert(kept[w].begin(), kept[w].end());
  EXPECT_EQ(listed, want);
  EXPECT_EQ(want.size(), static_cast<size_t>(kWriters * (kEach - 4)));
  RunResult check = ptrust(root.path(), {"sync", "--check"});
  EXPECT_EQ(check.status, 0) << check.out << "bundles must match the database after concurrent writers";
  RunResult res = ptrust(root.path(), {"resolve", "licensing", "--json"});
  EXPECT_EQ(boost::json::parse(res.out).at("certificates").as_int64(), static_cast<int64_t>(want.size()));
}

// Four writers at once, each 250 operations mixing every writer but eject (which empties every
// writer's stores): nothing acknowledged is lost or undone, and the stores match the database
// without a sync.
TEST(Concurrency, FourMixedWritersTimes250LoseNothing) {
  using namespace mixed;
  TempDir root(memory_tmp()), in, scratch;  // the lock is tested here, not fsync
  constexpr int kWriters = 4, kEach = 250;
  std::vector<std::unique_ptr<MixedInputs>> inputs;
  for (int w = 0; w < kWriters; ++w) inputs.push_back(std::make_unique<MixedInputs>(in, 6, "w" + std::to_string(w)));
  std::vector<Ledgers> ledgers(kWriters);
  std::vector<std::map<std::string, int>> by_kind(kWriters);
  std::vector<std::string> errors(kWriters);
  std::vector<int> refused(kWriters);
  auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w)
    threads.emplace_back([&, w] {
      std::mt19937 rng(1000 + w);
      std::map<std::string, long> crl_numbers;
      for (int i = 0; i < kEach; ++i) {
        MixedOp op = pick_op(rng, *inputs[w], scratch, ledgers[w], w, crl_numbers, false);
        RunResult r = ptrust(root.path(), op.args);
        ++by_kind[w][op.kind];
        if (r.status == 0) {
          op.acknowledged(r.out);
        } else if (r.err.rfind("ptrust: TRUSTED_CERTIFICATE_ALREADY_EXISTS: ", 0) == 0) {
          ++refused[w];  // the writer installed that file already (its own choice, not a race)
        } else {
          errors[w] += op.kind + ": " + r.err;
        }
      }
    });
  for (auto& t : threads) t.join();
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  for (int w = 0; w < kWriters; ++w) EXPECT_EQ(errors[w], "") << "writer " << w;

  RunResult check = ptrust(root.path(), {"sync", "--check"});
  EXPECT_EQ(check.out, "in sync\n") << check.err << "stores must match the database after concurrent writers";
  Holdings h = holdings(root.path());
  int lost = 0, present = 0;
  std::map<std::string, int> kinds;
  for (int w = 0; w < kWriters; ++w) {
    for (auto* led : {&ledgers[w].trusted, &ledgers[w].crls, &ledgers[w].legacy, &ledgers[w].pool})
      for (const auto& [k, v] : led->state) present += v == Known::kPresent;
    lost += ledgers[w].trusted.settle(h.trusted, "trusted certificate") + ledgers[w].crls.settle(h.crls, "CRL") +
            ledgers[w].legacy.settle(h.legacy, "legacy CA") + ledgers[w].pool.settle(h.pool, "pool certificate");
    for (const auto& [k, n] : by_kind[w]) kinds[k] += n;
  }
  EXPECT_EQ(lost, 0);
  for (const char* k : {"install", "uninstall", "crl install", "crl uninstall", "legacy install", "legacy uninstall",
                        "pool add", "pool remove", "import"})
    EXPECT_GT(kinds[k], 0) << k;
  std::cout << "concurrency: " << kWriters << " writers x " << kEach << " operations in " << seconds << " s;";
  for (const auto& [k, n] : kinds) std::cout << " " << k << " " << n << ";";
  std::cout << " " << present << " objects acknowledged present at the end, " << lost << " lost or undone\n";
}

// The writer lock is a 0600 file: another user cannot open it, so cannot hold every writer
// hostage. (Locking the state directory itself, which any user can open, would allow that.)
TEST(Concurrency, AnotherUserCannotTakeTheWriterLock) {
  TempDir root, in;
  ASSERT_EQ(::chmod(root.path().c_str(), 0755), 0);
  Issued ca = self_signed({.cn = "Lock CA", .ca = true});
  write_file(in / "ca.pem", ca.pem());
  ASSERT_EQ(ptrust(root.path(), {"install", in / "ca.pem", "--ca"}).status, 0);
  struct stat st;
  ASSERT_EQ(::stat((root / "var/lib/ptrust/lock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  RunResult other = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "flock", "-n", "-x",
                         root / "var/lib/ptrust/lock", "true"});
  EXPECT_NE(other.status, 0) << "user nobody could lock the writer lock";
  RunResult control = run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "flock", "-n", "-x",
                           root / "var/lib/ptrust", "true"});
  EXPECT_EQ(control.status, 0) << "control: the same user can lock the (world-readable) state directory";
}

}  // namespace
}  // namespace ptrust::testing
