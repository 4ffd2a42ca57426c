// `host-cert` (this host's identity files) and `ca` (the cluster CA), driven as a user would:
// real files in a temporary root, certificates made in the run.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <array>
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <boost/json.hpp>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "core/identity.h"
#include "core/x509.h"
#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace fsys = std::filesystem;

unsigned mode_of(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

// No private key anywhere in the trust stores: etc/trusted-certs, etc/stunnel.
void expect_no_key_in_stores(const std::string& root) {
  for (const char* rel : {"etc/trusted-certs", "etc/stunnel"}) {
    fsys::path dir = fsys::path(root) / rel;
    if (!fsys::exists(dir)) continue;
    for (const auto& e : fsys::recursive_directory_iterator(dir))
      if (e.is_regular_file()) {
        EXPECT_EQ(read_file(e.path()).find("PRIVATE KEY"), std::string::npos) << e.path() << " holds a key";
      }
  }
}

ossl::X509Ptr first_cert(const std::string& pem) {
  ossl::BioPtr b(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  return ossl::X509Ptr(PEM_read_bio_X509(b.get(), nullptr, nullptr, nullptr));
}

std::uint64_t serial_of(X509* x) {
  std::uint64_t v = 0;
  EXPECT_EQ(ASN1_INTEGER_get_uint64(&v, X509_get0_serialNumber(x)), 1);
  return v;
}

// A refusal: exit 1, one line naming `code`, the root byte-identical.
void expect_refused(const std::string& root, const std::vector<std::string>& args, const std::string& code) {
  Tree before = snapshot(root);
  RunResult r = ptrust(root, args);
  EXPECT_EQ(r.status, code == "USAGE" ? 2 : 1) << r.err;
  EXPECT_EQ(r.err.rfind("ptrust: " + code + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_EQ(diff(before, snapshot(root)), "") << "refusal changed the root: " << args[0] << " " << code;
}

class HostCert : public ::testing::Test {
 protected:
  std::string id_file(const std::string& name) { return root_ / ("etc/xensource/" + name); }
  RunResult cli(const std::vector<std::string>& args) { return ptrust(root_.path(), args); }
  TempDir root_, in_;
};

TEST_F(HostCert, GenerateWritesKeyAndCertificateInOne0400FileOutsideTheStores) {
  for (std::string kind : {"server", "internal"}) {
    RunResult r = cli({"host-cert", "generate", "--kind", kind, "--cn", "host1", "--san", "DNS:host1,IP:10.0.0.1",
                       "--key-type", kind == "server" ? "rsa:2048" : "ed25519"});
    ASSERT_EQ(r.status, 0) << r.err;
    std::string file = id_file(kind == "server" ? "xapi-ssl.pem" : "xapi-pool-tls.pem");
    EXPECT_EQ(r.out, file + "\n");
    EXPECT_EQ(mode_of(file), 0400u) << file;
    identity::Identity id = identity::parse_identity(read_file(file), file);
    EXPECT_EQ(X509_check_private_key(id.certs.front().get(), id.key.get()), 1);
    EXPECT_EQ(X509_check_ca(id.certs.front().get()), 0) << "a host identity is a leaf";
    EXPECT_EQ(X509_check_host(id.certs.front().get(), "host1", 0, 0, nullptr), 1);
  }
  for (const auto& e : fsys::directory_iterator(root_ / "etc/xensource"))
    EXPECT_EQ(mode_of(e.path()) & 077, 0u) << e.path() << " is readable by others";
  expect_no_key_in_stores(root_.path());
  // show never prints the key; --pem prints only the public certificate.
  RunResult show = cli({"host-cert", "show", "--json"});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out.find("PRIVATE"), std::string::npos);
  auto doc = boost::json::parse(show.out);
  EXPECT_EQ(doc.at("host_identity").as_array().at(0).at("mode").as_string(), "0400");
  RunResult pem = cli({"host-cert", "show", "--kind", "internal", "--pem"});
  ASSERT_EQ(pem.status, 0) << pem.err;
  EXPECT_EQ(pem.out.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(pem.out.rfind("-----BEGIN CERTIFICATE-----", 0), 0u);
  // `status` still reads both identity files.
  RunResult st = cli({"status", "--json"});
  EXPECT_NE(st.out.find("host_internal"), std::string::npos) << st.out;
  EXPECT_NE(st.out.find("host_server"), std::string::npos) << st.out;
}

TEST_F(HostCert, InstallWritesKeyChainAndCertificate) {
  Issued ca = self_signed({.cn = "Ext Root", .ca = true});
  Issued inter = issue({.cn = "Ext Inter", .ca = true}, ca);
  Issued leaf = issue({.cn = "host1", .dns = {"host1"}}, inter);
  write_file(in_ / "cert.pem", leaf.pem());
  write_file(in_ / "key.pem", leaf.key_pem());
  write_file(in_ / "chain.pem", inter.pem());
  RunResult r = cli({"host-cert", "install", "--kind", "server", "--cert", in_ / "cert.pem", "--key", in_ / "key.pem",
                     "--chain", in_ / "chain.pem"});
  ASSERT_EQ(r.status, 0) << r.err;
  std::string file = id_file("xapi-ssl.pem");
  EXPECT_EQ(mode_of(file), 0400u);
  identity::Identity id = identity::parse_identity(read_file(file), file);
  ASSERT_EQ(id.certs.size(), 2u);
  EXPECT_EQ(X509_cmp(id.certs[0].get(), leaf.cert.get()), 0);
  EXPECT_EQ(X509_cmp(id.certs[1].get(), inter.cert.get()), 0);
  expect_no_key_in_stores(root_.path());
}

// Each refusal: its stable code, exit 1, one line, the installed identity and the rest of the
// root byte-identical.
TEST_F(HostCert, InstallRefusalsLeaveTheRootByteIdentical) {
  ASSERT_EQ(cli({"host-cert", "generate", "--kind", "server", "--cn", "old"}).status, 0);
  Issued ca = self_signed({.cn = "Ext Root", .ca = true});
  Issued other_ca = self_signed({.cn = "Other Root", .ca = true});
  Issued leaf = issue({.cn = "host1", .dns = {"host1"}}, ca);
  Issued stranger = issue({.cn = "host2", .dns = {"host2"}}, ca);
  Issued expired = issue({.cn = "host1", .not_before = -7200, .not_after = -3600}, ca);
  Issued future = issue({.cn = "host1", .not_before = 3600, .not_after = 7200}, ca);
  write_file(in_ / "leaf.pem", leaf.pem());
  write_file(in_ / "leaf.key", leaf.key_pem());
  write_file(in_ / "stranger.key", stranger.key_pem());
  write_file(in_ / "ca.pem", ca.pem());
  write_file(in_ / "ca.key", ca.key_pem());
  write_file(in_ / "other.pem", other_ca.pem());
  write_file(in_ / "expired.pem", expired.pem());
  write_file(in_ / "expired.key", expired.key_pem());
  write_file(in_ / "future.pem", future.pem());
  write_file(in_ / "future.key", future.key_pem());
  write_file(in_ / "garbage.key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
  write_file(in_ / "keyincert.pem", leaf.pem() + leaf.key_pem());
  struct Case {
    std::string cert, key, chain, code;
  } cases[] = {
      {"leaf.pem", "stranger.key", "", "HOST_KEY_MISMATCH"},
      {"leaf.pem", "leaf.key", "other.pem", "HOST_CHAIN_INVALID"},
      {"ca.pem", "ca.key", "", "HOST_CERTIFICATE_IS_CA"},
      {"expired.pem", "expired.key", "", "TRUSTED_CERTIFICATE_EXPIRED"},
      {"future.pem", "future.key", "", "TRUSTED_CERTIFICATE_NOT_VALID_YET"},
      {"leaf.pem", "garbage.key", "", "HOST_KEY_INVALID"},
      {"leaf.pem", "leaf.pem", "", "HOST_KEY_INVALID"},
      {"keyincert.pem", "leaf.key", "", "PRIVATE_KEY_NOT_ALLOWED"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.code);
    std::vector<std::string> args{"host-cert", "install", "--kind", "server", "--cert", in_ / c.cert, "--key", in_ / c.key};
    if (!c.chain.empty()) args.insert(args.end(), {"--chain", in_ / c.chain});
    expect_refused(root_.path(), args, c.code);
  }
  // Control: the same inputs, correct, are accepted.
  RunResult ok = cli({"host-cert", "install", "--kind", "server", "--cert", in_ / "leaf.pem", "--key", in_ / "leaf.key",
                      "--chain", in_ / "ca.pem"});
  EXPECT_EQ(ok.status, 0) << ok.err;
}

// SIGKILL at random instants of a loop of installs: the identity file is always a whole old or
// whole new identity (key matching certificate), never missing, never torn.
TEST_F(HostCert, KilledInstallLeavesTheOldOrTheNewIdentity) {
  Issued ca = self_signed({.cn = "Crash Root", .ca = true});
  std::vector<Issued> leaves;
  for (int i = 0; i < 2; ++i) {
    leaves.push_back(issue({.cn = "host" + std::to_string(i), .dns = {"host"}}, ca, KeyKind::kRsa2048));
    write_file(in_ / ("c" + std::to_string(i)), leaves.back().pem());
    write_file(in_ / ("k" + std::to_string(i)), leaves.back().key_pem());
  }
  auto argv = [&](int i) {
    return std::vector<std::string>{PTRUST_BIN, "--root", root_.path(), "host-cert", "install", "--kind", "server",
                                    "--cert", in_ / ("c" + std::to_string(i)), "--key", in_ / ("k" + std::to_string(i))};
  };
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(argv(0)).status, 0);
  long span_us = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0).count();
  std::mt19937 rng(4242);
  int kills = 0;
  const std::string file = id_file("xapi-ssl.pem");
  for (int i = 0; i < 120; ++i) {
    RunResult r = run_and_kill(argv(i % 2), std::uniform_int_distribution<long>(0, span_us)(rng));
    if (r.status == 137) ++kills;
    else ASSERT_EQ(r.status, 0) << r.err;
    identity::Identity id = identity::parse_identity(read_file(file), file);
    ASSERT_EQ(id.certs.size(), 1u);
    bool old_or_new = X509_cmp(id.certs[0].get(), leaves[0].cert.get()) == 0 || X509_cmp(id.certs[0].get(), leaves[1].cert.get()) == 0;
    ASSERT_TRUE(old_or_new) << "after command " << i;
    ASSERT_EQ(X509_check_private_key(id.certs[0].get(), id.key.get()), 1) << "after command " << i;
    ASSERT_EQ(mode_of(file), 0400u);
  }
  EXPECT_GT(kills, 20) << "the kills must actually interrupt commands";
  // A later install removes what a killed one left behind.
  ASSERT_EQ(run(argv(0)).status, 0);
  for (const auto& e : fsys::directory_iterator(root_ / "etc/xensource"))
    EXPECT_EQ(e.path().filename().string().rfind(".ptrust-tmp-", 0), std::string::npos) << e.path();
}

// Rotation: the pool trusts the new certificate (staged) before this host presents it.
TEST_F(HostCert, RefreshStagesForThePoolThenSwitches) {
  const std::string host = "0f0e0d0c-0b0a-4908-8706-050403020100";
  ASSERT_EQ(cli({"host-cert", "generate", "--kind", "internal", "--cn", "host1"}).status, 0);
  RunResult pub = cli({"host-cert", "show", "--kind", "internal", "--pem"});
  write_file(in_ / "old.pem", pub.out);
  ASSERT_EQ(cli({"pool", "add", host, in_ / "old.pem"}).status, 0);
  const std::string cur = id_file("xapi-pool-tls.pem");
  const std::string before = read_file(cur);

  RunResult stage = cli({"host-cert", "refresh", "--kind", "internal", "--host-uuid", host});
  ASSERT_EQ(stage.status, 0) << stage.err;
  const std::string staged_pool = root_ / ("etc/stunnel/certs-pool/" + host + ".new.pem");
  EXPECT_EQ(stage.out, staged_pool + "\n");
  EXPECT_EQ(read_file(cur), before) << "staging must not change the identity in use";
  EXPECT_EQ(mode_of(id_file("xapi-pool-tls.new.pem")), 0400u);
  identity::Identity next = identity::parse_identity(read_file(id_file("xapi-pool-tls.new.pem")), "staged");
  EXPECT_EQ(X509_cmp(first_cert(read_file(staged_pool)).get(), next.certs[0].get()), 0);
  std::string bundle = read_file(root_ / "etc/stunnel/xapi-pool-ca-bundle.pem");
  EXPECT_NE(bundle.find(x509::pem(next.certs[0].get())), std::string::npos) << "the pool trusts the new one";
  EXPECT_NE(bundle.find(read_file(in_ / "old.pem")), std::string::npos) << "... and still the old one";

  RunResult sw = cli({"host-cert", "refresh", "--kind", "internal", "--host-uuid", host, "--switch"});
  ASSERT_EQ(sw.status, 0) << sw.err;
  identity::Identity now = identity::parse_identity(read_file(cur), cur);
  EXPECT_EQ(X509_cmp(now.certs[0].get(), next.certs[0].get()), 0);
  EXPECT_EQ(mode_of(cur), 0400u);
  EXPECT_FALSE(fsys::exists(id_file("xapi-pool-tls.new.pem")));
  EXPECT_FALSE(fsys::exists(staged_pool));
  EXPECT_EQ(X509_cmp(first_cert(read_file(root_ / ("etc/stunnel/certs-pool/" + host + ".pem"))).get(), next.certs[0].get()), 0);
  expect_no_key_in_stores(root_.path());
  // A second switch has nothing staged.
  expect_refused(root_.path(), {"host-cert", "refresh", "--kind", "internal", "--host-uuid", host, "--switch"},
                 "CERTIFICATE_DOES_NOT_EXIST");
}

// The same rotation with a peer connecting throughout. Host A serves its internal identity
// (openssl s_server); peer B verifies it against B's pool bundle (openssl s_client -CAfile, a
// new process per connection, as a consumer that loads the bundle does), through: A stages a
// new certificate and B adds it as staged; A switches and serves the new one; B makes it
// current and drops the staged record. No connection may fail in any phase.
TEST_F(HostCert, RotationWhileAPeerKeepsConnecting) {
  const std::string host = "0f0e0d0c-0b0a-4908-8706-050403020101";
  TempDir peer;  // host B's root
  auto on_b = [&](const std::vector<std::string>& args) { return ptrust(peer.path(), args); };
  ASSERT_EQ(cli({"host-cert", "generate", "--kind", "internal", "--cn", "hosta", "--san", "DNS:hosta"}).status, 0);
  write_file(in_ / "a1.pem", cli({"host-cert", "show", "--kind", "internal", "--pem"}).out);
  ASSERT_EQ(on_b({"pool", "add", host, in_ / "a1.pem"}).status, 0);
  const std::string cur = id_file("xapi-pool-tls.pem");
  const std::string bundle = peer / "etc/stunnel/xapi-pool-ca-bundle.pem";

  auto serve = [&](const std::string& tag) {
    // s_server reads its files once: a copy, since the identity file is 0400 and replaced.
    write_file(in_ / (tag + ".pem"), read_file(cur));
    return std::make_unique<OpensslServer>(
        std::vector<std::string>{"-www", "-cert", in_ / (tag + ".pem"), "-key", in_ / (tag + ".pem")}, in_ / (tag + ".log"));
  };
  std::unique_ptr<OpensslServer> server = serve("s1");
  std::atomic<int> port{server->port()}, phase{0};
  std::atomic<bool> stop{false};
  std::atomic<int> attempts{0};
  std::array<std::atomic<int>, 4> ok{}, failed{};
  std::string first_failure;
  std::mutex mu;
  std::thread client([&] {
    while (!stop) {
      int ph = phase;
      RunResult r = run({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(port.load()), "-CAfile", bundle,
                         "-verify_return_error", "-verify_hostname", "hosta", "-brief"});
      if (r.status == 0 && r.err.find("Verification: OK") != std::string::npos) {
        ++ok[ph];
      } else {
        ++failed[ph];
        std::lock_guard lk(mu);
        if (first_failure.empty()) first_failure = "phase " + std::to_string(ph) + ": " + r.err;
      }
      ++attempts;
    }
  });
  auto next_phase = [&] {  // at least three good connections in the phase before moving on
    for (int i = 0; i < 300 && ok[phase] < 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_GE(ok[phase], 3) << "phase " << phase.load();
    ++phase;
  };
  next_phase();
  // 1. A stages; B trusts the staged certificate beside the current one.
  RunResult stage = cli({"host-cert", "refresh", "--kind", "internal", "--host-uuid", host});
  ASSERT_EQ(stage.status, 0) << stage.err;
  write_file(in_ / "a2.pem", read_file(stage.out.substr(0, stage.out.size() - 1)));
  ASSERT_EQ(on_b({"pool", "add", host, in_ / "a2.pem", "--new"}).status, 0);
  next_phase();
  // 2. A switches and serves the new identity.
  ASSERT_EQ(cli({"host-cert", "refresh", "--kind", "internal", "--host-uuid", host, "--switch"}).status, 0);
  std::unique_ptr<OpensslServer> next = serve("s2");
  port = next->port();
  // The old server stops once no connection to it is in flight (a real host would drain too).
  for (int seen = attempts + 2, i = 0; attempts < seen && i < 500; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  server.reset();
  next_phase();
  // 3. B makes the new certificate current and drops the staged record.
  ASSERT_EQ(on_b({"pool", "add", host, in_ / "a2.pem"}).status, 0);
  ASSERT_EQ(on_b({"pool", "remove", host, "--new"}).status, 0);
  EXPECT_EQ(read_file(bundle).find(read_file(in_ / "a1.pem")), std::string::npos) << "the old certificate is gone";
  next_phase();
  stop = true;
  client.join();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(failed[i], 0) << "phase " << i << "; first failure: " << first_failure;
  // Control: the old certificate is no longer accepted by B.
  std::unique_ptr<OpensslServer> old = std::make_unique<OpensslServer>(
      std::vector<std::string>{"-www", "-cert", in_ / "s1.pem", "-key", in_ / "s1.pem"}, in_ / "old.log");
  RunResult r = run({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(old->port()), "-CAfile", bundle,
                     "-verify_return_error", "-verify_hostname", "hosta", "-brief"});
  EXPECT_NE(r.status, 0) << r.err;
}

// ---- cluster CA ----------------------------------------------------------------------------

class ClusterCa : public ::testing::Test {
 protected:
  void SetUp() override {
    config_ = in_ / "ptrust.yaml";
    write_file(config_, "purposes:\n  licensing: {}\ncluster: {name: pool1, nodes: [host1, host2]}\n");
    key_ = make_key(KeyKind::kP256);
    write_file(in_ / "host1.csr", csr_pem(key_.get(), "host1"));
  }
  RunResult cli(std::vector<std::string> args) {
    args.insert(args.begin(), {"--config", config_});
    return ptrust(root_.path(), args);
  }
  std::string ca_file(const std::string& n) { return root_ / ("var/lib/ptrust/ca/" + n); }
  // Signs host1.csr; returns the certificate.
  ossl::X509Ptr sign(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args{"ca", "sign", in_ / "host1.csr", "--cn", "host1"};
    args.insert(args.end(), extra.begin(), extra.end());
    RunResult r = cli(args);
    EXPECT_EQ(r.status, 0) << r.err;
    return first_cert(r.out);
  }
  TempDir root_, in_;
  std::string config_;
  ossl::PkeyPtr key_;
};

TEST_F(ClusterCa, InitWritesAPublicCertificateAndAPrivateKey) {
  RunResult r = cli({"ca", "init"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(mode_of(ca_file("ca.pem")), 0644u);
  EXPECT_EQ(mode_of(ca_file("ca.key")), 0400u);
  EXPECT_EQ(mode_of(ca_file("serial")) & 077, 0u);
  ossl::X509Ptr ca = first_cert(read_file(ca_file("ca.pem")));
  ASSERT_TRUE(ca);
  BASIC_CONSTRAINTS* bc = static_cast<BASIC_CONSTRAINTS*>(X509_get_ext_d2i(ca.get(), NID_basic_constraints, nullptr, nullptr));
  ASSERT_TRUE(bc);
  EXPECT_TRUE(bc->ca);
  EXPECT_EQ(ASN1_INTEGER_get(bc->pathlen), 0);
  BASIC_CONSTRAINTS_free(bc);
  EXPECT_EQ(X509_get_extension_flags(ca.get()) & EXFLAG_CRITICAL, 0u);  // all critical ones understood
  EXPECT_EQ(X509_get_key_usage(ca.get()), static_cast<uint32_t>(KU_KEY_CERT_SIGN | KU_CRL_SIGN));
  EXPECT_NE(X509_get0_subject_key_id(ca.get()), nullptr);
  int crit = -1;
  ASN1_BIT_STRING* ku = static_cast<ASN1_BIT_STRING*>(X509_get_ext_d2i(ca.get(), NID_key_usage, &crit, nullptr));
  EXPECT_EQ(crit, 1);
  ASN1_BIT_STRING_free(ku);
  RunResult show = cli({"ca", "show", "--json"});
  ASSERT_EQ(show.status, 0) << show.err;
  EXPECT_EQ(show.out.find("PRIVATE"), std::string::npos);
  EXPECT_EQ(boost::json::parse(show.out).at("cluster_ca").at("subject").as_string(), "CN=ptrust cluster CA pool1");
  expect_refused(root_.path(), {"--config", config_, "ca", "init"}, "CLUSTER_CA_ALREADY_EXISTS");
  const std::string old_key = read_file(ca_file("ca.key"));
  ASSERT_EQ(cli({"ca", "init", "--renew"}).status, 0);
  EXPECT_NE(read_file(ca_file("ca.key")), old_key) << "renew makes a new key";
}

TEST_F(ClusterCa, SignRefusesNamesValiditiesAndRequestsOutsideTheRules) {
  ASSERT_EQ(cli({"ca", "init"}).status, 0);
  auto other = make_key(KeyKind::kP256);
  std::string tampered = csr_pem(key_.get(), "host1");
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  write_file(in_ / "tampered.csr", tampered);
  write_file(in_ / "cert.pem", self_signed({.cn = "x"}).pem());
  const std::string r = root_.path();
  auto sign_args = [&](std::string csr, std::string cn, std::string hours) {
    return std::vector<std::string>{"--config", config_, "ca", "sign", in_ / csr, "--cn", cn, "--hours", hours};
  };
  expect_refused(r, sign_args("host1.csr", "host3", "24"), "CSR_NAME_NOT_ALLOWED");
  expect_refused(r, sign_args("host1.csr", "host1", "168"), "VALIDITY_TOO_LONG");
  expect_refused(r, sign_args("host1.csr", "host1", "1000"), "VALIDITY_TOO_LONG");
  expect_refused(r, sign_args("tampered.csr", "host1", "24"), "CSR_INVALID");
  expect_refused(r, sign_args("cert.pem", "host1", "24"), "CSR_INVALID");
  // Without a cluster: section no name is allowed.
  write_file(in_ / "nocluster.yaml", "purposes:\n  licensing: {}\n");
  expect_refused(r, {"--config", in_ / "nocluster.yaml", "ca", "sign", in_ / "host1.csr", "--cn", "host1"}, "CSR_NAME_NOT_ALLOWED");
  // A malformed cluster: section is refused by every command.
  write_file(in_ / "bad.yaml", "purposes:\n  licensing: {}\ncluster: {name: 'bad name'}\n");
  expect_refused(r, {"--config", in_ / "bad.yaml", "ca", "show"}, "CONFIG_INVALID");
  // Controls: the cluster name and a node, 167 hours.
  ossl::X509Ptr c = sign({"--hours", "167"});
  ASSERT_TRUE(c);
  int days = 0, secs = 0;
  ASSERT_EQ(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(c.get()), X509_get0_notAfter(c.get())), 1);
  EXPECT_LT(days * 86400LL + secs, 168LL * 3600) << "strictly under 168 hours";
  write_file(in_ / "pool1.csr", csr_pem(other.get(), "pool1"));
  EXPECT_EQ(cli({"ca", "sign", in_ / "pool1.csr", "--cn", "pool1"}).status, 0);
}

// The CSR asks for CA:TRUE and another name: ptrust's extensions are used, never the CSR's.
TEST_F(ClusterCa, ExtensionsAreChosenByPtrustNotCopiedFromTheRequest) {
  ASSERT_EQ(cli({"ca", "init"}).status, 0);
  write_file(in_ / "greedy.csr", csr_pem(key_.get(), "evil", true, "DNS:evil.example,DNS:host1"));
  RunResult r = cli({"ca", "sign", in_ / "greedy.csr", "--cn", "host1"});
  ASSERT_EQ(r.status, 0) << r.err;
  ossl::X509Ptr c = first_cert(r.out);
  ASSERT_TRUE(c);
  EXPECT_EQ(X509_check_ca(c.get()), 0);
  EXPECT_EQ(X509_check_host(c.get(), "evil.example", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr), 0);
  EXPECT_EQ(X509_check_host(c.get(), "host1", 0, X509_CHECK_FLAG_NEVER_CHECK_SUBJECT, nullptr), 1);
  EXPECT_EQ(X509_get_extended_key_usage(c.get()), static_cast<uint32_t>(XKU_SSL_SERVER | XKU_SSL_CLIENT));
  EXPECT_EQ(X509_get_key_usage(c.get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE));  // EC: no keyEncipherment
  EXPECT_NE(X509_get0_authority_key_id(c.get()), nullptr);
  EXPECT_NE(X509_get0_subject_key_id(c.get()), nullptr);
  ossl::X509Ptr ca = first_cert(read_file(ca_file("ca.pem")));
  EXPECT_EQ(X509_check_issued(ca.get(), c.get()), X509_V_OK);
  EXPECT_EQ(X509_verify(c.get(), X509_get0_pubkey(ca.get())), 1);
  auto rsa = make_key(KeyKind::kRsa2048);
  write_file(in_ / "rsa.csr", csr_pem(rsa.get(), "host2"));
  RunResult rr = cli({"ca", "sign", in_ / "rsa.csr", "--cn", "host2"});
  ASSERT_EQ(rr.status, 0) << rr.err;
  EXPECT_EQ(X509_get_key_usage(first_cert(rr.out).get()), static_cast<uint32_t>(KU_DIGITAL_SIGNATURE | KU_KEY_ENCIPHERMENT));
}

TEST_F(ClusterCa, SerialsStrictlyIncreaseAcrossSignaturesAndARenewal) {
  ASSERT_EQ(cli({"ca", "init"}).status, 0);
  std::uint64_t last = 0;
  for (int i = 0; i < 100; ++i) {
    if (i == 60) {
      ASSERT_EQ(cli({"ca", "init", "--renew"}).status, 0);
    }
    ossl::X509Ptr c = sign();
    ASSERT_TRUE(c);
    std::uint64_t s = serial_of(c.get());
    ASSERT_GT(s, last) << "signature " << i;
    last = s;
  }
  EXPECT_EQ(last, 100u);
  // A renewal whose serial file was lost is refused, not restarted at 1.
  fsys::remove(ca_file("serial"));
  expect_refused(root_.path(), {"--config", config_, "ca", "init", "--renew"}, "STORE_CORRUPT");
  expect_refused(root_.path(), {"--config", config_, "ca", "sign", in_ / "host1.csr", "--cn", "host1"}, "STORE_CORRUPT");
}

TEST_F(ClusterCa, ConcurrentSignersNeverShareASerial) {
  ASSERT_EQ(cli({"ca", "init"}).status, 0);
  std::set<std::uint64_t> seen;
  for (int round = 0; round < 25; ++round) {
    RunResult a, b;
    std::thread ta([&] { a = cli({"ca", "sign", in_ / "host1.csr", "--cn", "host1"}); });
    std::thread tb([&] { b = cli({"ca", "sign", in_ / "host1.csr", "--cn", "host2"}); });
    ta.join();
    tb.join();
    ASSERT_EQ(a.status, 0) << a.err;
    ASSERT_EQ(b.status, 0) << b.err;
    for (const RunResult* r : {&a, &b}) {
      ossl::X509Ptr c = first_cert(r->out);
      ASSERT_TRUE(c);
      ASSERT_TRUE(seen.insert(serial_of(c.get())).second) << "serial reused in round " << round;
    }
  }
  EXPECT_EQ(seen.size(), 50u);
  EXPECT_EQ(*seen.rbegin(), 50u);
}

// revoke-below: `verify` refuses the cluster CA's certificates under the minimum (and only
// those: another CA's certificate with a small serial is not the cluster CA's).
TEST_F(ClusterCa, VerifyRefusesCertificatesBelowTheMinimumSerial) {
  ASSERT_EQ(cli({"ca", "init"}).status, 0);
  ASSERT_EQ(cli({"ca", "trust", "--purpose", "licensing"}).status, 0);
  ossl::X509Ptr first = sign(), second = sign();
  write_file(in_ / "first.pem", x509::pem(first.get()));
  write_file(in_ / "second.pem", x509::pem(second.get()));
  Issued other_ca = self_signed({.cn = "Other CA", .ca = true});
  Issued low = issue({.cn = "host1", .dns = {"host1"}, .serial = 1}, other_ca);
  write_file(in_ / "other.pem", other_ca.pem());
  ASSERT_EQ(cli({"install", in_ / "other.pem", "--ca", "--purpose", "licensing"}).status, 0);
  write_file(in_ / "low.pem", low.pem());
  auto verify = [&](const std::string& f) { return cli({"verify", "--purpose", "licensing", in_ / f, "--host", "host1"}); };
  EXPECT_EQ(verify("first.pem").status, 0);
  RunResult rb = cli({"ca", "revoke-below", "2"});
  ASSERT_EQ(rb.status, 0) << rb.err;
  EXPECT_EQ(mode_of(ca_file("min-serial")), 0644u);
  RunResult st = cli({"status", "--json"});
  auto ca = boost::json::parse(st.out).at("cluster_ca");
  EXPECT_EQ(ca.at("min_serial").as_int64(), 2) << st.out;
  EXPECT_EQ(ca.at("last_serial").as_int64(), 2) << st.out;
  RunResult v = verify("first.pem");
  EXPECT_EQ(v.status, 1);
  EXPECT_NE(v.out.find("reason=SERIAL_BELOW_MINIMUM"), std::string::npos) << v.out << v.err;
  EXPECT_EQ(verify("second.pem").status, 0) << verify("second.pem").out;
  EXPECT_EQ(verify("low.pem").status, 0) << "another CA's serial 1 is not the cluster CA's";
  // Lowering is refused unless asked for; the root stays as it was.
  expect_refused(root_.path(), {"--config", config_, "ca", "revoke-below", "1"}, "USAGE");
  // A corrupt min-serial fails closed.
  ASSERT_EQ(::chmod(ca_file("min-serial").c_str(), 0644), 0);
  write_file(ca_file("min-serial"), "two\n");
  RunResult corrupt = verify("second.pem");
  EXPECT_EQ(corrupt.status, 1);
  EXPECT_NE(corrupt.out.find("STORE_CORRUPT"), std::string::npos) << corrupt.out << corrupt.err;
}

}  // namespace
}  // namespace ptrust::testing
