// What ptrust://PURPOSE serves, and the cache that keeps it parsed between opens.
//
// One verification opens the store up to three times, and a server verifies many peers:
// the chosen bundle and the CRLs are parsed once and re-read only when something that
// decides them changes (the chosen file's inode/mtime/size, the CRL files, or the store
// generation). A Snapshot is immutable once built and shared by every loader using it,
// so concurrent loaders need no lock; the cache map itself is guarded by one mutex.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/config.h"
#include "core/generation.h"
#include "core/ossl.h"
#include "core/selection.h"

namespace ptrust::provider {

using X509NamePtr = ossl::Ptr<X509_NAME, X509_NAME_free>;

struct Object {
  int type;               // OSSL_OBJECT_CERT or OSSL_OBJECT_CRL
  const X509_NAME* name;  // subject of a certificate, issuer of a CRL (owned by the Snapshot)
  std::string der;
};

class Snapshot {
 public:
  // Takes the certificates of the chosen bundle and the CRLs that apply (CRLs are dropped
  // in pinned mode: a pin is not a chain).
  Snapshot(Mode mode, std::vector<DerCert> certs, std::vector<ossl::X509CrlPtr> crls);

  Mode mode() const noexcept { return mode_; }
  size_t size() const noexcept { return objects_.size(); }

  // The objects a loader returns, in order: certificates (bundle order), then CRLs.
  // `name` (nullable) selects certificates by subject and CRLs by issuer; `expect` is an
  // OSSL_STORE_INFO_* type or 0 for any.
  std::vector<const Object*> select(const X509_NAME* name, int expect) const;

 private:
  void index();

  Mode mode_;
  std::vector<DerCert> certs_;
  std::vector<ossl::X509CrlPtr> crls_;
  std::vector<Object> objects_;
  std::vector<std::uint32_t> cert_order_, crl_order_;  // indices into objects_, sorted by name
};

// Everything that decides a Snapshot's content, compared before a cached one is reused.
struct Stamp {
  Mode mode = Mode::kNone;
  std::string path;
  FileId bundle;
  std::optional<FileId> crl_dir, crl_scope;
  std::vector<std::pair<std::string, FileId>> crl_files;
  std::uint64_t generation = 0;
  bool crls_off = false;  // the purpose's crl-policy is off (config may change)
  bool operator==(const Stamp&) const = default;
};

class MaterialCache {
 public:
  // The Snapshot for `purpose` under `ctx`: cached when nothing changed, else loaded.
  // Throws ptrust::Error exactly as load_material()/load_crls() do (fail closed).
  std::shared_ptr<const Snapshot> get(const Context& ctx, const std::string& purpose);

  // Number of times a snapshot was (re)built; for tests and the benchmark.
  std::uint64_t loads() const noexcept { return __atomic_load_n(&loads_, __ATOMIC_RELAXED); }

 private:
  struct Entry {
    Stamp stamp;
    std::shared_ptr<const Snapshot> snapshot;
  };
  std::uint64_t generation(const std::string& root);

  std::mutex mu_;
  std::map<std::string, Entry> entries_;  // key: root + '\n' + purpose
  std::map<std::string, std::unique_ptr<GenerationView>> generations_;  // by root
  std::uint64_t loads_ = 0;
};

}  // namespace ptrust::provider
