// The fault matrix: one table of faults on the read side (and a full disk on the write side),
// each tried against every consumer of a purpose. For every fault:
//   - every consumer fails closed with the documented reason (or, for a fault outside what
//     consumers read, keeps serving the intact store: consumers do not read the database);
//   - none falls back to a lower-precedence bundle: the general CAs (what a fallback would
//     trust) never verify the purpose, before, during or after the fault;
//   - `ptrust status` and `ptrust sync --check` name the fault;
//   - `ptrust sync` repairs what the database can repair, after which every consumer agrees
//     again; what it cannot repair (the database itself, the configuration) it refuses with
//     the fault's code, changing nothing.
// Consumers: the provider in-process (an OSSL_LIB_CTX, long-lived) and through `openssl
// verify -CAstore ptrust://P`; the verify hook in a real handshake and offline (one long-lived
// PTRUST_CTX); `ptrust verify`; `ptrust probe` against `openssl s_server` on 127.0.0.1;
// `ptrust stunnel render`. Faults that make a file unreadable are tried with the consumers
// running as `nobody` (root reads a mode-0000 file): in-process by switching the effective
// UID around the calls, out of process through setpriv.
#include <gtest/gtest.h>

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>

#include "core/cert.h"
#include "tests/hook/hook_util.h"
#include "tests/support/provider_ctx.h"
#include "tests/support/run.h"
#include "tests/support/tree.h"

namespace ptrust::testing {
namespace {

namespace fsys = std::filesystem;

constexpr uid_t kNobody = 65534;

struct Pki {
  Chain own = make_chain(KeyKind::kP256, "Own");          // licensing's CA and a peer it must accept
  Chain general = make_chain(KeyKind::kP256, "General");  // the general CAs: what a fallback would trust
  // A self-signed CA:FALSE "server.test": planted into a CA bundle by hand, it would be trusted
  // as itself by anything loading the bundle into an X509_STORE.
  Issued rogue = self_signed({.cn = "server.test", .dns = {"server.test"}, .ips = {"127.0.0.1"}});
  ossl::X509CrlPtr crl = make_crl_spec(own.inter, {}, {.number = 1});  // revokes nothing
};

const Pki& pki() {
  static Pki p;
  return p;
}

// Which peer a consumer is asked to verify.
enum class Peer { kOwn, kGeneral, kRogue };
const char* peer_name(Peer p) { return p == Peer::kOwn ? "own" : p == Peer::kGeneral ? "general" : "rogue"; }

std::vector<const Issued*> chain_of(Peer p) {
  switch (p) {
    case Peer::kOwn: return {&pki().own.leaf, &pki().own.inter};
    case Peer::kGeneral: return {&pki().general.leaf, &pki().general.inter};
    case Peer::kRogue: return {&pki().rogue};
  }
  return {};
}

// The files, servers and programs every row shares.
class Shared {
 public:
  Shared() {
    ::chmod(dir_.path().c_str(), 0755);  // readable by nobody
    for (Peer p : {Peer::kOwn, Peer::kGeneral, Peer::kRogue}) {
      auto c = chain_of(p);
      write_file(chain_file(p), pem_of(c));
      write_file(dir_ / (std::string(peer_name(p)) + "-leaf.pem"), c[0]->pem());
      write_file(dir_ / (std::string(peer_name(p)) + "-untrusted.pem"), c.size() > 1 ? c[1]->pem() : c[0]->pem());
      servers_[p] = std::make_unique<SServer>(dir_, *c[0], std::vector<const Issued*>(c.begin() + 1, c.end()),
                                              TLS1_3_VERSION);
    }
    write_file(dir_ / "own-root.pem", pki().own.root.pem());
    write_file(dir_ / "general-root.pem", pki().general.root.pem());
    write_file(dir_ / "own-inter.pem", pki().own.inter.pem());
    write_file(dir_ / "rogue.pem", pki().rogue.pem());
    write_file(dir_ / "own.crl", crl_pem(pki().crl.get()));
  }
  std::string chain_file(Peer p) const { return dir_ / (std::string(peer_name(p)) + "-chain.pem"); }
  std::string file(const std::string& name) const { return dir_ / name; }
  std::string target(Peer p) const { return servers_.at(p)->target(); }
  const TempDir& dir() const { return dir_; }

 private:
  TempDir dir_;
  std::map<Peer, std::unique_ptr<SServer>> servers_;
};

Shared& shared() {
  static Shared s;
  return s;
}

// A root as `ptrust` makes it: licensing in ca mode (own root), the general store (general
// root), a CRL of the own intermediate scoped to licensing (so crl-scope.json exists).
class TestRoot {
 public:
  TestRoot() {
    ::chmod(dir_.path().c_str(), 0755);
    fsys::create_directories(dir_ / "etc/ptrust");
    write_file(config(), "purposes:\n  licensing: {}\n");
    cli({"install", shared().file("own-root.pem"), "--ca", "--purpose", "licensing"});
    cli({"install", shared().file("general-root.pem"), "--ca"});
    cli({"crl", "install", shared().file("own.crl"), "--purpose", "licensing", "--issuer",
         shared().file("own-inter.pem")});
  }
  const std::string& path() const { return dir_.path(); }
  std::string config() const { return dir_ / "etc/ptrust/ptrust.yaml"; }
  std::string operator/(const std::string& rel) const { return dir_ / rel; }
  std::string crl_file() const {
    for (const auto& e : fsys::directory_iterator(dir_ / "etc/stunnel/crls"))
      if (e.path().extension() == ".crl") return e.path();
    return "";
  }

 private:
  void cli(const std::vector<std::string>& args) const {
    RunResult r = ptrust(path(), args);
    if (r.status != 0) throw std::runtime_error("setup: ptrust " + args[0] + ": " + r.err);
  }
  TempDir dir_;
};

// ---------------------------------------------------------------------------------------------
// The faults.

struct Fault {
  const char* name;
  std::function<void(const TestRoot&)> make;
  // What each consumer must answer for licensing: a reason string, or "OK" when the fault is
  // outside what consumers read (they keep serving the intact store).
  const char* reason;
  const char* check_names;   // `sync --check` exits 1 and prints this
  const char* status_names;  // `status` exits non-zero and prints this
  bool unprivileged;         // consumers run as nobody (the fault is a permission)
  const char* sync_code;     // "" when `sync` repairs it, else the code it refuses with
  Peer foreign = Peer::kGeneral;  // a peer that must never verify for licensing
};

void PrintTo(const Fault& f, std::ostream* os) { *os << f.name; }

void truncate_file(const std::string& path, size_t keep) {
  std::string s = read_file(path);
  write_file(path, s.substr(0, std::min(keep, s.size())));
}

void append_file(const std::string& path, const std::string& more) { write_file(path, read_file(path) + more); }

const std::string kBundle = "etc/trusted-certs/ca-bundle-licensing.pem";
const std::string kGeneration = "var/lib/ptrust/generation";

std::vector<Fault> faults() {
  return {
      {"bundle_missing", [](const TestRoot& r) { fsys::remove(r / kBundle); }, "STORE_CORRUPT",
       "missing", "STORE_CORRUPT", false, ""},
      {"bundle_truncated", [](const TestRoot& r) { truncate_file(r / kBundle, 300); }, "STORE_CORRUPT", "stale",
       "STORE_CORRUPT", false, ""},
      {"bundle_unreadable", [](const TestRoot& r) { ::chmod((r / kBundle).c_str(), 0000); }, "STORE_UNREADABLE",
       "mode", "mode etc/trusted-certs/ca-bundle-licensing.pem", true, ""},
      {"bundle_symlink",
       [](const TestRoot& r) {  // to the general bundle: a fallback in disguise
         fsys::remove(r / kBundle);
         fsys::create_symlink("ca-bundle-general.pem", r / kBundle);
       },
       "STORE_UNSAFE", "unsafe", "STORE_UNSAFE", false, ""},
      {"bundle_directory",
       [](const TestRoot& r) {
         fsys::remove(r / kBundle);
         fsys::create_directory(r / kBundle);
       },
       "STORE_UNSAFE", "unsafe", "STORE_UNSAFE", false, ""},
      {"bundle_private_key", [](const TestRoot& r) { append_file(r / kBundle, pki().own.root.key_pem()); },
       "STORE_CORRUPT", "stale", "STORE_CORRUPT", false, ""},
      {"bundle_non_ca", [](const TestRoot& r) { append_file(r / kBundle, pki().rogue.pem()); }, "STORE_CORRUPT",
       "stale", "STORE_CORRUPT", false, "", Peer::kRogue},
      {"crl_dir_unreadable", [](const TestRoot& r) { ::chmod((r / "etc/stunnel/crls").c_str(), 0000); },
       "STORE_UNREADABLE", "mode", "mode etc/stunnel/crls", true, ""},
      {"crl_corrupt", [](const TestRoot& r) { truncate_file(r.crl_file(), 200); }, "STORE_CORRUPT", "stale",
       "STORE_CORRUPT", false, ""},
      {"crl_scope_corrupt",
       [](const TestRoot& r) { write_file(r / "var/lib/ptrust/crl-scope.json", "{\"crls\": [garbage"); },
       "STORE_CORRUPT", "crl-scope.json", "STORE_CORRUPT", false, ""},
      {"database_corrupt", [](const TestRoot& r) { truncate_file(r / "var/lib/ptrust/ptrust.db", 100); }, "OK",
       "DATABASE_INVALID", "DATABASE_INVALID", false, "DATABASE_INVALID"},
      {"generation_corrupt", [](const TestRoot& r) { write_file(r / kGeneration, std::string(16, '\xff')); }, "OK",
       "generation", "var/lib/ptrust/generation", false, ""},
      {"generation_deleted", [](const TestRoot& r) { fsys::remove(r / kGeneration); }, "OK", "generation",
       "var/lib/ptrust/generation", false, ""},
      {"generation_recreated",
       [](const TestRoot& r) {  // a copy of the counter in a new file (a restore from backup)
         std::string g = read_file(r / kGeneration);
         fsys::remove(r / kGeneration);
         write_file(r / kGeneration, g);
       },
       "OK", "", "", false, ""},
      {"config_unparsable", [](const TestRoot& r) { write_file(r.config(), "purposes: [\n"); }, "CONFIG_INVALID",
       "CONFIG_INVALID", "CONFIG_INVALID", false, "CONFIG_INVALID"},
  };
}

// ---------------------------------------------------------------------------------------------
// The consumers.

// The codes a consumer may name; the first one found in its output is its answer.
const char* const kCodes[] = {"STORE_CORRUPT", "STORE_UNSAFE", "STORE_UNREADABLE", "CONFIG_INVALID", "CRL_INVALID",
                              "CRL_MISSING", "UNKNOWN_PURPOSE", "NO_TRUST_FOR_PURPOSE", "DATABASE_INVALID",
                              "IO_ERROR", "INTERNAL_ERROR"};

std::string named_code(const std::string& text) {
  size_t best = std::string::npos;
  std::string code;
  for (const char* c : kCodes)
    if (size_t at = text.find(c); at < best) {
      best = at;
      code = c;
    }
  return code.empty() ? "UNNAMED: " + text.substr(0, text.find('\n')) : code;
}

// `verify` / `probe`: "attempt 1/1: verified reason=OK ..." or "FAILED reason=X"; a refusal
// before any attempt is "ptrust: CODE: ..." on stderr.
std::string attempt_reason(const RunResult& r) {
  static const std::regex re("reason=([A-Z_]+)");
  std::smatch m;
  if (std::regex_search(r.out, m, re)) return m[1];
  return named_code(r.err);
}

// Switches the effective UID to nobody (when running as root) for in-process consumers.
class AsNobody {
 public:
  explicit AsNobody(bool on) : on_(on && ::geteuid() == 0) {
    if (on_ && ::seteuid(kNobody) != 0) throw std::runtime_error("seteuid");
  }
  ~AsNobody() {
    if (on_ && ::seteuid(0) != 0) std::abort();
  }

 private:
  bool on_;
};

std::vector<std::string> unprivileged(bool on, std::vector<std::string> argv) {
  if (on && ::geteuid() == 0)
    argv.insert(argv.begin(), {"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  return argv;
}

struct Consumer {
  const char* name;
  bool in_process;  // long-lived: sees a hand-made fault within TrustSource::kRecheck
  bool per_peer;    // verifies a peer (stunnel render only renders)
  bool hook;        // answers with the verify hook's reasons (ptrust_reason)
  bool privileged;  // an administrator's command (it writes under the root): never run as nobody
  std::function<std::string(Peer, bool unprivileged)> verdict;
};

// The hook's reason for an error code (core/error.cc): its ABI has no STORE_UNSAFE, so an
// unsafe store is STORE_UNREADABLE there.
std::string expected_for(const Consumer& c, const std::string& code) {
  if (!c.hook) return code;
  if (code == "STORE_UNSAFE" || code == "IO_ERROR") return "STORE_UNREADABLE";
  return code;
}

// The consumers of purpose licensing on one root. The in-process ones are created before the
// fault, as a running program's are.
class Consumers {
 public:
  explicit Consumers(const TestRoot& root) : root_(root) {
    char err[256];
    pt_ = ptrust_ctx_new(root.path().c_str(), nullptr, err, sizeof err);
    if (pt_ == nullptr) throw std::runtime_error(std::string("ptrust_ctx_new: ") + err);
    client_ = client_ctx(TLS1_3_VERSION);
    if (ptrust_SSL_CTX_set1_purpose(client_.get(), pt_, "licensing") != 1) throw std::runtime_error("set1_purpose");
    for (Peer p : {Peer::kOwn, Peer::kGeneral, Peer::kRogue}) {
      auto c = chain_of(p);
      servers_[p] = server_ctx(*c[0], std::vector<const Issued*>(c.begin() + 1, c.end()), TLS1_3_VERSION);
    }
    ::chmod(pdir_.path().c_str(), 0755);
    prov_ = std::make_unique<ProviderCtx>(PTRUST_PROVIDER_MODULE, root.path(), pdir_.path());
  }
  ~Consumers() { ptrust_ctx_free(pt_); }

  std::vector<Consumer> all() {
    std::vector<Consumer> out{
        {"provider in-process", true, true, false, false, [this](Peer p, bool u) { return provider(p, u); }},
        {"hook handshake", true, true, true, false, [this](Peer p, bool u) { return hook_handshake(p, u); }},
        {"hook offline", true, true, true, false, [this](Peer p, bool u) { return hook_offline(p, u); }},
        {"ptrust verify", false, true, true, false,
         [this](Peer p, bool u) {
           return attempt_reason(run(unprivileged(u, {PTRUST_BIN, "--root", root_.path(), "verify", "--purpose",
                                                      "licensing", shared().chain_file(p), "--host", "server.test"})));
         }},
        {"ptrust probe", false, true, true, false,
         [this](Peer p, bool u) {
           return attempt_reason(run(unprivileged(u, {PTRUST_BIN, "--root", root_.path(), "probe", shared().target(p),
                                                      "--purpose", "licensing", "--host", "server.test"})));
         }},
        // Writes the purpose's CRL file under etc/ptrust: run by an administrator (root), who
        // reads a mode-0000 file, so not tried for the permission faults.
        {"stunnel render", false, false, false, true, [this](Peer, bool u) { return render(u); }},
    };
#ifndef PTRUST_SANITIZED_PROVIDER
    // An ASan-built ptrust.so cannot load into the unsanitized openssl program (scripts/asan.sh
    // leaves such tests to the normal run); the in-process provider above still runs there.
    out.push_back({"openssl verify -CAstore", false, true, false, false,
                   [this](Peer p, bool u) { return openssl_verify(p, u); }});
#endif
    return out;
  }

 private:
  // ptrust://licensing as a program's X509_STORE sees it: the open's reason, else whether the
  // peer's chain verifies against what was served.
  std::string provider(Peer p, bool u) {
    AsNobody guard(u);
    ProviderCtx::Opened o = prov_->open("licensing");
    if (o.reason != "OK") return o.reason;
    ERR_clear_error();
    ossl::Ptr<X509_STORE, X509_STORE_free> store(X509_STORE_new());
    if (X509_STORE_load_store_ex(store.get(), "ptrust://licensing", prov_->get(), nullptr) != 1) {
      const char* r = ERR_reason_error_string(ERR_peek_last_error());
      ERR_clear_error();
      return r ? r : "LOAD_FAILED";
    }
    // Copies decoded in the provider's library context: verifying the shared certificates
    // there would leave their keys holding a cache of that context's key management, which
    // outlives it.
    std::vector<ossl::X509Ptr> copies;
    for (const Issued* x : chain_of(p)) {
      std::string der = x->der();
      auto q = reinterpret_cast<const unsigned char*>(der.data());
      X509* y = X509_new_ex(prov_->get(), nullptr);
      if (y == nullptr || d2i_X509(&y, &q, static_cast<long>(der.size())) == nullptr) return "DECODE_FAILED";
      copies.emplace_back(y);
    }
    ossl::X509StackPtr untrusted(sk_X509_new_null());
    for (size_t i = 1; i < copies.size(); ++i) sk_X509_push(untrusted.get(), copies[i].get());
    ossl::Ptr<X509_STORE_CTX, X509_STORE_CTX_free> ctx(X509_STORE_CTX_new_ex(prov_->get(), nullptr));
    X509_STORE_CTX_init(ctx.get(), store.get(), copies[0].get(), untrusted.get());
    int ok = X509_verify_cert(ctx.get());
    std::string out = ok == 1 ? "OK" : std::string("CHAIN_UNTRUSTED: ") +
                                           X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    ERR_clear_error();
    return out;
  }

  std::string openssl_verify(Peer p, bool u) {
    std::string dir = fsys::path(PTRUST_PROVIDER_MODULE).parent_path();
    std::string name = peer_name(p);
    RunResult r = run(unprivileged(
        u, {"env", "-u", "OPENSSL_CONF", "-u", "PTRUST_CONFIG", "PTRUST_ROOT=" + root_.path(), "openssl", "verify",
            "-provider-path", dir, "-provider", "ptrust", "-provider", "default", "-CAstore", "ptrust://licensing",
            "-no-CAfile", "-no-CApath", "-untrusted", shared().file(name + "-untrusted.pem"),
            shared().file(name + "-leaf.pem")}));
    if (r.status == 0 && r.out.find(": OK") != std::string::npos) return "OK";
    std::string code = named_code(r.err);
    return code.rfind("UNNAMED", 0) == 0 ? "CHAIN_UNTRUSTED: " + r.err.substr(0, r.err.find('\n')) : code;
  }

  std::string hook_handshake(Peer p, bool u) {
    AsNobody guard(u);
    Outcome o = handshake(client_.get(), servers_[p].get(), "server.test");
    if (!o.have_result) return "NO_RESULT";
    if (o.ok != (o.result.reason == PTRUST_REASON_OK)) return "HANDSHAKE_DISAGREES";
    return ptrust_reason_string(o.result.reason);
  }

  std::string hook_offline(Peer p, bool u) {
    AsNobody guard(u);
    ossl::X509StackPtr chain(sk_X509_new_null());
    for (const Issued* x : chain_of(p)) {
      X509_up_ref(x->cert.get());
      sk_X509_push(chain.get(), x->cert.get());
    }
    PTRUST_VERIFY_OPTIONS opts{};
    opts.host = "server.test";
    PTRUST_RESULT r{};
    if (ptrust_verify_chain(pt_, "licensing", chain.get(), &opts, &r) != 1) return "NO_VERDICT";
    return ptrust_reason_string(r.reason);
  }

  // A stanza for licensing's own bundle, never another one; or the refusal's code.
  std::string render(bool u) {
    RunResult r = run(unprivileged(u, {PTRUST_BIN, "--root", root_.path(), "stunnel", "render", "--purpose",
                                       "licensing", "--name", "svc", "--accept", "127.0.0.1:1", "--connect",
                                       "127.0.0.1:2", "--check-host", "server.test"}));
    if (r.status != 0) return named_code(r.err);
    if (r.out.find("ca-bundle-licensing.pem") == std::string::npos || r.out.find("ca-bundle-general") != std::string::npos)
      return "WRONG_BUNDLE: " + r.out;
    return "OK";
  }

  const TestRoot& root_;
  PTRUST_CTX* pt_ = nullptr;
  ossl::SslCtxPtr client_;
  std::map<Peer, ossl::SslCtxPtr> servers_;
  TempDir pdir_;
  std::unique_ptr<ProviderCtx> prov_;
};

// ---------------------------------------------------------------------------------------------
// The figures, printed once at the end.

struct Figures {
  int faults = 0, tried = 0, failed_closed = 0, served_intact = 0, wrong = 0, fallbacks_tried = 0, fallbacks = 0;
  int status_named = 0, check_named = 0, repaired = 0, repair_refused = 0;
  int disk_full_attempts = 0, disk_full_refused = 0, disk_full_repaired = 0;
};
Figures figures;

class PrintFigures : public ::testing::Environment {
 public:
  void TearDown() override {
    if (figures.faults)
      std::cout << "fault matrix: " << figures.faults << " faults x consumers = " << figures.tried
              << " tried: " << figures.failed_closed << " failed closed with the documented reason, "
              << figures.served_intact << " served the intact store (fault outside what consumers read), "
              << figures.wrong << " wrong; " << figures.fallbacks_tried << " lower-precedence peers tried, "
              << figures.fallbacks << " accepted; status named " << figures.status_named << ", sync --check named "
              << figures.check_named << "; sync repaired " << figures.repaired << ", refused (not repairable) "
              << figures.repair_refused << "\n";
    if (figures.disk_full_attempts)
      std::cout << "disk full: " << figures.disk_full_attempts << " writes with the disk full at another point, "
                << figures.disk_full_refused << " refused (IO_ERROR), consumers served throughout, sync repaired "
                << figures.disk_full_repaired << "\n";
  }
};
const auto* const kPrint = ::testing::AddGlobalTestEnvironment(new PrintFigures);

RunResult cli(const TestRoot& root, const std::vector<std::string>& args) { return ptrust(root.path(), args); }

// Every consumer answers `want` for the own peer and never accepts a foreign one; in-process
// consumers get TrustSource's second to notice a hand-made change. Counts into `figures` when
// `count`.
void expect_consumers(Consumers& cs, const std::string& want_code, Peer foreign, bool unpriv, bool count) {
  for (const Consumer& c : cs.all()) {
    if (unpriv && c.privileged) continue;
    const std::string want = expected_for(c, want_code);
    auto settle = [&](Peer p, const std::function<bool(const std::string&)>& good) {
      std::string v = c.verdict(p, unpriv);
      if (c.in_process && !good(v)) eventually([&] { return good(v = c.verdict(p, unpriv)); });
      return v;
    };
    std::string own = settle(Peer::kOwn, [&](const std::string& v) { return v == want; });
    EXPECT_EQ(own, want) << c.name << " on the purpose's own peer";
    if (count) {
      ++figures.tried;
      if (own != want) ++figures.wrong;
      else if (want == "OK") ++figures.served_intact;
      else ++figures.failed_closed;
    }
    if (!c.per_peer) continue;
    for (Peer p : {foreign, Peer::kGeneral}) {
      std::string v = settle(p, [&](const std::string& v) { return want == "OK" ? v != "OK" : v == want; });
      EXPECT_NE(v, "OK") << c.name << " accepted the " << peer_name(p) << " peer";
      if (want != "OK") {
        EXPECT_EQ(v, want) << c.name << " on the " << peer_name(p) << " peer";
      }
      if (count) {
        ++figures.fallbacks_tried;
        if (v == "OK") ++figures.fallbacks;
      }
      if (foreign == Peer::kGeneral) break;
    }
  }
}

class FaultMatrix : public ::testing::TestWithParam<Fault> {};

TEST_P(FaultMatrix, EveryConsumerFailsClosedNamesItAndSyncRepairs) {
  const Fault& f = GetParam();
  TestRoot root;
  Consumers cs(root);
  // Before: every consumer accepts the own peer only; the root is healthy.
  expect_consumers(cs, "OK", f.foreign, f.unprivileged, false);
  ASSERT_EQ(cli(root, {"sync", "--check"}).out, "in sync\n");
  // Warnings only (the test PKI expires within 30 days): exit 3, no drift.
  RunResult healthy = cli(root, {"status"});
  ASSERT_NE(healthy.status, 1) << healthy.out << healthy.err;
  ASSERT_NE(healthy.out.find("drift: none"), std::string::npos) << healthy.out;
  if (HasFailure()) return;

  f.make(root);
  ++figures.faults;
  expect_consumers(cs, f.reason, f.foreign, f.unprivileged, true);

  RunResult status = cli(root, {"status"});
  RunResult check = cli(root, {"sync", "--check"});
  if (*f.check_names) {
    // An error where the fault fails the purpose for the user running status; otherwise (root
    // reads a mode-0000 file; the consumers do not read the generation file) a warning.
    if (std::string(f.reason) != "OK" && !f.unprivileged) {
      EXPECT_EQ(status.status, 1) << status.out << status.err;
    } else {
      EXPECT_NE(status.status, 0) << status.out << status.err;
    }
    EXPECT_NE((status.out + status.err).find(f.status_names), std::string::npos) << status.out << status.err;
    EXPECT_EQ(check.status, 1) << check.out << check.err;
    EXPECT_NE((check.out + check.err).find(f.check_names), std::string::npos) << check.out << check.err;
    figures.status_named += status.status != 0 && (status.out + status.err).find(f.status_names) != std::string::npos;
    figures.check_named += check.status == 1 && (check.out + check.err).find(f.check_names) != std::string::npos;
  } else {  // not a fault of the store: nothing to name
    EXPECT_NE(status.status, 1) << status.out << status.err;
    EXPECT_EQ(check.out, "in sync\n") << check.err;
  }

  Tree before = snapshot(root.path());
  RunResult sync = cli(root, {"sync"});
  if (*f.sync_code) {
    EXPECT_EQ(sync.status, 1) << sync.out << sync.err;
    EXPECT_EQ(sync.err.rfind(std::string("ptrust: ") + f.sync_code + ": ", 0), 0u) << sync.err;
    EXPECT_EQ(diff(before, snapshot(root.path())), "") << "a refused sync changes nothing";
    figures.repair_refused += sync.status == 1;
    return;
  }
  EXPECT_EQ(sync.status, 0) << sync.out << sync.err;
  EXPECT_EQ(cli(root, {"sync", "--check"}).out, "in sync\n");
  RunResult after = cli(root, {"status"});
  EXPECT_NE(after.status, 1) << after.out << after.err;
  expect_consumers(cs, "OK", f.foreign, f.unprivileged, false);
  if (!HasFailure()) ++figures.repaired;  // repaired, and every consumer agrees again
}

INSTANTIATE_TEST_SUITE_P(Faults, FaultMatrix, ::testing::ValuesIn(faults()),
                         [](const auto& info) { return std::string(info.param.name); });

// ---------------------------------------------------------------------------------------------
// Disk full during a write: a small tmpfs root (a mount namespace of this process: as root, or
// in a user namespace otherwise), filled to leave 0, 1, 2, ... pages free, under each writer.

bool write_proc(const char* path, const std::string& text) {
  std::ofstream f(path);
  f << text;
  return static_cast<bool>(f.flush());
}

std::string mount_tmpfs(const std::string& dir, size_t bytes) {
  // As root a mount namespace is enough; without CAP_SYS_ADMIN (a user, or root in a
  // container) a user namespace brings it.
  if (::geteuid() != 0 || ::unshare(CLONE_NEWNS) != 0) {
    uid_t uid = ::getuid();
    gid_t gid = ::getgid();
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) return std::string("unshare: ") + std::strerror(errno);
    if (!write_proc("/proc/self/setgroups", "deny") || !write_proc("/proc/self/uid_map", "0 " + std::to_string(uid) + " 1") ||
        !write_proc("/proc/self/gid_map", "0 " + std::to_string(gid) + " 1"))
      return "cannot map the user namespace";
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return std::string("mount --make-rprivate: ") + std::strerror(errno);
  std::string opts = "size=" + std::to_string(bytes) + ",mode=0755";
  if (::mount("tmpfs", dir.c_str(), "tmpfs", 0, opts.c_str()) != 0)
    return std::string("mount tmpfs: ") + std::strerror(errno);
  return "";
}

// Fills the file system of `dir` with `filler` until `pages` pages are left.
void fill_leaving(const std::string& dir, const std::string& filler, long pages) {
  ::unlink(filler.c_str());
  struct statvfs v;
  ASSERT_EQ(::statvfs(dir.c_str(), &v), 0);
  long long avail = static_cast<long long>(v.f_bavail) * static_cast<long long>(v.f_frsize);
  long long size = avail - pages * 4096LL;
  if (size <= 0) return;
  int fd = ::open(filler.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::posix_fallocate(fd, 0, size), 0);
  ::close(fd);
}

void expect_stores_parse(const std::string& root) {
  for (const char* d : {"etc/trusted-certs", "etc/stunnel"}) {
    fsys::path dir = fsys::path(root) / d;
    if (!fsys::exists(dir)) continue;
    for (const auto& e : fsys::directory_iterator(dir)) {
      std::string name = e.path().filename();
      if (!name.ends_with(".pem") || !e.is_regular_file() || read_file(e.path()).empty()) continue;
      EXPECT_NO_THROW(parse_bundle(read_file(e.path()), name)) << name << " does not parse";
    }
  }
}

TEST(DiskFull, EveryWriterOnAFullDiskIsRefusedConsumersServeAndSyncRepairs) {
  shared();  // outside the tmpfs
  TempDir mnt;
  std::string err = mount_tmpfs(mnt.path(), 8u << 20);
  ASSERT_EQ(err, "") << "a tmpfs is needed to fill a disk";
  const char* old_tmp = std::getenv("TMPDIR");
  std::string saved = old_tmp ? old_tmp : "";
  ::setenv("TMPDIR", mnt.path().c_str(), 1);
  auto root = std::make_unique<TestRoot>();
  if (saved.empty()) ::unsetenv("TMPDIR");
  else ::setenv("TMPDIR", saved.c_str(), 1);
  ASSERT_EQ(root->path().rfind(mnt.path(), 0), 0u);
  Consumers cs(*root);
  auto consumers = cs.all();
  std::string filler = mnt / "filler";

  // Inputs made per attempt (outside the tmpfs): each attempt writes something new.
  TempDir in;
  int serial = 0;
  auto new_ca = [&] {
    std::string f = in / ("ca" + std::to_string(++serial) + ".pem");
    write_file(f, self_signed({.cn = "Disk CA " + std::to_string(serial), .ca = true}).pem());
    return f;
  };
  long crl_number = 1;
  const std::string host_uuid = "3b8e5c4a-9f2d-4e1b-8a7c-6d5e4f3a2b1c";

  struct Op {
    const char* name;
    std::function<std::vector<std::string>()> args;  // prepares (disk not yet full) and returns the command
  };
  std::string to_remove;
  std::vector<Op> ops = {
      {"install", [&] { return std::vector<std::string>{"install", new_ca(), "--ca", "--purpose", "licensing"}; }},
      {"uninstall",
       [&] {
         RunResult r = ptrust(root->path(), {"install", new_ca(), "--ca", "--purpose", "licensing"});
         EXPECT_EQ(r.status, 0) << r.err;
         return std::vector<std::string>{"uninstall", r.out.substr(0, 36)};
       }},
      {"crl install",
       [&] {
         std::string f = in / ("crl" + std::to_string(++crl_number) + ".pem");
         write_file(f, crl_pem(make_crl_spec(pki().own.inter, {}, {.number = crl_number}).get()));
         return std::vector<std::string>{"crl", "install", f, "--purpose", "licensing", "--issuer",
                                         shared().file("own-inter.pem")};
       }},
      {"legacy install", [&] { return std::vector<std::string>{"legacy", "install", "disk" + std::to_string(serial + 1) + ".pem", new_ca()}; }},
      {"pool add", [&] { return std::vector<std::string>{"pool", "add", host_uuid, new_ca()}; }},
  };
  int refused_untouched = 0, refused_committed = 0;
  for (const Op& op : ops) {
    bool done = false;
    for (long pages = 0; pages < 200 && !done; ++pages) {
      std::vector<std::string> args = op.args();
      Tree before = snapshot(root->path());
      fill_leaving(mnt.path(), filler, pages);
      if (HasFatalFailure()) return;
      // The records (the database's export), not the file's bytes: SQLite's pages are its own.
      auto records = [&] { return ptrust(root->path(), {"export", "-"}).out; };
      std::string db_before = records();
      RunResult r = ptrust(root->path(), args);
      bool committed = false;
      ++figures.disk_full_attempts;
      if (r.status == 0) {
        done = true;
      } else {
        ++figures.disk_full_refused;
        EXPECT_EQ(r.status, 1) << op.name << " with " << pages << " pages free: " << r.err;
        EXPECT_EQ(r.err.rfind("ptrust: IO_ERROR: ", 0), 0u) << op.name << " with " << pages << " pages free: " << r.err;
        EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
        // Before the commit point (the database written) nothing is left; after it the
        // refusal says the change stands and `sync` finishes it.
        committed = r.err.find("recorded in the database: `ptrust sync` finishes") != std::string::npos;
        std::string changed = diff(before, snapshot(root->path()));
        refused_untouched += changed.empty();
        refused_committed += committed;
        EXPECT_TRUE(changed.empty() || committed) << op.name << " with " << pages << " pages free left the root changed "
                                                  << "without saying so: " << r.err << changed;
      }
      // Whatever happened, the stores parse and every consumer still serves licensing: the
      // old state or the new one, never a failure and never the general CAs.
      expect_stores_parse(root->path());
      for (const Consumer& c : consumers) {
        if (!c.in_process && std::string(c.name) != "ptrust verify") continue;
        std::string own = c.verdict(Peer::kOwn, false);
        if (c.in_process && own != "OK") eventually([&] { return (own = c.verdict(Peer::kOwn, false)) == "OK"; });
        EXPECT_EQ(own, "OK") << c.name << " after " << op.name << " with " << pages << " pages free";
        EXPECT_NE(c.verdict(Peer::kGeneral, false), "OK") << c.name;
      }
      // Space back: sync finishes or undoes what the refused write left, and the check is clean.
      ::unlink(filler.c_str());
      RunResult s = ptrust(root->path(), {"sync"});
      EXPECT_EQ(s.status, 0) << s.err;
      RunResult check = ptrust(root->path(), {"sync", "--check"});
      EXPECT_EQ(check.out, "in sync\n") << op.name << " with " << pages << " pages free: " << check.out << check.err;
      if (r.status != 0) {  // a committed change is there after sync, an uncommitted one is not
        EXPECT_EQ(records() != db_before, committed) << op.name;
        if (s.status == 0 && check.out == "in sync\n") ++figures.disk_full_repaired;
      }
      if (HasFailure()) return;
    }
    EXPECT_TRUE(done) << op.name << " never succeeded";
  }
  EXPECT_EQ(refused_untouched + refused_committed, figures.disk_full_refused);
  std::cout << "disk full: of " << figures.disk_full_refused << " refused writes, " << refused_untouched
            << " left the root byte-identical (before the commit point), " << refused_committed
            << " had committed and said so (finished by sync)\n";
}

}  // namespace
}  // namespace ptrust::testing
