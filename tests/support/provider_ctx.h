// ptrust.so loaded into an OSSL_LIB_CTX of the test process (default + ptrust providers), with
// `root =` and optionally `config =` in its provider section, and an open() that reports what a
// program would see: ptrust's reason string, or the objects served.
#pragma once

#include <openssl/err.h>
#include <openssl/provider.h>
#include <openssl/store.h>

#include <stdexcept>
#include <string>

#include "tests/support/testpki.h"

namespace ptrust::testing {

class ProviderCtx {
 public:
  ProviderCtx(const std::string& module, const std::string& root, const std::string& dir,
              const std::string& config = "") {
    std::string conf = dir + "/provider.cnf";
    write_file(conf, "openssl_conf = init\n[init]\nproviders = provs\n[provs]\ndefault = dflt\nptrust = pt\n"
                     "[dflt]\nactivate = 1\n[pt]\nmodule = " + module + "\nroot = " + root + "\n" +
                         (config.empty() ? "" : "config = " + config + "\n") + "activate = 1\n");
    lib_ = OSSL_LIB_CTX_new();
    if (OSSL_LIB_CTX_load_config(lib_, conf.c_str()) != 1) throw std::runtime_error("cannot load " + conf);
    prov_ = OSSL_PROVIDER_load(lib_, "ptrust");
    if (prov_ == nullptr) throw std::runtime_error("ptrust provider not available");
  }
  ~ProviderCtx() {
    OSSL_PROVIDER_unload(prov_);
    OSSL_LIB_CTX_free(lib_);
  }
  ProviderCtx(const ProviderCtx&) = delete;
  ProviderCtx& operator=(const ProviderCtx&) = delete;
  OSSL_LIB_CTX* get() const { return lib_; }

  struct Opened {
    std::string reason;  // "OK", or the reason string of the error ptrust raised
    int certs = 0, crls = 0;
  };
  Opened open(const std::string& purpose) {
    ERR_clear_error();
    Opened o;
    OSSL_STORE_CTX* s = OSSL_STORE_open_ex(("ptrust://" + purpose).c_str(), lib_, nullptr, nullptr, nullptr,
                                           nullptr, nullptr, nullptr);
    if (s == nullptr) {
      const char* r = ERR_reason_error_string(ERR_peek_last_error());
      o.reason = r ? r : "?";
      ERR_clear_error();
      return o;
    }
    o.reason = "OK";
    while (OSSL_STORE_INFO* info = OSSL_STORE_load(s)) {
      o.certs += OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CERT;
      o.crls += OSSL_STORE_INFO_get_type(info) == OSSL_STORE_INFO_CRL;
      OSSL_STORE_INFO_free(info);
    }
    OSSL_STORE_close(s);
    return o;
  }

 private:
  OSSL_LIB_CTX* lib_ = nullptr;
  OSSL_PROVIDER* prov_ = nullptr;
};

}  // namespace ptrust::testing
