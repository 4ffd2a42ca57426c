// Disk is derived from the database by one mechanism: each area's wanted files are computed
// from the records, then compared with (and, when applying, made equal to) what is on disk.
// Installs reconcile the areas they touch; `sync` reconciles all of them.
#pragma once

#include <functional>
#include <map>
#include <optional>
#include <set>
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

// What a writer's change did to one trusted store (reconcile with `before`): the hash buckets
// ("<8 hex>.") it moved and the entries those buckets hold now (name → PEM). A CA directory
// (core/capath.h) derives its own change from it instead of re-reading the whole selection.
struct StoreChange {
  layout::StoreKey key;
  std::set<std::string> buckets;
  std::map<std::string, std::string> entries;
  size_t hash_entries = 0;  // how many hash entries the store holds after the change
  bool empty = false;       // the store holds nothing after the change
};

// A narrow writer's trusted store (Store's install and uninstall load only the records their
// change touches): what its plan cannot take from those records. The store's record count
// after the change, and its bundle's new bytes as parts (views the caller keeps alive).
struct StoreBundle {
  std::size_t records = 0;
  std::vector<std::string_view> parts;
};

// A trusted store's bundle is its records' PEM blocks in uuid order. The bundle `old` with
// one record's block `pem` added (before the block `next`, the store's record after it in
// uuid order; nullopt: at the end) or removed, as parts of `old` and `pem`. nullopt when a
// block it must find (`next`, or `pem` to remove) is not in `old` exactly once.
std::optional<std::vector<std::string_view>> splice_bundle(std::string_view old, std::string_view pem, bool add,
                                                           const std::optional<std::string>& next);

// Compares one area with the database; with `apply`, repairs each difference. `before` (a
// writer, applying): the database before its change; in a trusted store only the entries the
// change moved (added/removed records and their hash buckets) are read and compared, the
// others are checked from the directory's names. `sync` passes none and reads everything.
// `change` (with `before`, a trusted store): filled with what the change moved. `narrow`
// (with `before`): `db` holds only the records the change touched and their hash buckets'.
// `planned`: called once `change` is filled, before anything is written.
void reconcile(int root, const Database& db, const Area& area, bool apply, std::vector<Drift>& out,
               const Database* before = nullptr, StoreChange* change = nullptr,
               const StoreBundle* narrow = nullptr, const std::function<void()>& planned = {});

}  // namespace ptrust
