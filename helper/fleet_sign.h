// Signed fleet documents: a detached CMS (PKCS#7) signature, DER, over the exact bytes of the
// desired document, by a key whose certificate is pinned in the verifying root for purpose
// `fleet`. An operator makes it offline with stock OpenSSL:
//
//   openssl cms -sign -binary -nocerts -outform DER -signer fleet.pem -inkey fleet.key
//       -in desired.json -out desired.sig      (detached unless -nodetach)
//
// The signer is looked up among the pins only (CMS_NOINTERN: a certificate inside the
// signature is never used), no chain is built (the pin is the trust), exactly one signer, and
// its signed attributes must carry signingTime: a host records the signing time of the
// signed document it last applied and refuses an older one (a replayed document).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/x509.h>

#include "core/config.h"

namespace ptrust::fleet {

inline constexpr size_t kMaxSignature = 64u << 10;
inline constexpr std::string_view kSignaturePurpose = "fleet";

struct Signed {
  std::string signer;           // the pinned certificate's subject (one line)
  std::int64_t signed_at = 0;   // signingTime (Unix time)
};

// FLEET_SIGNATURE_INVALID unless `sig` is a detached CMS signature of `doc` by exactly one
// of `pins`, with a signingTime. Never uses the certificates the signature carries.
Signed verify_signature(std::string_view doc, std::string_view sig, const std::vector<X509*>& pins);

// The same against the certificates pinned for purpose `fleet` in ctx's root (pinned mode
// only; FLEET_SIGNATURE_INVALID when the purpose is not declared, not pinned or unreadable).
Signed verify_with_pins(const Context& ctx, std::string_view doc, std::string_view sig);

// The signing time of the signed document this root last applied for `fleet` (0: none), kept
// in var/lib/ptrust/fleet-<fleet>.signed-at.
std::int64_t last_signed_at(const std::string& root, std::string_view fleet);
void record_signed_at(const std::string& root, std::string_view fleet, std::int64_t t);

// FLEET_DOCUMENT_CUTS_OFF when `doc` (an export document, already readable JSON or not:
// anything malformed is left to the full validation that follows) names none of the
// certificates ctx's root trusts now for one of `keep` (with that purpose, or as a general CA
// when the purpose is in general mode). Purposes that trust nothing now are not checked.
// A host following etcd over TLS keeps its --etcd-purpose, one requiring signatures keeps
// `fleet`: a document that replaced all of either at once would leave it unable to reach etcd
// or to verify the next document. Rotations add the new trust in one document and remove
// the old in a later one.
void refuse_cut_off(const Context& ctx, const std::vector<std::string>& keep, const std::string& doc);

}  // namespace ptrust::fleet
