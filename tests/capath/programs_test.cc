// Unmodified programs on the per-purpose CA directories: python3's ssl.create_default_context()
// through SSL_CERT_DIR, and curl --capath, against real `openssl s_server`s on 127.0.0.1,
// across a CA removal and a pin install, driven by the real `ptrust` binary.
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/support/run.h"
#include "tests/support/sserver.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {
namespace {

struct Pki {
  Issued ca = self_signed({.cn = "Capath Root", .ca = true});
  Issued by_ca = issue({.cn = "localhost", .dns = {"localhost"}, .ips = {"127.0.0.1"}}, ca);
  Issued revoked = issue({.cn = "localhost", .dns = {"localhost"}, .ips = {"127.0.0.1"}}, ca);
  Issued pinned = self_signed({.cn = "localhost", .dns = {"localhost"}, .ips = {"127.0.0.1"}});
};

const Pki& pki() {
  static Pki p;
  return p;
}

// Every variable that changes where OpenSSL, python or curl look for CAs is removed, so only
// what a test passes counts (this machine sets SSL_CERT_FILE, CURL_CA_BUNDLE, ...).
std::vector<std::string> clean_env(const std::vector<std::string>& set) {
  std::vector<std::string> argv{"env"};
  for (const char* v : {"SSL_CERT_FILE", "SSL_CERT_DIR", "CURL_CA_BUNDLE", "OPENSSL_CONF", "OPENSSL_MODULES",
                        "PTRUST_ROOT", "PTRUST_CONFIG", "REQUESTS_CA_BUNDLE", "http_proxy", "https_proxy",
                        "HTTPS_PROXY", "ALL_PROXY", "all_proxy"})
    argv.insert(argv.end(), {"-u", v});
  argv.insert(argv.end(), set.begin(), set.end());
  return argv;
}

// Prints "loaded <certs> <crls>" (what the default paths put into the store up front) and
// then "verified ..." or "refused <reason>".
constexpr const char* kPython = R"(
import socket, ssl, sys
host, port, crl = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "crl"
ctx = ssl.create_default_context()
if crl:
    ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
st = ctx.cert_store_stats()
print("loaded", st["x509"], st["crl"])
try:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s, server_hostname=host) as t:
            print("verified", t.version())
except ssl.SSLCertVerificationError as e:
    print("refused", e.verify_message)
)";

class Programs : public ::testing::Test {
 protected:
  void SetUp() override {
    for (auto [name, x] : {std::pair{"ca", &pki().ca}, {"by_ca", &pki().by_ca}, {"revoked", &pki().revoked},
                           {"pinned", &pki().pinned}}) {
      write_file(in / (std::string(name) + ".pem"), x->pem());
      write_file(in / (std::string(name) + ".key"), x->key_pem());
    }
    auto crl = make_crl(pki().ca, {pki().revoked.cert.get()});
    write_file(in / "ca.crl", crl_pem(crl.get()));
  }

  std::unique_ptr<OpensslServer> serve(const std::string& name) {
    return std::make_unique<OpensslServer>(
        std::vector<std::string>{"-cert", in / (name + ".pem"), "-key", in / (name + ".key"), "-www"},
        in / (name + ".log"));
  }
  void ok(const std::vector<std::string>& args) {
    RunResult r = ptrust(root.path(), args);
    ASSERT_EQ(r.status, 0) << args[0] << ": " << r.err;
  }
  std::string uuid_of_first() {
    std::string list = ptrust(root.path(), {"list", "--json"}).out;
    size_t at = list.find("\"uuid\":\"");
    EXPECT_NE(at, std::string::npos) << list;
    return at == std::string::npos ? "" : list.substr(at + 8, 36);
  }
  std::string capath(const std::string& p) const { return root / ("etc/trusted-certs/capath/" + p); }
  std::string no_ca() const { return root / "etc/trusted-certs/capath/no-ca.pem"; }

  // python3 with SSL_CERT_DIR = the purpose's directory and SSL_CERT_FILE=/dev/null.
  RunResult python(const std::string& purpose, int port, bool crl = false) {
    auto argv = clean_env({"SSL_CERT_DIR=" + capath(purpose), "SSL_CERT_FILE=/dev/null"});
    argv.insert(argv.end(), {"python3", "-c", kPython, "localhost", std::to_string(port), crl ? "crl" : "-"});
    return run(argv);
  }
  bool python_verifies(const std::string& purpose, int port, bool crl = false) {
    RunResult r = python(purpose, port, crl);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.out.find("loaded 0 0\n"), std::string::npos) << "the system bundle was loaded:\n" << r.out;
    EXPECT_TRUE(r.out.find("verified") != std::string::npos || r.out.find("refused") != std::string::npos) << r.out;
    return r.out.find("verified") != std::string::npos;
  }

  // curl --capath DIR --cacert no-ca.pem; exit 0 = verified, 60 = refused.
  RunResult curl(const std::vector<std::string>& ca_args, int port) {
    std::string p = std::to_string(port);
    auto argv = clean_env({});
    argv.insert(argv.end(), {"curl", "-sS", "-v", "--noproxy", "*", "--resolve", "localhost:" + p + ":127.0.0.1",
                             "-o", "/dev/null"});
    argv.insert(argv.end(), ca_args.begin(), ca_args.end());
    argv.push_back("https://localhost:" + p + "/");
    return run(argv);
  }
  bool curl_verifies(const std::string& purpose, int port) {
    RunResult r = curl({"--capath", capath(purpose), "--cacert", no_ca()}, port);
    EXPECT_NE(r.err.find("CAfile: " + no_ca()), std::string::npos) << r.err;
    EXPECT_TRUE(r.status == 0 || r.status == 60) << r.status << ": " << r.err;
    return r.status == 0;
  }

  TempDir root, in;
};

TEST_F(Programs, PythonDefaultContextFollowsThePurposeAcrossCaRemovalAndPinInstall) {
  auto by_ca = serve("by_ca");
  auto pinned = serve("pinned");
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  EXPECT_TRUE(python_verifies("licensing", by_ca->port()));
  EXPECT_FALSE(python_verifies("licensing", pinned->port()));
  EXPECT_FALSE(python_verifies("ldaps", by_ca->port())) << "mode none: an empty directory trusts nothing";

  // CA removed: trusted → refused, on the next handshake of a new process.
  ok({"uninstall", uuid_of_first()});
  EXPECT_FALSE(python_verifies("licensing", by_ca->port()));

  // CA back, then a pin: pinned mode wins; only the pinned self-signed server is accepted.
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  EXPECT_TRUE(python_verifies("licensing", by_ca->port()));
  ok({"install", in / "pinned.pem", "--pinned", "--purpose", "licensing"});
  EXPECT_TRUE(python_verifies("licensing", pinned->port()));
  EXPECT_FALSE(python_verifies("licensing", by_ca->port()));
}

TEST_F(Programs, PythonAppliesTheDirectorysCrlsWhenAskedTo) {
  auto revoked = serve("revoked");
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  ok({"crl", "install", in / "ca.crl", "--name", "root.crl"});
  EXPECT_TRUE(python_verifies("licensing", revoked->port(), false)) << "python checks no CRL by default";
  EXPECT_FALSE(python_verifies("licensing", revoked->port(), true));
  // crl-policy off: the directory holds no CRL, so even a CRL-checking client fails closed
  // (no CRL for the leaf) rather than consult one the purpose excludes.
  std::filesystem::create_directories(root / "etc/ptrust");
  write_file(root / "etc/ptrust/ptrust.yaml", "purposes:\n  licensing:\n    crl-policy: off\n  ldaps: {}\n");
  ok({"sync"});
  RunResult r = python("licensing", revoked->port(), true);
  EXPECT_NE(r.out.find("refused unable to get certificate CRL"), std::string::npos) << r.out;
  EXPECT_TRUE(python_verifies("licensing", revoked->port(), false));
}

TEST_F(Programs, PythonWithoutSslCertFileAlsoLoadsTheSystemBundle) {
  // What the README warns about: SSL_CERT_DIR alone keeps OpenSSL's default CA file.
  ASSERT_TRUE(std::filesystem::exists("/usr/lib/ssl/cert.pem")) << "scripts/deps.sh installs ca-certificates";
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  auto argv = clean_env({"SSL_CERT_DIR=" + capath("licensing")});
  argv.insert(argv.end(), {"python3", "-c", kPython, "localhost", "1", "-"});
  RunResult r = run(argv);
  EXPECT_EQ(r.out.find("loaded 0 0"), std::string::npos) << r.out;
}

TEST_F(Programs, SslCertDirWithAStoreUriSearchesTheWorkingDirectory) {
  // Why SSL_CERT_DIR=ptrust://P is unsafe: OpenSSL splits it on ':' and searches ./ptrust/.
  auto by_ca = serve("by_ca");
  TempDir cwd;
  std::filesystem::create_directory(cwd / "ptrust");
  char hash[32];
  std::snprintf(hash, sizeof hash, "%08lx.0", X509_subject_name_hash(pki().ca.cert.get()));
  write_file(cwd / ("ptrust/" + std::string(hash)), pki().ca.pem());  // planted, not in any store
  auto argv = clean_env({"SSL_CERT_DIR=ptrust://licensing", "SSL_CERT_FILE=/dev/null"});
  std::string cmd;
  for (const auto& a : argv) cmd += "'" + a + "' ";
  RunResult r = run({"sh", "-c", "cd '" + cwd.path() + "' && exec " + cmd + "python3 -c \"$0\" localhost " +
                                     std::to_string(by_ca->port()) + " -",
                     kPython});
  EXPECT_NE(r.out.find("verified"), std::string::npos) << "OpenSSL no longer trusts ./ptrust/: update the README\n"
                                                       << r.out << r.err;
}

TEST_F(Programs, CurlCapathFollowsThePurposeAcrossCaRemovalAndPinInstall) {
  auto by_ca = serve("by_ca");
  auto pinned = serve("pinned");
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  EXPECT_TRUE(curl_verifies("licensing", by_ca->port()));
  EXPECT_FALSE(curl_verifies("licensing", pinned->port()));
  EXPECT_FALSE(curl_verifies("ldaps", by_ca->port())) << "mode none";

  ok({"uninstall", uuid_of_first()});
  EXPECT_FALSE(curl_verifies("licensing", by_ca->port()));

  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  ok({"install", in / "pinned.pem", "--pinned", "--purpose", "licensing"});
  EXPECT_TRUE(curl_verifies("licensing", pinned->port()));
  EXPECT_FALSE(curl_verifies("licensing", by_ca->port()));
}

TEST_F(Programs, CurlCapathAloneStillLoadsItsBuiltInCaFile) {
  // Measured: --capath does not replace curl's compiled-in CA file; only --cacert does, and
  // --cacert /dev/null (or an empty file) is an error. Hence no-ca.pem.
  ok({"install", in / "ca.pem", "--ca", "--purpose", "licensing"});
  auto by_ca = serve("by_ca");
  RunResult alone = curl({"--capath", capath("licensing")}, by_ca->port());
  EXPECT_EQ(alone.status, 0) << alone.err;
  EXPECT_EQ(alone.err.find("CAfile: none"), std::string::npos);
  EXPECT_EQ(alone.err.find("CAfile: " + no_ca()), std::string::npos);
  RunResult devnull = curl({"--capath", capath("licensing"), "--cacert", "/dev/null"}, by_ca->port());
  EXPECT_EQ(devnull.status, 77) << devnull.err;
}

}  // namespace
}  // namespace ptrust::testing
