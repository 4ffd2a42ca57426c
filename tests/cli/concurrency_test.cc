// Four processes installing and uninstalling at once lose no update.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <set>
#include <thread>

#include <boost/json.hpp>

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
