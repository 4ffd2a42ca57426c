// The helper's database: the source of truth for what the stores must hold.
// <root>/var/lib/ptrust/ptrust.db (SQLite, WAL; one transaction per change is the commit
// point); every record keeps the re-encoded certificate so that `sync` can restore files that
// went missing. The JSON form (parse/serialize) is db.json, which roots written before
// ptrust.db have: read as it is, migrated by the first write.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "core/layout.h"

namespace ptrust {

struct CertRecord {
  std::string uuid;
  CertType type = CertType::kCa;
  std::vector<std::string> purposes;  // empty = general (CA only)
  std::string sha256, sha1;
  std::string subject, issuer, serial;
  std::int64_t not_before = 0, not_after = 0;
  std::string key_type;
  int key_bits = 0;
  std::int64_t installed_at = 0;
  std::string pem;  // re-encoded CERTIFICATE block
  // OpenSSL's subject-name hash (X509_NAME_hash_ex), the name of its hash entries: computed
  // once at install, so that no write and no `sync --check` decodes every stored certificate.
  // A database written before it existed gets it computed when loaded.
  std::uint32_t subject_hash = 0;

  // The stores this record is written into: one per purpose, or general.
  std::vector<layout::StoreKey> stores() const;
  bool operator==(const CertRecord&) const = default;
};

// Whether a record of `type` and `purposes` belongs in trusted store `k` (the stores() rule).
bool in_store(CertType type, const std::vector<std::string>& purposes, const layout::StoreKey& k);
inline bool in_store(const CertRecord& r, const layout::StoreKey& k) { return in_store(r.type, r.purposes, k); }

// A CRL installed with `ptrust crl install`, served from etc/stunnel/crls/<name>.
struct CrlRecord {
  std::string name;
  std::vector<std::string> purposes;  // empty = every ca/general purpose
  std::string issuer;
  std::string sha256;                 // of the DER
  std::int64_t last_update = 0, next_update = 0;  // next_update 0 = none
  std::int64_t installed_at = 0;
  std::string pem;  // re-encoded X509 CRL block
  // A delta CRL (deltaCRLIndicator): its BaseCRLNumber in decimal; "" for a complete CRL.
  std::string delta_base;
  // The certificate `crl install --issuer` checked the signature with (re-encoded PEM; never
  // trusted, never written to a store); "" when an installed CA checked it or none could.
  std::string issuer_pem;
  bool operator==(const CrlRecord&) const = default;
};

// A CA installed through the deprecated xapi API: etc/stunnel/certs/<name>.
struct LegacyRecord {
  std::string name;  // [A-Za-z0-9._-], no leading '.', ends in .pem
  std::string sha256, subject;
  std::int64_t not_after = 0;
  std::int64_t installed_at = 0;
  std::string pem;
  bool operator==(const LegacyRecord&) const = default;
};

// A pool member's certificate: etc/stunnel/certs-pool/<host uuid>.pem, and
// <host uuid>.new.pem while a rotation is staged.
struct PoolRecord {
  std::string host;  // host UUID
  bool staged = false;  // true: the .new.pem of a rotation
  std::string sha256, subject;
  std::int64_t not_after = 0;
  std::int64_t installed_at = 0;
  std::string pem;

  std::string file() const { return host + (staged ? ".new.pem" : ".pem"); }
  bool operator==(const PoolRecord&) const = default;
};

struct Database {
  static constexpr int kVersion = 1;
  std::vector<CertRecord> certs;
  std::vector<CrlRecord> crls;
  std::vector<LegacyRecord> legacy;
  std::vector<PoolRecord> pool;

  const CertRecord* find(const std::string& uuid) const;

  // Records are kept in a canonical order (certs by UUID, the others by name), so the same
  // content always serializes to the same bytes on every host.
  void canonicalize();

  // nullopt-free: a missing database is an empty one. A malformed one is DATABASE_INVALID.
  static Database parse(const std::string& json, const std::string& what);
  std::string serialize() const;
  // What parse() checks beyond the JSON (names that become paths, UUIDs): invalid_argument.
  void validate() const;
};

// Reads <state>/ptrust.db, else db.json (missing → empty database). `found`, when given, says
// whether a database exists and holds anything: a missing or zero-length file is "no
// database", which a writer must not mistake for "nothing installed" while the stores hold
// material. SQLite opens by path: no symlink anywhere on it (SQLITE_OPEN_NOFOLLOW).
Database load_database(int state_dirfd, bool* found = nullptr);
struct BundleMarks;
// Commits `db`: one SQLite transaction writing only the rows that differ from `before` (the
// database as loaded under the same writer lock), or every row without it. Without ptrust.db
// (a new root, or one with db.json) the file is built beside and renamed into place, and
// db.json is removed after it.
// `marks` (a narrow write, with `before`; `db` then holds only the records it read): committed
// in the same transaction; IO_ERROR, nothing written, when ptrust.db is gone. Without them,
// every bundle mark is dropped in the same transaction.
void save_database(int state_dirfd, const Database& db, const Database* before = nullptr,
                   const BundleMarks* marks = nullptr);
// Same records, whatever their order.
bool same_content(const Database& a, const Database& b);
// A copy of `db` whose certificate records hold no PEM: a writer's `before` (what its change
// is diffed against: records are immutable, and a certificate record's PEM is the canonical
// encoding of the DER its sha256 names). save_database and reconcile compare certificate
// records without their PEM when `before` is such a copy.
Database without_cert_pem(const Database& db);

// What the selection rule (selection.h) reads from the certificate records: how many there
// are of each type and purpose set. Every purpose's mode is a function of it.
struct Shape {
  CertType type = CertType::kCa;
  std::vector<std::string> purposes;
  auto operator<=>(const Shape&) const = default;
};
using Shapes = std::map<Shape, std::size_t>;
// Adds (sign +1) or takes away (-1) the shapes of `certs`; a shape counted 0 is dropped.
void count_shapes(Shapes& s, const std::vector<CertRecord>& certs, int sign = 1);

// A trusted store's bundle as the last narrow write (Store) made it: its SHA-256, and the
// generation that write ended its change at. The next narrow write may edit that bundle in
// place of re-reading every record only while both still hold. Every other commit drops every
// mark in its own transaction (save_database without marks), so a write killed after its
// commit, before it moved the generation, leaves none behind; the generation also catches a
// commit by a version that did not know them.
struct BundleMark {
  std::string sha256;
  std::uint64_t generation = 0;
};
// What a narrow write commits beside its rows: the marks of the bundles it wrote (by store
// directory name), ending at `generation`. The marks that held when it began (at `start`)
// move with it to `generation` (their bundles did not change); any other is dropped.
struct BundleMarks {
  std::map<std::string, std::string> sha256;
  std::uint64_t start = 0, generation = 0;
};

// Which certificate records a narrow write reads: by uuid (and the subject-hash bucket of
// that record), by digest, by subject-hash bucket. Empty fields select nothing.
struct CertSelector {
  std::string uuid, sha256;
  std::optional<std::uint32_t> subject_hash;
};

// A read-only view of ptrust.db for a writer that reads only what its change touches
// (install, uninstall, crl install: core/store.h), so that its cost grows with the change and
// not with the store. Queries go through indexes the first narrow commit creates (a database
// without them is scanned, and answers the same).
class DatabaseSession {
 public:
  // nullptr when the whole database must be read instead: no ptrust.db (a new root, or one
  // with db.json), or the journal of an interrupted write to roll back. DATABASE_INVALID for
  // a file that is not a ptrust database.
  static std::unique_ptr<DatabaseSession> open(int state_dirfd);
  ~DatabaseSession();
  DatabaseSession(const DatabaseSession&) = delete;
  DatabaseSession& operator=(const DatabaseSession&) = delete;

  // The certificate records `sel` selects, in uuid order, and every CRL, legacy and pool
  // record (few; a CRL's checks read them all). Validated as load_database validates.
  Database load(const CertSelector& sel);
  // Every certificate record's shape.
  Shapes shapes();
  // Store `k`'s bundle as its records make it (their PEM in uuid order).
  std::string bundle(const layout::StoreKey& k);
  // The PEM of the first record of store `k` whose uuid sorts after `uuid`; nullopt: none.
  std::optional<std::string> next_in_store(const layout::StoreKey& k, const std::string& uuid);
  std::optional<BundleMark> mark(const layout::StoreKey& k);

 private:
  struct Impl;
  explicit DatabaseSession(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

std::string new_uuid();
bool valid_uuid(std::string_view u) noexcept;

}  // namespace ptrust
