#include "provider/errors.h"

#include <array>
#include <cstdarg>
#include <new>

namespace ptrust::provider {

namespace {

constexpr Code kAllCodes[] = {
    Code::kUsage, Code::kInputUnreadable, Code::kTrustedCertificateInvalid, Code::kPrivateKeyNotAllowed,
    Code::kTrustedCertificateExpired, Code::kTrustedCertificateNotValidYet, Code::kNotACaCertificate,
    Code::kCertificateLacksPurpose, Code::kUnknownPurpose, Code::kTrustedCertificateAlreadyExists,
    Code::kTrustedCertificateNotFound, Code::kTrustedCertificateFileMissing, Code::kConfigInvalid,
    Code::kStoreUnsafe, Code::kStoreUnreadable, Code::kStoreCorrupt, Code::kDatabaseInvalid,
    Code::kLockFailed, Code::kIoError,
};
constexpr size_t kNumCodes = sizeof kAllCodes / sizeof kAllCodes[0];

// code_name() returns views of string literals, so .data() is NUL-terminated and static.
std::array<OSSL_ITEM, kNumCodes + 4> make_table() noexcept {
  std::array<OSSL_ITEM, kNumCodes + 4> t{};
  size_t i = 0;
  for (Code c : kAllCodes) t[i++] = {reason_for(c), const_cast<char*>(code_name(c).data())};
  t[i++] = {kReasonMalformedUri, const_cast<char*>("MALFORMED_URI")};
  t[i++] = {kReasonInvalidArgument, const_cast<char*>("INVALID_ARGUMENT")};
  t[i++] = {kReasonInternal, const_cast<char*>("INTERNAL_ERROR")};
  t[i] = {0, nullptr};
  return t;
}

void vraise(const CoreErrors& core, std::uint32_t reason, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  core.vset_error(core.handle, reason, fmt, ap);
  va_end(ap);
}

}  // namespace

std::uint32_t reason_for(Code code) noexcept { return static_cast<std::uint32_t>(code) + 1; }

const OSSL_ITEM* reason_strings() noexcept {
  static const auto table = make_table();
  return table.data();
}

void raise(const CoreErrors& core, const char* file, int line, const char* func, std::uint32_t reason,
           const std::string& message) noexcept {
  if (core.new_error == nullptr || core.set_error_debug == nullptr || core.vset_error == nullptr) return;
  core.new_error(core.handle);
  core.set_error_debug(core.handle, file, line, func);
  vraise(core, reason, "%s", message.c_str());
}

void raise_current(const CoreErrors& core, const char* file, int line, const char* func) noexcept {
  try {
    throw;
  } catch (const Error& e) {
    raise(core, file, line, func, reason_for(e.code()), e.what());
  } catch (const std::bad_alloc&) {
    raise(core, file, line, func, kReasonInternal, "out of memory");
  } catch (const std::exception& e) {
    raise(core, file, line, func, kReasonInternal, e.what());
  } catch (...) {
    raise(core, file, line, func, kReasonInternal, "unknown exception");
  }
}

}  // namespace ptrust::provider
