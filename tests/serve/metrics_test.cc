// The metrics endpoint over real TCP on 127.0.0.1, and the loopback-only address rule.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include "tests/serve/util.h"

namespace ptrust::testing {
namespace {

Client tcp_client(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
  return Client(fd);
}

struct MetricsTest : ::testing::Test {
  void SetUp() override {
    serve::Endpoint any{boost::asio::ip::make_address("127.0.0.1"), 0};  // port 0: a free one
    port = server.loop.listen_metrics(any, [this] {
      if (fail) throw std::runtime_error("no metrics");
      return std::string("# TYPE ptrust_up gauge\nptrust_up 1\n");
    }).port;
    server.start();
  }
  std::string get(const std::string& request) {
    Client c = tcp_client(port);
    c.send(request);
    return c.all();
  }
  LoopThread server{serve::Limits{.max_connections = 4, .idle = std::chrono::milliseconds(500)}};
  uint16_t port = 0;
  std::atomic<bool> fail{false};
};

TEST_F(MetricsTest, GetMetrics) {
  ASSERT_NE(port, 0);
  std::string r = get("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(r.rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << r;
  EXPECT_NE(r.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << r;
  EXPECT_NE(r.find("\r\n\r\n# TYPE ptrust_up gauge\nptrust_up 1\n"), std::string::npos) << r;
  // HTTP/1.0 and HEAD work too (HEAD without the body).
  EXPECT_EQ(get("GET /metrics HTTP/1.0\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
  std::string head = get("HEAD /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(head.rfind("HTTP/1.1 200", 0), 0u) << head;
  EXPECT_EQ(head.find("ptrust_up 1"), std::string::npos) << head;
}

TEST_F(MetricsTest, OtherPathsMethodsAndGarbage) {
  EXPECT_EQ(get("GET / HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  EXPECT_EQ(get("GET /metrics/../etc/passwd HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 404", 0), 0u);
  std::string post = get("POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
  EXPECT_EQ(post.rfind("HTTP/1.1 405", 0), 0u) << post;
  EXPECT_NE(post.find("Allow: GET, HEAD"), std::string::npos) << post;
  EXPECT_EQ(get("DELETE /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_EQ(get("hello\r\n\r\n").rfind("HTTP/1.1 400", 0), 0u);
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").rfind("HTTP/1.1 400", 0), 0u);
  fail = true;
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 500", 0), 0u);
}

TEST_F(MetricsTest, OversizedRequestIsRefusedWithoutReadingItAll) {
  std::string big = "GET /metrics HTTP/1.1\r\nX-Pad: " + std::string(1 << 20, 'a') + "\r\n\r\n";
  Client c = tcp_client(port);
  std::thread writer([&] { c.send(big); });
  std::string r = c.all();
  writer.join();
  EXPECT_EQ(r.rfind("HTTP/1.1 400", 0), 0u) << r.substr(0, 200);
  EXPECT_EQ(get("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0), 0u);
}

TEST_F(MetricsTest, SlowClientsTimeOutAndTheCapHolds) {
  std::vector<Client> slow;
  for (int i = 0; i < 4; ++i) {
    slow.push_back(tcp_client(port));
    slow.back().send("GET /metr");  // and never the rest
  }
  std::string over = get("GET /metrics HTTP/1.1\r\n\r\n");
  EXPECT_EQ(over.rfind("HTTP/1.1 503", 0), 0u) << over;
  for (auto& s : slow) EXPECT_EQ(s.line(std::chrono::seconds(3)), "<eof>");  // idle limit: 500 ms
  EXPECT_TRUE(eventually([&] { return get("GET /metrics HTTP/1.1\r\n\r\n").rfind("HTTP/1.1 200", 0) == 0; }));
}

TEST(LoopbackEndpoint, AcceptsLoopbackOnly) {
  auto ep = serve::parse_loopback_endpoint("127.0.0.1:9100");
  EXPECT_EQ(ep.address.to_string(), "127.0.0.1");
  EXPECT_EQ(ep.port, 9100);
  EXPECT_EQ(serve::parse_loopback_endpoint("127.3.2.1:1").address.to_string(), "127.3.2.1");
  EXPECT_EQ(serve::parse_loopback_endpoint("[::1]:65535").address.to_string(), "::1");
  EXPECT_EQ(serve::parse_loopback_endpoint("localhost:9100").address.to_string(), "127.0.0.1");
  for (const char* bad : {"0.0.0.0:9000", "10.0.0.1:1", "[::]:1", "[::ffff:127.0.0.1]:1", "::1:80", "[::1]80",
                          "192.168.1.1:9100", "example.com:80", "localhost.:80", "127.1:80", "127.0.0.1",
                          "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:99999999999", "127.0.0.1:9x",
                          "127.0.0.1:+80", ":9100", "", "[::1", "[fe80::1%lo]:80", "127.0.0.1:80\n"}) {
    try {
      serve::parse_loopback_endpoint(bad);
      ADD_FAILURE() << "accepted '" << bad << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::kUsage) << bad;
      std::string msg = e.what();
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
      EXPECT_EQ(msg.rfind("--metrics '", 0), 0u) << msg;
    }
  }
  // The loop refuses a non-loopback endpoint even when handed one directly.
  serve::EventLoop loop;
  EXPECT_THROW(loop.listen_metrics({boost::asio::ip::make_address("0.0.0.0"), 9000}, [] { return std::string(); }),
               Error);
}

}  // namespace
}  // namespace ptrust::testing
