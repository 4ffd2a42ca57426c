// A temporary root with a Store on it and a few generated certificates.
#pragma once

#include <sys/stat.h>

#include <ctime>
#include <filesystem>

#include "core/store.h"
#include "tests/support/testpki.h"

namespace ptrust::testing {

struct Certs {
  Issued ca1 = self_signed({.cn = "Root One", .ca = true});
  Issued ca2 = self_signed({.cn = "Root Two", .ca = true});
  Issued general = self_signed({.cn = "General Root", .ca = true});
  Issued peer = self_signed({.cn = "peer.example", .dns = {"peer.example"}});
  Issued leaf = issue({.cn = "leaf.example"}, ca1);
};

inline const Certs& certs() {
  static Certs c;
  return c;
}

class StoreFixture : public ::testing::Test {
 protected:
  TempDir dir;
  std::string root = dir.path();
  Context ctx{root, default_config()};
  Store store{ctx};

  CertRecord install(const Issued& x, CertType t, std::vector<std::string> purposes = {}) {
    return store.install(Certificate::parse(x.pem()), {t, std::move(purposes)}, std::time(nullptr));
  }
  std::string path(const std::string& rel) const { return root + "/" + rel; }
  bool exists(const std::string& rel) const {
    struct stat st;
    return ::lstat(path(rel).c_str(), &st) == 0;
  }
};

}  // namespace ptrust::testing
