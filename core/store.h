// The store writer: every change goes lock → database → generation bump → files →
// generation bump. The database is the source of truth; the files are derived from it by
// one function (reconcile), which `sync` also uses. A crash at any instant leaves each
// file old or new (atomic replace), and `sync` brings disk back to the database.
#pragma once

#include <ctime>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/cert.h"
#include "core/config.h"
#include "core/db.h"
#include "core/fs.h"

namespace ptrust {

struct Drift {
  enum class Kind { kMissing, kRemnant, kStale, kMode, kUnsafe };
  Kind kind;
  std::string path;  // relative to the root
  std::string detail;
};
std::string_view to_string(Drift::Kind k) noexcept;

struct InstallRequest {
  CertType type;
  std::vector<std::string> purposes;  // validated names; empty = general (CA only)
};

class Store {
 public:
  explicit Store(Context ctx);

  const Context& context() const noexcept { return ctx_; }

  // Validates and installs; returns the new record. Refusals: NOT_A_CA_CERTIFICATE,
  // CERTIFICATE_LACKS_PURPOSE, TRUSTED_CERTIFICATE_EXPIRED / _NOT_VALID_YET,
  // TRUSTED_CERTIFICATE_ALREADY_EXISTS. Nothing is written when it refuses.
  CertRecord install(const Certificate& cert, const InstallRequest& req, std::time_t now);

  // TRUSTED_CERTIFICATE_NOT_FOUND, or TRUSTED_CERTIFICATE_FILE_MISSING unless `force`.
  CertRecord uninstall(const std::string& uuid, bool force);

  // Compares disk with the database; with `apply`, repairs every difference.
  // Returns what differed (before repair).
  std::vector<Drift> sync(bool apply);

  Database database() const;

 private:
  struct Locked;
  Context ctx_;
  fs::Fd root_;
};

}  // namespace ptrust
