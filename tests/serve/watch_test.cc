// inotify watches (debounced, following replaced directories) and the absolute-time timer.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "tests/serve/util.h"

namespace ptrust::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct WatchTest : ::testing::Test {
  void SetUp() override {
    fs::create_directories(a);
    server.start();
  }
  void watch(std::vector<std::string> dirs) {
    server.on_loop([&] { server.loop.watch(dirs, [this] { ++calls; }); });
  }
  // Waits for the count to settle (no call for 1.2 s: six times the 200 ms quiet time, so a
  // loaded machine (CI runs builds beside the tests) does not split one burst in two).
  int settled() {
    int last = -1;
    while (last != calls) {
      last = calls;
      std::this_thread::sleep_for(1200ms);
    }
    return last;
  }
  TempDir dir;
  std::string a = dir / "a";
  std::atomic<int> calls{0};
  LoopThread server;
};

TEST_F(WatchTest, OneCallbackPerBurst) {
  watch({a});
  EXPECT_EQ(settled(), 0);
  for (int i = 0; i < 20; ++i) write_file(a + "/f" + std::to_string(i), "x");
  EXPECT_EQ(settled(), 1);
  fs::remove(a + "/f3");
  fs::rename(a + "/f4", a + "/g4");
  EXPECT_EQ(settled(), 2);
  chmod((a + "/f5").c_str(), 0600);
  EXPECT_EQ(settled(), 3);
}

TEST_F(WatchTest, ContinuousChangesStillCallBackAtLeastEverySecond) {
  watch({a});
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; std::chrono::steady_clock::now() - t0 < 2500ms; ++i) {
    write_file(a + "/f", std::to_string(i));
    std::this_thread::sleep_for(50ms);  // never 200 ms of quiet
  }
  int during = calls;
  EXPECT_GE(during, 2) << "the 1 s cap on the delay did not hold";
  EXPECT_LE(during, 4);
}

TEST_F(WatchTest, ReplacedOrRecreatedDirectoryIsWatchedAgain) {
  watch({a});
  // Replaced by rename (how stores are swapped): the new directory is watched.
  fs::create_directories(dir / "a.new");
  fs::rename(a, dir / "a.old");
  fs::rename(dir / "a.new", a);
  int n = settled();
  EXPECT_GE(n, 1);
  write_file(a + "/x", "1");
  EXPECT_EQ(settled(), n + 1) << "a change in the new directory went unseen";
  write_file(dir / "a.old/x", "1");
  EXPECT_EQ(settled(), n + 1) << "the directory moved away is still watched";
  // Deleted, then created again.
  fs::remove_all(a);
  n = settled();
  EXPECT_GE(n, 1);
  fs::create_directories(a);
  EXPECT_GT(settled(), n);
  n = calls;
  write_file(a + "/y", "1");
  EXPECT_EQ(settled(), n + 1);
}

TEST_F(WatchTest, MissingDirectoryIsWaitedFor) {
  std::string deep = dir / "b/c/d";
  watch({deep});
  write_file(dir / "unrelated", "x");  // in an ancestor, but not on the way to b/c/d
  EXPECT_EQ(settled(), 0);
  fs::create_directories(deep);
  int n = settled();
  EXPECT_GE(n, 1);
  write_file(deep + "/f", "x");
  EXPECT_EQ(settled(), n + 1);
}

TEST_F(WatchTest, ResettingTheSetDropsTheOldDirectories) {
  std::string b = dir / "b";
  fs::create_directories(b);
  watch({a});
  watch({b});
  write_file(a + "/f", "x");
  EXPECT_EQ(settled(), 0);
  write_file(b + "/f", "x");
  EXPECT_EQ(settled(), 1);
}

TEST_F(WatchTest, ConfigFileEditedByRenameIsSeen) {
  std::string etc = dir / "etc";
  fs::create_directories(etc);
  write_file(etc + "/ptrust.yaml", "a: 1\n");
  watch({etc});
  write_file(etc + "/ptrust.yaml.tmp", "a: 2\n");
  fs::rename(etc + "/ptrust.yaml.tmp", etc + "/ptrust.yaml");
  EXPECT_EQ(settled(), 1);
}

TEST(Timer, FiresOnceAtTheTimeAndCanBeResetOrCancelled) {
  LoopThread server;
  server.start();
  std::atomic<int> fired{0};
  std::atomic<long> late_ms{-1};
  auto at = std::chrono::system_clock::now() + 300ms;
  server.on_loop([&] {
    server.loop.at(at, [&] {
      ++fired;
      late_ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now() - at).count();
    });
  });
  EXPECT_TRUE(eventually([&] { return fired == 1; }));
  EXPECT_GE(late_ms, 0) << "fired early";
  EXPECT_LT(late_ms, 200);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(fired, 1);

  // Re-set: the later time replaces the earlier one.
  server.on_loop([&] { server.loop.at(std::chrono::system_clock::now() + 100ms, [&] { fired += 10; }); });
  server.on_loop([&] { server.loop.at(std::chrono::system_clock::now() + 400ms, [&] { fired += 100; }); });
  std::this_thread::sleep_for(250ms);
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(eventually([&] { return fired == 101; }));

  // Cancelled: never fires. In the past: fires at once. Re-armed from its own callback.
  server.on_loop([&] { server.loop.at(std::chrono::system_clock::now() + 100ms, [&] { fired += 1000; }); });
  server.on_loop([&] { server.loop.cancel_timer(); });
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(fired, 101);
  server.on_loop([&] {
    server.loop.at(std::chrono::system_clock::time_point{}, [&] {
      fired += 1;
      server.loop.at(std::chrono::system_clock::now() + 50ms, [&] { fired += 1; });
    });
  });
  EXPECT_TRUE(eventually([&] { return fired == 103; }));
}

}  // namespace
}  // namespace ptrust::testing
