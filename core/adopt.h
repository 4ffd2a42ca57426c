// Recovery when the database is gone (`ptrust sync --adopt`): rebuilds the records from what
// the stores hold, validating every file through the checks its intake command runs
// (records.h: `install`, `crl install`, `legacy install`, `pool add`), with the type and the
// purpose taken from the directory the file is in. All or nothing: a file that intake would
// refuse, a name that is not one ptrust writes, or a derived file (bundle, hash entry) holding
// something no adopted file holds refuses the whole adoption, naming the path.
#pragma once

#include <ctime>
#include <string>
#include <vector>

#include "core/config.h"
#include "core/db.h"

namespace ptrust {

struct Adopted {
  Database db;
  std::vector<std::string> warnings;  // e.g. a CRL past its nextUpdate
};

// Reads the stores under `root` (never following a symlink) into records stamped `now`.
Adopted adopt_from_disk(int root, const Config& cfg, std::time_t now);

// Paths (relative to the root) of the trust material the stores hold: certificate and CRL
// files, bundles. Derived directories (capath), hash entries and temp files are not material.
// At most `limit` paths.
std::vector<std::string> store_material(int root, size_t limit);

}  // namespace ptrust
