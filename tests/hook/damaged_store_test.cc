// A damaged store is never read as an empty one: when a purpose's bundle is deleted while its
// store directory still holds certificates (or the reverse), every consumer refuses the
// purpose with STORE_CORRUPT instead of falling back to a lower-precedence bundle
// (pinned -> ca, ca -> general). Consumers: the verify hook (handshake and offline), the
// provider, `ptrust resolve`, `ptrust stunnel render`.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "tests/hook/hook_util.h"
#include "tests/support/provider_ctx.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

const Chain& general_chain() {
  static Chain c = make_chain(KeyKind::kP256, "General");
  return c;
}
const Chain& own_chain() {
  static Chain c = make_chain(KeyKind::kP256, "Own");
  return c;
}

struct Case {
  const char* name;
  const char* purpose;
  std::function<void(Root&)> setup;
  const char* damage;  // relative to etc/trusted-certs; removed (a file or a whole directory)
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class DamagedStore : public ::testing::TestWithParam<Case> {};

TEST_P(DamagedStore, EveryConsumerRefusesInsteadOfFallingBack) {
  const Case& c = GetParam();
  Root root;
  TempDir dir;
  root.install(general_chain().root.cert.get(), CertType::kCa, {});  // what a fallback would trust
  c.setup(root);
  PTRUST_CTX* pt = root.open();
  auto client = client_ctx(TLS1_3_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), pt, c.purpose));
  auto general_server = server_ctx(general_chain().leaf, {&general_chain().inter}, TLS1_3_VERSION);
  ProviderCtx prov(PTRUST_PROVIDER_MODULE, root.path(), dir.path(), root.config());
  auto offline = [&] {
    ossl::X509StackPtr chain(sk_X509_new_null());
    for (const Issued* x : {&general_chain().leaf, &general_chain().inter}) {
      X509_up_ref(x->cert.get());
      sk_X509_push(chain.get(), x->cert.get());
    }
    PTRUST_RESULT r{};
    EXPECT_EQ(1, ptrust_verify_chain(pt, c.purpose, chain.get(), nullptr, &r));
    return std::string(ptrust_reason_string(r.reason));
  };
  auto cli = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", root.config()});
    return ptrust(root.path(), args);
  };
  ASSERT_NE(offline(), "OK") << "before the damage the general CAs are not this purpose's";
  ASSERT_EQ(prov.open(c.purpose).reason, "OK");

  std::filesystem::remove_all(root.path() + "/etc/trusted-certs/" + c.damage);  // by hand, as an accident would

  Outcome o = handshake(client.get(), general_server.get(), "server.test");
  EXPECT_FALSE(o.ok) << "the general CAs must not serve " << c.purpose;
  EXPECT_TRUE(eventually([&] { return offline() == "STORE_CORRUPT"; })) << offline();
  o = handshake(client.get(), general_server.get(), "server.test");
  EXPECT_FALSE(o.ok);
  EXPECT_STREQ(ptrust_reason_string(o.result.reason), "STORE_CORRUPT");
  EXPECT_TRUE(eventually([&] { return prov.open(c.purpose).reason == "STORE_CORRUPT"; }))
      << prov.open(c.purpose).reason;
  RunResult resolve = cli({"resolve", c.purpose});
  EXPECT_EQ(resolve.status, 1);
  EXPECT_EQ(resolve.err.rfind("ptrust: STORE_CORRUPT: ", 0), 0u) << resolve.err;
  RunResult render = cli({"stunnel", "render", "--purpose", c.purpose, "--name", "svc", "--accept", "127.0.0.1:1",
                          "--connect", "127.0.0.1:2", "--check-host", "server.test"});
  EXPECT_EQ(render.status, 1);
  EXPECT_EQ(render.err.rfind("ptrust: STORE_CORRUPT: ", 0), 0u) << render.err;
  RunResult check = cli({"sync", "--check"});
  EXPECT_EQ(check.status, 1) << "the damage is drift";

  // `sync` restores the store from the database; every consumer agrees again.
  ASSERT_EQ(cli({"sync"}).status, 0);
  EXPECT_TRUE(eventually([&] { return offline() != "STORE_CORRUPT"; }));
  EXPECT_NE(offline(), "OK") << "restored: still not trusting the general CAs";
  EXPECT_TRUE(eventually([&] { return prov.open(c.purpose).reason == "OK"; }));
  ptrust_ctx_free(pt);
}

INSTANTIATE_TEST_SUITE_P(
    Fallbacks, DamagedStore,
    ::testing::Values(
        Case{"CaBundleDeletedNotGeneral", "licensing",
             [](Root& r) { r.install(own_chain().root.cert.get(), CertType::kCa, {"licensing"}); },
             "ca-bundle-licensing.pem"},
        Case{"PinnedBundleDeletedNotCa", "licensing",
             [](Root& r) {
               r.install(general_chain().root.cert.get(), CertType::kCa, {"licensing"});  // ca mode would accept
               r.install(own_chain().leaf.cert.get(), CertType::kPinned, {"licensing"});
             },
             "pinned-bundle-licensing.pem"},
        Case{"CaDirectoryDeletedBundleKept", "licensing",
             [](Root& r) { r.install(own_chain().root.cert.get(), CertType::kCa, {"licensing"}); }, "ca-licensing"}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ptrust::testing
