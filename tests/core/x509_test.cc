// core/x509: the one hex, fingerprint, time and name formatting every command prints with.
#include <gtest/gtest.h>

#include <openssl/asn1.h>

#include <array>

#include "core/x509.h"
#include "tests/support/testpki.h"

namespace ptrust {
namespace {

constexpr std::array<unsigned char, 4> kBytes = {0x00, 0x0f, 0xa5, 0xff};

TEST(X509Hex, EmptyInputIsEmptyText) {
  EXPECT_EQ(x509::hex_colon({}), "");
  EXPECT_EQ(x509::hex_lower({}), "");
}

TEST(X509Hex, ColonFormIsUpperCaseAsXapiFingerprints) { EXPECT_EQ(x509::hex_colon(kBytes), "00:0F:A5:FF"); }

TEST(X509Hex, PlainFormIsLowerCaseWithoutSeparators) { EXPECT_EQ(x509::hex_lower(kBytes), "000fa5ff"); }

TEST(X509Digest, Sha256OfBytesIsTheKnownVector) {
  EXPECT_EQ(x509::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(x509::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(X509Digest, FingerprintIsTheColonHexOfTheDerDigest) {
  auto ca = testing::self_signed({.cn = "Fingerprint Root", .ca = true});
  std::string der = x509::der(ca.cert.get());
  ASSERT_FALSE(der.empty());
  std::string plain = x509::sha256_hex(der);
  std::string colon = x509::fingerprint(ca.cert.get(), EVP_sha256());
  ASSERT_EQ(colon.size(), 32u * 3 - 1);
  std::string stripped;
  for (char c : colon)
    if (c != ':') stripped += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  EXPECT_EQ(stripped, plain);
  EXPECT_EQ(x509::fingerprint(ca.cert.get(), EVP_sha1()).size(), 20u * 3 - 1);
}

TEST(X509Digest, CrlFingerprintDiffersFromItsIssuers) {
  auto ca = testing::self_signed({.cn = "Crl Root", .ca = true});
  auto crl = testing::make_crl(ca, {});
  std::string f = x509::fingerprint(crl.get(), EVP_sha256());
  EXPECT_EQ(f.size(), 32u * 3 - 1);
  EXPECT_NE(f, x509::fingerprint(ca.cert.get(), EVP_sha256()));
}

TEST(X509Time, NullOrMalformedTimeIsNoTime) {
  EXPECT_EQ(x509::to_epoch(nullptr), std::nullopt);
  ossl::Ptr<ASN1_TIME, ASN1_TIME_free> bad(ASN1_STRING_type_new(V_ASN1_UTCTIME));
  ASSERT_TRUE(bad);
  ASN1_STRING_set(bad.get(), "not a time", -1);
  EXPECT_EQ(x509::to_epoch(bad.get()), std::nullopt);
}

TEST(X509Time, EpochRoundTripsThroughAsn1AndFormat) {
  const std::int64_t t = 1795374494;  // 2026-11-22T19:08:14Z
  ossl::Ptr<ASN1_TIME, ASN1_TIME_free> a(ASN1_TIME_set(nullptr, static_cast<time_t>(t)));
  ASSERT_TRUE(a);
  EXPECT_EQ(x509::to_epoch(a.get()), t);
  EXPECT_EQ(x509::format_time(t), "2026-11-22T19:08:14Z");
  EXPECT_EQ(x509::format_time(0), "1970-01-01T00:00:00Z");
}

TEST(X509Name, PrintsRfc2253MostSpecificFirstWithUtf8Unescaped) {
  auto c = testing::self_signed({.cn = "Zürich Root", .org = "ptrust", .ca = true});
  EXPECT_EQ(x509::rfc2253(X509_get_subject_name(c.cert.get())), "CN=Zürich Root,O=ptrust");
}

TEST(X509Encoding, PemIsOneCertificateBlockOfTheSameDer) {
  auto c = testing::self_signed({.cn = "Pem Root", .ca = true});
  std::string pem = x509::pem(c.cert.get());
  EXPECT_EQ(pem.rfind("-----BEGIN CERTIFICATE-----\n", 0), 0u);
  EXPECT_EQ(pem.find("-----BEGIN", 1), std::string::npos);
  EXPECT_EQ(x509::der(c.cert.get()), c.der());
  auto crl = testing::make_crl(c, {});
  EXPECT_EQ(x509::pem(crl.get()), testing::crl_pem(crl.get()));
}

}  // namespace
}  // namespace ptrust

namespace ptrust {
namespace {

// Names built field by field, so tests control string types, case and spacing.
ossl::X509NamePtr name_of(std::vector<std::pair<std::string, std::string>> fields, int type = MBSTRING_UTF8,
                          bool multi_valued_last = false) {
  ossl::X509NamePtr n(X509_NAME_new());
  for (size_t i = 0; i < fields.size(); ++i) {
    const auto& [k, v] = fields[i];
    bool join = multi_valued_last && i + 1 == fields.size();
    X509_NAME_add_entry_by_txt(n.get(), k.c_str(), type, reinterpret_cast<const unsigned char*>(v.data()),
                               static_cast<int>(v.size()), -1, join ? -1 : 0);
  }
  return n;
}

// name_key is a necessary condition for X509_NAME_cmp equality: names OpenSSL finds equal
// (case, spacing, string type, escapes, the order inside a multi-valued RDN) share a key.
TEST(X509NameKey, NamesOpensslFindsEqualShareAKey) {
  const std::vector<std::pair<ossl::X509NamePtr, ossl::X509NamePtr>> equal = [] {
    std::vector<std::pair<ossl::X509NamePtr, ossl::X509NamePtr>> v;
    v.emplace_back(name_of({{"O", "ptrust"}, {"CN", "Life Sub"}}), name_of({{"O", "PTRUST"}, {"CN", "  life   SUB "}}));
    v.emplace_back(name_of({{"CN", "Life Sub"}}, MBSTRING_ASC), name_of({{"CN", "Life Sub"}}, MBSTRING_UTF8));
    v.emplace_back(name_of({{"CN", "a,b+c\"d"}}), name_of({{"CN", "A,B+C\"D"}}));
    v.emplace_back(name_of({{"CN", "tab\there"}}), name_of({{"CN", "tab here"}}));
    v.emplace_back(name_of({{"O", "x"}, {"CN", "one"}, {"OU", "two"}}, MBSTRING_UTF8, true),
                   name_of({{"O", "x"}, {"OU", "two"}, {"CN", "one"}}, MBSTRING_UTF8, true));
    v.emplace_back(name_of({{"CN", "Zürich CA"}}), name_of({{"CN", "zürich ca"}}));
    return v;
  }();
  for (const auto& [a, b] : equal) {
    ASSERT_EQ(X509_NAME_cmp(a.get(), b.get()), 0) << x509::rfc2253(a.get()) << " vs " << x509::rfc2253(b.get());
    EXPECT_EQ(x509::name_key(x509::rfc2253(a.get())), x509::name_key(x509::rfc2253(b.get())))
        << x509::rfc2253(a.get()) << " vs " << x509::rfc2253(b.get());
  }
  EXPECT_NE(x509::name_key("CN=Life Sub"), x509::name_key("CN=Life Root"));
  EXPECT_NE(x509::name_key("CN=a\\,b"), x509::name_key("CN=a,CN=b")) << "an escaped comma is not a separator";
}

}  // namespace
}  // namespace ptrust
