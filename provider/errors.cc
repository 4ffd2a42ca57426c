#include "provider/errors.h"

#include <vector>
#include <cstdarg>
#include <new>

namespace ptrust::provider {

namespace {

// code_name() returns views of string literals, so .data() is NUL-terminated and static.
std::vector<OSSL_ITEM> make_table() {
  std::vector<OSSL_ITEM> t;
  for (const CodeInfo& c : all_codes()) t.push_back({c.provider_reason, const_cast<char*>(c.name.data())});
  t.push_back({kReasonMalformedUri, const_cast<char*>("MALFORMED_URI")});
  t.push_back({kReasonInvalidArgument, const_cast<char*>("INVALID_ARGUMENT")});
  t.push_back({kReasonInternal, const_cast<char*>("INTERNAL_ERROR")});
  t.push_back({0, nullptr});
  return t;
}

void vraise(const CoreErrors& core, std::uint32_t reason, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  core.vset_error(core.handle, reason, fmt, ap);
  va_end(ap);
}

}  // namespace

std::uint32_t reason_for(Code code) noexcept { return code_info(code).provider_reason; }

const OSSL_ITEM* reason_strings() noexcept {
  static const OSSL_ITEM kNone[] = {{0, nullptr}};
  try {
    static const std::vector<OSSL_ITEM> table = make_table();
    return table.data();
  } catch (...) {
    return kNone;
  }
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
