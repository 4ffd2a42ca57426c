// `ptrust stunnel sync` against a running stunnel: trust changes take effect through a
// rewritten configuration and SIGHUP, without restarting stunnel by hand.
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <thread>

#include <boost/json.hpp>

#include "tests/stunnel/fixture.h"

namespace ptrust::testing {
namespace {

namespace json = boost::json;

struct Service {
  std::string name, purpose, connect, check;  // check: YAML line, e.g. "check-host: leaf.test"
  int port = free_port();
};

class SyncTest : public ::testing::Test {
 protected:
  // Declares one instance with `services` and writes ptrust.yaml.
  void declare(const std::string& via, const std::vector<Service>& services) {
    services_ = services;
    std::string y = "stunnel:\n  - name: tunnels\n    config: " + conf_ + "\n    pidfile: " + pid_ +
                    "\n    via: " + via + "\n";
    if (via == "provider")
      y += "    openssl-conf: " + cnf_ + "\n    module: " + std::string(PTRUST_PROVIDER_MODULE) + "\n";
    y += "    global:\n      - foreground = yes\n      - debug = 7\n      - output = " + log_ + "\n    services:\n";
    for (const auto& s : services)
      y += "      - name: " + s.name + "\n        purpose: " + s.purpose + "\n        accept: 127.0.0.1:" +
           std::to_string(s.port) + "\n        connect: " + s.connect + "\n        " + s.check + "\n";
    env.write_config(y);
  }
  json::object sync() {
    RunResult r = env.ptrust({"stunnel", "sync", "--json"});
    EXPECT_EQ(r.status, 0) << r.err << r.out;
    return json::parse(r.out).as_object();
  }
  json::object service(const json::object& report, const std::string& name) {
    for (const auto& s : report.at("instances").as_array()[0].as_object().at("services").as_array())
      if (s.as_object().at("name").as_string() == name) return s.as_object();
    ADD_FAILURE() << "no service " << name << " in " << json::serialize(report);
    return {};
  }
  void start() {
    std::vector<std::string> e;
    if (!cnf_.empty()) e.push_back("OPENSSL_CONF=" + cnf_);
    st_ = std::make_unique<Stunnel>(conf_, log_, e);
    ASSERT_TRUE(st_->wait_configured()) << st_->log();
  }
  Outcome through(const std::string& name) {
    for (const auto& s : services_)
      if (s.name == name) return testing::through(s.port, *st_);
    throw std::runtime_error("no service " + name);
  }

  Env env;
  std::string conf_ = env.path("stunnel.conf"), pid_ = env.path("stunnel.pid"), log_ = env.path("stunnel.log");
  std::string cnf_;
  std::vector<Service> services_;
  std::unique_ptr<Stunnel> st_;
};

TEST_F(SyncTest, CaRemovedThenSyncMakesRunningStunnelRefuse) {
  std::string uuid = env.install("root", "ca", "licensing");
  env.install_crl();
  TlsServer good(env, "leaf");
  declare("files", {{"lic", "licensing", good.address(), "check-host: leaf.test"}});
  json::object first = sync();
  EXPECT_EQ(first.at("instances").as_array()[0].at("reload").as_string(), "not-running");
  EXPECT_TRUE(service(first, "lic").at("changed").as_bool());
  start();
  EXPECT_EQ(through("lic"), Outcome::kEstablished);

  // Nothing changed: nothing written. stunnel was not running at the first sync, so no reload
  // was recorded as delivered yet: this one signals once (harmless), then nothing is pending.
  json::object again = sync();
  EXPECT_FALSE(again.at("instances").as_array()[0].at("written").as_bool());
  EXPECT_FALSE(service(again, "lic").at("changed").as_bool());
  EXPECT_EQ(again.at("instances").as_array()[0].at("reload").as_string(), "sighup");
  ASSERT_TRUE(st_->wait_configured(2, 1)) << st_->log();
  EXPECT_EQ(sync().at("instances").as_array()[0].at("reload").as_string(), "none");

  env.uninstall(uuid);
  json::object after = sync();
  json::object lic = service(after, "lic");
  EXPECT_TRUE(lic.at("changed").as_bool());
  EXPECT_TRUE(lic.at("fail_closed").as_bool());
  EXPECT_FALSE(lic.at("error").as_bool());  // mode none is a state, not an error
  EXPECT_EQ(after.at("instances").as_array()[0].at("reload").as_string(), "sighup");
  ASSERT_TRUE(st_->wait_configured(3, 1)) << st_->log();
  EXPECT_EQ(through("lic"), Outcome::kRefused);
  EXPECT_EQ(read_file(conf_).find("ca-bundle-licensing"), std::string::npos) << read_file(conf_);
}

TEST_F(SyncTest, PinInstalledThenSyncSwitchesRunningStunnelToVerifyPeer) {
  cnf_ = env.path("openssl.cnf");
  env.install("root", "ca", "peer");
  TlsServer ca_valid(env, "leaf"), pinned(env, "pinned");
  declare("provider", {{"ca-valid", "peer", ca_valid.address(), "check-host: leaf.test"},
                       {"pinned", "peer", pinned.address(), "check-host: peer.test"}});
  sync();
  start();
  EXPECT_EQ(through("ca-valid"), Outcome::kEstablished);
  EXPECT_EQ(through("pinned"), Outcome::kRefused);  // self-signed: no chain to the CA

  env.install("pinned", "pinned", "peer");
  json::object after = sync();
  EXPECT_EQ(service(after, "pinned").at("mode").as_string(), "pinned");
  EXPECT_TRUE(service(after, "ca-valid").at("changed").as_bool());
  ASSERT_TRUE(st_->wait_configured(2, 2)) << st_->log();
  EXPECT_NE(read_file(conf_).find("verifyPeer = yes"), std::string::npos);
  EXPECT_EQ(through("ca-valid"), Outcome::kRefused);
  EXPECT_EQ(through("pinned"), Outcome::kEstablished);
}

// crl-policy if-present: no CRL yet, no CRLpath; a CRL installed later reaches the
// running stunnel through sync (new CRLpath line and CRL digest -> SIGHUP).
TEST_F(SyncTest, CrlInstalledThenSyncMakesRunningStunnelRefuseRevokedServer) {
  env.install("root", "ca", "licensing");
  TlsServer good(env, "leaf"), revoked(env, "revoked");
  declare("files", {{"good", "licensing", good.address(), "check-host: leaf.test"},
                    {"revoked", "licensing", revoked.address(), "check-host: leaf.test"}});
  sync();
  start();
  EXPECT_EQ(through("revoked"), Outcome::kEstablished);  // nothing says it is revoked yet

  env.install_crl();
  json::object after = sync();
  EXPECT_TRUE(service(after, "revoked").at("changed").as_bool());
  EXPECT_EQ(after.at("instances").as_array()[0].at("reload").as_string(), "sighup");
  ASSERT_TRUE(st_->wait_configured(2, 2)) << st_->log();
  EXPECT_EQ(through("revoked"), Outcome::kRefused);
  EXPECT_EQ(through("good"), Outcome::kEstablished);
}

// A CRL that cannot matter for licensing (unscoped, issued by ldaps's CA) neither rewrites
// nor reloads licensing's tunnel; one of licensing's CA does, and its CRLfile is written
// before the configuration. A CRLfile no configuration names any more is removed.
TEST_F(SyncTest, OnlyCrlsThatCanMatterRewriteAndReloadAndStaleCrlFilesAreRemoved) {
  env.install("root", "ca", "licensing");
  env.install("other_ca", "ca", "ldaps");
  TlsServer good(env, "leaf"), revoked(env, "revoked");
  declare("files", {{"good", "licensing", good.address(), "check-host: leaf.test"},
                    {"revoked", "licensing", revoked.address(), "check-host: leaf.test"}});
  sync();
  start();
  sync();  // records what the running stunnel loaded (one harmless SIGHUP, see docs)
  ASSERT_TRUE(st_->wait_configured(2, 2)) << st_->log();
  std::string before = read_file(conf_);

  env.install_crl("other_ca");
  json::object r = sync();
  EXPECT_FALSE(service(r, "good").at("changed").as_bool());
  EXPECT_FALSE(r.at("instances").as_array()[0].at("written").as_bool());
  EXPECT_EQ(r.at("instances").as_array()[0].at("reload").as_string(), "none");
  EXPECT_EQ(read_file(conf_), before);
  EXPECT_EQ(through("good"), Outcome::kEstablished);

  env.install_crl("root");
  r = sync();
  EXPECT_TRUE(service(r, "revoked").at("changed").as_bool());
  EXPECT_EQ(r.at("instances").as_array()[0].at("reload").as_string(), "sighup");
  ASSERT_TRUE(st_->wait_configured(3, 2)) << st_->log();
  EXPECT_EQ(through("revoked"), Outcome::kRefused);
  EXPECT_EQ(through("good"), Outcome::kEstablished);
  std::string crl_dir = env.root() + "/etc/ptrust/stunnel-crls";
  std::vector<std::string> files;
  for (const auto& e : std::filesystem::directory_iterator(crl_dir)) files.push_back(e.path().filename().string());
  ASSERT_EQ(files.size(), 1u);
  EXPECT_EQ(files[0].rfind("licensing.", 0), 0u) << files[0];
  EXPECT_NE(read_file(conf_).find("CRLfile = " + crl_dir + "/" + files[0] + "\n"), std::string::npos);

  RunResult rm = env.ptrust({"crl", "uninstall", "root.crl"});
  ASSERT_EQ(rm.status, 0) << rm.err;
  r = sync();
  EXPECT_EQ(read_file(conf_).find("\nCRLfile"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(crl_dir + "/" + files[0]));
}

TEST_F(SyncTest, CorruptChosenBundleFailsClosedAndExitsOne) {
  env.install("general_ca", "ca");
  env.install("root", "ca", "licensing");
  declare("files", {{"lic", "licensing", "127.0.0.1:9", "check-host: leaf.test"}});
  write_file(env.root() + "/etc/trusted-certs/ca-bundle-licensing.pem", "garbage\n");
  RunResult r = env.ptrust({"stunnel", "sync", "--json"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("STORE_CORRUPT"), std::string::npos) << r.err;
  json::object rep = json::parse(r.out).as_object();
  json::object lic = service(rep, "lic");
  EXPECT_TRUE(lic.at("fail_closed").as_bool());
  EXPECT_TRUE(lic.at("error").as_bool());
  EXPECT_NE(std::string(lic.at("reason").as_string()).find("STORE_CORRUPT"), std::string::npos);
  // No fallback to the general bundle.
  EXPECT_EQ(read_file(conf_).find("ca-bundle-general"), std::string::npos) << read_file(conf_);
}

TEST_F(SyncTest, PidFileOfAnotherProcessIsNotSignalled) {
  env.install("root", "ca", "licensing");
  declare("files", {{"lic", "licensing", "127.0.0.1:9", "check-host: leaf.test"}});
  write_file(pid_, std::to_string(::getpid()) + "\n");  // this test binary, not stunnel
  RunResult r = env.ptrust({"stunnel", "sync", "--json"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_NE(r.err.find("STUNNEL_SIGNAL_FAILED"), std::string::npos) << r.err;
  EXPECT_EQ(json::parse(r.out).at("instances").as_array()[0].at("reload").as_string(), "failed");
}

// A reload that could not be sent is retried by the next sync, even though the file on
// disk no longer changes: stunnel must never be left trusting removed material.
TEST_F(SyncTest, FailedReloadIsRetriedByTheNextSync) {
  std::string uuid = env.install("root", "ca", "licensing");
  TlsServer good(env, "leaf");
  declare("files", {{"lic", "licensing", good.address(), "check-host: leaf.test"}});
  sync();
  start();
  EXPECT_EQ(through("lic"), Outcome::kEstablished);
  env.uninstall(uuid);
  std::string real_pid = read_file(pid_);
  write_file(pid_, "junk\n");  // the signal cannot be sent
  RunResult failed = env.ptrust({"stunnel", "sync", "--json"});
  EXPECT_EQ(failed.status, 1);
  EXPECT_TRUE(json::parse(failed.out).at("instances").as_array()[0].at("pending").as_bool());
  EXPECT_EQ(through("lic"), Outcome::kEstablished) << "control: stunnel still runs the old configuration";
  write_file(pid_, real_pid);
  json::object retry = sync();
  EXPECT_FALSE(retry.at("instances").as_array()[0].at("written").as_bool()) << "the file was already written";
  EXPECT_EQ(retry.at("instances").as_array()[0].at("reload").as_string(), "sighup");
  ASSERT_TRUE(st_->wait_configured(2, 1)) << st_->log();
  EXPECT_EQ(through("lic"), Outcome::kRefused);
  json::object quiet = sync();
  EXPECT_EQ(quiet.at("instances").as_array()[0].at("reload").as_string(), "none") << "applied: nothing to retry";
}

// sync writes the instance's files and records under the store's writer lock: while another
// process holds it, nothing is written; once it is released, the sync completes.
TEST_F(SyncTest, SyncWritesOnlyUnderTheStoreWriterLock) {
  env.install("root", "ca", "licensing");  // creates var/lib/ptrust/lock
  declare("files", {{"lic", "licensing", "127.0.0.1:9", "check-host: leaf.test"}});
  std::string lock = env.root() + "/var/lib/ptrust/lock";
  Background holder({"flock", "-x", lock, "sh", "-c", "echo held; sleep 2"}, env.path(""));
  ASSERT_TRUE(holder.wait_for_output("held"));
  Background syncer({PTRUST_BIN, "--root", env.root(), "stunnel", "sync"}, env.path(""));
  std::this_thread::sleep_for(std::chrono::milliseconds(700));  // well past rendering
  EXPECT_FALSE(std::filesystem::exists(conf_)) << "written while another process held the writer lock";
  EXPECT_EQ(holder.wait().status, 0);
  RunResult r = syncer.wait();
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(std::filesystem::exists(conf_));
}

// Two syncs racing each other and a store change all succeed (no LOCK_FAILED, no sync
// waiting for itself) and leave one whole configuration; the next sync settles it.
TEST_F(SyncTest, ConcurrentSyncsAndStoreChangesEachComplete) {
  std::string uuid = env.install("root", "ca", "licensing");
  declare("files", {{"lic", "licensing", "127.0.0.1:9", "check-host: leaf.test"},
                    {"any", "licensing", "127.0.0.1:10", "no-subject-check: true"}});
  const std::vector<std::string> sync_argv{PTRUST_BIN, "--root", env.root(), "stunnel", "sync"};
  for (int round = 0; round < 4; ++round) {
    Background a(sync_argv, env.path("")), b(sync_argv, env.path(""));
    if (round % 2 == 0)
      env.uninstall(uuid);
    else
      uuid = env.install("root", "ca", "licensing");
    for (Background* p : {&a, &b}) {
      RunResult r = p->wait();
      EXPECT_EQ(r.status, 0) << r.err << r.out;
    }
    std::string text = read_file(conf_);
    EXPECT_EQ(text.rfind("; Written by `ptrust stunnel sync`", 0), 0u) << text;
    EXPECT_EQ(std::count(text.begin(), text.end(), '['), 2) << text;
    json::object settled = sync();
    EXPECT_FALSE(settled.at("instances").as_array()[0].at("pending").as_bool()) << json::serialize(settled);
    EXPECT_EQ(service(settled, "lic").at("fail_closed").as_bool(), round % 2 == 0) << "round " << round;
  }
}

// Service options in `global:` would become defaults of every service (the fail-closed
// stanza included): only global-only options are accepted.
TEST_F(SyncTest, GlobalLinesMayNotCarryServiceOptions) {
  for (std::string bad : {"CApath = /etc/ssl/certs", "checkHost = leaf.test", "verifyChain = no", "[evil]",
                          "include = /etc/stunnel/conf.d", "pid = /tmp/other.pid", "config = VerifyCAStore:file:/"}) {
    env.write_config("stunnel:\n  - name: t\n    config: " + conf_ + "\n    pidfile: " + pid_ +
                     "\n    global:\n      - debug = 7\n      - \"" + bad +
                     "\"\n    services:\n      - name: s\n        purpose: licensing\n        accept: 127.0.0.1:1\n"
                     "        connect: 127.0.0.1:2\n        check-host: leaf.test\n");
    RunResult r = env.ptrust({"stunnel", "sync"});
    EXPECT_EQ(r.status, 1) << bad;
    EXPECT_NE(r.err.find("CONFIG_INVALID: " + env.config_file() + ":11:9: global line"), std::string::npos)
        << bad << ": " << r.err;
  }
}

}  // namespace
}  // namespace ptrust::testing
