// The helper's database: the source of truth for what the stores must hold.
// <root>/var/lib/ptrust/db.json, replaced atomically; every record keeps the re-encoded
// certificate so that `sync` can restore files that went missing.
#pragma once

#include <cstdint>
#include <optional>
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

  // The stores this record is written into: one per purpose, or general.
  std::vector<layout::StoreKey> stores() const;
};

struct Database {
  static constexpr int kVersion = 1;
  std::vector<CertRecord> certs;

  const CertRecord* find(const std::string& uuid) const;

  // nullopt-free: a missing database is an empty one. A malformed one is DATABASE_INVALID.
  static Database parse(const std::string& json, const std::string& what);
  std::string serialize() const;
};

// Reads <state>/db.json (missing → empty database).
Database load_database(int state_dirfd);
void save_database(int state_dirfd, const Database& db);

std::string new_uuid();

}  // namespace ptrust
