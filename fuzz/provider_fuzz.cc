// ptrust.so in an OSSL_LIB_CTX of this process (as tests/support/provider_ctx.h loads it):
// OSSL_STORE open / load until eof / close of a fuzzed URI, over a real store root of which
// one file at a time holds fuzzed bytes: a bundle (ca, pinned, general), a CRL, the CRL scope
// index or the configuration the provider reads. Each input is:
//   byte 0: which file (see kFiles; other values: none), then the URI up to the first '\n'
//   ("ptrust://" is put before it unless it starts with "ptrust:"), then the file's bytes.
// Whatever the bytes, open either fails with ptrust's error or serves objects; never a crash.
#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>
#include <strings.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string>

#include "core/cert.h"
#include "core/config.h"
#include "core/layout.h"
#include "core/store.h"
#include "fuzz/fuzz.h"
#include "tests/support/testpki.h"

namespace {

using namespace ptrust;
using namespace ptrust::testing;

const char* const kFiles[] = {
    "etc/trusted-certs/ca-bundle-licensing.pem", "etc/trusted-certs/pinned-bundle-peer.pem",
    "etc/trusted-certs/ca-bundle-general.pem",   "etc/stunnel/crls/inter.crl",
    "var/lib/ptrust/crl-scope.json",             "etc/ptrust/ptrust.yaml",
};

void die(const std::string& what) {
  std::fprintf(stderr, "provider_fuzz setup: %s\n", what.c_str());
  std::abort();
}

struct World {
  TempDir dir;
  std::string root = dir.path() + "/root";
  std::string originals[std::size(kFiles)];
  bool existed[std::size(kFiles)] = {};
  OSSL_LIB_CTX* lib = nullptr;

  World() {
    std::string cfg = root + "/etc/ptrust/ptrust.yaml";
    if (std::system(("mkdir -p " + root + "/etc/ptrust").c_str()) != 0) die("mkdir");
    write_file(cfg, "purposes:\n  licensing: {}\n  ldaps: {crl-policy: require}\n  peer: {}\n");
    Context ctx{root, load_config_file(cfg)};
    Issued ca = self_signed({.cn = "Fuzz Root", .ca = true});
    Issued gen = self_signed({.cn = "Fuzz General", .ca = true});
    Issued pin = self_signed({.cn = "peer.example", .dns = {"peer.example"}});
    Store store(ctx);
    std::time_t now = std::time(nullptr);
    store.install(Certificate::parse(ca.pem()), {CertType::kCa, {"licensing"}}, now);
    store.install(Certificate::parse(gen.pem()), {CertType::kCa, {}}, now);
    store.install(Certificate::parse(pin.pem()), {CertType::kPinned, {"peer"}}, now);
    store.crl_install(crl_pem(make_crl(ca, {}).get()), "inter.crl", {"licensing"}, now);
    for (size_t i = 0; i < std::size(kFiles); ++i) {
      std::string p = root + "/" + kFiles[i];
      existed[i] = ::access(p.c_str(), F_OK) == 0;
      if (existed[i]) originals[i] = read_file(p);
    }
    std::string conf = dir.path() + "/provider.cnf";
    write_file(conf, "openssl_conf = init\n[init]\nproviders = provs\n[provs]\ndefault = dflt\nptrust = pt\n"
                     "[dflt]\nactivate = 1\n[pt]\nmodule = " PTRUST_PROVIDER_MODULE "\nroot = " + root +
                         "\nconfig = " + cfg + "\nactivate = 1\n");
    lib = OSSL_LIB_CTX_new();
    if (OSSL_LIB_CTX_load_config(lib, conf.c_str()) != 1) die("cannot load " + conf);
    if (!OSSL_PROVIDER_available(lib, "ptrust")) die("ptrust provider not loaded");
  }

  // Replaced by rename, as ptrust writes: a new inode, so no cached view answers for it.
  void put(size_t i, const std::string& content) {
    std::string p = root + "/" + kFiles[i], tmp = p + ".fuzz-tmp";
    write_file(tmp, content);
    if (std::rename(tmp.c_str(), p.c_str()) != 0) die("rename " + p);
  }
  void restore(size_t i) {
    if (existed[i]) put(i, originals[i]);
    else std::remove((root + "/" + kFiles[i]).c_str());
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static World* w = new World;  // lives for the process (its temp dir is not removed)
  if (size == 0) return 0;
  std::string_view in = fuzz::bytes(data + 1, size - 1);
  size_t nl = in.find('\n');
  std::string uri(in.substr(0, nl));
  std::string_view content = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
  // Only ptrust's scheme (any case, any form after it): another scheme would reach the
  // default provider's file: loader and read this machine's files.
  if (::strncasecmp(uri.c_str(), "ptrust:", 7) != 0) uri = "ptrust://" + uri;
  size_t file = data[0];
  if (file < std::size(kFiles)) w->put(file, std::string(content));

  ERR_clear_error();
  OSSL_STORE_CTX* s = OSSL_STORE_open_ex(uri.c_str(), w->lib, nullptr, nullptr, nullptr, nullptr, nullptr, nullptr);
  if (s != nullptr) {
    for (int n = 0; n < 100000 && !OSSL_STORE_eof(s); ++n) {
      OSSL_STORE_INFO* info = OSSL_STORE_load(s);
      if (info == nullptr) continue;
      int type = OSSL_STORE_INFO_get_type(info);
      if (type != OSSL_STORE_INFO_CERT && type != OSSL_STORE_INFO_CRL) __builtin_trap();
      OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(s);
  }
  ERR_clear_error();
  if (file < std::size(kFiles)) w->restore(file);
  return 0;
}
