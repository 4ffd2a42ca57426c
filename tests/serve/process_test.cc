// The loop in a real daemon process (serve_io_demo): signals, socket activation, sd_notify,
// and no CPU while idle.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <fstream>
#include <sstream>
#include <filesystem>

#include "tests/serve/util.h"

extern char** environ;

namespace ptrust::testing {
namespace {

using namespace std::chrono_literals;

// serve_io_demo as a daemon process.
class Daemon : public DaemonProcess {
 public:
  Daemon(const TempDir& dir, const std::string& args, std::vector<std::string> env = {}, int fd3 = -1)
      : DaemonProcess(dir, std::string(SERVE_IO_DEMO) + " " + args, std::move(env), fd3) {}
};

TEST(Process, SighupCallsBackSigtermStopsCleanlyAndIdleUsesNoCpu) {
  TempDir dir;
  std::string sock = dir / "run/ptrust.sock";
  std::filesystem::create_directories(dir / "watched");
  Daemon d(dir, "--socket " + sock + " --watch " + dir / "watched");
  ASSERT_TRUE(d.says("ready pid=")) << d.err();
  {
    Client c = Client::at_path(sock);
    EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), boost::json::value(1));
    Client silent = Client::at_path(sock);  // an open idle connection costs nothing either

    long before = d.cpu_ticks();
    std::this_thread::sleep_for(2s);
    long idle = d.cpu_ticks() - before;
    std::cout << "[ measured ] CPU ticks used by the idle daemon in 2 s: " << idle << "\n";
    EXPECT_LE(idle, 1) << "the daemon is busy while idle";

    ASSERT_EQ(::kill(d.pid(), SIGHUP), 0);
    EXPECT_TRUE(d.says("hup")) << d.out();
    EXPECT_EQ(c.call(R"({"method":"echo","id":2})").at("id"), boost::json::value(2)) << "SIGHUP broke the server";
    write_file(dir / "watched/f", "x");
    EXPECT_TRUE(d.says("change")) << d.out();

    ASSERT_EQ(::kill(d.pid(), SIGTERM), 0);
    EXPECT_EQ(d.wait(), 0) << d.err();
    EXPECT_EQ(c.line(), "<eof>");
  }
  EXPECT_NE(d.out().find("stopped"), std::string::npos);
  struct stat st;
  EXPECT_NE(lstat(sock.c_str(), &st), 0) << "the socket file was left behind";

  Daemon again(dir, "--socket " + sock);  // the path is free again; SIGINT stops it too
  ASSERT_TRUE(again.says("ready pid=")) << again.err();
  ::kill(again.pid(), SIGINT);
  EXPECT_EQ(again.wait(), 0) << again.err();
}

TEST(Process, SecondDaemonOnTheSameSocketIsRefused) {
  TempDir dir;
  std::string sock = dir / "ptrust.sock";
  Daemon first(dir, "--socket " + sock);
  ASSERT_TRUE(first.says("ready"));
  Daemon second(dir, "--socket " + sock);
  EXPECT_EQ(second.wait(), 1);
  EXPECT_NE(second.err().find("IO_ERROR: another process is listening on"), std::string::npos) << second.err();
  Client c = Client::at_path(sock);
  EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), boost::json::value(1));
}

int listening_unix(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  std::strncpy(a.sun_path, path.c_str(), sizeof a.sun_path - 1);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0)
    throw std::runtime_error("bind/listen " + path);
  return fd;
}

TEST(Process, SocketActivationAndNotifyReady) {
  TempDir dir;
  std::string sock = dir / "ptrust.sock", notify = dir / "notify.sock";
  int lfd = listening_unix(sock);  // what systemd does for ptrust.socket
  int nfd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un na{};
  na.sun_family = AF_UNIX;
  std::strncpy(na.sun_path, notify.c_str(), sizeof na.sun_path - 1);
  ASSERT_EQ(::bind(nfd, reinterpret_cast<sockaddr*>(&na), sizeof na), 0);

  Daemon d(dir, "--systemd", {"LISTEN_FDS=1", "NOTIFY_SOCKET=" + notify}, lfd);
  ::close(lfd);
  pollfd p{nfd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 10000), 1) << "no sd_notify message; " << d.err();
  char msg[256] = {};
  ASSERT_GT(::recv(nfd, msg, sizeof msg - 1, 0), 0);
  EXPECT_EQ(std::string(msg), "READY=1");
  ::close(nfd);
  {
    Client c = Client::at_path(sock);
    EXPECT_EQ(c.call(R"({"method":"echo","id":1})").at("id"), boost::json::value(1));
  }
  ::kill(d.pid(), SIGTERM);
  EXPECT_EQ(d.wait(), 0) << d.err();
  struct stat st;
  EXPECT_EQ(lstat(sock.c_str(), &st), 0) << "the activated socket is systemd's: never unlinked";
}

TEST(Process, SocketActivationRefusesWrongSockets) {
  TempDir dir;
  // A TCP socket where a Unix one belongs.
  int tcp = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(tcp, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(tcp, 1), 0);
  Daemon wrong(dir, "--systemd", {"LISTEN_FDS=1"}, tcp);
  EXPECT_EQ(wrong.wait(), 2);
  EXPECT_EQ(wrong.err(), "ptrust: USAGE: descriptor 3 is not a listening AF_UNIX stream socket\n");
  ::close(tcp);
  // Two sockets where one belongs.
  int u = listening_unix(dir / "one.sock");
  Daemon two(dir, "--systemd 4>/dev/null", {"LISTEN_FDS=2"}, u);
  EXPECT_EQ(two.wait(), 2);
  EXPECT_NE(two.err().find("USAGE: socket activation passed 2 sockets"), std::string::npos) << two.err();
  ::close(u);
  // None: the daemon says so (ptrust serve would then bind its own path).
  Daemon none(dir, "--systemd");
  EXPECT_EQ(none.wait(), 2);
  EXPECT_NE(none.err().find("no socket passed by systemd"), std::string::npos) << none.err();
}

}  // namespace
}  // namespace ptrust::testing
