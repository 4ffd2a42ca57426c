// Writer-side edits of ptrust.yaml: the purpose declarations an export carries, and adding
// missing ones to a configuration file without disturbing the rest of it (comments, order,
// other sections). Only the `ptrust` command uses this; consumers never write the file.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "core/config.h"

namespace ptrust {

// A policy as one flow mapping of its non-default settings: "{}" or
// "{ crl-policy: require, crl-scope: leaf }". parse_config reads it back to the same policy.
std::string policy_yaml(const PurposePolicy& p);

// "  name: { ... }" lines, one per purpose, as they are added under `purposes:`.
std::vector<std::string> declaration_lines(const std::map<std::string, PurposePolicy>& purposes);

// `text` (a ptrust.yaml; "" for none) with `purposes` declared: their lines are added at the
// end of the block mapping under the top-level `purposes:` key, indented as its entries are
// (a `purposes:` key is appended when there is none). Everything else is kept byte for byte.
// The result is parsed again and must declare every purpose it did plus the new ones.
// CONFIG_INVALID when the mapping is in flow style (`purposes: {a: {}}`): it cannot be
// extended without rewriting it; the message says what to add by hand.
std::string declare_purposes(const std::string& text, const std::string& source,
                             const std::map<std::string, PurposePolicy>& purposes);

}  // namespace ptrust
