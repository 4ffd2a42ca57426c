// Stable error codes. Every refusal names one of these; the strings are part of the
// external contract (scripts and acceptance checks match on them), never change one.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

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
};

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
