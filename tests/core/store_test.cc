// The store writer: layout, modes, bundles, duplicates, generation, reconcile.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>

#include <openssl/x509.h>
#include <sqlite3.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/ossl.h"
#include "core/reconcile.h"
#include "core/selection.h"
#include "core/x509.h"
#include "tests/core/fixture.h"
#include "tests/support/tree.h"

#include <boost/json.hpp>

namespace ptrust {
namespace {

using testing::certs;

class StoreTest : public testing::StoreFixture {
 protected:
  std::uint64_t generation() {
    auto v = GenerationView::open(root);
    return v ? v->read() : 0;
  }
  unsigned mode(const std::string& rel) {
    struct stat st;
    EXPECT_EQ(::lstat(path(rel).c_str(), &st), 0) << rel;
    return st.st_mode & 07777;
  }
  template <typename F>
  void expect_refused(Code code, F f) {
    auto before = testing::snapshot(root);
    try {
      f();
      ADD_FAILURE() << "not refused, expected " << code_name(code);
    } catch (const Error& e) {
      EXPECT_EQ(code_name(e.code()), code_name(code)) << e.what();
    }
    EXPECT_EQ(testing::diff(before, testing::snapshot(root)), "");
  }
};

TEST_F(StoreTest, InstallWritesPerUuidFileAndBundleWithPublicModes) {
  CertRecord r = install(certs().ca1, CertType::kCa, {"licensing", "ldaps"});
  for (const char* p : {"licensing", "ldaps"}) {
    std::string file = std::string("etc/trusted-certs/ca-") + p + "/" + r.uuid + ".pem";
    std::string bundle = std::string("etc/trusted-certs/ca-bundle-") + p + ".pem";
    EXPECT_EQ(testing::read_file(path(file)), certs().ca1.pem());
    EXPECT_EQ(testing::read_file(path(bundle)), certs().ca1.pem());
    EXPECT_EQ(mode(file), 0644u);
    EXPECT_EQ(mode(bundle), 0644u);
    EXPECT_EQ(mode(std::string("etc/trusted-certs/ca-") + p), 0755u);
  }
  EXPECT_FALSE(exists("etc/trusted-certs/ca-bundle-general.pem"));
  EXPECT_EQ(mode("etc/trusted-certs"), 0755u);
  EXPECT_EQ(mode("var/lib/ptrust/ptrust.db"), 0600u);
  EXPECT_EQ(mode("var/lib/ptrust/generation"), 0644u);
}

TEST_F(StoreTest, RecordDescribesTheCertificate) {
  CertRecord r = install(certs().ca1, CertType::kCa);
  EXPECT_EQ(r.uuid.size(), 36u);
  EXPECT_EQ(r.type, CertType::kCa);
  EXPECT_TRUE(r.purposes.empty());
  EXPECT_EQ(r.subject, "CN=Root One");
  EXPECT_EQ(r.sha256, x509::fingerprint(certs().ca1.cert.get(), EVP_sha256()));
  Database db = store.database();
  ASSERT_EQ(db.certs.size(), 1u);
  EXPECT_EQ(db.certs[0].uuid, r.uuid);
  EXPECT_EQ(db.certs[0].pem, certs().ca1.pem());
  EXPECT_TRUE(exists("etc/trusted-certs/ca-general/" + r.uuid + ".pem"));
}

TEST_F(StoreTest, BundleOrderIsStableByUuid) {
  auto a = install(certs().ca1, CertType::kCa);
  auto b = install(certs().ca2, CertType::kCa);
  auto c = install(certs().general, CertType::kCa);
  std::vector<std::pair<std::string, std::string>> v{{a.uuid, a.pem}, {b.uuid, b.pem}, {c.uuid, c.pem}};
  std::sort(v.begin(), v.end());
  EXPECT_EQ(testing::read_file(path("etc/trusted-certs/ca-bundle-general.pem")), v[0].second + v[1].second + v[2].second);
}

TEST_F(StoreTest, UninstallRemovesFilesAndTheBundleOfAnEmptyStore) {
  auto a = install(certs().ca1, CertType::kCa, {"licensing"});
  auto b = install(certs().ca2, CertType::kCa, {"licensing"});
  store.uninstall(a.uuid, false);
  EXPECT_FALSE(exists("etc/trusted-certs/ca-licensing/" + a.uuid + ".pem"));
  EXPECT_EQ(testing::read_file(path("etc/trusted-certs/ca-bundle-licensing.pem")), certs().ca2.pem());
  store.uninstall(b.uuid, false);
  EXPECT_FALSE(exists("etc/trusted-certs/ca-bundle-licensing.pem")) << "a bundle exists iff it is non-empty";
  EXPECT_EQ(load_material(ctx, "licensing").resolution.mode, Mode::kNone);
  EXPECT_TRUE(store.database().certs.empty());
}

TEST_F(StoreTest, DuplicateRules) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  expect_refused(Code::kTrustedCertificateAlreadyExists, [&] { install(certs().ca1, CertType::kCa, {"licensing"}); });
  expect_refused(Code::kTrustedCertificateAlreadyExists,
                 [&] { install(certs().ca1, CertType::kCa, {"ldaps", "licensing"}); });
  EXPECT_NO_THROW(install(certs().ca1, CertType::kCa, {"ldaps"})) << "disjoint purposes are another record";
  EXPECT_NO_THROW(install(certs().ca1, CertType::kCa)) << "general is its own purpose set";
  expect_refused(Code::kTrustedCertificateAlreadyExists, [&] { install(certs().ca1, CertType::kCa); });
  install(certs().peer, CertType::kPinned, {"licensing"});
  EXPECT_NO_THROW(install(certs().ca1, CertType::kPinned, {"licensing"})) << "another type is another record";
}

TEST_F(StoreTest, RefusalsWriteNothing) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  expect_refused(Code::kNotACaCertificate, [&] { install(certs().leaf, CertType::kCa, {"licensing"}); });
  expect_refused(Code::kCertificateLacksPurpose, [&] { install(certs().peer, CertType::kPinned); });
  expect_refused(Code::kUnknownPurpose, [&] { install(certs().ca2, CertType::kCa, {"wlb"}); });
  expect_refused(Code::kTrustedCertificateNotFound, [&] { store.uninstall("00000000-0000-4000-8000-000000000000", false); });
  auto expired = testing::self_signed({.cn = "old", .ca = true, .not_before = -7200, .not_after = -3600});
  expect_refused(Code::kTrustedCertificateExpired, [&] { install(expired, CertType::kCa); });
  auto future = testing::self_signed({.cn = "new", .ca = true, .not_before = 3600, .not_after = 7200});
  expect_refused(Code::kTrustedCertificateNotValidYet, [&] { install(future, CertType::kCa); });
}

TEST_F(StoreTest, RefusalOnAFreshRootCreatesNothing) {
  auto before = testing::snapshot(root);
  EXPECT_THROW(install(certs().leaf, CertType::kCa), Error);
  EXPECT_THROW(store.uninstall("00000000-0000-4000-8000-000000000000", false), Error);
  EXPECT_EQ(testing::diff(before, testing::snapshot(root)), "");
}

TEST_F(StoreTest, UninstallOfARecordWhoseFilesAreGoneNeedsForce) {
  auto a = install(certs().ca1, CertType::kCa, {"licensing"});
  ASSERT_EQ(::unlink(path("etc/trusted-certs/ca-licensing/" + a.uuid + ".pem").c_str()), 0);
  expect_refused(Code::kTrustedCertificateFileMissing, [&] { store.uninstall(a.uuid, false); });
  EXPECT_NO_THROW(store.uninstall(a.uuid, true));
  EXPECT_TRUE(store.database().certs.empty());
  EXPECT_FALSE(exists("etc/trusted-certs/ca-bundle-licensing.pem"));
}

TEST_F(StoreTest, GenerationMovesOnEveryChange) {
  EXPECT_EQ(generation(), 0u);
  auto a = install(certs().ca1, CertType::kCa, {"licensing"});
  auto g1 = generation();
  EXPECT_NE(g1, 0u);
  auto v = GenerationView::open(root);
  ASSERT_TRUE(v);
  install(certs().ca2, CertType::kCa, {"licensing"});
  auto g2 = v->read();
  EXPECT_NE(g2, g1) << "an open view sees the bump without reopening";
  store.uninstall(a.uuid, false);
  EXPECT_NE(v->read(), g2);
  auto g3 = v->read();
  EXPECT_TRUE(store.sync(true).empty());
  EXPECT_EQ(v->read(), g3) << "a sync that changes nothing does not invalidate readers";
  ASSERT_EQ(::unlink(path("etc/trusted-certs/ca-bundle-licensing.pem").c_str()), 0);
  EXPECT_FALSE(store.sync(true).empty());
  EXPECT_NE(v->read(), g3);
}

TEST_F(StoreTest, SyncFindsAndRepairsEveryKindOfDrift) {
  auto a = install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().peer, CertType::kPinned, {"ldaps"});
  auto clean = testing::snapshot(root);
  ASSERT_TRUE(store.sync(false).empty());

  // missing file, remnant file, stale bundle, wrong mode, a symlink, a stray bundle.
  ASSERT_EQ(::unlink(path("etc/trusted-certs/ca-licensing/" + a.uuid + ".pem").c_str()), 0);
  testing::write_file(path("etc/trusted-certs/pinned-ldaps/stray.pem"), certs().ca2.pem());
  testing::write_file(path("etc/trusted-certs/pinned-bundle-ldaps.pem"), certs().ca2.pem());
  ASSERT_EQ(::chmod(path("etc/trusted-certs/ca-bundle-licensing.pem").c_str(), 0600), 0);
  ASSERT_EQ(::symlink("/etc/passwd", path("etc/trusted-certs/ca-licensing/link.pem").c_str()), 0);
  testing::write_file(path("etc/trusted-certs/ca-bundle-general.pem"), certs().ca2.pem());
  testing::write_file(path("etc/trusted-certs/.ptrust-tmp-0123"), "half");

  auto before = testing::snapshot(root);
  auto drift = store.sync(false);
  EXPECT_EQ(testing::diff(before, testing::snapshot(root)), "") << "--check changes nothing";
  std::set<std::string> seen;
  for (const auto& d : drift) seen.insert(std::string(to_string(d.kind)) + " " + d.path);
  EXPECT_TRUE(seen.count("missing etc/trusted-certs/ca-licensing/" + a.uuid + ".pem"));
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/pinned-ldaps/stray.pem"));
  EXPECT_TRUE(seen.count("stale etc/trusted-certs/pinned-bundle-ldaps.pem"));
  EXPECT_TRUE(seen.count("mode etc/trusted-certs/ca-bundle-licensing.pem"));
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/ca-licensing/link.pem"));
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/ca-bundle-general.pem"));
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/.ptrust-tmp-0123"));
  EXPECT_EQ(drift.size(), 7u);

  EXPECT_EQ(store.sync(true).size(), 7u);
  EXPECT_TRUE(store.sync(false).empty());
  auto after = testing::snapshot(root);
  after.erase("var/lib/ptrust/generation");
  clean.erase("var/lib/ptrust/generation");
  EXPECT_EQ(testing::diff(clean, after), "") << "sync restores exactly the database's state";
  EXPECT_TRUE(std::filesystem::exists("/etc/passwd")) << "the symlink was removed, not followed";
}

// A hash entry is a hard link to its record's file, and the purpose's CA directory entry a
// third name of it (no inode and no copy per entry: what file creation costs most). Each
// name is still replaced atomically on its own: a stale entry repaired by `sync` becomes a
// file (or link) of the right bytes without touching the other names' content.
TEST_F(StoreTest, HashEntriesAndCapathEntriesAreHardLinksOfTheRecordsFile) {
  auto a = install(certs().ca1, CertType::kCa, {"licensing"});
  char hash[32];
  std::snprintf(hash, sizeof hash, "%08lx.0", X509_subject_name_hash(certs().ca1.cert.get()));
  auto inode = [&](const std::string& rel) {
    struct stat st;
    EXPECT_EQ(::lstat(path(rel).c_str(), &st), 0) << rel;
    return std::pair(st.st_ino, st.st_nlink);
  };
  const auto file = inode("etc/trusted-certs/ca-licensing/" + a.uuid + ".pem");
  EXPECT_EQ(inode(std::string("etc/trusted-certs/ca-licensing/") + hash), file);
  EXPECT_EQ(inode(std::string("etc/trusted-certs/capath/licensing/") + hash), file);
  EXPECT_EQ(file.second, 3u);

  // A stale hash entry: replaced by `sync` (a new name for the right bytes), the record's file
  // untouched.
  const std::string entry = std::string("etc/trusted-certs/ca-licensing/") + hash;
  ASSERT_EQ(::unlink(path(entry).c_str()), 0);
  testing::write_file(path(entry), certs().ca2.pem());
  ASSERT_EQ(::chmod(path(entry).c_str(), 0644), 0);
  std::set<std::string> seen;
  for (const auto& d : store.sync(false)) seen.insert(std::string(to_string(d.kind)) + " " + d.path);
  EXPECT_EQ(seen, (std::set<std::string>{"stale " + entry}));
  store.sync(true);
  EXPECT_EQ(testing::read_file(path(entry)), certs().ca1.pem());
  EXPECT_EQ(testing::read_file(path("etc/trusted-certs/ca-licensing/" + a.uuid + ".pem")), certs().ca1.pem());
  EXPECT_TRUE(store.sync(false).empty());
}

// A writer looks at the names its change moved and nothing else (no listing of 20,000
// entries): an entry deleted by hand in the same store stays missing (`sync` reports and
// repairs it), while the change's own remnants go — a removed record's file, and the end of a
// hash bucket that a removal renumbered. After a change that did not finish (the marker), the
// next write compares its store entry by entry and puts the deleted entry back.
TEST_F(StoreTest, AWriterLooksOnlyAtWhatItMovedUnlessTheLastChangeDidNotFinish) {
  const std::string dir = "etc/trusted-certs/ca-licensing/";
  auto twin1 = testing::self_signed({.cn = "Twin CA", .ca = true});
  auto twin2 = testing::self_signed({.cn = "Twin CA", .ca = true});
  auto a = install(twin1, CertType::kCa, {"licensing"});
  auto b = install(twin2, CertType::kCa, {"licensing"});
  auto other = install(certs().ca1, CertType::kCa, {"licensing"});
  char h0[32], h1[32];
  std::snprintf(h0, sizeof h0, "%08lx.0", X509_subject_name_hash(twin1.cert.get()));
  std::snprintf(h1, sizeof h1, "%08lx.1", X509_subject_name_hash(twin1.cert.get()));
  auto names = [&] {
    std::set<std::string> out;
    for (const auto& e : fs::list_dir(fs::open_dir(fs::open_root(root).get(), dir, false).get())) out.insert(e.name);
    return out;
  };
  ASSERT_TRUE(names().count(h1));

  store.uninstall(a.uuid, false);  // the bucket renumbered: .1 is gone, .0 is the other twin
  std::set<std::string> now = names();
  EXPECT_FALSE(now.count(a.uuid + ".pem"));
  EXPECT_FALSE(now.count(h1));
  EXPECT_EQ(testing::read_file(path(dir + h0)), twin2.pem());
  EXPECT_TRUE(store.sync(false).empty());

  const std::string lost = dir + other.uuid + ".pem";
  ASSERT_EQ(::unlink(path(lost).c_str()), 0);
  install(certs().ca2, CertType::kCa, {"licensing"});
  EXPECT_FALSE(names().count(other.uuid + ".pem")) << "a write does not look at what it did not move";
  std::set<std::string> seen;
  for (const auto& d : store.sync(false)) seen.insert(std::string(to_string(d.kind)) + " " + d.path);
  EXPECT_EQ(seen, (std::set<std::string>{"missing " + lost}));

  testing::write_file(path("var/lib/ptrust/capath-unfinished"), "");
  store.uninstall(b.uuid, false);
  EXPECT_EQ(testing::read_file(path(lost)), certs().ca1.pem()) << "compared entry by entry after an unfinished change";
  EXPECT_FALSE(std::filesystem::exists(path("var/lib/ptrust/capath-unfinished")));
  EXPECT_TRUE(store.sync(false).empty());
}

// `import` vets the document's certificates on several threads (a full decode each): a
// document with two refusable certificates is refused for the first in document order,
// whichever thread met it, and nothing is written.
TEST_F(StoreTest, ImportOnSeveralThreadsRefusesForTheFirstBadCertificate) {
  auto doc = [&](std::vector<size_t> bad) {
    boost::json::array trusted;
    for (size_t i = 0; i < 300; ++i) {
      char uuid[40];
      std::snprintf(uuid, sizeof uuid, "00000000-0000-4000-8000-%012zx", i);
      const bool leaf = std::find(bad.begin(), bad.end(), i) != bad.end();
      trusted.push_back(boost::json::object{{"uuid", uuid},
                                            {"type", "ca"},
                                            {"purposes", boost::json::array{"licensing"}},
                                            {"installed_at", 1700000000},
                                            {"pem", leaf ? certs().peer.pem() : certs().ca1.pem()}});
    }
    return boost::json::serialize(boost::json::object{
        {"format", "ptrust-export"}, {"version", 1}, {"trusted", trusted}, {"legacy", boost::json::array{}},
        {"crls", boost::json::array{}}});
  };
  for (auto bad : std::vector<std::vector<size_t>>{{40, 250}, {250, 40}, {260, 280}, {5}}) {
    const auto before = testing::snapshot(root);
    try {
      store.import_document(doc(bad), false);
      ADD_FAILURE() << "not refused";
    } catch (const Error& e) {
      char want[64];
      std::snprintf(want, sizeof want, "00000000-0000-4000-8000-%012zx", *std::min_element(bad.begin(), bad.end()));
      EXPECT_EQ(code_name(e.code()), "NOT_A_CA_CERTIFICATE") << e.what();
      EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
    }
    EXPECT_EQ(testing::diff(before, testing::snapshot(root)), "");
  }
  store.import_document(doc({}), false);  // 300 copies of one CA: merged into one record
  EXPECT_EQ(store.database().certs.size(), 1u);
}

// A batch that ends unflushed (an error after some of a write's files) removes what it made
// under temp names, a whole directory built under one included: nothing half-written stays
// beside the stores. A flushed one puts each in place.
TEST_F(StoreTest, AnUnflushedBatchLeavesNoTempFileOrDirectory) {
  std::filesystem::create_directories(path("etc/trusted-certs"));
  fs::Fd top = fs::open_dir(fs::open_root(root).get(), "etc/trusted-certs", false);
  ASSERT_TRUE(top);
  auto build = [&](const std::string& name) {
    const std::string tmp = fs::temp_name();
    ASSERT_EQ(::mkdirat(top.get(), tmp.c_str(), 0755), 0);
    fs::Fd d = fs::open_dir(top.get(), tmp, false);
    fs::create_file(d.get(), "a.pem", "x", fs::kFileMode, false);
    ASSERT_EQ(::linkat(d.get(), "a.pem", d.get(), "12345678.0", 0), 0);
    fs::Batch::active()->queue(top.get(), tmp, name);
    fs::write_atomic(top.get(), name + ".pem", "bundle", fs::kFileMode);
  };
  {
    fs::Batch batch;
    build("ca-dropped");
  }
  EXPECT_TRUE(std::filesystem::is_empty(path("etc/trusted-certs")));
  {
    fs::Batch batch;
    build("ca-kept");
    batch.flush();
  }
  EXPECT_EQ(testing::read_file(path("etc/trusted-certs/ca-kept/12345678.0")), "x");
  EXPECT_EQ(testing::read_file(path("etc/trusted-certs/ca-kept.pem")), "bundle");
  size_t entries = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::recursive_directory_iterator(path("etc/trusted-certs"))) ++entries;
  EXPECT_EQ(entries, 4u);  // ca-kept, its two names, ca-kept.pem
}

TEST_F(StoreTest, SyncRestoresFromTheDatabaseAlone) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().general, CertType::kCa);
  auto clean = testing::snapshot(root);
  std::filesystem::remove_all(path("etc/trusted-certs"));
  EXPECT_FALSE(store.sync(false).empty());
  store.sync(true);
  auto after = testing::snapshot(root);
  after.erase("var/lib/ptrust/generation");
  clean.erase("var/lib/ptrust/generation");
  EXPECT_EQ(testing::diff(clean, after), "");
}

}  // namespace
}  // namespace ptrust

namespace ptrust::testing {
namespace {

// The signature check of `crl install` costs what the issuer's name matches, not the store:
// 2,000 CA records whose PEM would not even parse are never decoded.
TEST(CrlSignerCandidates, AreFoundByNameWithoutDecodingTheStore) {
  Issued sub = self_signed({.cn = "Candidate Sub", .ca = true});
  Issued forger = self_signed({.cn = "Candidate Sub", .ca = true});
  Database db;
  for (int i = 0; i < 2000; ++i) {
    CertRecord r;
    r.uuid = new_uuid();
    r.subject = "CN=Other CA " + std::to_string(i);
    r.pem = "not a certificate";  // decoding it would fail the check below
    db.certs.push_back(r);
  }
  CertRecord real = make_cert_record(Certificate::parse(sub.pem()), CertType::kCa, {}, 0);
  real.uuid = new_uuid();
  real.subject = "CN=candidate   SUB";  // spelt otherwise, equal for X509_NAME_cmp
  db.certs.push_back(real);
  auto good = make_crl(sub, {});
  auto bad = make_crl(forger, {});
  CrlRecord r = make_crl_record(crl_pem(good.get()), "", {}, 0);
  ASSERT_EQ(crl_signer_candidates(db, r.issuer).size(), 1u);
  EXPECT_EQ(check_crl_signature(db, r).how, CrlSigner::How::kInstalledCa);
  try {
    check_crl_signature(db, make_crl_record(crl_pem(bad.get()), "", {}, 0));
    ADD_FAILURE() << "a CRL its namesake did not sign was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), Code::kCrlSignatureInvalid);
  }
  // With --issuer, only the given certificates count.
  std::vector<Certificate> given, wrong;
  given.push_back(Certificate::parse(sub.pem()));
  wrong.push_back(Certificate::parse(forger.pem()));
  EXPECT_EQ(check_crl_signature(db, r, given).how, CrlSigner::How::kGivenIssuer);
  EXPECT_THROW(check_crl_signature(db, r, wrong), Error);
}

}  // namespace
}  // namespace ptrust::testing

namespace ptrust {
namespace {

// `serve --follow`: the stores end up holding exactly the document's objects, the pool kept.
TEST_F(StoreTest, ReplaceDocumentLeavesExactlyTheDocumentsObjects) {
  CertRecord lic = install(certs().ca1, CertType::kCa, {"licensing"});
  CertRecord ldaps = install(certs().ca2, CertType::kCa, {"ldaps"});
  store.pool_add("0b5f5d9e-6f3b-4a45-9a3b-2f0c1e7d8a11", Certificate::parse(certs().peer.pem()), false, std::time(nullptr));
  std::string doc = store.export_document();
  CertRecord extra = install(certs().general, CertType::kCa);

  ImportPlan plan = store.replace_document(doc);
  EXPECT_EQ(plan.removed, std::vector<std::string>{"trusted " + extra.uuid});
  EXPECT_TRUE(plan.added.empty());
  EXPECT_EQ(plan.unchanged.size(), 2u);
  Database db = store.database();
  ASSERT_EQ(db.certs.size(), 2u);
  EXPECT_EQ(db.pool.size(), 1u) << "the pool store is the host's own";
  EXPECT_FALSE(exists("etc/trusted-certs/ca-bundle-general.pem"));
  EXPECT_TRUE(exists("etc/trusted-certs/ca-licensing/" + lic.uuid + ".pem"));
  EXPECT_TRUE(store.sync(false).empty());

  // The same document again: nothing to write, the generation does not move.
  std::uint64_t g = generation();
  EXPECT_TRUE(store.replace_document(doc).removed.empty());
  EXPECT_EQ(generation(), g);

  // A document whose own objects conflict (one certificate under two UUIDs for unequal but
  // overlapping purposes) is refused as an import into an empty store would be; nothing changes.
  auto twice = boost::json::parse(doc).as_object();
  auto copy = twice.at("trusted").as_array().at(0).as_object();
  copy["uuid"] = "11111111-2222-4333-8444-555555555555";
  auto& ps = copy["purposes"].as_array();
  ps.push_back(ps.at(0) == "ldaps" ? "licensing" : "ldaps");  // unequal but overlapping
  twice.at("trusted").as_array().push_back(copy);
  expect_refused(Code::kPoolJoiningHostTrustedCertificatesConflict,
                 [&] { store.replace_document(boost::json::serialize(twice)); });
  (void)ldaps;
}

}  // namespace
}  // namespace ptrust

// ---- Narrow writes: install, uninstall, crl install / uninstall read what they touch ----------

namespace ptrust {
namespace {

using testing::Issued;

std::string joined(const std::optional<std::vector<std::string_view>>& parts) {
  std::string s;
  for (auto p : parts.value()) s += p;
  return s;
}

TEST(SpliceBundle, AddsBeforeTheSuccessorAndRemovesExactlyOneBlock) {
  auto block = [](const char* body) { return "-----BEGIN CERTIFICATE-----\n" + std::string(body) + "\n-----END CERTIFICATE-----\n"; };
  const std::string a = block("AAAA"), b = block("BBBB"), c = block("CCCC");
  EXPECT_EQ(joined(splice_bundle(a + c, b, true, c)), a + b + c);
  EXPECT_EQ(joined(splice_bundle(b + c, a, true, b)), a + b + c);
  EXPECT_EQ(joined(splice_bundle(a + b, c, true, std::nullopt)), a + b + c);
  EXPECT_EQ(joined(splice_bundle("", a, true, std::nullopt)), a);
  EXPECT_EQ(joined(splice_bundle(a + b + c, b, false, std::nullopt)), a + c);
  EXPECT_EQ(joined(splice_bundle(a, a, false, std::nullopt)), "");
  EXPECT_FALSE(splice_bundle(a + c, b, false, std::nullopt)) << "removing a block that is not there";
  EXPECT_FALSE(splice_bundle(a + b + b, b, false, std::nullopt)) << "removing a block that is there twice";
  EXPECT_FALSE(splice_bundle(a + c, b, true, b)) << "adding before a successor that is not there";
  EXPECT_FALSE(splice_bundle(a + c + c, b, true, c)) << "adding before a successor that is there twice";
}

class NarrowTest : public StoreTest {
 public:
  using StoreTest::install;
  using StoreTest::path;
  using StoreTest::store;
  void sql(const std::string& q) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path("var/lib/ptrust/ptrust.db").c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, q.c_str(), nullptr, nullptr, nullptr), SQLITE_OK) << sqlite3_errmsg(db) << ": " << q;
    sqlite3_close(db);
  }
  std::vector<std::string> drift() {
    std::vector<std::string> out;
    for (const auto& d : store.sync(false)) out.push_back(std::string(to_string(d.kind)) + " " + d.path);
    return out;
  }
  static Issued ca(const std::string& cn) { return testing::self_signed({.cn = cn, .ca = true}); }
  const std::string bundle = "etc/trusted-certs/ca-bundle-licensing.pem";
};

// The whole path refuses a database with a bad record anywhere (it reads them all); a narrow
// write reads the records its change touches, and the shapes of the others.
TEST_F(NarrowTest, ReadsOnlyTheRecordsItsChangeTouches) {
  CertRecord a = install(certs().ca1, CertType::kCa, {"licensing"});  // a new root: the whole path
  install(certs().ca2, CertType::kCa, {"ldaps"});
  sql("UPDATE certs SET installed_at='garbled' WHERE uuid='" + a.uuid + "'");
  EXPECT_THROW(store.database(), Error);
  CertRecord pin = install(certs().peer, CertType::kPinned, {"ldaps"});
  store.allow_mode_change(true);  // pinned -> ca
  store.uninstall(pin.uuid, false);
  sql("UPDATE certs SET installed_at=" + std::to_string(a.installed_at) + " WHERE uuid='" + a.uuid + "'");
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

// Every narrow write leaves disk as `sync` derives it from the database: bundles spliced in
// uuid order, hash buckets renumbered, CA directories, modes (twins share a hash bucket).
TEST_F(NarrowTest, LeavesTheStoresAsTheDatabaseDerivesThem) {
  std::vector<Issued> cas;
  for (int i = 0; i < 6; ++i) cas.push_back(ca(i % 2 ? "Twin" : "Narrow " + std::to_string(i)));
  std::vector<CertRecord> in;
  in.push_back(install(cas[0], CertType::kCa, {"licensing"}));
  for (int i = 1; i < 6; ++i) {
    in.push_back(install(cas[i], CertType::kCa, i % 3 ? std::vector<std::string>{"licensing"}
                                                      : std::vector<std::string>{"licensing", "ldaps"}));
    ASSERT_EQ(drift(), std::vector<std::string>{}) << "after install " << i;
  }
  CertRecord pin = install(certs().peer, CertType::kPinned, {"ldaps"});
  EXPECT_EQ(mode_in(store.database(), "ldaps"), Mode::kPinned);
  for (int i : {3, 0, 5, 1}) {
    store.uninstall(in[static_cast<size_t>(i)].uuid, false);
    ASSERT_EQ(drift(), std::vector<std::string>{}) << "after uninstall " << i;
  }
  store.uninstall(pin.uuid, false);
  store.uninstall(in[2].uuid, false);
  store.uninstall(in[4].uuid, false);
  EXPECT_FALSE(exists(bundle));
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

// A narrow write edits the bundle on disk only when it is byte for byte what the last narrow
// write made: one edited since is rebuilt from the records.
TEST_F(NarrowTest, AnEditedBundleIsRebuiltFromTheRecords) {
  Issued x1 = ca("Edited 1"), x2 = ca("Edited 2"), x3 = ca("Edited 3");
  install(x1, CertType::kCa, {"licensing"});
  install(x2, CertType::kCa, {"licensing"});
  std::string text = testing::read_file(path(bundle));
  text.erase(text.find(x1.pem()), x1.pem().size());  // still a bundle a splice could work on
  testing::write_file(path(bundle), text);
  install(x3, CertType::kCa, {"licensing"});
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

// ... and only while no other change came between. x1, x2 by narrow writes; x3 by the whole
// path, whose commit dropped the marks: they are put back, as a version before marks would
// have left them; the bundle put back as x2's write made it (restored from a copy, say); then
// `between`; then x4, which must not edit that bundle.
void stale_mark(NarrowTest& t, const std::string& tag, const std::function<void()>& between) {
  Issued x1 = NarrowTest::ca(tag + " 1"), x2 = NarrowTest::ca(tag + " 2"), x3 = NarrowTest::ca(tag + " 3"),
         x4 = NarrowTest::ca(tag + " 4");
  t.install(x1, CertType::kCa, {"licensing"});
  t.install(x2, CertType::kCa, {"licensing"});
  const std::string marked = testing::read_file(t.path(t.bundle));
  std::vector<Certificate> more;
  more.push_back(Certificate::parse(x3.pem()));
  t.sql("CREATE TABLE kept AS SELECT * FROM bundles");
  t.store.install_each(more, {CertType::kCa, {"licensing"}}, std::time(nullptr));
  t.sql("INSERT INTO bundles SELECT * FROM kept; DROP TABLE kept");
  testing::write_file(t.path(t.bundle), marked);
  between();
  t.install(x4, CertType::kCa, {"licensing"});
  EXPECT_EQ(t.drift(), std::vector<std::string>{});
}

// The mark is of an earlier generation (fails without that check in write_narrow).
TEST_F(NarrowTest, AMarkOfAnEarlierGenerationIsNotTrusted) {
  stale_mark(*this, "Earlier", [] {});
}

// A narrow write to another store in between does not revive it (it moves to its own end only
// the marks that held when it began; fails without that).
TEST_F(NarrowTest, AMarkDoesNotOutliveAnotherWritersChange) {
  stale_mark(*this, "Mark", [&] { install(certs().ca1, CertType::kCa, {"ldaps"}); });
}

// A whole-path write killed after its commit, before it moved the generation: what it leaves
// (the generation and the bundle as they were, the database changed) must not pass for the
// last narrow write's bundle. Its commit dropped every mark.
TEST_F(NarrowTest, AWriteKilledAfterItsCommitLeavesNoMark) {
  Issued x1 = ca("Killed 1"), x2 = ca("Killed 2"), x3 = ca("Killed 3"), x4 = ca("Killed 4");
  install(x1, CertType::kCa, {"licensing"});
  install(x2, CertType::kCa, {"licensing"});
  const std::string gen = testing::read_file(path("var/lib/ptrust/generation"));
  const std::string marked = testing::read_file(path(bundle));
  std::vector<Certificate> more;
  more.push_back(Certificate::parse(x3.pem()));
  store.install_each(more, {CertType::kCa, {"licensing"}}, std::time(nullptr));
  testing::write_file(path("var/lib/ptrust/generation"), gen);  // as if killed right after the commit
  testing::write_file(path(bundle), marked);
  install(x4, CertType::kCa, {"licensing"});
  EXPECT_NE(testing::read_file(path(bundle)).find(x3.pem()), std::string::npos);
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

// While its mark holds, the bundle on disk is edited, not rebuilt from the records. Shown with
// a row whose PEM cannot be read, at the smallest UUID (never the next record of a new one):
// rebuilding the bundle from the records would meet it and refuse.
TEST_F(NarrowTest, TheBundleOnDiskIsEditedWhileItsMarkHolds) {
  Issued x1 = ca("Edit 1"), x2 = ca("Edit 2"), x3 = ca("Edit 3");
  install(x1, CertType::kCa, {"licensing"});
  install(x2, CertType::kCa, {"licensing"});
  sql("INSERT INTO certs SELECT '00000000-0000-4000-8000-000000000000',type,purposes,'x','x',subject,issuer,serial,"
      "not_before,not_after,key_type,key_bits,installed_at,12345,x'01' FROM certs LIMIT 1");
  CertRecord c = install(x3, CertType::kCa, {"licensing"});
  EXPECT_NE(testing::read_file(path(bundle)).find(x3.pem()), std::string::npos);
  sql("DELETE FROM certs WHERE uuid='00000000-0000-4000-8000-000000000000'");
  EXPECT_EQ(drift(), std::vector<std::string>{});
  // The same row makes a write without a mark (the bundle edited by hand) refuse.
  sql("INSERT INTO certs SELECT '00000000-0000-4000-8000-000000000000',type,purposes,'x','x',subject,issuer,serial,"
      "not_before,not_after,key_type,key_bits,installed_at,12345,x'01' FROM certs LIMIT 1");
  testing::write_file(path(bundle), testing::read_file(path(bundle)) + "\n");
  expect_refused(Code::kDatabaseInvalid, [&] { store.uninstall(c.uuid, false); });
}

// The mode guard reads the shapes of every record, not only the loaded ones.
TEST_F(NarrowTest, ModeChangesAreGuardedFromEveryRecord) {
  install(certs().general, CertType::kCa);
  install(certs().ca1, CertType::kCa, {"licensing"});  // general -> ca narrows
  ASSERT_EQ(store.mode_changes().size(), 1u);
  EXPECT_EQ(store.mode_changes()[0].before, Mode::kGeneral) << "the general CA is not among the loaded records";
  EXPECT_EQ(store.mode_changes()[0].after, Mode::kCa);
  CertRecord pin = install(certs().peer, CertType::kPinned, {"licensing"});  // ca -> pinned narrows
  expect_refused(Code::kModeChangeWidensTrust, [&] { store.uninstall(pin.uuid, false); });
  store.allow_mode_change(true);
  store.uninstall(pin.uuid, false);
  EXPECT_EQ(mode_in(store.database(), "licensing"), Mode::kCa);
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

// A store large enough for the narrow write's threads (the bundle's digests over 1 MiB, the CA
// directory listed beside its manifest, the CA directory's step prepared while the store is
// written): they leave what the database derives. Run under TSan too (scripts/tsan.sh).
TEST_F(NarrowTest, ALargeStoreTakesTheThreadedPaths) {
  constexpr int kCas = 4000;  // a 2 MB bundle, a CA directory of ~100 KB
  ossl::PkeyPtr key(EVP_EC_gen("P-256"));
  Database db;
  for (int i = 0; i < kCas; ++i) {
    CertRecord r = make_cert_record(
        Certificate::parse(testing::ca_with_key_pem("Large " + std::to_string(i), i + 1, key.get(), 30)), CertType::kCa,
        {"licensing"}, std::time(nullptr));
    r.uuid = new_uuid();
    db.certs.push_back(std::move(r));
  }
  db.canonicalize();
  {
    fs::Fd r = fs::open_root(root);
    save_database(fs::open_dir(r.get(), layout::kStateDir, true).get(), db);
  }
  store.sync(true);
  ASSERT_GE(std::filesystem::file_size(path(bundle)), 1u << 20);
  Issued x = ca("Large extra"), y = ca("Large extra 2");
  CertRecord a = install(x, CertType::kCa, {"licensing"});  // rebuilt from the records: no mark yet
  CertRecord b = install(y, CertType::kCa, {"licensing"});  // the bundle on disk, edited
  ASSERT_EQ(drift(), std::vector<std::string>{});
  store.uninstall(a.uuid, false);
  store.uninstall(b.uuid, false);
  EXPECT_EQ(drift(), std::vector<std::string>{});
}

}  // namespace
}  // namespace ptrust
