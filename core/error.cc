#include "core/error.h"

#include <cerrno>
#include <cstring>

namespace ptrust {

std::string_view code_name(Code c) noexcept {
  switch (c) {
    case Code::kUsage: return "USAGE";
    case Code::kInputUnreadable: return "INPUT_UNREADABLE";
    case Code::kTrustedCertificateInvalid: return "TRUSTED_CERTIFICATE_INVALID";
    case Code::kPrivateKeyNotAllowed: return "PRIVATE_KEY_NOT_ALLOWED";
    case Code::kTrustedCertificateExpired: return "TRUSTED_CERTIFICATE_EXPIRED";
    case Code::kTrustedCertificateNotValidYet: return "TRUSTED_CERTIFICATE_NOT_VALID_YET";
    case Code::kNotACaCertificate: return "NOT_A_CA_CERTIFICATE";
    case Code::kCertificateLacksPurpose: return "CERTIFICATE_LACKS_PURPOSE";
    case Code::kUnknownPurpose: return "UNKNOWN_PURPOSE";
    case Code::kTrustedCertificateAlreadyExists: return "TRUSTED_CERTIFICATE_ALREADY_EXISTS";
    case Code::kTrustedCertificateNotFound: return "TRUSTED_CERTIFICATE_NOT_FOUND";
    case Code::kTrustedCertificateFileMissing: return "TRUSTED_CERTIFICATE_FILE_MISSING";
    case Code::kCrlInvalid: return "CRL_INVALID";
    case Code::kCrlNameInvalid: return "CRL_NAME_INVALID";
    case Code::kCrlAlreadyExists: return "CRL_ALREADY_EXISTS";
    case Code::kCrlDoesNotExist: return "CRL_DOES_NOT_EXIST";
    case Code::kCrlSignatureInvalid: return "CRL_SIGNATURE_INVALID";
    case Code::kCertificateNameInvalid: return "CERTIFICATE_NAME_INVALID";
    case Code::kCaCertificateAlreadyExists: return "CA_CERTIFICATE_ALREADY_EXISTS";
    case Code::kCertificateDoesNotExist: return "CERTIFICATE_DOES_NOT_EXIST";
    case Code::kHostUuidInvalid: return "HOST_UUID_INVALID";
    case Code::kPoolJoiningHostCaCertificatesConflict: return "POOL_JOINING_HOST_CA_CERTIFICATES_CONFLICT";
    case Code::kPoolJoiningHostTrustedCertificatesConflict: return "POOL_JOINING_HOST_TRUSTED_CERTIFICATES_CONFLICT";
    case Code::kPoolJoiningHostCrlsConflict: return "POOL_JOINING_HOST_CRLS_CONFLICT";
    case Code::kImportInvalid: return "IMPORT_INVALID";
    case Code::kConfigInvalid: return "CONFIG_INVALID";
    case Code::kStoreUnsafe: return "STORE_UNSAFE";
    case Code::kStoreUnreadable: return "STORE_UNREADABLE";
    case Code::kStoreCorrupt: return "STORE_CORRUPT";
    case Code::kDatabaseInvalid: return "DATABASE_INVALID";
    case Code::kLockFailed: return "LOCK_FAILED";
    case Code::kIoError: return "IO_ERROR";
    case Code::kNoTrustForPurpose: return "NO_TRUST_FOR_PURPOSE";
    case Code::kSubjectCheckMissing: return "SUBJECT_CHECK_MISSING";
    case Code::kStunnelSignalFailed: return "STUNNEL_SIGNAL_FAILED";
  }
  return "UNKNOWN";
}

int exit_status(Code c) noexcept { return c == Code::kUsage ? 2 : 1; }

void throw_errno(Code code, const std::string& msg) {
  int e = errno;
  throw Error(code, msg + ": " + std::strerror(e));
}

}  // namespace ptrust
