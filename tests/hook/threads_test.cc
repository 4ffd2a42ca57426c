// Many threads share one SSL_CTX while the store changes under them (run under TSan by
// scripts/tsan.sh). Each verdict must be one of the two the store allowed, the handshake
// must stop exactly on enforced failures, and each thread sees generations only move on.
#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

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

}  // namespace
}  // namespace ptrust::testing
