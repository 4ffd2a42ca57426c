#include "core/error.h"

#include <cerrno>
#include <cstring>

namespace ptrust {

namespace {

// The one table of error codes. Row i describes the code whose enum value is i (checked at
// compile time below). Provider reason numbers are explicit and never reused or renumbered
// (programs match on them); a new code gets the next free number. The hook reason is what
// the verify hook reports when reading a purpose's trust failed with that code; codes that
// only the helper raises map to INTERNAL_ERROR.
constexpr CodeInfo kCodes[] = {
    {Code::kUsage, "USAGE", 1, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kInputUnreadable, "INPUT_UNREADABLE", 2, PTRUST_REASON_STORE_UNREADABLE},
    {Code::kTrustedCertificateInvalid, "TRUSTED_CERTIFICATE_INVALID", 3, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kPrivateKeyNotAllowed, "PRIVATE_KEY_NOT_ALLOWED", 4, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kTrustedCertificateExpired, "TRUSTED_CERTIFICATE_EXPIRED", 5, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kTrustedCertificateNotValidYet, "TRUSTED_CERTIFICATE_NOT_VALID_YET", 6, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kNotACaCertificate, "NOT_A_CA_CERTIFICATE", 7, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCertificateLacksPurpose, "CERTIFICATE_LACKS_PURPOSE", 8, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kUnknownPurpose, "UNKNOWN_PURPOSE", 9, PTRUST_REASON_UNKNOWN_PURPOSE},
    {Code::kTrustedCertificateAlreadyExists, "TRUSTED_CERTIFICATE_ALREADY_EXISTS", 10, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kTrustedCertificateNotFound, "TRUSTED_CERTIFICATE_NOT_FOUND", 11, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kTrustedCertificateFileMissing, "TRUSTED_CERTIFICATE_FILE_MISSING", 12, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlInvalid, "CRL_INVALID", 13, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlNameInvalid, "CRL_NAME_INVALID", 14, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlAlreadyExists, "CRL_ALREADY_EXISTS", 15, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlDoesNotExist, "CRL_DOES_NOT_EXIST", 16, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlSignatureInvalid, "CRL_SIGNATURE_INVALID", 17, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCertificateNameInvalid, "CERTIFICATE_NAME_INVALID", 18, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCaCertificateAlreadyExists, "CA_CERTIFICATE_ALREADY_EXISTS", 19, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCertificateDoesNotExist, "CERTIFICATE_DOES_NOT_EXIST", 20, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kHostUuidInvalid, "HOST_UUID_INVALID", 21, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kPoolJoiningHostCaCertificatesConflict, "POOL_JOINING_HOST_CA_CERTIFICATES_CONFLICT", 22, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kPoolJoiningHostTrustedCertificatesConflict, "POOL_JOINING_HOST_TRUSTED_CERTIFICATES_CONFLICT", 23, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kPoolJoiningHostCrlsConflict, "POOL_JOINING_HOST_CRLS_CONFLICT", 24, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kImportInvalid, "IMPORT_INVALID", 25, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kConfigInvalid, "CONFIG_INVALID", 26, PTRUST_REASON_CONFIG_INVALID},
    {Code::kStoreUnsafe, "STORE_UNSAFE", 27, PTRUST_REASON_STORE_UNREADABLE},
    {Code::kStoreUnreadable, "STORE_UNREADABLE", 28, PTRUST_REASON_STORE_UNREADABLE},
    {Code::kStoreCorrupt, "STORE_CORRUPT", 29, PTRUST_REASON_STORE_CORRUPT},
    {Code::kDatabaseInvalid, "DATABASE_INVALID", 30, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kLockFailed, "LOCK_FAILED", 31, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kIoError, "IO_ERROR", 32, PTRUST_REASON_STORE_UNREADABLE},
    {Code::kNoTrustForPurpose, "NO_TRUST_FOR_PURPOSE", 33, PTRUST_REASON_NO_TRUST_FOR_PURPOSE},
    {Code::kSubjectCheckMissing, "SUBJECT_CHECK_MISSING", 34, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kStunnelSignalFailed, "STUNNEL_SIGNAL_FAILED", 35, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kDatabaseMissing, "DATABASE_MISSING", 36, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kPinIsCa, "PIN_IS_CA", 37, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kLimitExceeded, "LIMIT_EXCEEDED", 38, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kModeChangeWidensTrust, "MODE_CHANGE_WIDENS_TRUST", 39, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCertificateSelectorAmbiguous, "CERTIFICATE_SELECTOR_AMBIGUOUS", 40, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kRenderCannotExpress, "RENDER_CANNOT_EXPRESS", 41, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlNotNewer, "CRL_NOT_NEWER", 42, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCrlDeltaWithoutBase, "CRL_DELTA_WITHOUT_BASE", 43, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kHostKeyInvalid, "HOST_KEY_INVALID", 44, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kHostKeyMismatch, "HOST_KEY_MISMATCH", 45, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kHostChainInvalid, "HOST_CHAIN_INVALID", 46, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kHostCertificateIsCa, "HOST_CERTIFICATE_IS_CA", 47, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kClusterCaAlreadyExists, "CLUSTER_CA_ALREADY_EXISTS", 48, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kClusterCaMissing, "CLUSTER_CA_MISSING", 49, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCsrInvalid, "CSR_INVALID", 50, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kCsrNameNotAllowed, "CSR_NAME_NOT_ALLOWED", 51, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kValidityTooLong, "VALIDITY_TOO_LONG", 52, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetConflict, "FLEET_CONFLICT", 53, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetSourceUnavailable, "FLEET_SOURCE_UNAVAILABLE", 54, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetSourceInvalid, "FLEET_SOURCE_INVALID", 55, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetDocumentMissing, "FLEET_DOCUMENT_MISSING", 56, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetSignatureInvalid, "FLEET_SIGNATURE_INVALID", 57, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetSignatureStale, "FLEET_SIGNATURE_STALE", 58, PTRUST_REASON_INTERNAL_ERROR},
    {Code::kFleetDocumentCutsOff, "FLEET_DOCUMENT_CUTS_OFF", 59, PTRUST_REASON_INTERNAL_ERROR},
};

constexpr bool rows_in_enum_order() {
  for (size_t i = 0; i < std::size(kCodes); ++i)
    if (static_cast<size_t>(kCodes[i].code) != i) return false;
  return true;
}
static_assert(rows_in_enum_order(), "kCodes rows must follow the order of enum Code");
static_assert(std::size(kCodes) == static_cast<size_t>(Code::kFleetDocumentCutsOff) + 1, "a Code lacks its row");

constexpr bool provider_reasons_unique() {
  for (size_t i = 0; i < std::size(kCodes); ++i)
    for (size_t j = i + 1; j < std::size(kCodes); ++j)
      if (kCodes[i].provider_reason == kCodes[j].provider_reason) return false;
  return true;
}
static_assert(provider_reasons_unique(), "two codes share a provider reason number");

}  // namespace

std::span<const CodeInfo> all_codes() noexcept { return kCodes; }

const CodeInfo& code_info(Code c) noexcept {
  auto i = static_cast<size_t>(c);
  return i < std::size(kCodes) ? kCodes[i] : kCodes[0];
}

std::string_view code_name(Code c) noexcept { return code_info(c).name; }

int exit_status(Code c) noexcept { return c == Code::kUsage ? 2 : 1; }

void throw_errno(Code code, const std::string& msg) {
  int e = errno;
  throw Error(code, msg + ": " + std::strerror(e));
}

}  // namespace ptrust
