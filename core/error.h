// Stable error codes. Every refusal names one of these; the strings are part of the
// external contract (scripts and acceptance checks match on them), never change one.
#pragma once

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "ptrust/ptrust.h"  // ptrust_reason: the verify hook's public reasons

namespace ptrust {

enum class Code {
  kUsage,
  kInputUnreadable,
  kTrustedCertificateInvalid,
  kPrivateKeyNotAllowed,
  kTrustedCertificateExpired,
  kTrustedCertificateNotValidYet,
  kNotACaCertificate,
  kCertificateLacksPurpose,
  kUnknownPurpose,
  kTrustedCertificateAlreadyExists,
  kTrustedCertificateNotFound,
  kTrustedCertificateFileMissing,
  kCrlInvalid,
  kCrlNameInvalid,
  kCrlAlreadyExists,
  kCrlDoesNotExist,
  kCrlSignatureInvalid,
  kCertificateNameInvalid,
  kCaCertificateAlreadyExists,
  kCertificateDoesNotExist,
  kHostUuidInvalid,
  kPoolJoiningHostCaCertificatesConflict,
  kPoolJoiningHostTrustedCertificatesConflict,
  kPoolJoiningHostCrlsConflict,
  kImportInvalid,
  kConfigInvalid,
  kStoreUnsafe,
  kStoreUnreadable,
  kStoreCorrupt,
  kDatabaseInvalid,
  kLockFailed,
  kIoError,
  // stunnel integration (additive).
  kNoTrustForPurpose,
  kSubjectCheckMissing,
  kStunnelSignalFailed,
  // The database is gone while the stores hold material (additive).
  kDatabaseMissing,
  // A pinned purpose whose pin is a CA, asked for by a chain-verifying consumer (additive).
  kPinIsCa,
  // A client went over a limit of `ptrust serve` (line length, connections) (additive).
  kLimitExceeded,
  // A change would widen a purpose's trust (ca -> general, pinned -> ca/general) (additive).
  kModeChangeWidensTrust,
  // A certificate selector (UUID prefix, fingerprint, file) matches several records (additive).
  kCertificateSelectorAmbiguous,
  // `stunnel render`/`sync`: stunnel 5.68 cannot express the purpose's policy and the
  // difference is not accepted by an explicit option (additive).
  kRenderCannotExpress,
  // `crl install` of a CRL no newer than the installed one it would replace (additive).
  kCrlNotNewer,
  // A delta CRL whose base (a complete CRL of the same issuer and scope) is not installed (additive).
  kCrlDeltaWithoutBase,
  // Host identity (`host-cert install`): the private key does not parse (or is encrypted),
  // does not match the certificate, the chain does not link, or the certificate is a CA
  // (additive).
  kHostKeyInvalid,
  kHostKeyMismatch,
  kHostChainInvalid,
  kHostCertificateIsCa,
  // Cluster CA (`ca ...`): it already exists / does not exist, a CSR that does not parse or
  // whose signature fails, a CN that is not the cluster's or a declared node's, a validity
  // of 168 hours or more (additive).
  kClusterCaAlreadyExists,
  kClusterCaMissing,
  kCsrInvalid,
  kCsrNameNotAllowed,
  kValidityTooLong,
  // Fleet (`fleet publish`, `serve --follow`): the desired document changed since it was read
  // (a concurrent publisher won the compare-and-swap); etcd cannot be reached or answers with
  // an error; etcd's answer is malformed or out of bounds; the fleet has no desired document
  // (additive).
  kFleetConflict,
  kFleetSourceUnavailable,
  kFleetSourceInvalid,
  kFleetDocumentMissing,
  // Fleet signatures (`fleet publish --signature`, `serve --follow --require-signature`): the
  // document's detached CMS signature is missing, malformed, by a key not pinned for purpose
  // `fleet` (or nothing is pinned for it), or over other bytes; the signature is older than
  // the signed document this host last applied (a replay) (additive).
  kFleetSignatureInvalid,
  kFleetSignatureStale,
  // `serve --follow`: the desired document drops every certificate this host now trusts for a
  // purpose it needs to keep following (--etcd-purpose; fleet with --require-signature):
  // applying it would cut the host off (additive).
  kFleetDocumentCutsOff,
};

// What each code is called and how each consumer reports it (core/error.cc holds the table).
struct CodeInfo {
  Code code;
  std::string_view name;          // stable: printed by the CLI, matched by scripts
  std::uint32_t provider_reason;  // the provider's OpenSSL reason number (explicit, never reused)
  ptrust_reason hook_reason;      // the verify hook's reason when reading trust failed so
};
const CodeInfo& code_info(Code c) noexcept;
std::span<const CodeInfo> all_codes() noexcept;

std::string_view code_name(Code c) noexcept;

// Exit status a refusal maps to: 2 for usage errors, 1 for everything else.
int exit_status(Code c) noexcept;

class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message) : std::runtime_error(message), code_(code) {}
  Code code() const noexcept { return code_; }

 private:
  Code code_;
};

// Throws Error{code, msg + ": " + strerror(errno)}.
[[noreturn]] void throw_errno(Code code, const std::string& msg);

}  // namespace ptrust
