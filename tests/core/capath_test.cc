// The per-purpose CA directories (core/capath.h): layout, modes, mode none, CRL scope and
// policy, the writer's skip check, drift and repair, and readers during a swap.
#include <gtest/gtest.h>

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "core/capath.h"
#include "core/crl.h"
#include "core/fs.h"
#include "core/generation.h"
#include "tests/core/fixture.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

using Files = std::map<std::string, std::string>;

std::string hash_name(X509* x, int n = 0) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08lx.%d", X509_subject_name_hash(x), n);
  return buf;
}

std::string crl_hash_name(X509_CRL* c, int n = 0) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%08lx.r%d", X509_NAME_hash_ex(X509_CRL_get_issuer(c), nullptr, nullptr, nullptr), n);
  return buf;
}

class Capath : public StoreFixture {
 protected:
  std::string dir(const std::string& p) const { return "etc/trusted-certs/capath/" + p; }
  // name → content of every entry but the manifest; fails the test on a non-regular entry.
  Files entries(const std::string& p) const {
    Files out;
    for (const auto& e : std::filesystem::directory_iterator(path(dir(p)))) {
      std::string n = e.path().filename();
      EXPECT_TRUE(e.is_regular_file() && !e.is_symlink()) << n;
      if (n != ".ptrust-capath") out[n] = read_file(e.path());
    }
    return out;
  }
  std::set<std::string> names(const std::string& p) const {
    std::set<std::string> out;
    for (const auto& [n, c] : entries(p)) out.insert(n);
    return out;
  }
  unsigned mode(const std::string& rel) const {
    struct stat st;
    EXPECT_EQ(::lstat(path(rel).c_str(), &st), 0) << rel;
    return st.st_mode & 07777;
  }
  ino_t inode(const std::string& rel) const {
    struct stat st;
    EXPECT_EQ(::lstat(path(rel).c_str(), &st), 0) << rel;
    return st.st_ino;
  }
  std::set<std::string> drift(Store& s, bool apply) {
    std::set<std::string> out;
    for (const auto& d : s.sync(apply)) out.insert(std::string(to_string(d.kind)) + " " + d.path);
    return out;
  }
};

TEST_F(Capath, EachPurposeHoldsExactlyItsSelectionAsHashEntries) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().general, CertType::kCa);
  install(certs().peer, CertType::kPinned, {"ldaps"});
  install(certs().ca2, CertType::kCa, {"ldaps"});  // shadowed by the pin: pinned mode wins

  EXPECT_EQ(entries("licensing"), (Files{{hash_name(certs().ca1.cert.get()), certs().ca1.pem()}}));
  EXPECT_EQ(entries("ldaps"), (Files{{hash_name(certs().peer.cert.get()), certs().peer.pem()}}));
  EXPECT_EQ(entries("general"), (Files{{hash_name(certs().general.cert.get()), certs().general.pem()}}));
  EXPECT_NE(read_file(path(dir("ldaps") + "/.ptrust-capath")).find("mode pinned\n"), std::string::npos);

  // Modes: directories 0755, files 0644, nothing a symlink; no-ca.pem holds no certificate.
  EXPECT_EQ(mode("etc/trusted-certs/capath"), 0755u);
  for (const auto& e : std::filesystem::recursive_directory_iterator(path("etc/trusted-certs/capath"))) {
    std::string rel = e.path().string().substr(root.size() + 1);
    EXPECT_FALSE(e.is_symlink()) << rel;
    EXPECT_EQ(mode(rel), e.is_directory() ? 0755u : 0644u) << rel;
  }
  std::string no_ca = read_file(path("etc/trusted-certs/capath/no-ca.pem"));
  EXPECT_EQ(no_ca, capath::no_ca_pem());
  EXPECT_EQ(no_ca.find("CERTIFICATE"), std::string::npos);
  EXPECT_NE(no_ca.find("BEGIN X509 CRL"), std::string::npos);
  EXPECT_EQ(capath::no_ca_pem(), capath::no_ca_pem()) << "deterministic";
  EXPECT_TRUE(store.sync(false).empty());
}

TEST_F(Capath, ModeNoneIsAnEmptyDirectoryNeverAMissingOne) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  for (const char* p : {"ldaps", "general"}) {
    ASSERT_TRUE(std::filesystem::is_directory(path(dir(p)))) << p;
    EXPECT_TRUE(entries(p).empty()) << p;
    EXPECT_NE(read_file(path(dir(p) + "/.ptrust-capath")).find("mode none\n"), std::string::npos);
  }
  // Removing the last CA turns licensing into mode none: emptied, still there.
  auto r = store.database().certs.at(0);
  store.uninstall(r.uuid, false);
  EXPECT_TRUE(std::filesystem::is_directory(path(dir("licensing"))));
  EXPECT_TRUE(entries("licensing").empty());
}

TEST_F(Capath, GeneralChangesReachEveryPurposeInGeneralMode) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().general, CertType::kCa);
  EXPECT_EQ(names("ldaps"), (std::set<std::string>{hash_name(certs().general.cert.get())}));
  EXPECT_EQ(names("licensing"), (std::set<std::string>{hash_name(certs().ca1.cert.get())}));
}

TEST_F(Capath, SameSubjectCertificatesAreNumbered) {
  // A key rollover: two CAs with the same subject.
  Issued next = self_signed({.cn = "Root One", .ca = true});
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(next, CertType::kCa, {"licensing"});
  auto n = names("licensing");
  EXPECT_EQ(n.size(), 2u);
  EXPECT_TRUE(n.count(hash_name(certs().ca1.cert.get(), 0)));
  EXPECT_TRUE(n.count(hash_name(certs().ca1.cert.get(), 1)));
}

TEST_F(Capath, CrlsFollowScopeAndPolicy) {
  Config cfg = parse_config(
      "purposes:\n  plain: {}\n  noc:\n    crl-policy: off\n  scoped: {}\n  pinned: {}\n", "test.yaml");
  Store s({root, cfg});
  auto add = [&](const Issued& x, CertType t, std::vector<std::string> ps) {
    s.install(Certificate::parse(x.pem()), {t, std::move(ps)}, std::time(nullptr));
  };
  add(certs().ca1, CertType::kCa, {});  // general: every purpose without its own store
  add(certs().peer, CertType::kPinned, {"pinned"});
  auto everywhere = make_crl(certs().ca1, {certs().leaf.cert.get()});
  auto only_scoped = make_crl(certs().ca2, {});
  s.crl_install(crl_pem(everywhere.get()), "everywhere.crl", {}, std::time(nullptr));
  const std::string ca = hash_name(certs().ca1.cert.get());
  const std::string r_all = crl_hash_name(everywhere.get());
  EXPECT_EQ(names("plain"), (std::set<std::string>{ca, r_all}));
  EXPECT_EQ(names("scoped"), (std::set<std::string>{ca, r_all}));
  EXPECT_EQ(names("general"), (std::set<std::string>{ca, r_all}));
  EXPECT_EQ(names("noc"), (std::set<std::string>{ca})) << "crl-policy off: no CRLs";
  EXPECT_EQ(names("pinned"), (std::set<std::string>{hash_name(certs().peer.cert.get())})) << "pins only";

  s.crl_install(crl_pem(only_scoped.get()), "scoped.crl", {"scoped"}, std::time(nullptr));
  const std::string r_scoped = crl_hash_name(only_scoped.get());
  EXPECT_EQ(names("scoped"), (std::set<std::string>{ca, r_all, r_scoped}));
  EXPECT_EQ(names("plain"), (std::set<std::string>{ca, r_all}));
  EXPECT_EQ(names("general"), (std::set<std::string>{ca, r_all}));
  EXPECT_EQ(entries("scoped").at(r_scoped), crl_pem(only_scoped.get()));

  s.crl_uninstall("everywhere.crl");
  EXPECT_EQ(names("plain"), (std::set<std::string>{ca}));
  EXPECT_EQ(names("scoped"), (std::set<std::string>{ca, r_scoped}));
  EXPECT_TRUE(s.sync(false).empty());
}

TEST_F(Capath, WriterTouchesOnlyDirectoriesWhoseSelectionChanged) {
  // A directory the writer changes gets a new manifest (a new inode: write_atomic); one it
  // leaves alone keeps its directory and its manifest.
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().peer, CertType::kPinned, {"ldaps"});
  auto man = [&](const char* p) { return inode(dir(p) + "/.ptrust-capath"); };
  ino_t lic = man("licensing"), ld = man("ldaps"), gen = man("general");
  ino_t ld_dir = inode(dir("ldaps")), gen_dir = inode(dir("general"));

  install(certs().ca2, CertType::kCa, {"licensing"});  // affects licensing only
  EXPECT_NE(man("licensing"), lic);
  EXPECT_EQ(man("ldaps"), ld);
  EXPECT_EQ(man("general"), gen);
  EXPECT_EQ(inode(dir("ldaps")), ld_dir);
  EXPECT_EQ(inode(dir("general")), gen_dir);

  lic = man("licensing");
  install(certs().general, CertType::kCa);  // every purpose is looked at; only general changes
  EXPECT_EQ(man("licensing"), lic) << "ca mode: the general store is not its selection";
  EXPECT_EQ(man("ldaps"), ld) << "pinned mode";
  EXPECT_NE(man("general"), gen);

  // Legacy and pool stores are no purpose's selection.
  gen = man("general");
  store.legacy_install("x.pem", Certificate::parse(certs().ca2.pem()), std::time(nullptr));
  EXPECT_EQ(man("licensing"), lic);
  EXPECT_EQ(man("general"), gen);
}

TEST_F(Capath, OneStepChangesAreMadeInPlaceAndLeaveOtherEntriesAlone) {
  // One CA added, one removed, a same-subject bucket renumbered: the directory and every
  // entry that stays keep their inodes (nothing is rebuilt), and the result is what a full
  // rebuild would give (sync --check clean).
  install(certs().ca1, CertType::kCa, {"licensing"});
  const std::string h1 = hash_name(certs().ca1.cert.get()), h2 = hash_name(certs().ca2.cert.get());
  const ino_t d = inode(dir("licensing")), e1 = inode(dir("licensing/") + h1);

  auto r2 = install(certs().ca2, CertType::kCa, {"licensing"});
  EXPECT_EQ(inode(dir("licensing")), d);
  EXPECT_EQ(inode(dir("licensing/") + h1), e1);
  EXPECT_EQ(entries("licensing"), (Files{{h1, certs().ca1.pem()}, {h2, certs().ca2.pem()}}));
  EXPECT_TRUE(store.sync(false).empty());

  store.uninstall(r2.uuid, false);
  EXPECT_EQ(inode(dir("licensing")), d);
  EXPECT_EQ(entries("licensing"), (Files{{h1, certs().ca1.pem()}}));
  EXPECT_TRUE(store.sync(false).empty());

  // Same subject: ca1 and its rollover are <h>.0 and <h>.1 (in bundle order); removing ca1
  // leaves the rollover as <h>.0 — the same file, renamed onto <h>.0 if it was <h>.1.
  Issued next = self_signed({.cn = "Root One", .ca = true});
  const std::string next_uuid = install(next, CertType::kCa, {"licensing"}).uuid;
  const std::string h1_1 = hash_name(certs().ca1.cert.get(), 1);
  ASSERT_EQ(names("licensing"), (std::set<std::string>{h1, h1_1}));
  const ino_t next_file = inode(dir("licensing/") + (entries("licensing").at(h1) == next.pem() ? h1 : h1_1));
  std::string ca1_uuid;
  for (const auto& r : store.database().certs)
    if (r.uuid != next_uuid) ca1_uuid = r.uuid;
  // (Installing the rollover may have put it first in the bucket: two steps, a swap.)
  const ino_t d2 = inode(dir("licensing"));
  store.uninstall(ca1_uuid, false);
  EXPECT_EQ(inode(dir("licensing")), d2);
  EXPECT_EQ(entries("licensing"), (Files{{h1, next.pem()}}));
  EXPECT_EQ(inode(dir("licensing/") + h1), next_file) << "kept or renamed, not rewritten";
  EXPECT_TRUE(store.sync(false).empty());
}

// A CA install or uninstall derives its directory's change from the store's change only
// while the rest of the directory is still what the purpose selects: after crl-policy was
// edited in ptrust.yaml (the CRL entries no longer match) the writer rebuilds from the whole
// selection, both ways; a purpose in pinned mode keeps only its pins whatever its CA store
// does.
TEST_F(Capath, DerivedChangesFallBackWhenTheRestOfTheDirectoryMoved) {
  const Config with = parse_config("purposes:\n  licensing: {}\n  peer: {}\n", "test.yaml");
  const Config off = parse_config("purposes:\n  licensing:\n    crl-policy: off\n  peer: {}\n", "test.yaml");
  auto add = [&](const Config& cfg, const Issued& x, CertType t, const char* p) {
    return Store({root, cfg}).install(Certificate::parse(x.pem()), {t, {p}}, std::time(nullptr)).uuid;
  };
  add(with, certs().ca1, CertType::kCa, "licensing");
  auto crl = make_crl(certs().ca1, {});
  Store({root, with}).crl_install(crl_pem(crl.get()), "l.crl", {}, std::time(nullptr));
  const std::string h1 = hash_name(certs().ca1.cert.get()), h2 = hash_name(certs().ca2.cert.get());
  const std::string r = crl_hash_name(crl.get());
  ASSERT_EQ(names("licensing"), (std::set<std::string>{h1, r}));

  const std::string u2 = add(off, certs().ca2, CertType::kCa, "licensing");  // CRLs off since
  EXPECT_EQ(names("licensing"), (std::set<std::string>{h1, h2}));
  EXPECT_TRUE(Store({root, off}).sync(false).empty());
  Store({root, with}).uninstall(u2, false);  // and on again
  EXPECT_EQ(names("licensing"), (std::set<std::string>{h1, r}));
  EXPECT_TRUE(Store({root, with}).sync(false).empty());

  add(with, certs().peer, CertType::kPinned, "peer");
  const std::string pin = hash_name(certs().peer.cert.get());
  const std::string u1 = add(with, certs().ca1, CertType::kCa, "peer");
  EXPECT_EQ(names("peer"), (std::set<std::string>{pin})) << "pinned mode: the pins only";
  Store({root, with}).uninstall(u1, false);
  EXPECT_EQ(names("peer"), (std::set<std::string>{pin}));
  EXPECT_TRUE(Store({root, with}).sync(false).empty());
}

// A CRL install or uninstall keeps each directory's certificate entries and changes only its
// CRL entries, in ca and in general mode — while those certificate entries are, by name, the
// chosen store's. A directory that missed an earlier change (here: its entry for a CA and that
// entry's manifest line gone, so the directory agrees with its manifest) is rebuilt from the
// whole selection, not patched: the CA is back.
TEST_F(Capath, CrlChangesKeepTheCertificateEntriesOnlyWhileTheyAreTheStores) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().general, CertType::kCa);
  install(certs().peer, CertType::kPinned, {"ldaps"});
  const std::string h1 = hash_name(certs().ca1.cert.get()), hg = hash_name(certs().general.cert.get());
  const std::string pin = hash_name(certs().peer.cert.get());
  auto crl = make_crl(certs().ca1, {});
  const std::string r = crl_hash_name(crl.get());
  const ino_t lic = inode(dir("licensing"));
  store.crl_install(crl_pem(crl.get()), "l.crl", {}, std::time(nullptr));
  EXPECT_EQ(names("licensing"), (std::set<std::string>{h1, r}));
  EXPECT_EQ(names("general"), (std::set<std::string>{hg, r}));
  EXPECT_EQ(names("ldaps"), (std::set<std::string>{pin})) << "pinned mode takes no CRL";
  EXPECT_EQ(inode(dir("licensing")), lic) << "one entry added in place";
  EXPECT_TRUE(store.sync(false).empty());

  const std::string m = path(dir("licensing/.ptrust-capath"));
  std::string manifest = read_file(m);
  const size_t at = manifest.find(" " + h1 + "\n");
  ASSERT_NE(at, std::string::npos);
  manifest.erase(at - 64, 64 + 1 + h1.size() + 1);
  write_file(m, manifest);
  ASSERT_EQ(::chmod(m.c_str(), 0644), 0);
  ASSERT_EQ(::unlink(path(dir("licensing/") + h1).c_str()), 0);
  store.crl_uninstall("l.crl");
  EXPECT_EQ(names("licensing"), (std::set<std::string>{h1}));
  EXPECT_EQ(names("general"), (std::set<std::string>{hg}));
  EXPECT_TRUE(store.sync(false).empty());
}

// A write that stopped before the CA directories followed it (an error or a kill after the
// stores changed) leaves var/lib/ptrust/capath-unfinished. A directory it left behind can
// agree with its own manifest and still be wrong (here: two CAs of one subject whose entries
// hold each other's bytes, names unchanged), which no derivation can see: while the marker
// is there the next write compares every directory with the whole selection, `sync --check`
// names the marker, and a write that finished removes it.
TEST_F(Capath, AnUnfinishedWriteMakesTheNextOneCompareEveryDirectory) {
  const Issued a = self_signed({.cn = "Twin CA", .ca = true}), b = self_signed({.cn = "Twin CA", .ca = true});
  install(a, CertType::kCa, {"licensing"});
  install(b, CertType::kCa, {"licensing"});
  const std::string h0 = hash_name(a.cert.get(), 0), h1 = hash_name(a.cert.get(), 1);
  const Files good = entries("licensing");
  ASSERT_EQ(good.size(), 2u);
  ASSERT_TRUE(good.count(h0) && good.count(h1));
  ASSERT_NE(good.at(h0), good.at(h1));

  // The entries swapped, the manifest made to agree: what a writer stopped halfway could leave.
  auto put = [&](const std::string& name, const std::string& content) {
    const std::string f = path(dir("licensing/") + name);
    ASSERT_EQ(::unlink(f.c_str()), 0);
    write_file(f, content);
    ASSERT_EQ(::chmod(f.c_str(), 0644), 0);
  };
  const std::string m = path(dir("licensing/.ptrust-capath"));
  std::string manifest = read_file(m);
  auto sum = [](const std::string& s) {
    unsigned char d[32];
    EVP_Digest(s.data(), s.size(), d, nullptr, EVP_sha256(), nullptr);
    std::string hex;
    char b2[3];
    for (unsigned char c : d) {
      std::snprintf(b2, sizeof b2, "%02x", c);
      hex += b2;
    }
    return hex;
  };
  const std::string s0 = sum(good.at(h0)), s1 = sum(good.at(h1));
  ASSERT_NE(manifest.find(s0 + " " + h0), std::string::npos);
  manifest.replace(manifest.find(s0 + " " + h0), 64, s1);
  manifest.replace(manifest.find(s1 + " " + h1), 64, s0);
  put(".ptrust-capath", manifest);
  put(h0, good.at(h1));
  put(h1, good.at(h0));
  write_file(path("var/lib/ptrust/capath-unfinished"), "");

  std::set<std::string> seen = drift(store, false);
  EXPECT_TRUE(seen.count("stale var/lib/ptrust/capath-unfinished")) << ::testing::PrintToString(seen);
  auto crl = make_crl(certs().ca1, {});
  store.crl_install(crl_pem(crl.get()), "other.crl", {}, std::time(nullptr));
  Files now = entries("licensing");
  now.erase(crl_hash_name(crl.get()));
  EXPECT_EQ(now, good) << "compared with the selection, not derived from the CRL change";
  EXPECT_FALSE(exists("var/lib/ptrust/capath-unfinished"));
  EXPECT_TRUE(store.sync(false).empty());
}

TEST_F(Capath, ADirectoryThatDiffersFromItsManifestIsRebuiltNotPatched) {
  // What a writer killed between an in-place step and its manifest leaves: an entry the
  // manifest does not list. The next writer must not patch around it (it would keep a CA the
  // database no longer has): it swaps in a whole tree, and the stray entry is gone.
  install(certs().ca1, CertType::kCa, {"licensing"});
  const std::string h2 = hash_name(certs().ca2.cert.get());
  write_file(path(dir("licensing/") + h2), certs().ca2.pem());
  ASSERT_EQ(::chmod(path(dir("licensing/") + h2).c_str(), 0644), 0);
  const ino_t d = inode(dir("licensing"));
  install(certs().general, CertType::kCa, {"licensing"});
  EXPECT_NE(inode(dir("licensing")), d) << "swapped in whole";
  EXPECT_EQ(names("licensing"), (std::set<std::string>{hash_name(certs().ca1.cert.get()),
                                                        hash_name(certs().general.cert.get())}));
  EXPECT_TRUE(store.sync(false).empty());

  // An entry of the manifest missing: the same.
  ASSERT_EQ(::unlink(path(dir("licensing/") + hash_name(certs().ca1.cert.get())).c_str()), 0);
  const ino_t d2 = inode(dir("licensing"));
  install(certs().ca2, CertType::kCa, {"licensing"});
  EXPECT_NE(inode(dir("licensing")), d2);
  EXPECT_EQ(names("licensing").size(), 3u);
  EXPECT_TRUE(store.sync(false).empty());
}

TEST_F(Capath, SyncNamesAndRepairsEveryKindOfDrift) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  install(certs().peer, CertType::kPinned, {"ldaps"});
  auto clean = snapshot(root);
  clean.erase("var/lib/ptrust/generation");
  const std::string lic = hash_name(certs().ca1.cert.get());
  const std::string pin = hash_name(certs().peer.cert.get());

  ASSERT_EQ(::unlink(path(dir("licensing/") + lic).c_str()), 0);                          // missing
  write_file(path(dir("licensing/stray.0")), certs().ca2.pem());                           // remnant
  write_file(path(dir("ldaps/") + pin), certs().ca2.pem());                                // stale
  ASSERT_EQ(::chmod(path(dir("general")).c_str(), 0700), 0);                               // dir mode
  ASSERT_EQ(::chmod(path(dir("ldaps/.ptrust-capath")).c_str(), 0600), 0);                 // file mode
  ASSERT_EQ(::symlink("/etc/ssl/certs", path(dir("licensing/link.0")).c_str()), 0);       // symlink inside
  ASSERT_EQ(::mkdir(path(dir(".ptrust-tmp-0123")).c_str(), 0755), 0);                      // killed writer
  write_file(path(dir(".ptrust-tmp-0123/x.0")), "half");
  ASSERT_EQ(::mkdir(path(dir("retired")).c_str(), 0755), 0);                               // undeclared
  ASSERT_EQ(::unlink(path("etc/trusted-certs/capath/no-ca.pem").c_str()), 0);             // placeholder

  auto before = snapshot(root);
  auto seen = drift(store, false);
  EXPECT_EQ(diff(before, snapshot(root)), "") << "--check changes nothing";
  const std::string c = "etc/trusted-certs/capath/";
  EXPECT_EQ(seen, (std::set<std::string>{
                      "missing " + c + "licensing/" + lic,
                      "remnant " + c + "licensing/stray.0",
                      "stale " + c + "ldaps/" + pin,
                      "mode " + c + "general",
                      "mode " + c + "ldaps/.ptrust-capath",
                      "unsafe " + c + "licensing/link.0",
                      "remnant " + c + ".ptrust-tmp-0123",
                      "remnant " + c + "retired",
                      "missing " + c + "no-ca.pem",
                  }));
  EXPECT_EQ(store.sync(true).size(), seen.size());
  EXPECT_TRUE(store.sync(false).empty());
  auto after = snapshot(root);
  after.erase("var/lib/ptrust/generation");
  EXPECT_EQ(diff(clean, after), "");
  EXPECT_TRUE(std::filesystem::exists("/etc/ssl/certs")) << "the symlink was removed, not followed";
}

TEST_F(Capath, SymlinksInPlaceOfDirectoriesAreReplacedNeverFollowed) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  TempDir outside;
  write_file(outside / "keep.0", "outside");
  std::filesystem::remove_all(path(dir("ldaps")));
  ASSERT_EQ(::symlink(outside.path().c_str(), path(dir("ldaps")).c_str()), 0);
  EXPECT_TRUE(drift(store, false).count("unsafe etc/trusted-certs/capath/ldaps"));
  store.sync(true);
  EXPECT_FALSE(std::filesystem::is_symlink(path(dir("ldaps"))));
  EXPECT_TRUE(entries("ldaps").empty());
  EXPECT_EQ(read_file(outside / "keep.0"), "outside");

  // The capath directory itself: a writer replaces it too.
  std::filesystem::remove_all(path("etc/trusted-certs/capath"));
  ASSERT_EQ(::symlink(outside.path().c_str(), path("etc/trusted-certs/capath").c_str()), 0);
  EXPECT_TRUE(drift(store, false).count("unsafe etc/trusted-certs/capath"));
  install(certs().ca2, CertType::kCa, {"ldaps"});
  EXPECT_FALSE(std::filesystem::is_symlink(path("etc/trusted-certs/capath")));
  EXPECT_EQ(names("ldaps"), (std::set<std::string>{hash_name(certs().ca2.cert.get())}));
  EXPECT_EQ(std::filesystem::directory_iterator(outside.path())->path().filename(), "keep.0");
  EXPECT_TRUE(store.sync(false).empty());
}

TEST_F(Capath, KilledWritersTempDirectoriesAreRemovedByTheNextWriter) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  ASSERT_EQ(::mkdir(path(dir(".ptrust-tmp-dead")).c_str(), 0755), 0);
  write_file(path(dir(".ptrust-tmp-dead/3399c8e5.0")), "half");
  install(certs().ca2, CertType::kCa, {"ldaps"});
  EXPECT_FALSE(exists(dir(".ptrust-tmp-dead")));
  EXPECT_TRUE(store.sync(false).empty());
}

TEST_F(Capath, PurposesFollowTheConfiguration) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  // A purpose added to the configuration appears on the next write.
  Store more({root, parse_config("purposes:\n  licensing: {}\n  ldaps: {}\n  wlb: {}\n", "more.yaml")});
  EXPECT_TRUE(drift(more, false).count("missing etc/trusted-certs/capath/wlb"));
  more.legacy_install("x.pem", Certificate::parse(certs().ca2.pem()), std::time(nullptr));
  EXPECT_TRUE(std::filesystem::is_directory(path(dir("wlb"))));
  EXPECT_TRUE(more.sync(false).empty());
  // A purpose removed from it loses its directory on the next sync.
  Store fewer({root, parse_config("purposes:\n  licensing: {}\n", "fewer.yaml")});
  auto seen = drift(fewer, false);
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/capath/wlb"));
  EXPECT_TRUE(seen.count("remnant etc/trusted-certs/capath/ldaps"));
  fewer.sync(true);
  EXPECT_FALSE(exists(dir("wlb")));
  EXPECT_FALSE(exists(dir("ldaps")));
  EXPECT_TRUE(std::filesystem::is_directory(path(dir("licensing"))));
}

TEST_F(Capath, ACorruptChosenBundleLeavesAnEmptyDirectory) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  write_file(path("etc/trusted-certs/ca-bundle-licensing.pem"), "garbage\n");
  // The next write that looks at licensing fails it closed; sync restores both.
  install(certs().general, CertType::kCa);
  EXPECT_TRUE(entries("licensing").empty());
  EXPECT_NE(read_file(path(dir("licensing/.ptrust-capath"))).find("error STORE_CORRUPT"), std::string::npos);
  store.sync(true);
  EXPECT_EQ(names("licensing"), (std::set<std::string>{hash_name(certs().ca1.cert.get())}));
  EXPECT_TRUE(store.sync(false).empty());
}

// What a reader holding one directory descriptor sees: the manifest and every entry, each
// entry checked against the manifest's SHA-256. Returns false when the directory could not
// be opened by name.
struct View {
  bool opened = false;
  bool retired = false;  // the name pointed elsewhere by the end of the read
  std::string manifest;
  Files files;
};

View read_view(const std::string& dirpath) {
  View v;
  int fd = ::open(dirpath.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return v;
  v.opened = true;
  int lfd = ::dup(fd);
  DIR* d = ::fdopendir(lfd);
  std::vector<std::string> listed;
  while (dirent* e = ::readdir(d))
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") listed.push_back(e->d_name);
  ::closedir(d);
  auto slurp = [&](const std::string& n) -> std::optional<std::string> {
    int f = ::openat(fd, n.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (f < 0) return std::nullopt;
    std::string s;
    char buf[4096];
    ssize_t k;
    while ((k = ::read(f, buf, sizeof buf)) > 0) s.append(buf, static_cast<size_t>(k));
    ::close(f);
    return s;
  };
  // The manifest first: the writer removes a retired directory's manifest last.
  v.manifest = slurp(".ptrust-capath").value_or("");
  for (const auto& n : listed) {
    // What OpenSSL opens: hash entries only (an in-place step's temp file, hidden and not a
    // hash name, is never read by a CApath lookup).
    if (n == ".ptrust-capath" || n.rfind(".ptrust-tmp-", 0) == 0) continue;
    auto c = slurp(n);
    if (!c) continue;  // only possible in a retired directory
    v.files[n] = *c;
  }
  struct stat a, b;
  ::fstat(fd, &a);
  v.retired = ::stat(dirpath.c_str(), &b) != 0 || a.st_ino != b.st_ino;
  ::close(fd);
  return v;
}

TEST_F(Capath, ReadersNeverSeeAMissingDirectoryOrAMixWhileTheWriterChangesIt) {
  install(certs().ca1, CertType::kCa, {"licensing"});
  const std::string lic = path(dir("licensing"));
  // The states a completed change can leave. One-step changes (one CA in or out) are made in
  // place; the two-CA install (ca2 and general at once) is a swap of a whole new tree.
  const std::string h1 = hash_name(certs().ca1.cert.get()), h2 = hash_name(certs().ca2.cert.get()),
                    hg = hash_name(certs().general.cert.get());
  const std::set<Files> legal{{{h1, certs().ca1.pem()}},
                              {{h1, certs().ca1.pem()}, {h2, certs().ca2.pem()}},
                              {{h2, certs().ca2.pem()}},
                              {{h1, certs().ca1.pem()}, {h2, certs().ca2.pem()}, {hg, certs().general.pem()}},
                              {{h1, certs().ca1.pem()}, {hg, certs().general.pem()}}};
  std::atomic<bool> done{false};
  std::atomic<int> swaps{0};  // two-CA installs that replaced the directory by a new tree
  std::thread writer([&] {
    std::string uuid1 = store.database().certs.at(0).uuid, uuid2;
    for (int i = 0; i < 40; ++i) {
      uuid2 = install(certs().ca2, CertType::kCa, {"licensing"}).uuid;  // {ca1, ca2}
      store.uninstall(uuid1, false);                                     // {ca2}
      uuid1 = install(certs().ca1, CertType::kCa, {"licensing"}).uuid;  // {ca1, ca2}
      store.uninstall(uuid2, false);                                     // {ca1}
      std::vector<Certificate> pair;
      pair.push_back(Certificate::parse(certs().ca2.pem()));
      pair.push_back(Certificate::parse(certs().general.pem()));
      // A swap: the new tree exists beside the old one when they are exchanged, so its inode
      // differs (comparing with the first directory's would not do: freed inodes are reused).
      const ino_t before_two = inode(dir("licensing"));
      auto two = store.install_each(pair, {CertType::kCa, {"licensing"}}, std::time(nullptr));  // {ca1, ca2, general}
      swaps += inode(dir("licensing")) != before_two;
      store.uninstall(two.at(0).uuid, false);                                            // {ca1, general}
      store.uninstall(two.at(1).uuid, false);                                            // {ca1}
    }
    done = true;
  });
  int reads = 0, complete = 0, retired = 0;
  std::set<std::string> manifests;
  std::string failure;  // the reader stops at the first violation; the writer is joined first
  auto fail = [&](const std::string& why) { failure = "read " + std::to_string(reads) + ": " + why; };
  // The store's generation (core/generation.h) before and after each read: equal and even
  // means no change overlapped the read, so the read must be exactly one completed state. A
  // read that overlapped an in-place step may mix two neighbouring states across its many
  // opens (a CApath lookup opens one file per lookup: each file it opens is whole).
  const std::string state = path("var/lib/ptrust");
  fs::Fd sd(::open(state.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  int overlapped = 0;
  while (!done && failure.empty()) {
    const std::uint64_t g0 = read_generation(sd.get());
    View v = read_view(lic);
    const bool quiet = generation_stable(g0) && read_generation(sd.get()) == g0;
    ++reads;
    if (!v.opened) {
      fail("capath/licensing was missing");
      break;
    }
    // Every entry is whole (its content is one of the manifests' digests for its name): the
    // writer renames complete files into place and never writes one where a reader can see it.
    for (const auto& [n, c] : v.files)
      if (c != (n == h1 ? certs().ca1.pem() : n == h2 ? certs().ca2.pem() : n == hg ? certs().general.pem() : ""))
        fail("entry " + n + " is not a whole certificate file");
    if (v.retired) {  // swapped out while we read: what we saw was still one directory's
      ++retired;
      continue;
    }
    if (!quiet) {
      ++overlapped;
      continue;
    }
    ++complete;
    manifests.insert(v.manifest);
    // The entries (what OpenSSL reads) are one completed state; the manifest, which only
    // ptrust reads, is replaced right after an in-place step and may be one step behind.
    if (!legal.count(v.files))
      fail("a directory that is no completed state (" + std::to_string(v.files.size()) + " entries)");
  }
  writer.join();
  ASSERT_EQ(failure, "");
  EXPECT_GT(complete, 50);
  EXPECT_GE(manifests.size(), 2u) << "the reader saw the directory change";
  EXPECT_EQ(swaps, 40) << "every two-CA install swapped in a whole tree";
  std::cout << "reads " << reads << ", complete " << complete << ", swapped during the read " << retired
            << ", overlapping a change " << overlapped << "\n";
}

}  // namespace
}  // namespace ptrust::testing
