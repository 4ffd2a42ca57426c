// `ptrust serve` keeps a real stunnel (5.68) in step: a CA removed from the store reaches the
// running stunnel through the daemon alone (re-rendered configuration, SIGHUP), and its state
// goes reload_needed -> ok.
#include <gtest/gtest.h>

#include "tests/serve/util.h"
#include "tests/stunnel/fixture.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;

TEST(ServeStunnel, CaRemovalReachesRunningStunnelThroughTheDaemon) {
  Env env;
  std::string conf = env.path("stunnel.conf"), pid = env.path("stunnel.pid"), log = env.path("stunnel.log");
  std::string uuid = env.install("root", "ca", "licensing");
  TlsServer good(env, "leaf");
  int port = free_port();
  env.write_config("stunnel:\n  - name: tunnels\n    config: " + conf + "\n    pidfile: " + pid +
                   "\n    global:\n      - foreground = yes\n      - debug = 7\n      - output = " + log +
                   "\n    services:\n      - name: lic\n        purpose: licensing\n        accept: 127.0.0.1:" +
                   std::to_string(port) + "\n        connect: " + good.address() + "\n        check-host: leaf.test\n");
  ASSERT_EQ(env.ptrust({"stunnel", "sync"}).status, 0);
  Stunnel st(conf, log);
  ASSERT_TRUE(st.wait_configured()) << st.log();
  EXPECT_EQ(through(port, st), Outcome::kEstablished);

  std::string sock = env.path("ptrust.sock");
  TempDir logs;
  DaemonProcess d(logs, std::string(PTRUST_BIN) + " --root " + env.root() + " --config " + env.config_file() +
                            " serve --socket " + sock);
  auto state = [&] {
    Client c = Client::at_path(sock);
    json::object r = c.call(R"({"method":"status","id":1})");
    return r.contains("result") ? std::string(r.at("result").at("consumers").at(0).at("state").as_string()) : "?";
  };
  ASSERT_TRUE(eventually([&] { return d.err().find("serving ") != std::string::npos; })) << d.err();
  // stunnel was started after the first sync, so no reload was ever recorded: the daemon
  // signals it once (harmless) and records it.
  ASSERT_TRUE(st.wait_configured(2, 1)) << st.log();
  EXPECT_EQ(state(), "ok");

  env.uninstall(uuid);
  ASSERT_TRUE(st.wait_configured(3, 1)) << st.log() << d.err();
  EXPECT_EQ(through(port, st), Outcome::kRefused);
  EXPECT_EQ(state(), "ok");
  EXPECT_NE(d.err().find("stunnel tunnels: configuration rewritten, reload sighup"), std::string::npos) << d.err();
  EXPECT_EQ(read_file(conf).find("ca-bundle-licensing"), std::string::npos);
}

}  // namespace
}  // namespace ptrust::testing
