// Shared by the libFuzzer targets of fuzz/. Each target feeds outside bytes to one intake
// path. The contract checked: no crash, no leak (LeakSanitizer), no sanitizer report, and
// no exception other than ptrust::Error (a refusal with a stable code). Any other exception
// escapes LLVMFuzzerTestOneInput, which libFuzzer reports as a crash.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/error.h"

namespace ptrust::fuzz {

inline std::string_view bytes(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

// Runs f(); a ptrust::Error is a refusal (fine), anything else propagates.
template <class F>
bool refused(F&& f) {
  try {
    f();
    return false;
  } catch (const ptrust::Error&) {
    return true;
  }
}

}  // namespace ptrust::fuzz
