// The hook's snapshot (issuers served from a sorted subject index) and its verified-chain
// cache. Real in-process TLS handshakes on one long-lived client SSL_CTX; verification times
// are moved with the client's X509_VERIFY_PARAM (X509_V_FLAG_USE_CHECK_TIME) or `at`. Every
// "cached" test first checks that the cache answered (hits moved), then that a change the
// entry must not outlive gives the new verdict.
#include <gtest/gtest.h>

#include <chrono>
#include <ctime>
#include <thread>

#include "hook/verifier.h"
#include "tests/hook/hook_util.h"

namespace ptrust::testing {
namespace {

constexpr long kDay = 24 * 3600;

Chain chain_with(KeyKind kind, const std::string& tag, long root_days, long inter_days, long leaf_days) {
  CertSpec r;
  r.cn = tag + " Root";
  r.ca = true;
  r.not_after = root_days * kDay;
  Chain c{self_signed(r, kind), {}, {}};
  CertSpec i;
  i.cn = tag + " Intermediate";
  i.ca = true;
  i.not_after = inter_days * kDay;
  c.inter = issue(i, c.root, kind);
  CertSpec l;
  l.cn = "server.test";
  l.dns = {"server.test"};
  l.ips = {"127.0.0.1"};
  l.not_after = leaf_days * kDay;
  c.leaf = issue(l, c.inter, kind);
  return c;
}

const Chain& chain_a() {
  static Chain c = make_chain(KeyKind::kP256, "A");
  return c;
}
const Chain& chain_b() {
  static Chain c = make_chain(KeyKind::kP256, "B");
  return c;
}

class VerifyCache : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void TearDown() override {
    client_.reset();
    ptrust_ctx_free(pt_);
  }
  void open(const char* purpose = "licensing") {
    if (pt_) ptrust_ctx_free(pt_);
    pt_ = root_.open();
    purpose_ = purpose;
    client_ = client_ctx(TLS1_3_VERSION);
    ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, purpose));
  }
  // The client verifies as of `t` from now on (0: the clock).
  void at(std::time_t t) {
    X509_VERIFY_PARAM* p = SSL_CTX_get0_param(client_.get());
    if (t != 0) {
      X509_VERIFY_PARAM_set_time(p, t);
    } else {
      X509_VERIFY_PARAM_clear_flags(p, X509_V_FLAG_USE_CHECK_TIME);
    }
  }
  Outcome connect(const Chain& c, const std::string& host = "server.test") { return connect(c.leaf, c.inter, host); }
  Outcome connect(const Issued& leaf, const Issued& inter, const std::string& host = "server.test") {
    auto& server = servers_[&leaf];
    if (!server) server = server_ctx(leaf, {&inter}, TLS1_3_VERSION);
    return handshake(client_.get(), server.get(), host);
  }
  std::shared_ptr<const hook::HookView> view() {
    auto st = hook::purpose_state_of(pt_, purpose_.c_str());
    return st ? st->current() : nullptr;
  }
  std::uint64_t hits() {
    auto v = view();
    return v ? v->cache.hits() : 0;
  }
  // Two handshakes of the same peer: the second must be answered by the cache.
  void connect_twice_cached(const Chain& c) {
    Outcome first = connect(c);
    ASSERT_TRUE(first.ok) << ptrust_reason_string(first.result.reason);
    const std::uint64_t h = hits();
    Outcome second = connect(c);
    ASSERT_TRUE(second.ok) << ptrust_reason_string(second.result.reason);
    ASSERT_EQ(h + 1, hits()) << "the repeated peer was answered from the cache";
  }

  Root root_;
  PTRUST_CTX* pt_ = nullptr;
  std::string purpose_;
  ossl::SslCtxPtr client_;
  std::map<const Issued*, ossl::SslCtxPtr> servers_;
};

// Several CAs with one subject (a key rollover): the lookup must give OpenSSL every one of
// them, not the first it finds, among a thousand others.
TEST_F(VerifyCache, SubjectIndexServesEveryCaOfASubject) {
  Chain old_keys = make_chain(KeyKind::kP256, "Roll");
  Chain new_keys = make_chain(KeyKind::kP256, "Roll");  // same names, new keys
  ossl::PkeyPtr key(make_key(KeyKind::kP256));
  std::string bundle;
  for (int i = 0; i < 500; ++i) bundle += ca_with_key_pem("filler CA " + std::to_string(i), i + 1, key.get(), 30);
  bundle += old_keys.root.pem() + new_keys.root.pem();
  for (int i = 500; i < 1000; ++i) bundle += ca_with_key_pem("filler CA " + std::to_string(i), i + 1, key.get(), 30);
  root_.write_bundle("ca-bundle-licensing.pem", bundle);
  for (const Chain* c : {&old_keys, &new_keys, &old_keys}) {
    Outcome o = connect(*c);
    EXPECT_TRUE(o.ok) << ptrust_reason_string(o.result.reason);
    EXPECT_EQ(PTRUST_REASON_OK, o.result.reason);
    EXPECT_EQ(PTRUST_MODE_CA, o.result.mode);
  }
  Outcome other = connect(chain_b());
  EXPECT_FALSE(other.ok);
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, other.result.reason);
}

// A hit gives what the miss gave: the result, the X509 verify result, the verified chain.
TEST_F(VerifyCache, HitReturnsTheVerdictOfTheMiss) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  Outcome miss = connect(chain_a());
  const std::uint64_t h = hits();
  Outcome hit = connect(chain_a());
  ASSERT_EQ(h + 1, hits());
  ASSERT_TRUE(miss.ok && hit.ok);
  EXPECT_EQ(miss.result.reason, hit.result.reason);
  EXPECT_EQ(miss.result.x509_error, hit.result.x509_error);
  EXPECT_EQ(miss.result.error_depth, hit.result.error_depth);
  EXPECT_EQ(miss.result.mode, hit.result.mode);
  EXPECT_EQ(miss.result.generation, hit.result.generation);
  EXPECT_EQ(miss.result.verified, hit.result.verified);
  EXPECT_EQ(miss.result.enforced, hit.result.enforced);
  EXPECT_EQ(miss.verify_result, hit.verify_result);

  // The verified chain, through the decision itself.
  auto v = view();
  ASSERT_TRUE(v);
  ossl::X509StackPtr presented(sk_X509_new_null());
  sk_X509_push(presented.get(), chain_a().leaf.cert.get());
  sk_X509_push(presented.get(), chain_a().inter.cert.get());
  ossl::Ptr<X509_VERIFY_PARAM, X509_VERIFY_PARAM_free> param(X509_VERIFY_PARAM_new());
  X509_VERIFY_PARAM_set1_host(param.get(), "server.test", 0);
  hook::CacheScope scope{12345, 1};
  hook::Verdict a = hook::decide(*v, chain_a().leaf.cert.get(), presented.get(), param.get(), &scope);
  const std::uint64_t h2 = v->cache.hits();
  hook::Verdict b = hook::decide(*v, chain_a().leaf.cert.get(), presented.get(), param.get(), &scope);
  EXPECT_EQ(h2 + 1, v->cache.hits());
  EXPECT_EQ(a.reason, b.reason);
  EXPECT_EQ(a.x509_error, b.x509_error);
  EXPECT_EQ(a.depth, b.depth);
  ASSERT_TRUE(a.chain && b.chain);
  ASSERT_EQ(3, sk_X509_num(a.chain.get()));
  ASSERT_EQ(sk_X509_num(a.chain.get()), sk_X509_num(b.chain.get()));
  for (int i = 0; i < sk_X509_num(a.chain.get()); ++i)
    EXPECT_EQ(0, X509_cmp(sk_X509_value(a.chain.get(), i), sk_X509_value(b.chain.get(), i))) << i;
  while (sk_X509_num(presented.get()) > 0) (void)sk_X509_pop(presented.get());  // borrowed
}

TEST_F(VerifyCache, EveryHandshakeIsCounted) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  const std::uint64_t h = hits();
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(connect(chain_a()).ok);
  EXPECT_EQ(h + 3, hits());
  uint64_t counts[PTRUST_REASON_COUNT] = {};
  ASSERT_EQ(1, ptrust_ctx_get_counters(pt_, "licensing", counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(4u, counts[PTRUST_REASON_OK]) << "hits are verdicts too";
}

TEST_F(VerifyCache, EntryDoesNotOutliveCaRemoval) {
  std::string a = root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  root_.install(chain_b().root.cert.get(), CertType::kCa, {"licensing"});  // stays: mode stays ca
  connect_twice_cached(chain_a());
  root_.uninstall(a);
  Outcome after = connect(chain_a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, after.result.reason);
}

TEST_F(VerifyCache, EntryDoesNotOutliveANewCrlRevokingTheLeaf) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  connect_twice_cached(chain_a());
  root_.write_crl("A_Intermediate.crl", make_crl(chain_a().inter, {chain_a().leaf.cert.get()}).get());
  Outcome after = connect(chain_a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_REVOKED, after.result.reason);
}

TEST_F(VerifyCache, EntryDoesNotOutliveTheCrlsNextUpdate) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  root_.write_crl("A_Intermediate.crl", make_crl(chain_a().inter, {}, -3600, kDay).get());
  const std::time_t now = std::time(nullptr);
  at(now);
  connect_twice_cached(chain_a());
  at(now + 2 * kDay);  // every certificate still valid (30 days); the CRL expired
  Outcome after = connect(chain_a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_CRL_EXPIRED, after.result.reason);
}

TEST_F(VerifyCache, EntryDoesNotOutliveAFutureCrlBecomingValid) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  // Today's CRL revokes nothing; the next one, issued ahead (thisUpdate tomorrow), revokes
  // the leaf. OpenSSL uses the newest CRL that is valid at the verification time.
  root_.write_crl("A_Intermediate.crl", make_crl(chain_a().inter, {}, -3600, 7 * kDay).get());
  root_.write_crl("A_Intermediate-next.crl",
                  make_crl(chain_a().inter, {chain_a().leaf.cert.get()}, kDay, 7 * kDay).get());
  const std::time_t now = std::time(nullptr);
  at(now);
  connect_twice_cached(chain_a());
  at(now + 2 * kDay);
  Outcome after = connect(chain_a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_REVOKED, after.result.reason);
}

// Expiry of a presented intermediate and of the anchor (which the peer does not send).
TEST_F(VerifyCache, EntryDoesNotOutliveACertificateOfTheChain) {
  Chain short_inter = chain_with(KeyKind::kP256, "I", 60, 10, 30);
  Chain short_root = chain_with(KeyKind::kP256, "R", 5, 30, 30);
  root_.install(short_inter.root.cert.get(), CertType::kCa, {"licensing"});
  root_.install(short_root.root.cert.get(), CertType::kCa, {"licensing"});
  const std::time_t now = std::time(nullptr);
  at(now);
  connect_twice_cached(short_inter);
  connect_twice_cached(short_root);
  at(now + 6 * kDay);
  EXPECT_TRUE(connect(short_inter).ok) << "still valid on day 6";
  Outcome root_expired = connect(short_root);
  EXPECT_FALSE(root_expired.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_EXPIRED, root_expired.result.reason);
  EXPECT_EQ(2, root_expired.result.error_depth);
  at(now + 11 * kDay);
  Outcome inter_expired = connect(short_inter);
  EXPECT_FALSE(inter_expired.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_EXPIRED, inter_expired.result.reason);
  EXPECT_EQ(1, inter_expired.result.error_depth);
}

// An entry holds from the time it was verified on: an earlier verification time misses.
TEST_F(VerifyCache, EarlierVerificationTimeIsNotAnswered) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  const std::time_t now = std::time(nullptr);
  at(now);
  connect_twice_cached(chain_a());
  at(now - 2 * 3600);  // before the leaf's notBefore (one hour ago)
  Outcome before = connect(chain_a());
  EXPECT_FALSE(before.ok);
  EXPECT_EQ(PTRUST_REASON_CERT_NOT_YET_VALID, before.result.reason);
  // Offline `at` too.
  ossl::X509StackPtr sk(sk_X509_new_null());
  X509_up_ref(chain_a().leaf.cert.get());
  sk_X509_push(sk.get(), chain_a().leaf.cert.get());
  X509_up_ref(chain_a().inter.cert.get());
  sk_X509_push(sk.get(), chain_a().inter.cert.get());
  PTRUST_VERIFY_OPTIONS opts{};
  opts.host = "server.test";
  opts.at = now;
  PTRUST_RESULT r{};
  ASSERT_EQ(1, ptrust_verify_chain(pt_, "licensing", sk.get(), &opts, &r));
  ASSERT_EQ(1, ptrust_verify_chain(pt_, "licensing", sk.get(), &opts, &r));
  EXPECT_EQ(PTRUST_REASON_OK, r.reason);
  opts.at = now - 2 * 3600;
  ASSERT_EQ(1, ptrust_verify_chain(pt_, "licensing", sk.get(), &opts, &r));
  EXPECT_EQ(PTRUST_REASON_CERT_NOT_YET_VALID, r.reason);
  opts.at = now + 40 * kDay;
  ASSERT_EQ(1, ptrust_verify_chain(pt_, "licensing", sk.get(), &opts, &r));
  EXPECT_EQ(PTRUST_REASON_CERT_EXPIRED, r.reason);
}

TEST_F(VerifyCache, EntryDoesNotOutliveAPolicyChange) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  connect_twice_cached(chain_a());
  // No CRL exists: `require` fails the same chain.
  write_file(root_.config(), "purposes:\n  licensing: { crl-policy: require }\n");
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the configuration is looked at once a second
  Outcome after = connect(chain_a());
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_CRL_MISSING, after.result.reason);
}

TEST_F(VerifyCache, HostAndFailuresAreNotAnsweredFromTheCache) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  connect_twice_cached(chain_a());
  const std::uint64_t h = hits();
  for (int i = 0; i < 2; ++i) {
    Outcome other_name = connect(chain_a(), "other.test");
    EXPECT_FALSE(other_name.ok);
    EXPECT_EQ(PTRUST_REASON_HOSTNAME_MISMATCH, other_name.result.reason);
    Outcome untrusted = connect(chain_b());
    EXPECT_FALSE(untrusted.ok);
    EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, untrusted.result.reason);
  }
  EXPECT_EQ(h, hits()) << "another host is another key, and failures are never cached";
}

// Another SSL_CTX (its own purpose / trust settings, which OpenSSL 3.0 cannot report) does not
// get this one's entries.
TEST_F(VerifyCache, ScopedPerAttachedSslCtx) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  connect_twice_cached(chain_a());
  ossl::SslCtxPtr strict = client_ctx(TLS1_3_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(strict.get(), pt_, "licensing"));
  // This context demands a purpose the server's leaf does not have (its keyUsage has no cRLSign).
  ASSERT_EQ(1, SSL_CTX_set_purpose(strict.get(), X509_PURPOSE_CRL_SIGN));
  auto& server = servers_[&chain_a().leaf];
  const std::uint64_t h = hits();
  Outcome o = handshake(strict.get(), server.get(), "server.test");
  EXPECT_EQ(h, hits());
  EXPECT_FALSE(o.ok);
  EXPECT_EQ(PTRUST_REASON_CHAIN_INVALID, o.result.reason);
}

TEST_F(VerifyCache, MaximumAgeAndDisabled) {
  write_file(root_.config(), "purposes:\n  licensing: { verify-cache-seconds: 1 }\n  nocache: { verify-cache-seconds: 0 }\n");
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing", "nocache"});
  open("licensing");
  connect_twice_cached(chain_a());
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  const std::uint64_t h = hits();
  EXPECT_TRUE(connect(chain_a()).ok);
  EXPECT_EQ(h, hits()) << "older than verify-cache-seconds";
  EXPECT_TRUE(connect(chain_a()).ok);
  EXPECT_EQ(h + 1, hits()) << "re-cached";

  open("nocache");
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(connect(chain_a()).ok);
  EXPECT_EQ(0u, hits());
  EXPECT_EQ(0u, view()->cache.size());
}

TEST_F(VerifyCache, BoundedLeastRecentlyUsed) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"licensing"});
  auto v = view();
  ASSERT_TRUE(v);
  ossl::X509StackPtr presented(sk_X509_new_null());
  sk_X509_push(presented.get(), chain_a().leaf.cert.get());
  sk_X509_push(presented.get(), chain_a().inter.cert.get());
  const std::size_t n = hook::VerifyCache::kCapacity + 10;
  for (std::size_t i = 0; i < n; ++i) {
    hook::CacheScope scope{1000 + i, 1};  // a distinct key each
    EXPECT_EQ(PTRUST_REASON_OK, hook::decide(*v, chain_a().leaf.cert.get(), presented.get(), nullptr, &scope).reason);
  }
  EXPECT_EQ(hook::VerifyCache::kCapacity, v->cache.size());
  const std::uint64_t h = v->cache.hits();
  hook::CacheScope newest{1000 + n - 1, 1}, oldest{1000, 1};
  hook::decide(*v, chain_a().leaf.cert.get(), presented.get(), nullptr, &newest);
  EXPECT_EQ(h + 1, v->cache.hits());
  hook::decide(*v, chain_a().leaf.cert.get(), presented.get(), nullptr, &oldest);
  EXPECT_EQ(h + 1, v->cache.hits()) << "the least recently used entries were dropped";
  while (sk_X509_num(presented.get()) > 0) (void)sk_X509_pop(presented.get());  // borrowed
}

// Report-only purposes: the same verdicts, cached or not; failures still reported each time.
TEST_F(VerifyCache, ReportOnly) {
  root_.install(chain_a().root.cert.get(), CertType::kCa, {"report"});
  open("report");
  connect_twice_cached(chain_a());
  for (int i = 0; i < 2; ++i) {
    Outcome o = connect(chain_b());
    EXPECT_TRUE(o.ok) << "report-only lets the handshake on";
    EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, o.result.reason);
    EXPECT_EQ(0, o.result.enforced);
  }
}

}  // namespace
}  // namespace ptrust::testing
