// Hostile inputs to `ptrust install` / `uninstall`: each is refused with exit 1, one line
// naming a stable error code, and leaves the whole root byte-identical.
#include <gtest/gtest.h>

#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>

#include "tests/support/run.h"
#include "tests/support/testpki.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

struct Fixtures {
  Issued ca = self_signed({.cn = "Hostile Root", .ca = true});
  Issued leaf = issue({.cn = "leaf.example"}, ca);
  Issued peer = self_signed({.cn = "peer.example"});
  Issued expired = self_signed({.cn = "expired", .ca = true, .not_before = -7200, .not_after = -3600});
  Issued future = self_signed({.cn = "future", .ca = true, .not_before = 3600, .not_after = 7200});
};

const Fixtures& fx() {
  static Fixtures f;
  return f;
}

std::string bio_text(const std::function<void(BIO*)>& write) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  write(b.get());
  char* p = nullptr;
  long n = BIO_get_mem_data(b.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

std::string csr_pem() {
  X509_REQ* req = X509_REQ_new();
  X509_REQ_set_pubkey(req, fx().leaf.key.get());
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>("csr"), -1, -1, 0);
  X509_REQ_sign(req, fx().leaf.key.get(), EVP_sha256());
  std::string s = bio_text([&](BIO* b) { PEM_write_bio_X509_REQ(b, req); });
  X509_REQ_free(req);
  return s;
}

std::string random_bytes(size_t n, unsigned char first = 0) {
  std::string s(n, '\0');
  RAND_bytes(reinterpret_cast<unsigned char*>(s.data()), static_cast<int>(n));
  if (first) s[0] = static_cast<char>(first);
  return s;
}

std::string der_key() {
  unsigned char* out = nullptr;
  int n = i2d_PrivateKey(fx().leaf.key.get(), &out);
  std::string s(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  OPENSSL_free(out);
  return s;
}

// How a case prepares its input: returns the path to pass (inside dir).
using Make = std::function<std::string(const TempDir& dir)>;

Make file(std::function<std::string()> content) {
  return [content](const TempDir& d) {
    write_file(d / "input", content());
    return d / "input";
  };
}

struct Case {
  const char* name;
  Make input;                       // null for uninstall cases
  std::vector<std::string> args;    // after "install FILE" (or the whole command when input is null)
  const char* code;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

const std::vector<std::string> kCa{"--ca", "--purpose", "licensing"};

std::vector<Case> cases() {
  return {
      {"empty_file", file([] { return std::string(); }), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"random_bytes", file([] { return random_bytes(1024); }), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"der_garbage", file([] { return random_bytes(700, 0x30); }), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"zeros", file([] { return std::string(4096, '\0'); }), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"truncated_pem", file([] { auto p = fx().ca.pem(); return p.substr(0, p.size() - 60); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"missing_end_line", file([] { auto p = fx().ca.pem(); return p.substr(0, p.find("-----END")); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"two_certs", file([] { return fx().ca.pem() + fx().leaf.pem(); }), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"cert_and_key", file([] { return fx().ca.pem() + fx().ca.key_pem(); }), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"key_only", file([] { return fx().ca.key_pem(); }), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"encrypted_key",
       file([] {
         return bio_text([](BIO* b) {
           PEM_write_bio_PKCS8PrivateKey(b, fx().leaf.key.get(), EVP_aes_256_cbc(), nullptr, 0, nullptr,
                                         const_cast<char*>("secret"));
         });
       }),
       kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"der_key", file(der_key), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"der_cert_then_der_key", file([] { return fx().ca.der() + der_key(); }), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"pem_cert_then_der_key", file([] { return fx().ca.pem() + der_key(); }), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"der_key_then_pem_cert", file([] { return der_key() + "\n" + fx().ca.pem(); }), kCa, "PRIVATE_KEY_NOT_ALLOWED"},
      {"csr", file(csr_pem), kCa, "TRUSTED_CERTIFICATE_INVALID"},
      {"crl_as_cert", file([] { auto c = make_crl(fx().ca, {}); return crl_pem(c.get()); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"der_crl_as_cert", file([] { auto c = make_crl(fx().ca, {}); return crl_der(c.get()); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"cert_and_public_key",
       file([] { return fx().ca.pem() + bio_text([](BIO* b) { PEM_write_bio_PUBKEY(b, fx().ca.key.get()); }); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"pkcs7_block", file([] { return std::string("-----BEGIN PKCS7-----\nMAA=\n-----END PKCS7-----\n"); }), kCa,
       "TRUSTED_CERTIFICATE_INVALID"},
      {"over_1_mib", file([] { return fx().ca.pem() + std::string(1100 * 1024, '#'); }), kCa, "INPUT_UNREADABLE"},
      {"directory", [](const TempDir& d) { ::mkdir((d / "adir").c_str(), 0755); return d / "adir"; }, kCa,
       "INPUT_UNREADABLE"},
      {"missing_file", [](const TempDir& d) { return d / "nonexistent.pem"; }, kCa, "INPUT_UNREADABLE"},
      {"symlink",
       [](const TempDir& d) {
         write_file(d / "real.pem", fx().ca.pem());
         (void)!::symlink((d / "real.pem").c_str(), (d / "link.pem").c_str());
         return d / "link.pem";
       },
       kCa, "INPUT_UNREADABLE"},
      {"fifo", [](const TempDir& d) { ::mkfifo((d / "fifo").c_str(), 0644); return d / "fifo"; }, kCa,
       "INPUT_UNREADABLE"},
      {"dev_null", [](const TempDir&) { return std::string("/dev/null"); }, kCa, "INPUT_UNREADABLE"},
      {"purpose_dotdot", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "../x"}, "UNKNOWN_PURPOSE"},
      {"purpose_upper", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "LICENSING"}, "UNKNOWN_PURPOSE"},
      {"purpose_empty_list", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", ""}, "UNKNOWN_PURPOSE"},
      {"purpose_trailing_comma", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "licensing,"},
       "UNKNOWN_PURPOSE"},
      {"purpose_undeclared", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "wlb"}, "UNKNOWN_PURPOSE"},
      {"purpose_too_long", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", std::string(33, 'a')},
       "UNKNOWN_PURPOSE"},
      {"purpose_repeated", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "ldaps,ldaps"}, "UNKNOWN_PURPOSE"},
      {"pinned_general", file([] { return fx().peer.pem(); }), {"--pinned", "--purpose", "general"}, "UNKNOWN_PURPOSE"},
      {"pinned_without_purpose", file([] { return fx().peer.pem(); }), {"--pinned"}, "CERTIFICATE_LACKS_PURPOSE"},
      {"leaf_as_ca", file([] { return fx().leaf.pem(); }), kCa, "NOT_A_CA_CERTIFICATE"},
      {"expired", file([] { return fx().expired.pem(); }), kCa, "TRUSTED_CERTIFICATE_EXPIRED"},
      {"not_yet_valid", file([] { return fx().future.pem(); }), kCa, "TRUSTED_CERTIFICATE_NOT_VALID_YET"},
      {"duplicate", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "ldaps,licensing"},
       "TRUSTED_CERTIFICATE_ALREADY_EXISTS"},
      {"duplicate_der", file([] { return fx().ca.der(); }), kCa, "TRUSTED_CERTIFICATE_ALREADY_EXISTS"},
      {"uninstall_unknown", nullptr, {"uninstall", "00000000-0000-4000-8000-000000000000"},
       "TRUSTED_CERTIFICATE_NOT_FOUND"},
      {"uninstall_path", nullptr, {"uninstall", "../../ptrust-no-such-dir/passwd"}, "TRUSTED_CERTIFICATE_NOT_FOUND"},
      {"uninstall_empty", nullptr, {"uninstall", ""}, "TRUSTED_CERTIFICATE_NOT_FOUND"},
      // Echoed user input never breaks the one-line promise.
      {"uninstall_newline", nullptr, {"uninstall", "x\nptrust: OK: forged second line"}, "TRUSTED_CERTIFICATE_NOT_FOUND"},
      {"purpose_newline", file([] { return fx().ca.pem(); }), {"--ca", "--purpose", "lic\nensing"}, "UNKNOWN_PURPOSE"},
      {"crl_name_escape", nullptr, {"crl", "uninstall", "a\r\x1b[2Kb"}, "CRL_DOES_NOT_EXIST"},
  };
}

class Hostile : public ::testing::TestWithParam<Case> {
 protected:
  static void SetUpTestSuite() {
    root_ = new TempDir;
    TempDir in;
    write_file(in / "ca.pem", fx().ca.pem());
    write_file(in / "peer.pem", fx().peer.pem());
    ASSERT_EQ(ptrust(root_->path(), {"install", in / "ca.pem", "--ca", "--purpose", "licensing"}).status, 0);
    ASSERT_EQ(ptrust(root_->path(), {"install", in / "peer.pem", "--pinned", "--purpose", "ldaps"}).status, 0);
  }
  static void TearDownTestSuite() { delete root_; }
  static TempDir* root_;
};

TempDir* Hostile::root_ = nullptr;

TEST_P(Hostile, IsRefusedAndLeavesTheRootByteIdentical) {
  const Case& c = GetParam();
  TempDir in;
  std::vector<std::string> args;
  if (c.input) {
    args = {"install", c.input(in)};
    args.insert(args.end(), c.args.begin(), c.args.end());
  } else {
    args = c.args;
  }
  Tree before = snapshot(root_->path());
  RunResult r = ptrust(root_->path(), args);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.out, "") << "a refusal prints no UUID";
  EXPECT_EQ(r.err.rfind(std::string("ptrust: ") + c.code + ": ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one line: " << r.err;
  EXPECT_EQ(std::count_if(r.err.begin(), r.err.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }), 1)
      << "no control character but the final newline: " << r.err;
  EXPECT_EQ(diff(before, snapshot(root_->path())), "");
}

INSTANTIATE_TEST_SUITE_P(Table, Hostile, ::testing::ValuesIn(cases()),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(HostileCount, AtLeastTwentyFiveInputs) { EXPECT_GE(cases().size(), 25u); }

// Unreadable for the user running the command (root reads everything, so drop to nobody).
TEST(HostileUnreadable, UnreadableFileIsRefused) {
  TempDir root;
  TempDir in;
  ::chmod(in.path().c_str(), 0755);
  write_file(in / "ca.pem", fx().ca.pem());
  ::chmod((in / "ca.pem").c_str(), 0000);
  Tree before = snapshot(root.path());
  std::vector<std::string> argv{PTRUST_BIN, "--root", root.path(), "install", in / "ca.pem", "--ca"};
  if (::geteuid() == 0) argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  RunResult r = run(argv);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_EQ(r.err.rfind("ptrust: INPUT_UNREADABLE: ", 0), 0u) << r.err;
  EXPECT_EQ(diff(before, snapshot(root.path())), "");
}

}  // namespace
}  // namespace ptrust::testing
