// Errors the provider raises into OpenSSL's error queue. They go through the core's error
// functions (so they carry the provider's own library code, file and line) and their
// reason strings are ptrust's stable error code names, the words the helper prints too.
#pragma once

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include <cstdint>
#include <string>

#include "core/error.h"

namespace ptrust::provider {

// Reason codes: every ptrust::Code has its explicit number in core's table (code_info);
// these are the provider's own. Never renumber: programs may match on them.
enum Reason : std::uint32_t {
  kReasonMalformedUri = 100,
  kReasonInvalidArgument = 101,
  kReasonInternal = 102,
};
std::uint32_t reason_for(Code code) noexcept;

// {reason, string} pairs for OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, {0, NULL}-terminated.
const OSSL_ITEM* reason_strings() noexcept;

// The error functions the core handed to OSSL_provider_init (any may be null).
struct CoreErrors {
  const OSSL_CORE_HANDLE* handle = nullptr;
  OSSL_FUNC_core_new_error_fn* new_error = nullptr;
  OSSL_FUNC_core_set_error_debug_fn* set_error_debug = nullptr;
  OSSL_FUNC_core_vset_error_fn* vset_error = nullptr;
};

// Pushes one error: reason + message, with the raising file, line and function.
void raise(const CoreErrors& core, const char* file, int line, const char* func, std::uint32_t reason,
           const std::string& message) noexcept;

// Translates the exception being handled (call only inside a catch block) into one error.
void raise_current(const CoreErrors& core, const char* file, int line, const char* func) noexcept;

}  // namespace ptrust::provider

#define PTRUST_RAISE(core, reason, message) \
  ::ptrust::provider::raise((core), __FILE__, __LINE__, __func__, (reason), (message))
#define PTRUST_RAISE_CURRENT(core) ::ptrust::provider::raise_current((core), __FILE__, __LINE__, __func__)
