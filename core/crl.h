// CRLs as consumers see them: <root>/etc/stunnel/crls/<name> (+ OpenSSL hash links), and a
// public scope index saying which purposes a CRL is limited to (absent = every ca/general
// purpose). Consumers (provider, verify hook) read only these public files.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/layout.h"
#include "core/ossl.h"

namespace ptrust {

// Parses exactly one CRL from PEM or DER; nullptr when it is not exactly one CRL.
ossl::X509CrlPtr parse_crl(std::string_view data);

// Whether a CRL limited to `scope` (its record's purposes; empty = unscoped) applies to
// `purpose`: the one scope rule, for consumers (load_crls) and the writer's reports.
bool crl_in_scope(const std::vector<std::string>& scope, std::string_view purpose) noexcept;

struct NamedCrl {
  std::string name;
  ossl::X509CrlPtr crl;
};

// Every CRL that applies to `purpose` (a declared purpose or "general"), sorted by name.
// A CRL file that does not parse is STORE_CORRUPT (fail closed); a symlink in place of a
// CRL file is STORE_UNSAFE. A missing CRL directory means no CRLs.
std::vector<NamedCrl> load_crls(const Context& ctx, std::string_view purpose);

// Names of the CRLs the scope index explicitly limits to purposes that include `purpose`
// (installed with --purpose), sorted. An unscoped CRL is not among them. STORE_CORRUPT for a
// malformed index, as load_crls.
std::vector<std::string> crls_scoped_to(const Context& ctx, std::string_view purpose);

}  // namespace ptrust
