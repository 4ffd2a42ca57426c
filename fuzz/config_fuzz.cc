// ptrust.yaml: core's parse_config (purposes, policies, root) and the helper's own sections
// parsed from the same text: alerts/consumers/cluster (host_config.h) and stunnel
// (stunnel_config.h). Every refusal must be CONFIG_INVALID naming file:line:col.
#include <cstring>

#include "core/config.h"
#include "fuzz/fuzz.h"
#include "helper/host_config.h"
#include "helper/stunnel_config.h"

namespace {
void check_refusal(const ptrust::Error& e) {
  if (e.code() != ptrust::Code::kConfigInvalid) __builtin_trap();
  if (std::strncmp(e.what(), "fuzz.yaml", 9) != 0) __builtin_trap();
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  std::string text(fuzz::bytes(data, size));
  Config cfg;
  try {
    cfg = parse_config(text, "fuzz.yaml");
  } catch (const Error& e) {
    check_refusal(e);
    return 0;
  }
  try {
    parse_host_config(cfg);
  } catch (const Error& e) {
    check_refusal(e);
  }
  try {
    parse_stunnel_config(cfg);
  } catch (const Error& e) {
    check_refusal(e);
  }
  return 0;
}
