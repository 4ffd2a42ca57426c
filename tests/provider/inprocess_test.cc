// ptrust.so loaded into an OSSL_LIB_CTX of this process: OSSL_STORE and X509_STORE use,
// error reporting, caching and concurrency.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/pem.h>
#include <openssl/store.h>
#include <fcntl.h>
#include <sys/stat.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <sstream>
#include <thread>

#include "tests/provider/fixture.h"

namespace ptrust::testing {
namespace {

// A library context configured like an application would: default + ptrust, `root =`.
class LibCtx {
 public:
  explicit LibCtx(const StoreRoot& store) {
    ::unsetenv("PTRUST_ROOT");
    ::unsetenv("PTRUST_CONFIG");
    std::string conf = store.dir() + "/inprocess.cnf";
    write_file(conf, std::string("openssl_conf = openssl_init\n[openssl_init]\nproviders = provider_sect\n"
                                 "[provider_sect]\ndefault = default_sect\nptrust = ptrust_sect\n"
                                 "[default_sect]\nactivate = 1\n[ptrust_sect]\nmodule = ") +
                         PTRUST_PROVIDER_MODULE + "\nroot = " + store.path() + "\nactivate = 1\n");
    ctx_ = OSSL_LIB_CTX_new();
    if (OSSL_LIB_CTX_load_config(ctx_, conf.c_str()) != 1) throw std::runtime_error("cannot load " + conf);
    prov_ = OSSL_PROVIDER_load(ctx_, "ptrust");
    if (prov_ == nullptr) throw std::runtime_error("ptrust provider not available");
  }
  ~LibCtx() {
    OSSL_PROVIDER_unload(prov_);
    OSSL_LIB_CTX_free(ctx_);
  }
  OSSL_LIB_CTX* get() const { return ctx_; }
  OSSL_PROVIDER* provider() const { return prov_; }

  std::uint64_t snapshot_loads() const {
    std::uint64_t n = 0;
    OSSL_PARAM params[] = {OSSL_PARAM_construct_uint64("ptrust-snapshot-loads", &n), OSSL_PARAM_construct_end()};
    if (OSSL_PROVIDER_get_params(prov_, params) != 1) throw std::runtime_error("get_params");
    return n;
  }

 private:
  OSSL_LIB_CTX* ctx_ = nullptr;
  OSSL_PROVIDER* prov_ = nullptr;
};

struct Loaded {
  bool opened = false;
  std::vector<Obj> objs;
};

Loaded load(const LibCtx& lib, const std::string& uri, X509_NAME* subject = nullptr, int expect = 0) {
  Loaded out;
  OSSL_STORE_CTX* s = OSSL_STORE_open_ex(uri.c_str(), lib.get(), nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (s == nullptr) return out;
  out.opened = true;
  if (expect != 0) {
    EXPECT_EQ(OSSL_STORE_expect(s, expect), 1);
  }
  if (subject != nullptr) {
    OSSL_STORE_SEARCH* q = OSSL_STORE_SEARCH_by_name(subject);
    EXPECT_EQ(OSSL_STORE_find(s, q), 1);
    OSSL_STORE_SEARCH_free(q);
  }
  for (int guard = 0; guard < 100000 && !OSSL_STORE_eof(s); ++guard) {
    OSSL_STORE_INFO* info = OSSL_STORE_load(s);
    if (info == nullptr) break;
    switch (OSSL_STORE_INFO_get_type(info)) {
      case OSSL_STORE_INFO_CERT: {
        ossl::X509Ptr x(OSSL_STORE_INFO_get1_CERT(info));
        unsigned char* der = nullptr;
        int n = i2d_X509(x.get(), &der);
        out.objs.emplace_back('C', std::string(reinterpret_cast<char*>(der), static_cast<size_t>(n)));
        OPENSSL_free(der);
        break;
      }
      case OSSL_STORE_INFO_CRL: {
        ossl::X509CrlPtr c(OSSL_STORE_INFO_get1_CRL(info));
        out.objs.push_back(crl_obj(c.get()));
        break;
      }
      default: out.objs.emplace_back('?', ""); break;
    }
    OSSL_STORE_INFO_free(info);
  }
  EXPECT_EQ(OSSL_STORE_error(s), 0);
  OSSL_STORE_close(s);
  return out;
}

std::vector<Obj> sorted(std::vector<Obj> v) {
  std::sort(v.begin(), v.end());
  return v;
}

class ProviderInProcess : public ::testing::Test {
 protected:
  void SetUp() override {
    store_.populate();
    lib_ = std::make_unique<LibCtx>(store_);
    ERR_clear_error();
  }
  void TearDown() override { ERR_clear_error(); }

  StoreRoot store_;
  std::unique_ptr<LibCtx> lib_;
};

TEST_F(ProviderInProcess, ServesSelectedObjectsPerModeWithSearchAndExpect) {
  const Pki& p = Pki::get();
  X509_NAME* root_dn = X509_get_subject_name(p.root.cert.get());
  X509_NAME* inter_dn = X509_get_subject_name(p.inter.cert.get());
  X509_NAME* pinned_dn = X509_get_subject_name(p.pinned.cert.get());
  X509_NAME* nobody = X509_get_subject_name(p.other_ca.cert.get());
  const struct {
    const char* name;
    const char* uri;
    X509_NAME* subject;
    int expect;
    std::vector<Obj> want;
  } cases[] = {
      {"Pinned", "ptrust://peer", nullptr, 0, {cert_obj(p.pinned)}},
      {"Ca", "ptrust://licensing", nullptr, 0, {cert_obj(p.root), crl_obj(p.crl.get())}},
      {"General", "ptrust://ldaps", nullptr, 0, {cert_obj(p.general_ca), crl_obj(p.crl.get())}},
      {"GeneralUri", "ptrust://general", nullptr, 0, {cert_obj(p.general_ca), crl_obj(p.crl.get())}},
      {"ExpectCert", "ptrust://licensing", nullptr, OSSL_STORE_INFO_CERT, {cert_obj(p.root)}},
      {"ExpectCrl", "ptrust://licensing", nullptr, OSSL_STORE_INFO_CRL, {crl_obj(p.crl.get())}},
      {"ExpectKeyGivesNothing", "ptrust://licensing", nullptr, OSSL_STORE_INFO_PKEY, {}},
      {"SubjectMatchesCert", "ptrust://licensing", root_dn, 0, {cert_obj(p.root)}},
      {"SubjectMatchesCrlIssuer", "ptrust://licensing", inter_dn, 0, {crl_obj(p.crl.get())}},
      {"SubjectAndExpectCert", "ptrust://licensing", inter_dn, OSSL_STORE_INFO_CERT, {}},
      {"SubjectMiss", "ptrust://licensing", nobody, 0, {}},
      {"PinnedBySubject", "ptrust://peer", pinned_dn, 0, {cert_obj(p.pinned)}},
      {"PinnedServesNoCrl", "ptrust://peer", inter_dn, 0, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Loaded l = load(*lib_, c.uri, c.subject, c.expect);
    EXPECT_TRUE(l.opened);
    EXPECT_EQ(sorted(l.objs), sorted(c.want));
    EXPECT_EQ(ERR_peek_error(), 0u) << "a lookup, hit or miss, leaves no error behind";
  }
}

TEST_F(ProviderInProcess, OpenFailsClosedWithReasonFileAndLine) {
  const struct {
    const char* uri;
    const char* reason;
  } cases[] = {
      {"ptrust://nosuch", "UNKNOWN_PURPOSE"},     {"ptrust://", "MALFORMED_URI"},
      {"ptrust://licensing/", "MALFORMED_URI"},   {"ptrust://licensing?x=1", "MALFORMED_URI"},
      {"ptrust:///licensing", "MALFORMED_URI"},   {"ptrust://LICENSING", "MALFORMED_URI"},
      {"ptrust://lic ensing", "MALFORMED_URI"},   {"ptrust:licensing", "MALFORMED_URI"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.uri);
    ERR_clear_error();
    EXPECT_FALSE(load(*lib_, c.uri).opened);
    const char *file = nullptr, *func = nullptr, *data = nullptr;
    int line = 0, flags = 0;
    unsigned long e = ERR_peek_last_error_all(&file, &line, &func, &data, &flags);
    ASSERT_NE(e, 0u);
    EXPECT_STREQ(ERR_lib_error_string(e), "ptrust");
    EXPECT_STREQ(ERR_reason_error_string(e), c.reason);
    EXPECT_STREQ(file, "provider/store.cc");
    EXPECT_GT(line, 0);
  }
}

// A certificate whose DER has the right shape and subject (what a cheap scan checks) but that
// libcrypto cannot decode: its TBS signature algorithm OID starts with 0x80 (invalid).
std::string undecodable_pem(const Issued& c) {
  std::string der = c.der();
  const std::string ecdsa_sha256("\x06\x08\x2a\x86\x48\xce\x3d\x04\x03\x02", 10);
  size_t at = der.find(ecdsa_sha256);
  if (at == std::string::npos) throw std::runtime_error("not an ECDSA-SHA256 certificate");
  der[at + 2] = '\x80';
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  PEM_write_bio(b.get(), "CERTIFICATE", "", reinterpret_cast<const unsigned char*>(der.data()),
                static_cast<long>(der.size()));
  char* p = nullptr;
  long n = BIO_get_mem_data(b.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

TEST_F(ProviderInProcess, BrokenChosenSourceFailsClosedWithoutFallback) {
  const struct {
    const char* name;
    std::function<void(const StoreRoot&)> breakit;
    const char* broken_uri;
    const char* reason;
    const char* still_ok_uri;
  } cases[] = {
      {"CorruptBundle",
       [](const StoreRoot& s) { write_file(s.bundle("ca-bundle-licensing.pem"), "not a certificate\n"); },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://ldaps"},
      {"TruncatedBundle",
       [](const StoreRoot& s) {
         std::string b = read_file(s.bundle("ca-bundle-licensing.pem"));
         write_file(s.bundle("ca-bundle-licensing.pem"), b.substr(0, b.size() / 2));
       },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://peer"},
      {"DirectoryInPlaceOfPinnedBundle",
       [](const StoreRoot& s) { std::filesystem::create_directory(s.bundle("pinned-bundle-ldaps.pem")); },
       "ptrust://ldaps", "STORE_UNSAFE", "ptrust://licensing"},
      {"SymlinkInPlaceOfBundle",
       [](const StoreRoot& s) {
         std::filesystem::create_symlink(s.bundle("ca-bundle-general.pem"), s.bundle("ca-bundle-ldaps.pem"));
       },
       "ptrust://ldaps", "STORE_UNSAFE", "ptrust://general"},
      {"CorruptCrl", [](const StoreRoot& s) { write_file(s.crl_dir() + "/bad.crl", "garbage"); },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://peer"},
      // One bundle parser, one verdict: what the hook refuses, the provider refuses too.
      {"UndecodableBlockWithTheRightShapePrepended",
       [](const StoreRoot& s) {
         write_file(s.bundle("ca-bundle-licensing.pem"),
                    undecodable_pem(Pki::get().other_ca) + read_file(s.bundle("ca-bundle-licensing.pem")));
       },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://ldaps"},
      {"TrailingGarbage",
       [](const StoreRoot& s) {
         write_file(s.bundle("ca-bundle-licensing.pem"), read_file(s.bundle("ca-bundle-licensing.pem")) + "garbage\n");
       },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://ldaps"},
      {"BinaryJunk",
       [](const StoreRoot& s) {
         write_file(s.bundle("ca-bundle-licensing.pem"),
                    read_file(s.bundle("ca-bundle-licensing.pem")) + std::string("\x00\xff\x13\x37", 4));
       },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://ldaps"},
      {"TruncatedLastBlock",
       [](const StoreRoot& s) {
         write_file(s.bundle("ca-bundle-licensing.pem"), read_file(s.bundle("ca-bundle-licensing.pem")) + "-----BEG");
       },
       "ptrust://licensing", "STORE_CORRUPT", "ptrust://ldaps"},
      {"InvalidConfig",
       [](const StoreRoot& s) { write_file(s.path() + "/etc/ptrust/ptrust.yaml", "purposes: [\n"); },
       "ptrust://licensing", "CONFIG_INVALID", nullptr},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    StoreRoot store;
    store.populate();
    LibCtx lib(store);
    ASSERT_TRUE(load(lib, c.broken_uri).opened) << "works before it is broken";
    c.breakit(store);  // by hand: seen within a second, without a generation change
    EXPECT_TRUE(eventually([&] {
      ERR_clear_error();
      return !load(lib, c.broken_uri).opened;
    }));
    EXPECT_STREQ(ERR_reason_error_string(ERR_peek_last_error()), c.reason);
    if (c.still_ok_uri != nullptr) {
      EXPECT_TRUE(load(lib, c.still_ok_uri).opened);
    }
    ERR_clear_error();
  }
}

TEST_F(ProviderInProcess, CrlPolicyOffServesNoCrlsAndIgnoresBrokenOnes) {
  StoreRoot store;
  store.populate();
  write_file(store.path() + "/etc/ptrust/ptrust.yaml",
             "purposes:\n  licensing: {crl-policy: off}\n  ldaps: {}\n  peer: {}\n");
  LibCtx lib(store);
  auto crls = [](const Loaded& l) {
    return std::count_if(l.objs.begin(), l.objs.end(), [](const Obj& o) { return o.first == 'R'; });
  };
  Loaded off = load(lib, "ptrust://licensing");
  ASSERT_TRUE(off.opened);
  EXPECT_EQ(crls(off), 0) << "crl-policy off: no CRLs served";
  Loaded on = load(lib, "ptrust://ldaps");
  ASSERT_TRUE(on.opened);
  EXPECT_GT(crls(on), 0) << "control: a purpose with CRLs on gets them";
  write_file(store.crl_dir() + "/bad.crl", "garbage");
  EXPECT_TRUE(eventually([&] { return !load(lib, "ptrust://ldaps").opened; })) << "control: the broken CRL is seen";
  EXPECT_TRUE(load(lib, "ptrust://licensing").opened) << "a broken CRL cannot fail a purpose that does not use CRLs";
  ERR_clear_error();
}

TEST_F(ProviderInProcess, PtrustChangesAreSeenByTheNextOpenHandEditsWithinASecond) {
  const Pki& p = Pki::get();
  EXPECT_EQ(sorted(load(*lib_, "ptrust://licensing").objs), sorted({cert_obj(p.root), crl_obj(p.crl.get())}));
  store_.uninstall(store_.root_uuid);  // CA removed: licensing falls to general
  EXPECT_EQ(sorted(load(*lib_, "ptrust://licensing").objs),
            sorted({cert_obj(p.general_ca), crl_obj(p.crl.get())}));
  store_.install("pinned", "pinned", "licensing");  // pinned added: pinned wins
  EXPECT_EQ(load(*lib_, "ptrust://licensing").objs, std::vector<Obj>{cert_obj(p.pinned)});
  std::filesystem::remove(store_.crl_dir() + "/inter.crl");  // CRL removed by hand
  EXPECT_TRUE(eventually([&] { return load(*lib_, "ptrust://ldaps").objs == std::vector<Obj>{cert_obj(p.general_ca)}; }));
  store_.add_crl("inter.crl", p.crl.get());  // and added again
  EXPECT_TRUE(eventually([&] {
    return sorted(load(*lib_, "ptrust://ldaps").objs) == sorted({cert_obj(p.general_ca), crl_obj(p.crl.get())});
  }));
}

TEST_F(ProviderInProcess, SnapshotIsReusedUntilSomethingThatDecidesItChanges) {
  auto loads_for = [&](const char* uri) {
    std::uint64_t before = lib_->snapshot_loads();
    EXPECT_TRUE(load(*lib_, uri).opened);
    return lib_->snapshot_loads() - before;
  };
  EXPECT_EQ(loads_for("ptrust://licensing"), 1u);
  EXPECT_EQ(loads_for("ptrust://licensing"), 0u);
  EXPECT_EQ(loads_for("ptrust://licensing"), 0u);
  // New mtime, same content (a hand edit): re-read once, within a second.
  struct timespec times[2] = {{0, UTIME_OMIT}, {1000000000, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, store_.bundle("ca-bundle-licensing.pem").c_str(), times, 0), 0);
  EXPECT_TRUE(eventually([&] { return loads_for("ptrust://licensing") == 1u; }));
  EXPECT_EQ(loads_for("ptrust://licensing"), 0u);
  // A write elsewhere in the store bumps the generation.
  store_.install("other_ca", "ca", "ldaps");
  EXPECT_EQ(loads_for("ptrust://licensing"), 1u);
  // A new CRL file, by hand.
  store_.add_crl("again.crl", Pki::get().crl.get());
  EXPECT_TRUE(eventually([&] { return loads_for("ptrust://licensing") == 1u; }));
  EXPECT_EQ(loads_for("ptrust://licensing"), 0u);
}

TEST_F(ProviderInProcess, ConcurrentOpensSeeWholeSnapshotsWhileTheStoreChanges) {
  const Pki& p = Pki::get();
  const auto before = sorted({cert_obj(p.root), crl_obj(p.crl.get())});
  const auto after = sorted({cert_obj(p.root), cert_obj(p.other_ca), crl_obj(p.crl.get())});
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0}, done{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      for (int i = 0; i < 2000 && !stop; ++i) {
        Loaded l = load(*lib_, "ptrust://licensing");
        auto got = sorted(l.objs);
        if (!l.opened || (got != before && got != after)) ++bad;
        ++done;
      }
    });
  for (int i = 0; i < 6; ++i) {
    std::string uuid = store_.install("other_ca", "ca", "licensing");
    store_.uninstall(uuid);
  }
  stop = true;
  for (auto& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(done.load(), 4);
}

TEST_F(ProviderInProcess, X509StoreVerifiesByPurpose) {
  const Pki& p = Pki::get();
  const struct {
    const char* name;
    const char* uri;
    const Issued* leaf;
    const Issued* untrusted;
    unsigned long flags;
    int want;  // X509_V_OK or the expected error
  } cases[] = {
      {"Chain", "ptrust://licensing", &p.leaf, &p.inter, 0, X509_V_OK},
      {"WrongCa", "ptrust://licensing", &p.other_leaf, nullptr, 0, X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY},
      {"Revoked", "ptrust://licensing", &p.revoked, &p.inter, X509_V_FLAG_CRL_CHECK, X509_V_ERR_CERT_REVOKED},
      {"NotRevoked", "ptrust://licensing", &p.leaf, &p.inter, X509_V_FLAG_CRL_CHECK, X509_V_OK},
      {"Pinned", "ptrust://peer", &p.pinned, nullptr, 0, X509_V_OK},
      {"Impostor", "ptrust://peer", &p.impostor, nullptr, 0, X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT},
      {"General", "ptrust://ldaps", &p.general_leaf, nullptr, 0, X509_V_OK},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    ossl::X509StorePtr store(X509_STORE_new());
    ASSERT_EQ(X509_STORE_load_store_ex(store.get(), c.uri, lib_->get(), nullptr), 1);
    ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new_ex(lib_->get(), nullptr));
    ossl::X509StackPtr chain(sk_X509_new_null());
    if (c.untrusted != nullptr) sk_X509_push(chain.get(), c.untrusted->cert.get());
    ASSERT_EQ(X509_STORE_CTX_init(ctx.get(), store.get(), c.leaf->cert.get(), chain.get()), 1);
    X509_STORE_CTX_set_flags(ctx.get(), c.flags);
    int ok = X509_verify_cert(ctx.get());
    EXPECT_EQ(X509_STORE_CTX_get_error(ctx.get()), c.want)
        << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx.get()));
    EXPECT_EQ(ok == 1, c.want == X509_V_OK);
    (void)sk_X509_pop(chain.get());  // borrowed from the PKI; do not free it
    ERR_clear_error();
  }
}

TEST_F(ProviderInProcess, GetParamsAnswersNameVersionBuildinfoStatus) {
  const char *name = nullptr, *version = nullptr, *buildinfo = nullptr;
  int status = 0;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_NAME, const_cast<char**>(&name), 0),
      OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_VERSION, const_cast<char**>(&version), 0),
      OSSL_PARAM_construct_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, const_cast<char**>(&buildinfo), 0),
      OSSL_PARAM_construct_int(OSSL_PROV_PARAM_STATUS, &status),
      OSSL_PARAM_construct_end(),
  };
  ASSERT_EQ(OSSL_PROVIDER_get_params(lib_->provider(), params), 1);
  EXPECT_STREQ(name, "ptrust");
  EXPECT_STREQ(version, PTRUST_TEST_VERSION);
  ASSERT_NE(buildinfo, nullptr);
  EXPECT_NE(std::string(buildinfo).find("OpenSSL 3"), std::string::npos);
  EXPECT_EQ(status, 1);
}

TEST(ProviderModule, ExportsOnlyProviderInit) {
  RunResult r = run({"nm", "-D", "--defined-only", PTRUST_PROVIDER_MODULE});
  ASSERT_EQ(r.status, 0) << r.err;
  std::vector<std::string> names;
  std::istringstream in(r.out);
  for (std::string line; std::getline(in, line);) names.push_back(line.substr(line.rfind(' ') + 1));
  EXPECT_EQ(names, std::vector<std::string>{"OSSL_provider_init"}) << r.out;
}

TEST(ProviderModule, FailsToLoadStoreWhenNotActivated) {
  // Negative control for the CLI tests: without the provider the scheme is unknown.
  RunResult r = openssl({"storeutl", "ptrust://licensing"});
  EXPECT_NE(r.status, 0);
}

}  // namespace
}  // namespace ptrust::testing

namespace ptrust::testing {
namespace {

// A truncated or garbled generation file must not kill the process that loaded the provider
// (a mapped file would raise SIGBUS) nor freeze what it serves.
TEST_F(ProviderInProcess, TruncatedGenerationFileNeitherKillsTheHostNorFreezesTrust) {
  const Pki& p = Pki::get();
  const std::string gen = store_.path() + "/var/lib/ptrust/generation";
  std::atomic<bool> stop{false};
  std::atomic<int> opens{0};
  std::thread worker([&] {
    while (!stop) opens += load(*lib_, "ptrust://licensing").opened;
  });
  auto progress = [&] {
    int before = opens;
    return eventually([&] { return opens > before + 5; });
  };
  ASSERT_TRUE(progress());
  ASSERT_EQ(::truncate(gen.c_str(), 0), 0);
  EXPECT_TRUE(progress()) << "still serving with an empty generation file";
  write_file(gen, std::string(64, 'x'));
  EXPECT_TRUE(progress()) << "still serving with a garbled generation file";
  stop = true;
  worker.join();
  store_.uninstall(store_.root_uuid);  // licensing falls to general; the writer repairs the file
  EXPECT_TRUE(eventually([&] {
    return sorted(load(*lib_, "ptrust://licensing").objs) == sorted({cert_obj(p.general_ca), crl_obj(p.crl.get())});
  }));
}

}  // namespace
}  // namespace ptrust::testing
