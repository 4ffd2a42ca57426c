// Trust changes reach the hook even when things go wrong around it: a writer that dies
// half-way, a generation file that is re-created, pre-forked server workers sharing
// sessions, a client that sends no certificate to a ptrust-verifying server.
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <thread>

#include "core/db.h"
#include "core/fs.h"
#include "core/generation.h"
#include "core/reconcile.h"
#include "core/store.h"
#include "tests/hook/hook_util.h"
#include "tests/support/run.h"

namespace ptrust::testing {
namespace {

const Chain& a() {
  static Chain c = make_chain(KeyKind::kP256, "A");
  return c;
}
const Chain& b() {
  static Chain c = make_chain(KeyKind::kP256, "B");
  return c;
}

class Robustness : public ::testing::Test {
 protected:
  void SetUp() override {
    pt_ = root_.open();
    server_ = server_ctx(a().leaf, {&a().inter}, TLS1_3_VERSION);
    client_ = client_ctx(TLS1_3_VERSION);
    ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, "licensing"));
    uuid_ = root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
    ASSERT_TRUE(connect().ok);
  }
  void TearDown() override { ptrust_ctx_free(pt_); }
  Outcome connect() { return handshake(client_.get(), server_.get(), "server.test"); }

  // Store::uninstall up to the point where a writer dies: database committed, change begun,
  // a reader handshaking in the middle, files rewritten, but the change never ended.
  void uninstall_and_die_before_the_end() {
    fs::Fd rfd = fs::open_root(root_.path());
    fs::Fd state = fs::open_dir(rfd.get(), layout::kStateDir, false);
    Database db = load_database(state.get());
    CertRecord rec = *db.find(uuid_);
    std::erase_if(db.certs, [&](const CertRecord& r) { return r.uuid == uuid_; });
    save_database(state.get(), db);
    begin_change(state.get());
    EXPECT_TRUE(connect().ok) << "mid-change the old bundle is still on disk";
    std::vector<Drift> ignored;
    for (const auto& area : areas_of(rec)) reconcile(rfd.get(), db, area, true, ignored);
  }

  Root root_;
  PTRUST_CTX* pt_ = nullptr;
  ossl::SslCtxPtr server_, client_;
  std::string uuid_;
};

TEST_F(Robustness, SyncEndsTheChangeOfAWriterThatDiedAndTheHookFollows) {
  uninstall_and_die_before_the_end();
  Store store(open_context(root_.path(), root_.config()));
  auto drift = store.sync(false);
  // The unfinished change is drift, and so is the CA directory the dead writer never rebuilt.
  ASSERT_FALSE(drift.empty());
  EXPECT_EQ(drift[0].path, "var/lib/ptrust/generation");
  for (size_t i = 1; i < drift.size(); ++i)
    EXPECT_EQ(drift[i].path.rfind("etc/trusted-certs/capath/", 0), 0u) << drift[i].path;
  store.sync(true);
  EXPECT_TRUE(store.sync(false).empty());
  Outcome after = connect();
  EXPECT_FALSE(after.ok) << "the CA is gone from disk and database; the hook must not trust it";
  EXPECT_EQ(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, after.result.reason);
}

TEST_F(Robustness, ASnapshotFromAnUnfinishedChangeIsReReadWithinASecond) {
  uninstall_and_die_before_the_end();
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Outcome after = connect();
  EXPECT_FALSE(after.ok) << "a snapshot built while a writer was half-way must not be kept";
}

TEST_F(Robustness, ARecreatedGenerationFileIsFollowed) {
  std::filesystem::remove(root_.path() + "/var/lib/ptrust/generation");  // lost, or restored from backup
  Store store(open_context(root_.path(), root_.config()));
  EXPECT_FALSE(store.sync(true).empty()) << "sync re-creates it";
  root_.uninstall(uuid_);
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));  // the hook looks once a second
  Outcome after = connect();
  EXPECT_FALSE(after.ok) << "CA removed after the generation file was re-created; the hook still trusts it";
}

TEST_F(Robustness, AGenerationFileThatIsGoneIsNotMistakenForNoChange) {
  const std::string gen = root_.path() + "/var/lib/ptrust/generation";
  std::filesystem::remove(gen);
  root_.uninstall(uuid_);  // the writer re-creates it...
  std::filesystem::remove(gen);  // ...and it is gone again
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  Outcome after = connect();
  EXPECT_FALSE(after.ok) << "the hook kept a dead generation counter and the removed CA";
}

TEST(ServerRobustness, AClientWithoutACertificateIsRefused) {
  Root root;
  PTRUST_CTX* pt = root.open();
  root.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  auto server = server_ctx(b().leaf, {&b().inter}, TLS1_3_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(server.get(), pt, "licensing"));
  ossl::SslCtxPtr anonymous(SSL_CTX_new(TLS_client_method()));
  EXPECT_FALSE(handshake(anonymous.get(), server.get()).ok);
  ossl::SslCtxPtr with_cert(SSL_CTX_new(TLS_client_method()));
  ASSERT_EQ(1, SSL_CTX_use_certificate(with_cert.get(), a().leaf.cert.get()));
  ASSERT_EQ(1, SSL_CTX_use_PrivateKey(with_cert.get(), a().leaf.key.get()));
  X509_up_ref(a().inter.cert.get());
  ASSERT_EQ(1, SSL_CTX_add_extra_chain_cert(with_cert.get(), a().inter.cert.get()));
  EXPECT_TRUE(handshake(with_cert.get(), server.get()).ok) << "control: a trusted client gets in";
  ptrust_ctx_free(pt);
}

// Pre-forked workers share the parent's SSL_CTX (and ticket keys): a session issued by one
// worker is offered to another. It resumes while the store is unchanged, never after.
TEST(ServerRobustness, PreforkedWorkersNeverResumeAcrossAChange) {
  Root root;
  PTRUST_CTX* pt = root.open();
  std::string uuid = root.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  auto server = server_ctx(b().leaf, {&b().inter}, TLS1_2_VERSION);
  ASSERT_EQ(1, ptrust_SSL_CTX_set1_purpose(server.get(), pt, "licensing"));
  ossl::SslCtxPtr client(SSL_CTX_new(TLS_client_method()));
  SSL_CTX_set_max_proto_version(client.get(), TLS1_2_VERSION);
  ASSERT_EQ(1, SSL_CTX_use_certificate(client.get(), a().leaf.cert.get()));
  ASSERT_EQ(1, SSL_CTX_use_PrivateKey(client.get(), a().leaf.key.get()));
  X509_up_ref(a().inter.cert.get());
  ASSERT_EQ(1, SSL_CTX_add_extra_chain_cert(client.get(), a().inter.cert.get()));
  const std::string sess_file = root.path() + "/session.der";
  // Each worker: a handshake offering the saved session (if any); exit 10 resumed,
  // 11 full handshake accepted, 12 refused; the session is saved for the next worker.
  auto worker = [&] {
    pid_t pid = fork();
    if (pid == 0) {
      SessionPtr offered;
      if (std::filesystem::exists(sess_file)) {
        std::string der = read_file(sess_file);
        const unsigned char* q = reinterpret_cast<const unsigned char*>(der.data());
        offered.reset(d2i_SSL_SESSION(nullptr, &q, static_cast<long>(der.size())));
      }
      Outcome o = handshake(client.get(), server.get(), "", "", offered.get());
      if (o.ok) {
        unsigned char* der = nullptr;
        int n = i2d_SSL_SESSION(o.session.get(), &der);
        write_file(sess_file, std::string(reinterpret_cast<char*>(der), static_cast<size_t>(n)));
        OPENSSL_free(der);
      }
      _exit(o.ok ? (o.reused ? 10 : 11) : 12);
    }
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  };
  EXPECT_EQ(11, worker()) << "first worker: full handshake";
  EXPECT_EQ(10, worker()) << "control: another worker resumes while the store is unchanged";
  root.uninstall(uuid);  // the client's CA is no longer trusted
  EXPECT_EQ(12, worker()) << "10 = a worker resumed a session from before the CA was removed";
  ptrust_ctx_free(pt);
}

}  // namespace
}  // namespace ptrust::testing

namespace ptrust::testing {
namespace {

// An admin's `: > generation` (or garbage written into it) must not kill the host process
// (a mapped file would raise SIGBUS) nor freeze its trust: verifications keep going, follow
// the store by re-reading it, and follow it exactly again once the file is repaired.
TEST_F(Robustness, TruncatedOrGarbledGenerationFileNeitherKillsTheHostNorFreezesTrust) {
  const std::string gen = root_.path() + "/var/lib/ptrust/generation";
  std::atomic<bool> stop{false};
  std::atomic<int> verified{0}, other{0};
  std::thread worker([&] {  // a process that keeps verifying throughout
    while (!stop) (connect().ok ? verified : other)++;
  });
  auto wait_for_progress = [&] {
    int before = verified + other;
    return eventually([&] { return verified + other > before + 5; });
  };
  ASSERT_TRUE(wait_for_progress());
  ASSERT_EQ(::truncate(gen.c_str(), 0), 0);
  EXPECT_TRUE(wait_for_progress()) << "still verifying with an empty generation file";
  write_file(gen, std::string(64, 'x'));  // same inode? no: a new file with garbage
  EXPECT_TRUE(wait_for_progress()) << "still verifying with a garbled generation file";
  EXPECT_GT(verified.load(), 0);

  // Trust still follows the store while the file is bad (re-read within a second).
  int fails_before = other;
  root_.uninstall(uuid_);  // the writer repairs the generation file as it changes the store
  EXPECT_TRUE(eventually([&] { return other > fails_before + 3; })) << "the removed CA is no longer trusted";
  stop = true;
  worker.join();
  Outcome after = connect();
  EXPECT_FALSE(after.ok);
  EXPECT_EQ(PTRUST_REASON_NO_TRUST_FOR_PURPOSE, after.result.reason);

  // Repaired: changes apply on the next handshake again.
  root_.install(a().root.cert.get(), CertType::kCa, {"licensing"});
  EXPECT_TRUE(eventually([&] { return connect().ok; }));
}

}  // namespace
}  // namespace ptrust::testing

namespace ptrust::testing {
namespace {

// A CRL overwritten in place (same file, same directory: no directory time moves) by hand
// is seen within a second: newly revoked certificates must not keep passing until the next
// ptrust write.
TEST_F(Robustness, ACrlOverwrittenInPlaceByHandIsSeenWithinASecond) {
  root_.write_crl("inter.crl", make_crl(a().inter, {}).get());
  ASSERT_TRUE(connect().ok);
  write_file(root_.path() + "/etc/stunnel/crls/inter.crl", crl_pem(make_crl(a().inter, {a().leaf.cert.get()}).get()));
  EXPECT_TRUE(eventually([&] { return connect().result.reason == PTRUST_REASON_CERT_REVOKED; }));
}

}  // namespace
}  // namespace ptrust::testing
