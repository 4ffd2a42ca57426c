// stunnel 5.68 service stanzas for a purpose's current mode (see docs/stunnel.md).
//
// The mode, material and policy come from the purpose's TrustState (core/trust.h), the one
// trust path every consumer reads: a corrupt chosen bundle or CRL is an error, never a fallback, and mode none is never rendered as a working
// tunnel. Every stanza has `client = yes` and `sessionResume = no` (a resumed session
// skips verification, so a trust change must not be bypassed by an old session).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/config.h"
#include "core/selection.h"
#include "helper/stunnel_config.h"

namespace ptrust::stunnel {

// A file of CRLs a --via files stanza names as CRLfile: <root>/etc/ptrust/stunnel-crls/<name>,
// name = <purpose>.<first 16 hex digits of the SHA-256 of pem>.pem. A name always means the
// same content, so a stanza rendered earlier never sees its file change under it.
struct CrlFile {
  std::string name;
  std::string pem;  // the CRLs that can matter for the purpose's chains, PEM, by CRL name
  bool operator==(const CrlFile&) const = default;
};

struct Rendered {
  std::string text;  // the stanza, "[name]" first, each line ending in '\n'
  Mode mode = Mode::kNone;
  bool fail_closed = false;           // refuses every connection
  std::vector<std::string> warnings;  // where 5.68 cannot express the purpose's policy
  // For the operator only, never in the stanza (so they change neither its text nor the reload
  // digest): unscoped CRLs left out because no CA of the bundle issued them.
  std::vector<std::string> advisories;
  std::optional<CrlFile> crl_file;    // the CRLfile the stanza names; write_crl_file() before use
};

// The stanza for the purpose's current mode. NO_TRUST_FOR_PURPOSE for mode none,
// SUBJECT_CHECK_MISSING for a chain mode without check-host/check-ip/no-subject-check,
// RENDER_CANNOT_EXPRESS for pin-match spki without svc.accept_stricter,
// STORE_* when the chosen bundle or a CRL is unusable. Writes nothing but the placeholder
// (--via provider). The stanza carries a comment with
// a digest of the material stunnel loads, so any change of it changes the text.
Rendered render_service(const Context& ctx, const StunnelService& svc, StunnelVia via);

// A stanza that refuses every connection: verifyChain against the placeholder (nothing
// chains to it) plus an unmatchable checkHost. Used by sync when the mode became none or
// the material is unusable, instead of keeping a configuration that trusts old material.
Rendered render_fail_closed(const Context& ctx, const StunnelService& svc, std::string_view reason);

// <root>/etc/ptrust/stunnel-placeholder.pem, created (atomically, 0644) when missing or
// not a single certificate: a self-signed non-CA certificate whose private key was never
// stored. stunnel 5.68 demands a CAfile even when trust comes from VerifyCAStore; this
// one grants nothing. Returns its absolute path.
std::string ensure_placeholder(const Context& ctx);

// openssl.cnf loading `default` and the ptrust provider (`module`, the store root, and
// the ptrust configuration file when one was named) for `OPENSSL_CONF=... stunnel`.
std::string render_openssl_cnf(const Context& ctx, const std::string& module);

// Writes `f` into <root>/etc/ptrust/stunnel-crls (created 0755) unless a regular file of
// that name already holds exactly `f.pem`: atomically, 0644, never through a symlink
// (STORE_UNSAFE). Returns its absolute path.
std::string write_crl_file(const Context& ctx, const CrlFile& f);

// Removes the files of <root>/etc/ptrust/stunnel-crls that none of `keep` names (file names).
// Returns how many were removed. Never follows a symlink (one is removed itself).
size_t remove_crl_files_except(const Context& ctx, const std::vector<std::string>& keep);

// Validates one value that goes on a stanza line (no newline, not empty); USAGE otherwise.
void check_line_value(std::string_view what, std::string_view value);

}  // namespace ptrust::stunnel
