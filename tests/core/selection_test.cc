// The selection rule: pinned > ca-<p> > ca-general > none, no fallback, fail closed.
#include <gtest/gtest.h>

#include <openssl/pem.h>
#include <unistd.h>

#include "core/error.h"
#include "core/selection.h"
#include "core/trust.h"
#include "tests/core/fixture.h"

namespace ptrust {
namespace {

using testing::certs;

class Selection : public testing::StoreFixture {};

TEST_F(Selection, NothingInstalledMeansNone) {
  for (const char* p : {"licensing", "ldaps", "general"}) {
    Material m = load_material(ctx, p);
    EXPECT_EQ(m.resolution.mode, Mode::kNone) << p;
    EXPECT_TRUE(m.certs.empty());
    EXPECT_TRUE(m.resolution.path.empty());
  }
}

struct PrecedenceCase {
  const char* name;
  bool general, ca_licensing, pinned_licensing;
  Mode licensing, ldaps;
};

void PrintTo(const PrecedenceCase& c, std::ostream* os) { *os << c.name; }

class Precedence : public testing::StoreFixture, public ::testing::WithParamInterface<PrecedenceCase> {};

TEST_P(Precedence, FirstMatchWins) {
  const auto& c = GetParam();
  if (c.general) install(certs().general, CertType::kCa);
  if (c.ca_licensing) install(certs().ca1, CertType::kCa, {"licensing"});
  if (c.pinned_licensing) install(certs().peer, CertType::kPinned, {"licensing"});
  EXPECT_EQ(to_string(load_material(ctx, "licensing").resolution.mode), to_string(c.licensing));
  EXPECT_EQ(to_string(load_material(ctx, "ldaps").resolution.mode), to_string(c.ldaps));
  EXPECT_EQ(to_string(load_material(ctx, "general").resolution.mode), to_string(c.general ? Mode::kGeneral : Mode::kNone));
}

INSTANTIATE_TEST_SUITE_P(
    Table, Precedence,
    ::testing::Values(PrecedenceCase{"general_only", true, false, false, Mode::kGeneral, Mode::kGeneral},
                      PrecedenceCase{"ca_over_general", true, true, false, Mode::kCa, Mode::kGeneral},
                      PrecedenceCase{"ca_without_general", false, true, false, Mode::kCa, Mode::kNone},
                      PrecedenceCase{"pinned_over_all", true, true, true, Mode::kPinned, Mode::kGeneral},
                      PrecedenceCase{"pinned_alone", false, false, true, Mode::kPinned, Mode::kNone}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Selection, ServesExactlyTheChosenBundle) {
  install(certs().general, CertType::kCa);
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().ca2, CertType::kCa, {"licensing"});
  Material m = load_material(ctx, "licensing");
  ASSERT_EQ(m.certs.size(), 2u);
  EXPECT_EQ(m.resolution.path, path("etc/trusted-certs/ca-bundle-licensing.pem"));
  for (const auto& x : m.certs) EXPECT_NE(x.der, certs().general.der()) << "general CA leaked into a ca-mode purpose";
}

struct BrokenCase {
  const char* name;
  std::function<void(const std::string& bundle)> breakit;
  Code code;
};

void PrintTo(const BrokenCase& c, std::ostream* os) { *os << c.name; }

class NoFallback : public testing::StoreFixture, public ::testing::WithParamInterface<BrokenCase> {};

TEST_P(NoFallback, BrokenChosenBundleIsAnErrorNotTheNextBundle) {
  install(certs().general, CertType::kCa);
  install(certs().ca1, CertType::kCa, {"licensing"});
  std::string bundle = path("etc/trusted-certs/ca-bundle-licensing.pem");
  GetParam().breakit(bundle);
  try {
    Material m = load_material(ctx, "licensing");
    FAIL() << "served mode " << to_string(m.resolution.mode);
  } catch (const Error& e) {
    EXPECT_EQ(code_name(e.code()), code_name(GetParam().code)) << e.what();
  }
  // The trust state every consumer reads fails the purpose with the same code.
  std::shared_ptr<const TrustState> t = build_trust(ctx, "licensing", TrustStamp{});
  ASSERT_TRUE(t);
  ASSERT_TRUE(t->failure) << "the trust state served mode " << to_string(t->mode);
  EXPECT_EQ(code_name(*t->failure), code_name(GetParam().code)) << t->failure_message;
  EXPECT_EQ(load_material(ctx, "ldaps").resolution.mode, Mode::kGeneral) << "other purposes unaffected";
}

INSTANTIATE_TEST_SUITE_P(
    Table, NoFallback,
    ::testing::Values(
        BrokenCase{"garbage", [](const std::string& b) { testing::write_file(b, "garbage\n"); }, Code::kStoreCorrupt},
        BrokenCase{"empty", [](const std::string& b) { testing::write_file(b, ""); }, Code::kStoreCorrupt},
        BrokenCase{"truncated",
                   [](const std::string& b) {
                     auto s = testing::read_file(b);
                     testing::write_file(b, s.substr(0, s.size() - 40));
                   },
                   Code::kStoreCorrupt},
        BrokenCase{"trailing_garbage",
                   [](const std::string& b) { testing::write_file(b, testing::read_file(b) + "garbage\n"); },
                   Code::kStoreCorrupt},
        BrokenCase{"binary_junk",
                   [](const std::string& b) {
                     testing::write_file(b, testing::read_file(b) + std::string("\x00\xff\x13", 3));
                   },
                   Code::kStoreCorrupt},
        BrokenCase{"truncated_last_block",
                   [](const std::string& b) { testing::write_file(b, testing::read_file(b) + "-----BEG"); },
                   Code::kStoreCorrupt},
        BrokenCase{"garbage_between_blocks",
                   [](const std::string& b) {
                     testing::write_file(b, "junk\n" + testing::read_file(b));
                   },
                   Code::kStoreCorrupt},
        BrokenCase{"key_appended",
                   [](const std::string& b) {
                     testing::write_file(b, testing::read_file(b) + certs().leaf.key_pem());
                   },
                   Code::kStoreCorrupt},
        BrokenCase{"symlink",
                   [](const std::string& b) {
                     ::unlink(b.c_str());
                     ASSERT_EQ(::symlink("/etc/ssl/certs/ca-certificates.crt", b.c_str()), 0);
                   },
                   Code::kStoreUnsafe},
        BrokenCase{"directory",
                   [](const std::string& b) {
                     ::unlink(b.c_str());
                     ASSERT_EQ(::mkdir(b.c_str(), 0755), 0);
                   },
                   Code::kStoreUnsafe}),
    [](const auto& info) { return std::string(info.param.name); });

TEST_F(Selection, LoaderServesTheBundlesCertificatesAndSubjectsAsAFullParseSeesThem) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().ca2, CertType::kCa, {"licensing"});
  Material der = load_material(ctx, "licensing");
  std::vector<ossl::X509Ptr> full =
      parse_bundle(testing::read_file(path("etc/trusted-certs/ca-bundle-licensing.pem")), "bundle");
  ASSERT_EQ(full.size(), der.certs.size());
  for (size_t i = 0; i < full.size(); ++i) {
    EXPECT_EQ(Certificate::from_x509(full[i].get()).der(), der.certs[i].der);
    EXPECT_EQ(X509_NAME_cmp(X509_get_subject_name(full[i].get()), der.certs[i].subject.get()), 0);
  }
}

TEST(ScanBundle, RefusesStructurallyBrokenDer) {
  std::string good = certs().ca1.der();
  auto pem_of = [](const std::string& der) {
    ossl::BioPtr b(BIO_new(BIO_s_mem()));
    PEM_write_bio(b.get(), "CERTIFICATE", "", reinterpret_cast<const unsigned char*>(der.data()),
                  static_cast<long>(der.size()));
    char* p = nullptr;
    long n = BIO_get_mem_data(b.get(), &p);
    return std::string(p, static_cast<size_t>(n));
  };
  EXPECT_EQ(scan_bundle(pem_of(good), "b").size(), 1u);
  for (std::string bad : {good.substr(0, good.size() - 1), good + "x", std::string("\x30\x03\x02\x01\x01", 5),
                          good.substr(0, 40), std::string(64, '\0')}) {
    try {
      scan_bundle(pem_of(bad), "b");
      ADD_FAILURE() << "accepted " << bad.size() << " bytes";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::kStoreCorrupt);
    }
  }
}

TEST_F(Selection, SymlinkedStoreDirectoryIsRefused) {
  install(certs().general, CertType::kCa);
  std::filesystem::rename(path("etc/trusted-certs"), path("elsewhere"));
  ASSERT_EQ(::symlink(path("elsewhere").c_str(), path("etc/trusted-certs").c_str()), 0);
  try {
    load_material(ctx, "licensing");
    FAIL() << "followed a symlinked store";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kStoreUnsafe);
  }
}

TEST_F(Selection, UnknownAndMalformedPurposesAreRefused) {
  install(certs().general, CertType::kCa);
  for (const char* p : {"wlb", "LICENSING", "../general", "", "ca-bundle-general"}) {
    try {
      load_material(ctx, p);
      ADD_FAILURE() << "resolved '" << p << "'";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), Code::kUnknownPurpose) << p;
    }
  }
}

}  // namespace
}  // namespace ptrust
