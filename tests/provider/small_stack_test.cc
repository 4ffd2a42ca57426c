// The provider inside a 64 KiB thread, as it runs in stunnel 5.68's worker threads: every
// lookup (and the re-read after a store change) happens on that stack. A consumer-path frame
// that does not fit kills this binary with SIGSEGV. Verdicts are collected in the thread and
// asserted after the join.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include <sys/vfs.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "tests/provider/fixture.h"
#include "tests/support/provider_ctx.h"
#include "tests/support/small_stack.h"

namespace ptrust::testing {
namespace {

// An OSSL_LIB_CTX with the default provider and ptrust.so (`root =` the store's root).
class LibCtx : public ProviderCtx {
 public:
  explicit LibCtx(const StoreRoot& store) : ProviderCtx(module(), store.path(), store.dir()) {}

 private:
  static std::string module() {
    ::unsetenv("PTRUST_ROOT");
    ::unsetenv("PTRUST_CONFIG");
    return PTRUST_PROVIDER_MODULE;
  }
};

// The leaf's CRL is required (what stunnel's CRL flag and `openssl verify -crl_check` do).
// Checks of chains that have no CRL in the store run without it.
constexpr unsigned long kCrl = X509_V_FLAG_CRL_CHECK;

// An X509_STORE served by ptrust://PURPOSE.
ossl::X509StorePtr ptrust_store(const LibCtx& lib, const std::string& purpose) {
  ossl::X509StorePtr store(X509_STORE_new());
  if (!store || X509_STORE_load_store_ex(store.get(), ("ptrust://" + purpose).c_str(), lib.get(), nullptr) != 1)
    throw std::runtime_error("X509_STORE_load_store_ex ptrust://" + purpose);
  return store;
}

// X509_V_OK or the verification error of `leaf` (+ `untrusted`) against `store`.
int verify(const LibCtx& lib, X509_STORE* store, unsigned long flags, const Issued& leaf, const Issued* untrusted) {
  ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new_ex(lib.get(), nullptr));
  ossl::X509StackPtr chain(sk_X509_new_null());
  if (!ctx || !chain) throw std::runtime_error("out of memory");
  if (untrusted != nullptr) {
    X509_up_ref(untrusted->cert.get());
    sk_X509_push(chain.get(), untrusted->cert.get());
  }
  if (X509_STORE_CTX_init(ctx.get(), store, leaf.cert.get(), chain.get()) != 1)
    throw std::runtime_error("X509_STORE_CTX_init");
  X509_STORE_CTX_set_flags(ctx.get(), flags);
  int ok = X509_verify_cert(ctx.get());
  int err = X509_STORE_CTX_get_error(ctx.get());
  ERR_clear_error();
  if (ok == 1 && err != X509_V_OK) throw std::runtime_error("verified with an error set");
  if (ok != 1 && err == X509_V_OK) return -1;  // failed without a verify error: the store broke
  return err;
}

// One verification to make in the small-stack thread and the verdict it must give.
struct Check {
  const char* name;
  const Issued* leaf;
  const Issued* untrusted;
  unsigned long flags;
  int want;
  int got = -2;
};

// Runs each check in a 64 KiB thread with a new store of `purpose` (so every issuer and CRL
// is looked up through the provider), and `kept` when given (a long-lived store, as a
// server's SSL_CTX keeps: CRLs are looked up again on every verification).
void run_checks(const LibCtx& lib, const std::string& purpose, std::vector<Check>& checks,
                X509_STORE* kept = nullptr) {
  size_t used = on_small_stack([&] {
    for (auto& c : checks) {
      ossl::X509StorePtr fresh = ptrust_store(lib, purpose);
      int a = verify(lib, fresh.get(), c.flags, *c.leaf, c.untrusted);
      int b = kept != nullptr ? verify(lib, kept, c.flags, *c.leaf, c.untrusted) : a;
      c.got = a == b ? a : -3;  // the two stores must agree
    }
  });
  std::fprintf(stderr, "provider checks used %zu of %zu stack bytes\n", used, kStunnelStack);
  EXPECT_LT(used, kStunnelStack / 2) << "half of stunnel's stack is the most ptrust may take (measured ~12 KiB)";
  for (const auto& c : checks)
    EXPECT_EQ(c.got, c.want) << c.name << ": got "
                             << (c.got >= 0 ? X509_verify_cert_error_string(c.got) : "store failure / disagreement")
                             << ", want " << X509_verify_cert_error_string(c.want);
}

TEST(ProviderSmallStack, VerifiesWithCrlsAcrossStoreChangesIn64KiBThread) {
  const Pki& p = Pki::get();
  StoreRoot store;
  store.populate();  // licensing: CA root; CRL of inter revoking `revoked`
  LibCtx lib(store);
  ossl::X509StorePtr kept = ptrust_store(lib, "licensing");

  std::vector<Check> before{
      {"leaf", &p.leaf, &p.inter, kCrl, X509_V_OK},
      {"revoked leaf", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED},
      {"other CA's leaf", &p.other_leaf, nullptr, 0, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
  };
  run_checks(lib, "licensing", before, kept.get());

  // A change through the real binary: the provider re-reads in the small-stack thread.
  std::string other_uuid = store.install("other_ca", "ca", "licensing");
  std::vector<Check> installed{
      {"other CA's leaf, its CA installed", &p.other_leaf, nullptr, 0, X509_V_OK},
      {"revoked leaf", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED},
      {"leaf", &p.leaf, &p.inter, kCrl, X509_V_OK},
  };
  run_checks(lib, "licensing", installed);
  // The long-lived store looks the CRLs up again: the re-read happens in the thread too.
  std::vector<Check> kept_checks{{"revoked leaf, kept store", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED}};
  run_checks(lib, "licensing", kept_checks, kept.get());

  store.uninstall(store.root_uuid);
  std::vector<Check> removed{
      {"leaf, its CA removed", &p.leaf, &p.inter, kCrl, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
      {"other CA's leaf", &p.other_leaf, nullptr, 0, X509_V_OK},
  };
  run_checks(lib, "licensing", removed);
}

// --- 10,000 certificates -----------------------------------------------------------------

// n self-signed CA certificates (CN "bulk CA <i>") signed by one EC key: PEM each.
std::vector<std::string> bulk_cas(int n, EVP_PKEY* key) {
  std::vector<std::string> out;
  out.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) out.push_back(ca_with_key_pem("bulk CA " + std::to_string(i), i + 1, key, 30));
  return out;
}

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') out += "\\n";
    else if (c == '"' || c == '\\') out += std::string("\\") + c;
    else out += c;
  }
  return out + "\"";
}

std::string uuid_of(int i) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "00000000-0000-4000-8000-%012x", static_cast<unsigned>(i));
  return buf;
}

// A `ptrust export` document: `pems` as CAs of `purpose`.
std::string export_doc(const std::vector<std::string>& pems, const std::string& purpose) {
  std::string doc = "{\"format\":\"ptrust-export\",\"version\":1,\"trusted\":[";
  for (size_t i = 0; i < pems.size(); ++i) {
    if (i) doc += ",";
    doc += "{\"uuid\":\"" + uuid_of(static_cast<int>(i) + 1) + "\",\"type\":\"ca\",\"purposes\":[\"" + purpose +
           "\"],\"installed_at\":1700000000,\"pem\":" + json_string(pems[i]) + "}";
  }
  doc += "],\"legacy\":[],\"crls\":[]}\n";
  return doc;
}

// The store writer fsyncs every file it writes (two per certificate): on a disk, importing
// 10,000 certificates takes minutes. On tmpfs fsync returns at once and the same binary does
// the same work, so the root of this test lives there when /dev/shm is a tmpfs.
class TmpfsTempDir {
 public:
  TmpfsTempDir() {
    struct statfs fs;
    const char* old = std::getenv("TMPDIR");
    if (old != nullptr) saved_ = old;
    had_ = old != nullptr;
    if (::statfs("/dev/shm", &fs) == 0 && fs.f_type == 0x01021994 /* TMPFS_MAGIC */) ::setenv("TMPDIR", "/dev/shm", 1);
  }
  ~TmpfsTempDir() {
    if (had_) ::setenv("TMPDIR", saved_.c_str(), 1);
    else ::unsetenv("TMPDIR");
  }

 private:
  std::string saved_;
  bool had_ = false;
};

StoreRoot* make_tmpfs_store_root() {
  TmpfsTempDir tmpfs;  // only while the temporary directory is made
  return new StoreRoot();
}

TEST(ProviderSmallStack, TenThousandCertificateBundleWithCrlAcrossStoreChangeIn64KiBThread) {
  constexpr int kBulk = 10000;
  const Pki& p = Pki::get();
  std::unique_ptr<StoreRoot> root_holder(make_tmpfs_store_root());
  StoreRoot& store = *root_holder;
  auto t0 = std::chrono::steady_clock::now();
  ossl::PkeyPtr key(EVP_EC_gen("P-256"));
  std::vector<std::string> pems = bulk_cas(kBulk + 1, key.get());
  // The last one is never installed: same key, same shape, not trusted.
  Issued untrusted_bulk;
  {
    ossl::BioPtr bio(BIO_new_mem_buf(pems.back().data(), static_cast<int>(pems.back().size())));
    untrusted_bulk.cert.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    pems.pop_back();
  }
  Issued bulk_7777;
  {
    ossl::BioPtr bio(BIO_new_mem_buf(pems[7777].data(), static_cast<int>(pems[7777].size())));
    bulk_7777.cert.reset(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  }
  pems.push_back(p.root.pem());  // the licensing chain's CA
  // The CRL first, while the store is empty: `crl install` checks a CRL against every
  // installed CA (seconds with 10,000 of them); an import does not re-check it.
  std::string crl_path = store.dir() + "/inter.crl";
  write_file(crl_path, crl_pem(p.crl.get()));
  RunResult crl = ptrust(store.path(), {"crl", "install", crl_path, "--name", "inter.crl"});
  ASSERT_EQ(crl.status, 0) << crl.err;
  std::string doc_path = store.dir() + "/bulk-export.json";
  write_file(doc_path, export_doc(pems, "licensing"));
  RunResult imported = ptrust(store.path(), {"import", doc_path});
  ASSERT_EQ(imported.status, 0) << imported.err;
  auto t1 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "generated and imported %d certificates (+ 1 CRL) under %s in %lld ms\n", kBulk + 1,
               store.path().c_str(),
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t1 - t0).count()));

  LibCtx lib(store);
  ossl::X509StorePtr kept = ptrust_store(lib, "licensing");
  std::vector<Check> before{
      {"leaf", &p.leaf, &p.inter, kCrl, X509_V_OK},
      {"revoked leaf", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED},
      {"bulk CA 7777 itself", &bulk_7777, nullptr, 0, X509_V_OK},
      {"bulk-shaped CA never installed", &untrusted_bulk, nullptr, 0, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
      {"other CA's leaf", &p.other_leaf, nullptr, 0, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
  };
  run_checks(lib, "licensing", before, kept.get());

  // A change through the real binary: the 10,001-certificate bundle and the CRL are re-read
  // in the small-stack thread (the newly trusted CA proves the bundle was read again).
  store.install("other_ca", "ca", "licensing");
  std::vector<Check> after{
      {"other CA's leaf, its CA installed", &p.other_leaf, nullptr, 0, X509_V_OK},
      {"revoked leaf", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED},
      {"leaf", &p.leaf, &p.inter, kCrl, X509_V_OK},
      {"bulk CA 7777 itself", &bulk_7777, nullptr, 0, X509_V_OK},
  };
  run_checks(lib, "licensing", after);
  std::vector<Check> kept_checks{{"revoked leaf, kept store", &p.revoked, &p.inter, kCrl, X509_V_ERR_CERT_REVOKED}};
  run_checks(lib, "licensing", kept_checks, kept.get());
  auto t2 = std::chrono::steady_clock::now();
  std::fprintf(stderr, "verifications and the change in %lld ms\n",
               static_cast<long long>(std::chrono::duration_cast<std::chrono::milliseconds>(t2 - t1).count()));
}

}  // namespace
}  // namespace ptrust::testing
