// The pool exchange document: everything a host trusts (trusted certificates with UUID,
// type and purposes; legacy CAs by name; CRLs by name), versioned JSON. Importing merges it
// by xapi's keys, all or nothing.
#pragma once

#include <string>
#include <vector>

#include "core/config.h"
#include "core/db.h"

namespace ptrust {

struct ImportPlan {
  std::vector<std::string> added;      // "trusted <uuid>", "legacy <name>", "crl <name>"
  std::vector<std::string> unchanged;  // already present
};

struct Incoming {
  std::vector<CertRecord> certs;
  std::vector<LegacyRecord> legacy;
  std::vector<CrlRecord> crls;
};

std::string export_json(const Database& db);

// Parses and validates every object through the checks `install`, `crl install` and `legacy
// install` run (records.h: one certificate, no key, CA check, purposes well-formed, declared
// and not repeated; one CRL), validity dates excepted. IMPORT_INVALID for a malformed
// document (including an installed_at outside 1970..9999).
Incoming parse_export(const std::string& doc, const Config& cfg);

// `local` plus what `in` adds. Conflicts: POOL_JOINING_HOST_CA_CERTIFICATES_CONFLICT (legacy
// name with other content), POOL_JOINING_HOST_TRUSTED_CERTIFICATES_CONFLICT (same type and
// SHA-256 with unequal but overlapping purposes, or a UUID used for something else),
// POOL_JOINING_HOST_CRLS_CONFLICT (CRL name with other content).
Database merge_import(const Database& local, const Incoming& in, ImportPlan& plan);

}  // namespace ptrust
