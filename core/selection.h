// The selection rule (contract): pinned-bundle-<p> > ca-bundle-<p> > ca-bundle-general >
// none. Exactly one source is chosen; when it is unreadable or corrupt the answer is an
// error, never the next source. Every consumer (provider, verify hook, helper) asks here.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/cert.h"
#include "core/config.h"
#include "core/ossl.h"

namespace ptrust {

enum class Mode { kPinned, kCa, kGeneral, kNone };
std::string_view to_string(Mode m) noexcept;

struct Resolution {
  Mode mode = Mode::kNone;
  std::string purpose;
  std::string bundle;  // file name inside etc/trusted-certs ("" for none)
  std::string path;    // absolute path of the chosen bundle ("" for none)
  std::string store_dir;  // its store directory inside etc/trusted-certs ("" for none)
};

// Which source serves `purpose` ("general" allowed). UNKNOWN_PURPOSE when the purpose is
// malformed or not declared; STORE_UNSAFE when the chosen name is a symlink or not a file;
// STORE_CORRUPT when a candidate's bundle and its store directory disagree (one holds
// certificates, the other is missing or empty): a damaged store is never read as an empty
// one, so it never falls back to a lower-precedence bundle.
Resolution resolve(const Context& ctx, std::string_view purpose);

// Identity of a bundle file, for caches that re-read only when the file changes.
struct FileId {
  dev_t dev = 0;
  ino_t ino = 0;
  std::int64_t mtime_ns = 0;
  std::int64_t ctime_ns = 0;  // moves with chmod / chown too: a permission fixed is noticed
  off_t size = 0;
  bool operator==(const FileId&) const = default;
};
FileId file_id(const struct stat& st) noexcept;

// The chosen bundle's certificates as DER + subject (see scan_bundle); the trust state
// (core/trust.h) decodes them once for every consumer.
struct Material {
  Resolution resolution;
  FileId id;                   // of the bundle read (zero for none)
  std::vector<DerCert> certs;  // empty only for Mode::kNone
};

// resolve() + read + scan of the chosen bundle. STORE_UNREADABLE / STORE_CORRUPT /
// STORE_UNSAFE on any problem with the chosen bundle: there is no fallback.
Material load_material(const Context& ctx, std::string_view purpose);

}  // namespace ptrust
