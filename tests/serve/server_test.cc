// The JSON-lines server on a real Unix socket, with the dummy handler, loop on a thread.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <fstream>

#include "tests/serve/util.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;

struct ServerTest : ::testing::Test {
  void serve(serve::Limits limits = {}) {
    server = std::make_unique<LoopThread>(limits);
    server->loop.listen_unix(sock, dummy_handler);
    server->start();
  }
  TempDir dir;
  std::string sock = dir / "run/ptrust.sock";  // run/ does not exist yet
  std::unique_ptr<LoopThread> server;
};

TEST_F(ServerTest, RepliesInOrderWithIds) {
  serve();
  Client c = Client::at_path(sock);
  // Pipelined in one write: the slow first request is still answered first.
  ASSERT_TRUE(c.send(R"({"method":"sleep","params":{"ms":100},"id":1})" "\n"
                     R"({"method":"echo","params":{"a":[1,2]},"id":"two"})" "\n"
                     R"({"method":"echo","id":{"x":3}})" "\n"));
  EXPECT_EQ(c.line(), R"({"id":1,"result":"slept"})");
  EXPECT_EQ(c.line(), R"({"id":"two","result":{"a":[1,2]}})");
  EXPECT_EQ(c.line(), R"({"id":{"x":3},"result":{}})");
}

TEST_F(ServerTest, HandlerWithoutPeerWorksToo) {
  server = std::make_unique<LoopThread>();
  server->loop.listen_unix(sock, [](std::string_view method, const json::object&) -> json::value { return json::string(method); });
  server->start();
  Client c = Client::at_path(sock);
  EXPECT_EQ(c.call(R"({"method":"status","id":1})").at("result"), json::value("status"));
}

TEST_F(ServerTest, PeerCredentialsReachTheHandler) {
  serve();
  Client c = Client::at_path(sock);
  auto r = c.call(R"({"method":"peer","id":1})");
  EXPECT_EQ(r.at("result").at("uid").to_number<long>(), static_cast<long>(getuid())) << json::serialize(r);
  EXPECT_EQ(r.at("result").at("pid").to_number<long>(), static_cast<long>(getpid()));
}

TEST_F(ServerTest, BadRequestsGetUsageErrorsAndTheConnectionStaysUsable) {
  serve();
  Client c = Client::at_path(sock);
  for (const char* bad : {"not json", "{\"method\":", "[1,2]", "\"method\"", "{\"params\":{}}", "{\"method\":5}",
                          "{\"method\":\"echo\",\"params\":[1]}", "{\"method\":\"nope\"}",
                          // nesting deeper than the parser's limit
                          "{\"method\":\"echo\",\"params\":{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}}"}) {
    auto r = c.call(bad);
    EXPECT_EQ(error_code_of(r), "USAGE") << bad << " -> " << json::serialize(r);
    EXPECT_FALSE(r.at("error").at("message").as_string().empty());
  }
  // The id is echoed when the request has one.
  EXPECT_EQ(c.call(R"({"id":7,"method":[]})").at("id"), json::value(7));
  EXPECT_EQ(c.call(R"({"method":"echo","params":{"ok":true},"id":8})").at("result").at("ok"), json::value(true));
}

TEST_F(ServerTest, HandlerExceptionsBecomeErrorReplies) {
  serve();
  Client c = Client::at_path(sock);
  auto r = c.call(R"({"method":"refuse","id":1})");
  EXPECT_EQ(error_code_of(r), "UNKNOWN_PURPOSE");
  EXPECT_EQ(r.at("error").at("message"), json::value("no purpose 'x'"));
  EXPECT_EQ(error_code_of(c.call(R"({"method":"crash","id":2})")), "INTERNAL_ERROR");
  EXPECT_EQ(c.call(R"({"method":"echo","id":3})").at("id"), json::value(3));
}

// The peak resident set of this process (VmHWM) since reset_peak_rss(), in bytes.
void reset_peak_rss() {
  std::ofstream f("/proc/self/clear_refs");
  f << "5";  // 5: reset the peak RSS to the current RSS (Linux 4.0)
  if (!f.flush()) throw std::runtime_error("cannot reset the peak RSS via /proc/self/clear_refs");
}
size_t peak_rss() {
  std::ifstream f("/proc/self/status");
  for (std::string line; std::getline(f, line);)
    if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  throw std::runtime_error("no VmHWM in /proc/self/status");
}
size_t rss() {
  std::ifstream f("/proc/self/statm");
  size_t size = 0, resident = 0;
  f >> size >> resident;
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST_F(ServerTest, LongLineIsRefusedAndClosedWithoutBufferingIt) {
  serve();
  // Just under the cap works (and is echoed back).
  {
    Client c = Client::at_path(sock);
    std::string s(1000000, 'a');
    auto r = c.call(R"({"method":"echo","params":{"s":")" + s + R"("},"id":1})");
    EXPECT_EQ(r.at("result").at("s").as_string().size(), s.size());
  }
  std::string huge(10 << 20, 'x');  // 10 MiB, no newline; allocated (and touched) before measuring
  size_t before = rss();
  reset_peak_rss();
  Client c = Client::at_path(sock);
  Client other = Client::at_path(sock);
  std::thread writer([&] { c.send(huge); });  // stops with EPIPE once the server has closed
  std::string reply = c.line();
  std::string after = c.line();
  writer.join();
  size_t peak = peak_rss();
  EXPECT_NE(reply.find("\"code\":\"LIMIT_EXCEEDED\""), std::string::npos) << reply;
  EXPECT_EQ(after, "<eof>");
  // The server held at most the 1 MiB cap plus a read chunk, never the 10 MiB.
  EXPECT_LT(peak - before, size_t{4} << 20) << "RSS grew by " << (peak - before) << " bytes";
  std::cout << "[ measured ] RSS growth while a client sent 10 MiB without a newline: " << (peak - before) / 1024
            << " KiB\n";
  EXPECT_EQ(other.call(R"({"method":"echo","id":2})").at("id"), json::value(2));
}

TEST_F(ServerTest, SilentClientDoesNotBlockOthers) {
  serve();
  Client silent = Client::at_path(sock);
  Client half = Client::at_path(sock);
  ASSERT_TRUE(half.send(R"({"method":"echo",)"));  // half a request, then nothing
  Client c = Client::at_path(sock);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), json::value(1));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
}

TEST_F(ServerTest, IdleConnectionsAreClosed) {
  serve({.idle = std::chrono::milliseconds(300)});
  Client silent = Client::at_path(sock);
  Client half = Client::at_path(sock);
  ASSERT_TRUE(half.send(R"({"method":"echo",)"));
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(silent.line(std::chrono::seconds(5)), "<eof>");
  EXPECT_EQ(half.line(std::chrono::seconds(5)), "<eof>");
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(250));
  EXPECT_LT(waited, std::chrono::seconds(3));
  // A client that keeps asking is not idle.
  Client busy = Client::at_path(sock);
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    ASSERT_EQ(busy.call(R"({"method":"echo","id":1})").at("id"), json::value(1)) << "after " << i * 100 << " ms";
  }
}

TEST_F(ServerTest, HundredConcurrentClientsAllGetTheirAnswers) {
  serve();
  std::vector<Client> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(Client::at_path(sock));
  for (int i = 0; i < 100; ++i)
    ASSERT_TRUE(clients[i].send(R"({"method":"echo","params":{"n":)" + std::to_string(i) + R"(},"id":)" +
                                std::to_string(i) + "}\n"));
  EXPECT_TRUE(eventually([&] { return server->connections() == 100; }));
  for (int i = 0; i < 100; ++i)
    EXPECT_EQ(clients[i].line(), R"({"id":)" + std::to_string(i) + R"(,"result":{"n":)" + std::to_string(i) + "}}");
  clients.clear();  // (the cap is 128)
  EXPECT_TRUE(eventually([&] { return server->connections() == 0; }));
  // And from 100 threads at once, 20 requests each.
  std::vector<std::thread> threads;
  std::atomic<int> ok{0};
  for (int t = 0; t < 100; ++t)
    threads.emplace_back([&, t] {
      Client c = Client::at_path(sock);
      for (int i = 0; i < 20; ++i)
      {
        auto r = c.call(R"({"method":"echo","id":)" + std::to_string(t * 100 + i) + "}");
        ok += r.contains("id") && r.at("id") == json::value(t * 100 + i);
      }
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(ok, 2000);
}

TEST_F(ServerTest, ConnectionsOverTheCapAreToldAndClosed) {
  serve({.max_connections = 4});
  std::vector<Client> clients;
  for (int i = 0; i < 4; ++i) {
    clients.push_back(Client::at_path(sock));
    ASSERT_EQ(clients.back().call(R"({"method":"echo","id":1})").at("id"), json::value(1));
  }
  Client fifth = Client::at_path(sock);  // accepted by the kernel, then refused by the server
  std::string l = fifth.line();
  EXPECT_NE(l.find("\"code\":\"LIMIT_EXCEEDED\""), std::string::npos) << l;
  EXPECT_EQ(fifth.line(), "<eof>");
  clients.pop_back();  // one leaves: room for one more
  EXPECT_TRUE(eventually([&] { return server->connections() == 3; }));
  Client again = Client::at_path(sock);
  EXPECT_EQ(again.call(R"({"method":"echo","id":5})").at("id"), json::value(5));
}

TEST_F(ServerTest, ClientThatAsksButDoesNotReadIsClosed) {
  serve({.max_output = 1 << 20});
  Client hog = Client::at_path(sock);
  // Tiny requests with 64 KiB answers, never read: the replies to one read chunk pass the cap.
  std::string many;
  for (int i = 0; i < 2000; ++i) many += R"({"method":"big","params":{"n":65536}})" "\n";
  std::thread writer([&] { hog.send(many); });
  Client other = Client::at_path(sock);
  EXPECT_EQ(other.call(R"({"method":"echo","id":1})").at("id"), json::value(1));
  EXPECT_TRUE(eventually([&] { return server->connections() == 1; })) << "the hog is still connected";
  writer.join();
  EXPECT_EQ(other.call(R"({"method":"echo","id":2})").at("id"), json::value(2));
}

TEST_F(ServerTest, ReaderThatStallsOnOneBigReplyIsClosedAfterTheIdleTime) {
  serve({.idle = std::chrono::milliseconds(300)});
  Client stall = Client::at_path(sock);
  ASSERT_TRUE(stall.send(R"({"method":"big","params":{"n":3000000}})" "\n"));  // more than socket buffers hold
  EXPECT_TRUE(eventually([&] { return server->connections() == 0; }, std::chrono::seconds(3)));
}

TEST_F(ServerTest, SocketIsMode0600InANew0755DirectoryAndRemovedAtStop) {
  serve();
  struct stat st;
  ASSERT_EQ(lstat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  ASSERT_EQ(lstat((dir / "run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  server->stop();
  EXPECT_NE(lstat(sock.c_str(), &st), 0) << "the socket file outlived the server";
}

int bound_socket(const std::string& path, bool listening) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("bind");
  if (listening) ::listen(fd, 4);
  return fd;
}

TEST_F(ServerTest, StaleSocketIsReplaced) {
  mkdir((dir / "run").c_str(), 0755);
  ::close(bound_socket(sock, true));  // left behind by a daemon that died
  serve();
  Client c = Client::at_path(sock);
  EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), json::value(1));
}

TEST_F(ServerTest, RefusesARegularFileOrALiveSocketAtThePath) {
  mkdir((dir / "run").c_str(), 0755);
  write_file(sock, "precious");
  serve::EventLoop loop;
  try {
    loop.listen_unix(sock, dummy_handler);
    ADD_FAILURE() << "a regular file was replaced";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kIoError);
    EXPECT_NE(std::string(e.what()).find("is not a socket"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_file(sock), "precious");

  std::string live = dir / "run/live.sock";
  int fd = bound_socket(live, true);  // another daemon still serves here
  try {
    loop.listen_unix(live, dummy_handler);
    ADD_FAILURE() << "a live socket was stolen";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("another process is listening"), std::string::npos) << e.what();
  }
  ::close(fd);

  std::string too_long = "/tmp/" + std::string(200, 'a');
  EXPECT_THROW(loop.listen_unix(too_long, dummy_handler), Error);
}

TEST_F(ServerTest, TakesOverAListeningFdAndRefusesOtherKinds) {
  std::string path = dir / "activated.sock";
  int fd = bound_socket(path, true);
  server = std::make_unique<LoopThread>();
  server->loop.listen_unix_fd(fd, dummy_handler);
  server->start();
  Client c = Client::at_path(path);
  EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), json::value(1));
  server->stop();
  struct stat st;
  EXPECT_EQ(lstat(path.c_str(), &st), 0) << "a socket passed in is systemd's: never unlinked";

  serve::EventLoop loop;
  int not_listening = bound_socket(dir / "idle.sock", false);
  EXPECT_THROW(loop.listen_unix_fd(not_listening, dummy_handler), Error);
  int udp = ::socket(AF_INET, SOCK_DGRAM, 0);
  EXPECT_THROW(loop.listen_unix_fd(udp, dummy_handler), Error);
  ::close(not_listening);
  ::close(udp);
}

}  // namespace
}  // namespace ptrust::testing
