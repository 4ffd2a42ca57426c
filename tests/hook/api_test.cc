// The C API's safety block: NULL and invalid arguments on every entry point, ownership and
// stable names.
#include <gtest/gtest.h>

#include <cstring>

#include <set>
#include <string>

#include "ptrust/ptrust.hpp"
#include "tests/hook/hook_util.h"

namespace ptrust::testing {
namespace {

TEST(HookApi, NullArgumentsFailCleanly) {
  Root root;
  PTRUST_CTX* pt = root.open();
  ossl::SslCtxPtr ssl_ctx(SSL_CTX_new(TLS_client_method()));
  ossl::SslPtr ssl(SSL_new(ssl_ctx.get()));
  PTRUST_RESULT r{};
  uint64_t counts[PTRUST_REASON_COUNT];
  ossl::X509StackPtr chain(sk_X509_new_null());
  ossl::X509StackPtr empty(sk_X509_new_null());
  Chain c = make_chain(KeyKind::kP256, "N");
  X509_up_ref(c.leaf.cert.get());
  sk_X509_push(chain.get(), c.leaf.cert.get());

  EXPECT_EQ(0, ptrust_ctx_up_ref(nullptr));
  ptrust_ctx_free(nullptr);  // no crash
  EXPECT_EQ(0, ptrust_SSL_CTX_set1_purpose(nullptr, pt, "licensing"));
  EXPECT_EQ(0, ptrust_SSL_CTX_set1_purpose(ssl_ctx.get(), nullptr, "licensing"));
  EXPECT_EQ(0, ptrust_SSL_CTX_set1_purpose(ssl_ctx.get(), pt, nullptr));
  EXPECT_EQ(0, ptrust_SSL_get_result(nullptr, &r));
  EXPECT_EQ(0, ptrust_SSL_get_result(ssl.get(), nullptr));
  EXPECT_EQ(0, ptrust_verify_chain(nullptr, "licensing", chain.get(), nullptr, &r));
  EXPECT_EQ(0, ptrust_verify_chain(pt, nullptr, chain.get(), nullptr, &r));
  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", nullptr, nullptr, &r));
  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", chain.get(), nullptr, nullptr));
  EXPECT_EQ(0, ptrust_ctx_get_counters(nullptr, "licensing", counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(0, ptrust_ctx_get_counters(pt, nullptr, counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(0, ptrust_ctx_get_counters(pt, "licensing", nullptr, PTRUST_REASON_COUNT));
  // The positive counterparts succeed.
  EXPECT_EQ(1, ptrust_verify_chain(pt, "licensing", chain.get(), nullptr, &r));
  EXPECT_EQ(1, ptrust_ctx_get_counters(pt, "licensing", counts, PTRUST_REASON_COUNT));
  EXPECT_EQ(1, ptrust_ctx_up_ref(pt));
  ptrust_ctx_free(pt);
  ptrust_ctx_free(pt);
}

TEST(HookApi, InvalidArgumentsFailCleanly) {
  Root root;
  PTRUST_CTX* pt = root.open();
  ossl::SslCtxPtr ssl_ctx(SSL_CTX_new(TLS_client_method()));
  PTRUST_RESULT r{};
  uint64_t counts[PTRUST_REASON_COUNT];
  Chain c = make_chain(KeyKind::kP256, "I");
  ossl::X509StackPtr chain(sk_X509_new_null()), empty(sk_X509_new_null());
  X509_up_ref(c.leaf.cert.get());
  sk_X509_push(chain.get(), c.leaf.cert.get());

  for (const char* bad : {"", "undeclared", "Bad Name", "../etc"}) {
    EXPECT_EQ(0, ptrust_SSL_CTX_set1_purpose(ssl_ctx.get(), pt, bad)) << bad;
    EXPECT_EQ(0, ptrust_verify_chain(pt, bad, chain.get(), nullptr, &r)) << bad;
    EXPECT_EQ(0, ptrust_ctx_get_counters(pt, bad, counts, PTRUST_REASON_COUNT)) << bad;
  }
  // Nothing was installed by the refused attach: the SSL_CTX does not verify peers.
  EXPECT_EQ(SSL_VERIFY_NONE, SSL_CTX_get_verify_mode(ssl_ctx.get()));
  EXPECT_EQ(1, ptrust_SSL_CTX_set1_purpose(ssl_ctx.get(), pt, "licensing"));
  EXPECT_EQ(SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, SSL_CTX_get_verify_mode(ssl_ctx.get()));
  EXPECT_EQ(1, ptrust_SSL_CTX_set1_purpose(ssl_ctx.get(), pt, "general"));  // re-attach replaces

  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", empty.get(), nullptr, &r));
  PTRUST_VERIFY_OPTIONS bad_ip{};
  bad_ip.ip = "not-an-ip";
  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", chain.get(), &bad_ip, &r));
  // Values no enumerator has, stored as a C caller may (an int in the enum field): refused,
  // and read without undefined behaviour (UBSan, scripts/asan.sh, once failed here).
  PTRUST_VERIFY_OPTIONS bad_policy{};
  const int ninety_nine = 99, minus_one = -1;
  static_assert(sizeof bad_policy.crl_policy == sizeof(int) && sizeof bad_policy.crl_scope == sizeof(int));
  std::memcpy(&bad_policy.crl_policy, &ninety_nine, sizeof(int));
  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", chain.get(), &bad_policy, &r));
  PTRUST_VERIFY_OPTIONS bad_scope{};
  std::memcpy(&bad_scope.crl_scope, &minus_one, sizeof(int));
  EXPECT_EQ(0, ptrust_verify_chain(pt, "licensing", chain.get(), &bad_scope, &r));
  PTRUST_VERIFY_OPTIONS good{};
  good.ip = "127.0.0.1";
  EXPECT_EQ(1, ptrust_verify_chain(pt, "licensing", chain.get(), &good, &r));
  EXPECT_EQ(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, r.reason);

  // No handshake yet: no result.
  ossl::SslPtr ssl(SSL_new(ssl_ctx.get()));
  EXPECT_EQ(0, ptrust_SSL_get_result(ssl.get(), &r));
  ptrust_ctx_free(pt);
}

TEST(HookApi, ContextOpenReportsErrorCode) {
  char err[256] = "x";
  EXPECT_EQ(nullptr, ptrust_ctx_new("/nonexistent-root", "/nonexistent/config.yaml", err, sizeof err));
  EXPECT_NE(std::string::npos, std::string(err).find("CONFIG_INVALID")) << err;
  EXPECT_EQ(nullptr, ptrust_ctx_new("/nonexistent-root", "/nonexistent/config.yaml", nullptr, 0));
  char tiny[4];
  EXPECT_EQ(nullptr, ptrust_ctx_new("/nonexistent-root", "/nonexistent/config.yaml", tiny, sizeof tiny));
  EXPECT_EQ('\0', tiny[3]);
  Root root;
  auto t = Trust::open(root.path().c_str(), root.config().c_str());
  ASSERT_TRUE(t);
  std::string error;
  auto bad = Trust::open(root.path().c_str(), "/nonexistent/config.yaml", &error);
  EXPECT_FALSE(bad);
  EXPECT_NE(std::string::npos, error.find("CONFIG_INVALID")) << error;
}

TEST(HookApi, ReasonAndModeNamesAreStableAndUnique) {
  std::set<std::string> seen;
  for (int i = 0; i < PTRUST_REASON_COUNT; ++i) {
    std::string n = ptrust_reason_string(static_cast<ptrust_reason>(i));
    EXPECT_NE("UNKNOWN", n) << i;
    EXPECT_TRUE(seen.insert(n).second) << n;
  }
  EXPECT_STREQ("OK", ptrust_reason_string(PTRUST_REASON_OK));
  EXPECT_STREQ("PIN_MISMATCH", ptrust_reason_string(PTRUST_REASON_PIN_MISMATCH));
  EXPECT_STREQ("UNKNOWN", ptrust_reason_string(PTRUST_REASON_COUNT));
  // Values no enumerator has: passed from C by tests/hook/c_api_test.c (a C++ caller cannot
  // make one without undefined behaviour).
  EXPECT_STREQ("none", ptrust_mode_string(PTRUST_MODE_NONE));
  EXPECT_STREQ("pinned", ptrust_mode_string(PTRUST_MODE_PINNED));
  EXPECT_STREQ("ca", ptrust_mode_string(PTRUST_MODE_CA));
  EXPECT_STREQ("general", ptrust_mode_string(PTRUST_MODE_GENERAL));
}

// The SSL_CTX keeps the PTRUST_CTX alive: the caller may drop its reference after attaching.
TEST(HookApi, SslCtxHoldsItsOwnReference) {
  Root root;
  Chain c = make_chain(KeyKind::kP256, "R");
  root.install(c.root.cert.get(), CertType::kCa, {"licensing"});
  auto client = client_ctx(TLS1_3_VERSION);
  PTRUST_CTX* pt = root.open();
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), pt, "licensing"));
  ptrust_ctx_free(pt);
  auto server = server_ctx(c.leaf, {&c.inter}, TLS1_3_VERSION);
  Outcome o = handshake(client.get(), server.get(), "server.test");
  EXPECT_TRUE(o.ok);
  EXPECT_EQ(1, o.result.verified);
  auto v = verdict(nullptr);
  EXPECT_FALSE(v.has_value());
}

}  // namespace
}  // namespace ptrust::testing
