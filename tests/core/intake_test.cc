// Certificate intake: every accepted shape and every refusal, as a table.
#include <gtest/gtest.h>

#include <ctime>
#include <functional>

#include "core/cert.h"
#include "core/error.h"
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
