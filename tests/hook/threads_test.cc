// Many threads share one SSL_CTX while the store changes under them (run under TSan by
// scripts/tsan.sh). Each verdict must be one of the two the store allowed, the handshake
// must stop exactly on enforced failures, and each thread sees generations only move on.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <thread>
#include <vector>

#include "core/trust.h"

#include "tests/hook/hook_util.h"

namespace ptrust::testing {
namespace {

TEST(HookThreads, SharedSslCtxWhileStoreChanges) {
  constexpr int kThreads = 4;
  constexpr int kMaxHandshakesPerThread = 5000;  // bound; workers stop when the writer is done
  constexpr int kChanges = 20;
  Root root;
  Chain c = make_chain(KeyKind::kP256, "T");
  std::string uuid = root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  PTRUST_CTX* pt = root.open();
  auto client = client_ctx(TLS1_3_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), pt, "licensing"));
  auto server = server_ctx(c.leaf, {&c.inter}, TLS1_3_VERSION);

  std::atomic<int> ok{0}, refused{0}, wrong{0}, backwards{0}, resumed{0};
  std::atomic<bool> stop{false};
  std::atomic<int> last_wrong{PTRUST_REASON_OK};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&] {
      uint64_t last_gen = 0;
      SessionPtr session;
      for (int i = 0; i < kMaxHandshakesPerThread && !stop.load(); ++i) {
        Outcome o = handshake(client.get(), server.get(), "server.test", "", session.get());
        if (!o.have_result) {
          ++wrong;
          continue;
        }
        bool allowed = o.result.reason == PTRUST_REASON_OK || o.result.reason == PTRUST_REASON_NO_TRUST_FOR_PURPOSE;
        if (!allowed || o.ok != (o.result.verified == 1)) {
          ++wrong;
          last_wrong = o.result.reason;
        }
        if (o.result.generation < last_gen) ++backwards;
        last_gen = o.result.generation;
        (o.ok ? ok : refused)++;
        if (o.reused) ++resumed;
        if (o.ok) session = std::move(o.session);
      }
    });
  }
  std::thread writer([&] {
    for (int i = 0; i < kChanges; ++i) {
      if (uuid.empty()) {
        uuid = root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
      } else {
        root.uninstall(uuid);
        uuid.clear();
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  });
  writer.join();
  stop = true;
  for (auto& w : workers) w.join();

  EXPECT_EQ(0, wrong.load()) << "last unexpected reason: "
                             << ptrust_reason_string(static_cast<ptrust_reason>(last_wrong.load()));
  EXPECT_EQ(0, backwards.load());
  EXPECT_GT(ok.load(), 0) << "the workers must have run while the CA was trusted";
  EXPECT_GT(refused.load(), 0) << "... and while it was not";
  uint64_t counts[PTRUST_REASON_COUNT] = {};
  ASSERT_EQ(1, ptrust_ctx_get_counters(pt, "licensing", counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(static_cast<uint64_t>(ok + refused - resumed),
            counts[PTRUST_REASON_OK] + counts[PTRUST_REASON_NO_TRUST_FOR_PURPOSE]);

  // After the churn the final state decides, for every thread's next handshake.
  Outcome last = handshake(client.get(), server.get(), "server.test");
  EXPECT_EQ(!uuid.empty(), last.ok);
  if (uuid.empty()) root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  else root.uninstall(uuid);
  EXPECT_EQ(uuid.empty(), handshake(client.get(), server.get(), "server.test").ok);
  ptrust_ctx_free(pt);
}

// A view whose construction for `licensing` can be held: a rebuild that takes as long as the
// test wants.
std::atomic<bool> g_hold{false};
std::atomic<bool> g_holding{false};
struct HeldView {
  explicit HeldView(std::shared_ptr<const TrustState> s) : state_(std::move(s)) {
    if (state_->purpose != "licensing") return;
    while (g_hold.load()) {
      g_holding = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
  }
  const TrustState& state() const { return *state_; }
  std::shared_ptr<const TrustState> state_;
};

// While one caller rebuilds a purpose's view, the purpose's other callers get the previous
// view instead of waiting, and other purposes are not held up at all.
TEST(HookThreads, RebuildDoesNotHoldUpOtherCallers) {
  Root root;
  Chain c = make_chain(KeyKind::kP256, "H");
  root.install(c.root.cert.get(), CertType::kCa, {"licensing", "off-leaf"});
  TrustSource src(root.path(), root.config());
  TrustSlot<HeldView> licensing, other;
  auto first = licensing.get(src, "licensing", src.stamp());
  ASSERT_TRUE(first);
  ASSERT_TRUE(other.get(src, "off-leaf", src.stamp()));

  root.install(make_chain(KeyKind::kP256, "H2").root.cert.get(), CertType::kCa, {"licensing", "off-leaf"});
  std::this_thread::sleep_for(std::chrono::milliseconds(2));  // past the generation poll interval
  g_hold = true;
  std::shared_ptr<const HeldView> rebuilt;
  std::thread rebuilder([&] { rebuilt = licensing.get(src, "licensing", src.stamp()); });
  for (int i = 0; i < 10000 && !g_holding; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_TRUE(g_holding.load()) << "the rebuild started";

  auto same = std::async(std::launch::async, [&] { return licensing.get(src, "licensing", src.stamp()); });
  auto another = std::async(std::launch::async, [&] { return other.get(src, "off-leaf", src.stamp()); });
  const bool same_served = same.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  const bool another_served = another.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
  g_hold = false;  // lets everything finish before the checks
  rebuilder.join();
  EXPECT_TRUE(same_served) << "a caller of the purpose waited for its rebuild";
  EXPECT_TRUE(another_served) << "another purpose waited for this purpose's rebuild";
  EXPECT_EQ(first, same.get()) << "the previous view, meanwhile";
  auto another_view = another.get();
  ASSERT_TRUE(another_view);
  ASSERT_TRUE(rebuilt);
  EXPECT_GT(rebuilt->state().stamp.generation, first->state().stamp.generation);
  EXPECT_EQ(another_view->state().stamp.generation, rebuilt->state().stamp.generation);
  EXPECT_EQ(rebuilt, licensing.get(src, "licensing", src.stamp())) << "the new view, once published";
}

}  // namespace
}  // namespace ptrust::testing
