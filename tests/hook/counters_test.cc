// Host-wide counters (core/counters.h): real processes publish verdicts through the hook into
// <root>/run/ptrust/counters, this process reads them as the daemon does; hostile files in
// that directory are skipped without crashing or hanging the reader.
#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>

#include "core/counters.h"
#include "core/error.h"
#include "core/layout.h"
#include "tests/hook/hook_util.h"
#include "tests/support/run.h"
#include "tests/support/small_stack.h"

namespace ptrust::testing {
namespace {

using counters::BadFile;
using counters::ProcessCounters;

const Chain& good() {
  static Chain c = make_chain(KeyKind::kP256, "Counted");
  return c;
}
const Chain& stranger() {
  static Chain c = make_chain(KeyKind::kP256, "Stranger");
  return c;
}

// leaf + intermediate, as a TLS peer sends them.
ossl::X509StackPtr chain_of(const Chain& c) {
  ossl::X509StackPtr s(sk_X509_new_null());
  for (X509* x : {c.leaf.cert.get(), c.inter.cert.get()}) {
    X509_up_ref(x);
    sk_X509_push(s.get(), x);
  }
  return s;
}

// One offline verification; returns the reason.
ptrust_reason verify(PTRUST_CTX* pt, const char* purpose, const Chain& c) {
  ossl::X509StackPtr s = chain_of(c);
  PTRUST_RESULT r{};
  if (ptrust_verify_chain(pt, purpose, s.get(), nullptr, &r) != 1) return PTRUST_REASON_COUNT;
  return r.reason;
}

std::array<std::uint64_t, PTRUST_REASON_COUNT> local(PTRUST_CTX* pt, const char* purpose) {
  std::array<std::uint64_t, PTRUST_REASON_COUNT> a{};
  EXPECT_EQ(1, ptrust_ctx_get_counters(pt, purpose, a.data(), a.size()));
  return a;
}

const ProcessCounters* find(const std::vector<ProcessCounters>& all, pid_t pid) {
  for (const ProcessCounters& p : all)
    if (p.pid == pid) return &p;
  return nullptr;
}

std::string bad_list(const std::vector<BadFile>& bad) {
  std::string s;
  for (const BadFile& b : bad) s += b.file + ": " + b.why + "\n";
  return s;
}

class Counters : public ::testing::Test {
 protected:
  void SetUp() override {
    root_.install(good().root.cert.get(), CertType::kCa, {"licensing"});
    counters::ensure_counters_dir(root_.path());
    dir_ = root_.path() + "/" + std::string(layout::kCountersDir);
  }
  Root root_;
  std::string dir_;
};

TEST_F(Counters, DirectoryIsStickyAndWorldWritable) {
  struct stat st {};
  ASSERT_EQ(0, ::lstat(dir_.c_str(), &st));
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(01777u, st.st_mode & 07777);
  counters::ensure_counters_dir(root_.path());  // idempotent
  // A symlink in its place is refused, not followed.
  std::filesystem::remove(dir_);
  std::filesystem::create_directory_symlink(root_.path(), dir_);
  EXPECT_THROW(counters::ensure_counters_dir(root_.path()), Error);
}

// A separate process verifies; this one sees its exact per-purpose, per-reason counts, alive
// while it runs and dead after it exits; then its file is removed.
TEST_F(Counters, AnotherProcessVerdictsAreReadExactly) {
  int go[2], ready[2];
  ASSERT_EQ(0, ::pipe(go));
  ASSERT_EQ(0, ::pipe(ready));
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    ::close(go[1]);
    ::close(ready[0]);
    PTRUST_CTX* pt = ptrust_ctx_new(root_.path().c_str(), root_.config().c_str(), nullptr, 0);
    int rc = pt ? 0 : 20;
    for (int i = 0; i < 5; ++i)
      if (verify(pt, "licensing", good()) != PTRUST_REASON_OK) rc = 21;
    for (int i = 0; i < 3; ++i)
      if (verify(pt, "licensing", stranger()) != PTRUST_REASON_CHAIN_UNTRUSTED) rc = 22;
    for (int i = 0; i < 2; ++i)  // nothing installed for `relaxed`: fail closed
      if (verify(pt, "relaxed", good()) != PTRUST_REASON_NO_TRUST_FOR_PURPOSE) rc = 23;
    char c = static_cast<char>(rc);
    if (::write(ready[1], &c, 1) != 1) _exit(30);
    if (::read(go[0], &c, 1) < 0) _exit(31);  // wait until the test has looked
    ptrust_ctx_free(pt);
    _exit(rc);
  }
  ::close(go[0]);
  ::close(ready[1]);
  char rc = -1;
  ASSERT_EQ(1, ::read(ready[0], &rc, 1));
  ASSERT_EQ(0, rc) << "the child's verdicts were not the expected ones";

  std::vector<BadFile> bad;
  auto all = counters::read_counters(root_.path(), &bad);
  EXPECT_TRUE(bad.empty()) << bad_list(bad);
  const ProcessCounters* p = find(all, child);
  ASSERT_NE(p, nullptr) << "no counters file for the child";
  EXPECT_TRUE(p->alive);
  EXPECT_EQ(p->start_time, counters::process_start_time(child).value());
  EXPECT_EQ(p->file, std::to_string(child) + "-" + std::to_string(p->start_time) + ".cnt");
  ASSERT_EQ(p->purposes.size(), 2u);
  counters::Counts lic{}, rel{};
  lic[PTRUST_REASON_OK] = 5;
  lic[PTRUST_REASON_CHAIN_UNTRUSTED] = 3;
  rel[PTRUST_REASON_NO_TRUST_FOR_PURPOSE] = 2;
  EXPECT_EQ(p->purposes.at("licensing"), lic);
  EXPECT_EQ(p->purposes.at("relaxed"), rel);
  EXPECT_FALSE(counters::remove_dead(root_.path(), *p)) << "removed the file of a running process";

  ::close(go[1]);  // the child exits
  int st = 0;
  ASSERT_EQ(child, ::waitpid(child, &st, 0));
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  all = counters::read_counters(root_.path(), &bad);
  p = find(all, child);
  ASSERT_NE(p, nullptr) << "the file of an exited process is kept until the daemon folds it";
  EXPECT_FALSE(p->alive);
  EXPECT_EQ(p->purposes.at("licensing"), lic);
  EXPECT_TRUE(counters::remove_dead(root_.path(), *p));
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/" + p->file));
  EXPECT_EQ(find(counters::read_counters(root_.path()), child), nullptr);
}

// Without the directory nothing is written (no directory is created either) and the
// process's own counters are exact.
TEST(CountersOff, NoDirectoryCountsInProcessOnly) {
  Root root;
  root.install(good().root.cert.get(), CertType::kCa, {"licensing"});
  PTRUST_CTX* pt = root.open();
  EXPECT_EQ(PTRUST_REASON_OK, verify(pt, "licensing", good()));
  EXPECT_EQ(PTRUST_REASON_OK, verify(pt, "licensing", good()));
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, verify(pt, "licensing", stranger()));
  auto c = local(pt, "licensing");
  EXPECT_EQ(c[PTRUST_REASON_OK], 2u);
  EXPECT_EQ(c[PTRUST_REASON_CHAIN_UNTRUSTED], 1u);
  EXPECT_FALSE(std::filesystem::exists(root.path() + "/run")) << "the hook created a directory";
  std::vector<BadFile> bad;
  EXPECT_TRUE(counters::read_counters(root.path(), &bad).empty());
  EXPECT_TRUE(bad.empty());
  ptrust_ctx_free(pt);
}

// Two contexts on one root in one process: each keeps its own counts, the file has both.
TEST_F(Counters, TwoContextsKeepTheirOwnCountsAndTheFileSumsThem) {
  PTRUST_CTX* a = root_.open();
  PTRUST_CTX* b = root_.open();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(PTRUST_REASON_OK, verify(a, "licensing", good()));
  for (int i = 0; i < 2; ++i) EXPECT_EQ(PTRUST_REASON_OK, verify(b, "licensing", good()));
  EXPECT_EQ(PTRUST_REASON_CHAIN_UNTRUSTED, verify(b, "licensing", stranger()));
  EXPECT_EQ(local(a, "licensing")[PTRUST_REASON_OK], 3u);
  EXPECT_EQ(local(a, "licensing")[PTRUST_REASON_CHAIN_UNTRUSTED], 0u);
  EXPECT_EQ(local(b, "licensing")[PTRUST_REASON_OK], 2u);
  EXPECT_EQ(local(b, "licensing")[PTRUST_REASON_CHAIN_UNTRUSTED], 1u);
  const ProcessCounters* p = nullptr;
  auto all = counters::read_counters(root_.path());
  p = find(all, ::getpid());
  ASSERT_NE(p, nullptr);
  EXPECT_TRUE(p->alive);
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_OK], 5u);
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_CHAIN_UNTRUSTED], 1u);
  // The SSL path counts into the same slot as the offline one.
  auto server = server_ctx(good().leaf, {&good().inter}, TLS1_3_VERSION);
  ossl::SslCtxPtr client = client_ctx(TLS1_3_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client.get(), a, "licensing"));
  EXPECT_TRUE(handshake(client.get(), server.get(), "server.test").ok);
  EXPECT_EQ(local(a, "licensing")[PTRUST_REASON_OK], 4u);
  all = counters::read_counters(root_.path());
  EXPECT_EQ(find(all, ::getpid())->purposes.at("licensing")[PTRUST_REASON_OK], 6u);
  client.reset();
  ptrust_ctx_free(a);
  ptrust_ctx_free(b);
}

// Publishing starts where a host first uses a purpose, possibly on a 64 KiB worker thread:
// creating, filling and mapping the file and claiming a slot must fit there.
TEST_F(Counters, FirstUseOnA64KiBStackPublishes) {
  PTRUST_CTX* pt = root_.open();
  ptrust_reason r1 = PTRUST_REASON_COUNT, r2 = PTRUST_REASON_COUNT;
  size_t used = on_small_stack([&] {
    r1 = verify(pt, "licensing", good());
    r2 = verify(pt, "licensing", stranger());
  });
  EXPECT_EQ(r1, PTRUST_REASON_OK);
  EXPECT_EQ(r2, PTRUST_REASON_CHAIN_UNTRUSTED);
  EXPECT_LT(used, kStunnelStack);
  auto all = counters::read_counters(root_.path());
  const ProcessCounters* p = find(all, ::getpid());
  ASSERT_NE(p, nullptr) << "not published";
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_OK], 1u);
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_CHAIN_UNTRUSTED], 1u);
  ptrust_ctx_free(pt);
}

// More purposes than slots: the ones beyond still count, in-process, and nothing fails.
TEST_F(Counters, SlotsExhaustedStillCountInProcess) {
  const int n = static_cast<int>(counters::kSlots) + 6;
  std::vector<PTRUST_CTX*> ctxs;
  for (int i = 0; i < n; ++i) {
    ctxs.push_back(root_.open());
    ASSERT_EQ(PTRUST_REASON_OK, verify(ctxs.back(), "licensing", good())) << i;
  }
  for (int i = 0; i < n; ++i) EXPECT_EQ(local(ctxs[i], "licensing")[PTRUST_REASON_OK], 1u) << i;
  EXPECT_EQ(PTRUST_REASON_OK, verify(ctxs.back(), "licensing", good()));
  EXPECT_EQ(local(ctxs.back(), "licensing")[PTRUST_REASON_OK], 2u);
  std::vector<BadFile> bad;
  auto all = counters::read_counters(root_.path(), &bad);
  EXPECT_TRUE(bad.empty()) << bad_list(bad);
  const ProcessCounters* p = find(all, ::getpid());
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_OK], counters::kSlots) << "one per published context";
  for (PTRUST_CTX* c : ctxs) ptrust_ctx_free(c);
}

// A child forked after the purpose was used counts into the parent's file; the file stays
// alive while such a child runs after the process named in it has exited.
TEST_F(Counters, ForkedChildAddsToTheFileAndKeepsItAlive) {
  int go[2], ready[2];
  ASSERT_EQ(0, ::pipe(go));
  ASSERT_EQ(0, ::pipe(ready));
  pid_t middle = ::fork();
  ASSERT_GE(middle, 0);
  if (middle == 0) {  // creates the context, verifies once, forks a grandchild, exits
    ::close(go[1]);
    ::close(ready[0]);
    PTRUST_CTX* pt = ptrust_ctx_new(root_.path().c_str(), root_.config().c_str(), nullptr, 0);
    if (!pt || verify(pt, "licensing", good()) != PTRUST_REASON_OK) _exit(20);
    pid_t grandchild = ::fork();
    if (grandchild < 0) _exit(21);
    if (grandchild == 0) {
      char c = 0;
      for (int i = 0; i < 4; ++i)
        if (verify(pt, "licensing", good()) != PTRUST_REASON_OK) c = 1;
      if (::write(ready[1], &c, 1) != 1) _exit(30);
      (void)::read(go[0], &c, 1);
      _exit(0);
    }
    _exit(0);
  }
  ::close(go[0]);
  ::close(ready[1]);
  int st = 0;
  ASSERT_EQ(middle, ::waitpid(middle, &st, 0));  // reaped: its pid is gone
  ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
  char c = -1;
  ASSERT_EQ(1, ::read(ready[0], &c, 1));
  ASSERT_EQ(0, c);
  auto all = counters::read_counters(root_.path());
  const ProcessCounters* p = find(all, middle);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->purposes.at("licensing")[PTRUST_REASON_OK], 5u) << "1 by the process + 4 by its child";
  EXPECT_TRUE(p->alive) << "a forked child still counts into it";
  EXPECT_FALSE(counters::remove_dead(root_.path(), *p));
  ::close(go[1]);  // the grandchild exits (reaped by init; its lock goes with its descriptors)
  EXPECT_TRUE(eventually([&] {
    auto now = counters::read_counters(root_.path());
    const ProcessCounters* q = find(now, middle);
    return q && !q->alive;
  }));
  EXPECT_TRUE(counters::remove_dead(root_.path(), *p));
}

// ---- hostile files ----

struct Spec {
  std::uint32_t slots = 2, reasons = PTRUST_REASON_COUNT;
  std::vector<std::pair<std::string, std::uint64_t>> purposes;  // name, count of reason 0
};

std::string file_content(pid_t pid, std::uint64_t start, const Spec& s) {
  std::string f(counters::file_size(s.slots, s.reasons), '\0');
  std::memcpy(f.data(), counters::kMagic, 8);
  auto put32 = [&](size_t off, std::uint32_t v) { std::memcpy(f.data() + off, &v, 4); };
  put32(8, counters::kVersion);
  put32(12, counters::kHeaderSize);
  put32(16, static_cast<std::uint32_t>(pid));
  std::memcpy(f.data() + 24, &start, 8);
  put32(32, s.slots);
  put32(36, s.reasons);
  put32(40, counters::slot_size(s.reasons));
  for (size_t i = 0; i < s.purposes.size(); ++i) {
    char* slot = f.data() + counters::kHeaderSize + i * counters::slot_size(s.reasons);
    std::uint64_t used = 1;
    std::memcpy(slot, &used, 8);
    std::memcpy(slot + 8, s.purposes[i].first.data(), s.purposes[i].first.size());
    std::memcpy(slot + 64, &s.purposes[i].second, 8);
    // The last counter, beyond the reasons this reader knows when reasons > COUNT.
    std::uint64_t last = 7;
    std::memcpy(slot + 64 + 8 * (s.reasons - 1), &last, 8);
  }
  return f;
}

TEST_F(Counters, HostileFilesAreSkippedAndReported) {
  // Names of dead processes (pid 4194304+ is above pid_max's ceiling).
  auto name = [](int i) { return std::to_string(4194304 + i) + "-" + std::to_string(100 + i) + ".cnt"; };
  auto path = [&](int i) { return dir_ + "/" + name(i); };
  auto pid = [](int i) { return static_cast<pid_t>(4194304 + i); };
  auto start = [](int i) { return static_cast<std::uint64_t>(100 + i); };
  const Spec ok{2, PTRUST_REASON_COUNT, {{"licensing", 9}}};
  std::map<std::string, std::string> expect_bad;

  write_file(path(0), file_content(pid(0), start(0), ok));  // the good one
  Spec newer{3, PTRUST_REASON_COUNT + 5, {{"licensing", 4}, {"licensing", 1}}};
  write_file(path(1), file_content(pid(1), start(1), newer));  // a newer hook: more reasons

  write_file(path(2), file_content(pid(2), start(2), ok).substr(0, 40));
  expect_bad[name(2)] = "truncated";
  std::string magic = file_content(pid(3), start(3), ok);
  magic[0] = 'X';
  write_file(path(3), magic);
  expect_bad[name(3)] = "bad magic";
  write_file(path(4), "");
  ASSERT_EQ(0, ::truncate(path(4).c_str(), off_t{1} << 32));  // huge (sparse): never read
  expect_bad[name(4)] = "too large";
  std::filesystem::create_symlink(path(0), path(5));
  expect_bad[name(5)] = "symlink";
  write_file(path(6), file_content(pid(6), start(6), ok) + std::string(64, '\0'));
  expect_bad[name(6)] = "wrong size";
  write_file(path(7), file_content(pid(7), start(7), Spec{2, PTRUST_REASON_COUNT, {{"Bad/Name", 1}}}));
  expect_bad[name(7)] = "bad purpose name";
  write_file(path(8), file_content(pid(8), start(8), Spec{2, PTRUST_REASON_COUNT, {{std::string(40, 'a'), 1}}}));
  expect_bad[name(8)] = "bad purpose name";
  ASSERT_EQ(0, ::mkfifo(path(9).c_str(), 0644));  // opened with O_NONBLOCK: no hang
  expect_bad[name(9)] = "not a regular file";
  write_file(path(10), file_content(pid(99), start(10), ok));  // header names another process
  expect_bad[name(10)] = "header does not match the file name";
  std::string slots = file_content(pid(11), start(11), ok);
  std::uint32_t many = 1u << 30;
  std::memcpy(slots.data() + 32, &many, 4);
  write_file(path(11), slots);
  expect_bad[name(11)] = "bad slot count";
  std::string reasons = file_content(pid(12), start(12), ok);
  std::uint32_t zero = 0;
  std::memcpy(reasons.data() + 36, &zero, 4);
  write_file(path(12), reasons);
  expect_bad[name(12)] = "bad reason count";
  std::string state = file_content(pid(13), start(13), ok);
  state[counters::kHeaderSize] = 2;
  write_file(path(13), state);
  expect_bad[name(13)] = "bad slot state";
  std::filesystem::create_directory(path(14));
  expect_bad[name(14)] = "not a regular file";
  write_file(dir_ + "/../../x.cnt", "");  // outside: not seen
  for (const char* n : {"evil.cnt", "0-1.cnt", "01-1.cnt", "1-.cnt", "-1.cnt", "1-1.cnt.tmp", "99999999999-1.cnt"}) {
    write_file(dir_ + "/" + n, file_content(1, 1, ok));
    expect_bad[n] = "unexpected name";
  }

  std::vector<BadFile> bad;
  auto all = counters::read_counters(root_.path(), &bad);
  std::map<std::string, std::string> got_bad;
  for (const BadFile& b : bad) got_bad[b.file] = b.why;
  EXPECT_EQ(got_bad, expect_bad);
  ASSERT_EQ(all.size(), 2u) << bad_list(bad);
  EXPECT_EQ(all[0].file, name(0));
  EXPECT_FALSE(all[0].alive);
  EXPECT_EQ(all[0].purposes.at("licensing")[0], 9u);
  EXPECT_EQ(all[0].purposes.at("licensing")[PTRUST_REASON_COUNT - 1], 7u);
  EXPECT_EQ(all[1].file, name(1));
  EXPECT_EQ(all[1].purposes.at("licensing")[0], 5u) << "two slots of one purpose are summed";
  EXPECT_EQ(all[1].purposes.at("licensing")[PTRUST_REASON_COUNT - 1], 0u) << "reasons beyond ours are ignored";
  // remove_dead only ever removes what it read, never through a forged name.
  ProcessCounters forged = all[0];
  forged.file = "../../../x.cnt";
  EXPECT_FALSE(counters::remove_dead(root_.path(), forged));
  EXPECT_TRUE(std::filesystem::exists(root_.path() + "/run/x.cnt"));
  EXPECT_TRUE(counters::remove_dead(root_.path(), all[0]));
  EXPECT_FALSE(std::filesystem::exists(path(0)));
}

// A file already at this process's name (another user's, or a leftover) makes the hook count
// in-process: it never writes into a file it did not create, and verifications go on.
TEST(CountersTaken, PreexistingFileFallsBackSilently) {
  Root root;
  root.install(good().root.cert.get(), CertType::kCa, {"licensing"});
  counters::ensure_counters_dir(root.path());
  const std::string mine = root.path() + "/" + std::string(layout::kCountersDir) + "/" + std::to_string(::getpid()) +
                           "-" + std::to_string(counters::process_start_time().value()) + ".cnt";
  write_file(mine, "not yours");
  PTRUST_CTX* pt = root.open();
  EXPECT_EQ(PTRUST_REASON_OK, verify(pt, "licensing", good()));
  EXPECT_EQ(local(pt, "licensing")[PTRUST_REASON_OK], 1u);
  EXPECT_EQ(read_file(mine), "not yours");
  std::vector<BadFile> bad;
  EXPECT_TRUE(counters::read_counters(root.path(), &bad).empty());
  ASSERT_EQ(bad.size(), 1u);
  EXPECT_EQ(bad[0].why, "truncated");
  ptrust_ctx_free(pt);
}

}  // namespace
}  // namespace ptrust::testing
