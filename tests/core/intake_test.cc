// Certificate intake: every accepted shape and every refusal, as a table.
#include <gtest/gtest.h>
#include <openssl/provider.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>

#include "core/cert.h"
#include "core/error.h"
#include "core/ossl.h"
#include "core/parallel.h"
#include "core/x509.h"
#include "tests/support/testpki.h"

namespace ptrust {
namespace {

using testing::CertSpec;
using testing::Issued;

struct Pki {
  Issued ca = testing::self_signed({.cn = "Intake Root", .ca = true});
  Issued leaf = testing::issue({.cn = "leaf.example", .dns = {"leaf.example"}}, ca);
  Issued other = testing::issue({.cn = "other.example"}, ca);
};

const Pki& pki() {
  static Pki p;
  return p;
}

struct RefusalCase {
  const char* name;
  std::function<std::string()> input;
  Code code;
};

void PrintTo(const RefusalCase& c, std::ostream* os) { *os << c.name; }

class IntakeRefusal : public ::testing::TestWithParam<RefusalCase> {};

TEST_P(IntakeRefusal, RefusesWithStableCode) {
  const auto& c = GetParam();
  try {
    Certificate::parse(c.input());
    FAIL() << "accepted " << c.name;
  } catch (const Error& e) {
    EXPECT_EQ(code_name(e.code()), code_name(c.code)) << e.what();
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "one-line message";
  }
}

std::string crl_text() {
  auto crl = testing::make_crl(pki().ca, {});
  return testing::crl_pem(crl.get());
}

INSTANTIATE_TEST_SUITE_P(
    Table, IntakeRefusal,
    ::testing::Values(
        RefusalCase{"empty", [] { return std::string(); }, Code::kTrustedCertificateInvalid},
        RefusalCase{"garbage", [] { return std::string("hello, not a certificate\n"); }, Code::kTrustedCertificateInvalid},
        RefusalCase{"two_certs", [] { return pki().leaf.pem() + pki().other.pem(); }, Code::kTrustedCertificateInvalid},
        RefusalCase{"truncated_pem",
                    [] {
                      auto p = pki().leaf.pem();
                      return p.substr(0, p.size() / 2);
                    },
                    Code::kTrustedCertificateInvalid},
        RefusalCase{"cert_plus_key", [] { return pki().leaf.pem() + pki().leaf.key_pem(); }, Code::kPrivateKeyNotAllowed},
        RefusalCase{"key_before_cert", [] { return pki().leaf.key_pem() + pki().leaf.pem(); }, Code::kPrivateKeyNotAllowed},
        RefusalCase{"key_only", [] { return pki().leaf.key_pem(); }, Code::kPrivateKeyNotAllowed},
        RefusalCase{"rsa_legacy_key_header",
                    [] { return pki().leaf.pem() + "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"; },
                    Code::kPrivateKeyNotAllowed},
        RefusalCase{"der_key",
                    [] {
                      unsigned char* out = nullptr;
                      int n = i2d_PrivateKey(pki().leaf.key.get(), &out);
                      std::string s(reinterpret_cast<char*>(out), static_cast<size_t>(n));
                      OPENSSL_free(out);
                      return s;
                    },
                    Code::kPrivateKeyNotAllowed},
        RefusalCase{"crl_as_cert", crl_text, Code::kTrustedCertificateInvalid},
        RefusalCase{"cert_plus_crl", [] { return pki().leaf.pem() + crl_text(); }, Code::kTrustedCertificateInvalid},
        RefusalCase{"der_with_trailing_bytes", [] { return pki().leaf.der() + "x"; }, Code::kTrustedCertificateInvalid},
        RefusalCase{"der_truncated",
                    [] {
                      auto d = pki().leaf.der();
                      return d.substr(0, d.size() - 10);
                    },
                    Code::kTrustedCertificateInvalid},
        RefusalCase{"public_key_block",
                    [] { return std::string("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"); },
                    Code::kTrustedCertificateInvalid},
        RefusalCase{"corrupted_base64",
                    [] {
                      auto p = pki().leaf.pem();
                      p[40] = '#';
                      return p;
                    },
                    Code::kTrustedCertificateInvalid}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(Intake, AcceptsPemAndDerOfTheSameCertificateIdentically) {
  Certificate a = Certificate::parse(pki().leaf.pem());
  Certificate b = Certificate::parse(pki().leaf.der());
  EXPECT_EQ(a.der(), b.der());
  EXPECT_EQ(a.pem(), pki().leaf.pem());
}

TEST(Intake, StoresTheReEncodingNotTheInputText) {
  std::string input = "Subject: a comment a user pasted\n" + pki().leaf.pem() + "trailing words\n";
  Certificate c = Certificate::parse(input);
  EXPECT_EQ(c.pem(), pki().leaf.pem());
  EXPECT_EQ(c.pem().find("comment"), std::string::npos);
}

TEST(Intake, DescribesTheCertificate) {
  CertInfo i = Certificate::parse(pki().leaf.pem()).info();
  EXPECT_EQ(i.subject, "CN=leaf.example");
  EXPECT_EQ(i.issuer, "CN=Intake Root");
  EXPECT_EQ(i.sha256.size(), 32u * 3 - 1);
  EXPECT_EQ(i.sha1.size(), 20u * 3 - 1);
  EXPECT_EQ(i.sha256, x509::fingerprint(pki().leaf.cert.get(), EVP_sha256()));
  EXPECT_NE(i.sha256.find(':'), std::string::npos);
  EXPECT_EQ(i.key_type, "EC");
  EXPECT_EQ(i.key_bits, 256);
  EXPECT_FALSE(i.is_ca);
  EXPECT_LT(i.not_before, i.not_after);
  EXPECT_TRUE(Certificate::parse(pki().ca.pem()).info().is_ca);
}

// `import` decodes on several threads, each in a library context of its own (parse's
// `libctx`): the certificate is the same, decoded by that context's providers.
TEST(Intake, DecodesInTheLibraryContextItIsGiven) {
  ossl::LibCtxPtr own(OSSL_LIB_CTX_new());
  ASSERT_TRUE(own);
  for (const auto* pem : {&pki().leaf, &pki().ca}) {
    Certificate c = Certificate::parse(pem->pem(), own.get());
    EXPECT_EQ(c.info(), Certificate::parse(pem->pem()).info()) << c.info().subject;
    EXPECT_EQ(c.der(), pem->der());
  }
  EXPECT_EQ(Certificate::parse(pki().leaf.der(), own.get()).pem(), pki().leaf.pem());
  // A certificate with invalid extensions (basicConstraints twice) is taken or refused alike.
  ossl::X509Ptr twice(X509_dup(pki().ca.cert.get()));
  ossl::X509ExtensionPtr bc(X509V3_EXT_conf_nid(nullptr, nullptr, NID_basic_constraints, "critical,CA:TRUE"));
  ASSERT_TRUE(twice && bc && X509_add_ext(twice.get(), bc.get(), -1) == 1);
  ASSERT_GT(X509_sign(twice.get(), pki().ca.key.get(), EVP_sha256()), 0);
  const std::string twice_pem = x509::pem(twice.get());
  Certificate in_own = Certificate::parse(twice_pem, own.get()), in_default = Certificate::parse(twice_pem);
  EXPECT_EQ(in_own.info(), in_default.info());
  EXPECT_EQ(X509_get_extension_flags(in_own.get()), X509_get_extension_flags(in_default.get()));
  EXPECT_NE(X509_get_extension_flags(in_own.get()) & EXFLAG_INVALID, 0u);
  // A context that holds no decoders cannot decode the key: the context given is the one used.
  ossl::LibCtxPtr bare(OSSL_LIB_CTX_new());
  OSSL_PROVIDER* null = OSSL_PROVIDER_load(bare.get(), "null");
  ASSERT_NE(null, nullptr);
  {
    Certificate c = Certificate::parse(pki().leaf.pem(), bare.get());
    EXPECT_EQ(c.info().key_type, "");
    EXPECT_EQ(c.info().subject, "CN=leaf.example");
  }
  OSSL_PROVIDER_unload(null);
  // Intake refusals are the same in any context.
  try {
    Certificate::parse(pki().leaf.pem() + pki().leaf.key_pem(), own.get());
    ADD_FAILURE() << "a private key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kPrivateKeyNotAllowed);
  }
}

// The vetting threads' contexts are configured as the default one is: a configuration that
// activates only the null provider leaves a key undecoded there; a missing file is no
// configuration (the default providers); a malformed one gives no context (the default one).
TEST(Intake, DecodingContextsFollowTheOpenSslConfiguration) {
  const CertInfo reference = Certificate::parse(pki().leaf.pem()).info();  // the default context is set up first
  const char* was = std::getenv("OPENSSL_CONF");
  const std::string saved = was ? was : "";
  const auto dir = std::filesystem::temp_directory_path() / ("ptrust-conf-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto with_conf = [&](const std::string& file) {
    ::setenv("OPENSSL_CONF", file.c_str(), 1);
    ossl::LibCtxPtr ctx = Certificate::decoding_context();
    was ? ::setenv("OPENSSL_CONF", saved.c_str(), 1) : ::unsetenv("OPENSSL_CONF");
    return ctx;
  };
  auto write = [&](const char* name, const char* text) {
    std::ofstream(dir / name) << text;
    return (dir / name).string();
  };
  {
    ossl::LibCtxPtr ctx = with_conf(write("null.cnf",
                                          "openssl_conf = init\n[init]\nproviders = provs\n"
                                          "[provs]\nnull = null_sect\n[null_sect]\nactivate = 1\n"));
    ASSERT_TRUE(ctx);
    EXPECT_EQ(Certificate::parse(pki().leaf.pem(), ctx.get()).info().key_type, "");
  }
  {
    ossl::LibCtxPtr ctx = with_conf((dir / "missing.cnf").string());
    ASSERT_TRUE(ctx);
    EXPECT_EQ(Certificate::parse(pki().leaf.pem(), ctx.get()).info().key_type, reference.key_type);
  }
  EXPECT_FALSE(with_conf(write("bad.cnf", "openssl_conf = init\n[init\nproviders = provs\n")));
  {
    ossl::LibCtxPtr ctx = Certificate::decoding_context();  // this process's own configuration
    ASSERT_TRUE(ctx);
    CertInfo i = Certificate::parse(pki().leaf.pem(), ctx.get()).info();
    EXPECT_EQ(i.key_type, reference.key_type);
    EXPECT_EQ(i.key_bits, reference.key_bits);
    EXPECT_EQ(i.sha256, reference.sha256);
  }
  std::filesystem::remove_all(dir);
}

struct State {
  static inline std::atomic<int> made{0}, alive{0};
  std::thread::id owner = std::this_thread::get_id();
  State() { ++made, ++alive; }
  ~State() { --alive; }
};

// parallel_for_with: every index once, one State per thread (made before and destroyed after
// its chunk, never shared), and the refusal of the lowest index that threw.
TEST(ParallelFor, EachThreadHasItsOwnStateAndTheLowestFailureIsRethrown) {
  constexpr size_t kN = 1000;
  std::vector<std::atomic<int>> seen(kN);
  std::atomic<bool> shared{false};
  std::mutex m;
  std::set<const State*> states;
  parallel_for_with<State>(kN, [&](State& s, size_t i) {
    if (s.owner != std::this_thread::get_id()) shared = true;
    ++seen[i];
    std::lock_guard<std::mutex> g(m);
    states.insert(&s);
  });
  for (size_t i = 0; i < kN; ++i) EXPECT_EQ(seen[i].load(), 1) << i;
  EXPECT_FALSE(shared.load());
  EXPECT_EQ(State::alive.load(), 0);
  const unsigned want = std::min(4u, std::max(1u, std::thread::hardware_concurrency()));
  EXPECT_EQ(State::made.load(), static_cast<int>(want));
  EXPECT_EQ(states.size(), want);
  for (size_t first : {size_t{10}, size_t{600}, size_t{999}}) {
    try {
      parallel_for_with<State>(kN, [&](State&, size_t i) {
        if (i == first || i == (first + kN) / 2 || i == kN - 1) throw std::runtime_error(std::to_string(i));
      });
      ADD_FAILURE() << "nothing thrown";
    } catch (const std::runtime_error& e) {
      EXPECT_EQ(e.what(), std::to_string(first));
    }
  }
}

struct ValidityCase {
  const char* name;
  long not_before, not_after;
  std::optional<Code> code;
};

void PrintTo(const ValidityCase& c, std::ostream* os) { *os << c.name; }

class IntakeValidity : public ::testing::TestWithParam<ValidityCase> {};

TEST_P(IntakeValidity, ChecksValidityAgainstNow) {
  const auto& c = GetParam();
  Issued x = testing::self_signed({.cn = c.name, .not_before = c.not_before, .not_after = c.not_after});
  Certificate cert = Certificate::parse(x.pem());
  if (!c.code) {
    EXPECT_NO_THROW(cert.check_validity(std::time(nullptr)));
    return;
  }
  try {
    cert.check_validity(std::time(nullptr));
    FAIL() << "accepted";
  } catch (const Error& e) {
    EXPECT_EQ(code_name(e.code()), code_name(*c.code));
  }
}

INSTANTIATE_TEST_SUITE_P(Table, IntakeValidity,
                         ::testing::Values(ValidityCase{"current", -60, 3600, std::nullopt},
                                           ValidityCase{"expired", -7200, -3600, Code::kTrustedCertificateExpired},
                                           ValidityCase{"not_yet_valid", 3600, 7200, Code::kTrustedCertificateNotValidYet}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace ptrust
