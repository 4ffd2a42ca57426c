// The pool exchange document: everything a host trusts (trusted certificates with UUID,
// type and purposes; legacy CAs by name; CRLs by name), versioned JSON. Importing merges it
// by xapi's keys, all or nothing.
#pragma once

#include <map>
#include <set>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/db.h"

namespace ptrust {

struct ImportPlan {
  std::vector<std::string> added;      // "trusted <uuid>", "legacy <name>", "crl <name>"
  std::vector<std::string> unchanged;  // already present
  std::vector<std::string> removed;    // exact replace only: present here, not in the document
};

struct Incoming {
  std::vector<CertRecord> certs;
  std::vector<LegacyRecord> legacy;
  std::vector<CrlRecord> crls;
};

// With `cfg`, the document also carries the declarations (policies) of the purposes its
// objects name, so that a host without them can declare the same (import --declare-purposes).
std::string export_json(const Database& db, const Config* cfg = nullptr);

// What a document says about purposes: every purpose its objects name, and the declarations
// it carries (documents written before exports carried them have none). Declarations are
// validated as ptrust.yaml's are. IMPORT_INVALID when malformed.
struct DocumentPurposes {
  std::set<std::string> referenced;
  std::map<std::string, PurposePolicy> declared;
};
DocumentPurposes document_purposes(const std::string& doc);

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

// Exact replace (`serve --follow`): `local`'s pool records, and for trusted certificates,
// legacy CAs and CRLs exactly what `in` holds (its installed_at included, so that every host
// ends with the same records). `in` is checked as merge_import checks it against an empty
// store (no two objects alike or overlapping, CRL signatures). `plan`: added and removed
// against `local`, unchanged the rest.
Database replace_import(const Database& local, const Incoming& in, ImportPlan& plan);

}  // namespace ptrust
