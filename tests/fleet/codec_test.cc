// The etcd codec on hostile answers: every malformed or out-of-bounds field is refused with
// FLEET_SOURCE_INVALID (an error reply: FLEET_SOURCE_UNAVAILABLE), and well-formed answers as
// etcd 3.4's gateway writes them parse. Plus URLs, names and base64.
#include <gtest/gtest.h>

#include "core/error.h"
#include "helper/fleet_etcd.h"
#include "helper/serve_io.h"

namespace ptrust::fleet {
namespace {

const std::string kKey = "/ptrust/fleets/f1/desired";
const std::string kKey64 = base64_encode(kKey);

std::string code_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return std::string(code_name(e.code()));
  }
  return "accepted";
}

std::string kv(const std::string& fields) { return R"({"key":")" + kKey64 + R"(",)" + fields + "}"; }

TEST(FleetCodec, RangeAnswersAsEtcdWritesThemParse) {
  std::string body = R"({"header":{"cluster_id":"1","revision":"9","raft_term":"2"},"kvs":[)" +
                     kv(R"("create_revision":"2","mod_revision":"7","version":"3","value":")" + base64_encode("doc") + "\"") +
                     R"(],"count":"1"})";
  RangeResult r = parse_range(body, kKey, false, 1);
  EXPECT_EQ(r.revision, 9);
  ASSERT_EQ(r.kvs.size(), 1u);
  EXPECT_EQ(r.kvs[0].value, "doc");
  EXPECT_EQ(r.kvs[0].mod_revision, 7);
  EXPECT_EQ(parse_range(R"({"header":{"revision":"1"}})", kKey, false, 1).kvs.size(), 0u);  // no key yet
  EXPECT_TRUE(parse_txn(R"({"header":{"revision":"4"},"succeeded":true})").succeeded);
  EXPECT_FALSE(parse_txn(R"({"header":{"revision":"4"}})").succeeded);  // proto3 leaves false out
}

TEST(FleetCodec, HostileRangeAnswersAreRefused) {
  std::string ok_kv = kv(R"("create_revision":"2","mod_revision":"7","value":"ZG9j")");
  struct Case {
    const char* name;
    std::string body;
    const char* code;
  } cases[] = {
      {"not JSON", "<html>", "FLEET_SOURCE_INVALID"},
      {"an array", "[]", "FLEET_SOURCE_INVALID"},
      {"no header", R"({"kvs":[]})", "FLEET_SOURCE_INVALID"},
      {"negative revision", R"({"header":{"revision":"-1"}})", "FLEET_SOURCE_INVALID"},
      {"revision not digits", R"({"header":{"revision":"1e3"}})", "FLEET_SOURCE_INVALID"},
      {"huge revision", R"({"header":{"revision":"99999999999999999999"}})", "FLEET_SOURCE_INVALID"},
      {"revision an object", R"({"header":{"revision":{}}})", "FLEET_SOURCE_INVALID"},
      {"kvs not an array", R"({"header":{"revision":"9"},"kvs":{}})", "FLEET_SOURCE_INVALID"},
      {"two kvs for one key", R"({"header":{"revision":"9"},"kvs":[)" + ok_kv + "," + ok_kv + "]}", "FLEET_SOURCE_INVALID"},
      {"another key", R"({"header":{"revision":"9"},"kvs":[{"key":")" + base64_encode("/etc/passwd") +
                          R"(","create_revision":"2","mod_revision":"7"}]})",
       "FLEET_SOURCE_INVALID"},
      {"value not base64", R"({"header":{"revision":"9"},"kvs":[)" + kv(R"("create_revision":"2","mod_revision":"7","value":"!!!!")") + "]}",
       "FLEET_SOURCE_INVALID"},
      {"bad padding", R"({"header":{"revision":"9"},"kvs":[)" + kv(R"("create_revision":"2","mod_revision":"7","value":"Z=g=")") + "]}",
       "FLEET_SOURCE_INVALID"},
      {"kv newer than the store", R"({"header":{"revision":"5"},"kvs":[)" + ok_kv + "]}", "FLEET_SOURCE_INVALID"},
      {"created after modified", R"({"header":{"revision":"9"},"kvs":[)" + kv(R"("create_revision":"8","mod_revision":"7")") + "]}",
       "FLEET_SOURCE_INVALID"},
      {"deeply nested", std::string(100, '[') + std::string(100, ']'), "FLEET_SOURCE_INVALID"},
      {"an error reply", R"({"error":"etcdserver: request timed out","code":14,"message":"etcdserver: request timed out"})",
       "FLEET_SOURCE_UNAVAILABLE"},
  };
  for (const auto& c : cases) EXPECT_EQ(code_of([&] { parse_range(c.body, kKey, false, 1); }), c.code) << c.name;
  std::string many = R"({"header":{"revision":"9"},"kvs":[)";
  for (int i = 0; i < 3; ++i) many += (i ? "," : "") + ok_kv;
  EXPECT_EQ(code_of([&] { parse_range(many + "]}", "/ptrust/", true, 2); }), "FLEET_SOURCE_INVALID") << "more keys than allowed";
}

TEST(FleetCodec, WatchMessages) {
  WatchMessage w = parse_watch(R"({"result":{"header":{"revision":"3"},"created":true}})", kKey);
  EXPECT_TRUE(w.created);
  w = parse_watch(R"({"result":{"header":{"revision":"9"},"events":[{"kv":)" +
                      kv(R"("create_revision":"2","mod_revision":"9","value":"eA==")") + R"(},{"type":"DELETE","kv":{"key":")" +
                      kKey64 + R"(","mod_revision":"10"}}]}})",
                  kKey);
  ASSERT_EQ(w.events.size(), 2u);
  EXPECT_EQ(w.events[0].kv.value, "x");
  EXPECT_TRUE(w.events[1].deleted);
  w = parse_watch(R"({"result":{"header":{"revision":"20"},"canceled":true,"compact_revision":"15"}})", kKey);
  EXPECT_TRUE(w.canceled);
  EXPECT_EQ(w.compact_revision, 15);
  EXPECT_EQ(code_of([&] { parse_watch(R"({"result":{"header":{"revision":"3"},"events":[{"type":"BOOM","kv":{}}]}})", kKey); }),
            "FLEET_SOURCE_INVALID");
  EXPECT_EQ(code_of([&] { parse_watch(R"({"result":{"header":{"revision":"3"},"events":[{}]}})", kKey); }), "FLEET_SOURCE_INVALID");
  EXPECT_EQ(code_of([&] { parse_watch(R"({"error":{"grpc_code":14,"message":"etcd stopped"}})", kKey); }),
            "FLEET_SOURCE_UNAVAILABLE");
  EXPECT_EQ(code_of([&] { parse_watch(R"({"result":{"header":{"revision":"3"},"cancel_reason":7}})", kKey); }),
            "FLEET_SOURCE_INVALID");
}

TEST(FleetCodec, HostReports) {
  HostStatus s{.host = "01234567-89ab-cdef-0123-456789abcdef", .applied_revision = 4, .applied_at = 1700000000,
               .seen_revision = 5, .generation = 8, .health = "rejected", .error = "IMPORT_INVALID: x", .updated_at = 1700000001};
  HostStatus back = parse_host_status(host_status_json(s));
  EXPECT_EQ(back.host, s.host);
  EXPECT_EQ(back.seen_revision, 5);
  EXPECT_EQ(back.error, s.error);
  for (std::string bad : {std::string("[]"), std::string(R"({"host":"../x"})"),
                          host_status_json(HostStatus{.host = s.host, .health = "great"}),
                          std::string(20000, ' ') + host_status_json(s)})
    EXPECT_EQ(code_of([&] { parse_host_status(bad); }), "FLEET_SOURCE_INVALID") << bad.substr(0, 60);
  HostStatus hostile = s;
  hostile.error = "line\nbreak\x1b[31m";
  EXPECT_EQ(parse_host_status(host_status_json(hostile)).error, "line\\x0abreak\\x1b[31m") << "escaped for terminals and logs";
}

TEST(FleetCodec, EndpointsNamesAndBase64) {
  EXPECT_EQ(parse_etcd_url("http://127.0.0.1:2379").port, 2379);
  EXPECT_EQ(parse_etcd_url("http://localhost:2379/").host, "127.0.0.1");
  EXPECT_EQ(parse_etcd_url("http://[::1]:2379").host, "::1");
  EXPECT_TRUE(parse_etcd_url("https://192.0.2.7:2379").tls);
  for (const char* bad : {"http://192.0.2.7:2379", "http://etcd.example:2379", "http://127.0.0.1", "http://127.0.0.1:0",
                          "http://127.0.0.1:2379/v3", "ftp://127.0.0.1:1", "http://0.0.0.0:2379", "127.0.0.1:2379"})
    EXPECT_EQ(code_of([&] { parse_etcd_url(bad); }), "USAGE") << bad;
  std::string fleet;
  EXPECT_EQ(parse_follow_spec("etcd://127.0.0.1:2379/pool-1", fleet).port, 2379);
  EXPECT_EQ(fleet, "pool-1");
  for (const char* bad : {"etcd://127.0.0.1:2379/", "etcd://127.0.0.1:2379/a/b", "etcd://127.0.0.1:2379/../x",
                          "etcd://127.0.0.1:2379/A", "etcd://10.0.0.1:2379/a"})
    EXPECT_EQ(code_of([&] { parse_follow_spec(bad, fleet); }), "USAGE") << bad;
  EXPECT_EQ(prefix_end("/a/"), "/a0");
  for (std::string s : std::vector<std::string>{"", "f", "fo", "foo", "foob", std::string("\0\xff\x80", 3)})
    EXPECT_EQ(base64_decode(base64_encode(s), 100), s);
  EXPECT_EQ(base64_encode("foob"), "Zm9vYg==");
  EXPECT_FALSE(base64_decode("Zm9vYg=", 100));
  EXPECT_FALSE(base64_decode("Zh==", 100)) << "non-zero padding bits: not the one encoding of its value";
  EXPECT_FALSE(base64_decode("Zm9v\nYg==", 100));
  EXPECT_FALSE(base64_decode("Zm9vYmFy", 5)) << "longer than allowed";
}

// One HOST:PORT splitter for etcd endpoints and --metrics (helper/serve_io.h).
TEST(FleetCodec, HostPortIsSplitOnceAndUnbracketedIpv6IsRefused) {
  std::string why;
  serve::HostPort hp = serve::split_host_port("127.0.0.1:2379", why);
  EXPECT_EQ(why, "");
  EXPECT_EQ(hp.host, "127.0.0.1");
  EXPECT_EQ(hp.port, 2379);
  hp = serve::split_host_port("[::1]:1", why);
  EXPECT_EQ(why, "");
  EXPECT_EQ(hp.host, "::1");
  EXPECT_EQ(hp.port, 1);
  hp = serve::split_host_port("localhost:65535", why);
  EXPECT_EQ(hp.host, "localhost");
  EXPECT_EQ(hp.port, 65535);
  for (const char* bad : {"::1:2379", "1:2:2379", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536",
                          "127.0.0.1:+80", "127.0.0.1:123456", "[::1]", "[::1]2379", "[::1:2379", ":2379x", ""}) {
    serve::split_host_port(bad, why);
    EXPECT_NE(why, "") << bad;
  }
  serve::split_host_port("::1:2379", why);
  EXPECT_EQ(why, "an IPv6 address goes in brackets, as [::1]:PORT");
  // Both users refuse it, with their own prefix.
  EXPECT_EQ(code_of([] { parse_etcd_url("http://::1:2379"); }), "USAGE");
  std::string fleet;
  EXPECT_EQ(code_of([&] { parse_follow_spec("etcd://::1:2379/f1", fleet); }), "USAGE");
  EXPECT_EQ(code_of([] { serve::parse_loopback_endpoint("::1:9100"); }), "USAGE");
  EXPECT_EQ(parse_etcd_url("http://[::1]:2379").port, 2379);
}

}  // namespace
}  // namespace ptrust::fleet
