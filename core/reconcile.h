// Disk is derived from the database by one mechanism: each area's wanted files are computed
// from the records, then compared with (and, when applying, made equal to) what is on disk.
// Installs reconcile the areas they touch; `sync` reconciles all of them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/db.h"
#include "core/layout.h"

namespace ptrust {

struct Drift {
  enum class Kind { kMissing, kRemnant, kStale, kMode, kUnsafe };
  Kind kind;
  std::string path;  // relative to the root
  std::string detail;
};
std::string_view to_string(Drift::Kind k) noexcept;

struct Area {
  enum class Kind { kTrustedStore, kTrustedTop, kCrl, kLegacy, kPool };
  Kind kind;
  layout::StoreKey key{};  // kTrustedStore only
  auto operator<=>(const Area&) const = default;
  static Area trusted(layout::StoreKey k) { return {Kind::kTrustedStore, std::move(k)}; }
};

// Every area: the database's, and every store-shaped name found on disk.
std::vector<Area> all_areas(int root, const Database& db);

// The areas a trusted-certificate record lives in.
std::vector<Area> areas_of(const CertRecord& r);

// Compares one area with the database; with `apply`, repairs each difference. `before` (a
// writer, applying): the database before its change; in a trusted store only the entries the
// change moved (added/removed records and their hash buckets) are read and compared, the
// others are checked from the directory listing (type, mode, size). `sync` passes none and
// reads everything.
void reconcile(int root, const Database& db, const Area& area, bool apply, std::vector<Drift>& out,
               const Database* before = nullptr);

}  // namespace ptrust
