// Provider entry point: OSSL_provider_init, parameters, the operation table, teardown.
#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/opensslv.h>

#include <cstdlib>
#include <new>
#include <optional>
#include <string>

#include "provider/provider.h"

namespace ptrust::provider {

namespace {

OSSL_FUNC_provider_teardown_fn prov_teardown;
OSSL_FUNC_provider_gettable_params_fn prov_gettable_params;
OSSL_FUNC_provider_get_params_fn prov_get_params;
OSSL_FUNC_provider_query_operation_fn prov_query_operation;
OSSL_FUNC_provider_get_reason_strings_fn prov_get_reason_strings;

constexpr const char* kName = "ptrust";
// Diagnostic: how many times a purpose's trust was (re)built from disk since the provider loaded.
constexpr const char* kParamSnapshotLoads = "ptrust-snapshot-loads";
constexpr const char* kBuildInfo = "ptrust " PTRUST_VERSION " built with " OPENSSL_VERSION_TEXT;

const OSSL_ALGORITHM kStores[] = {
    {"ptrust", "provider=ptrust", kStoreFunctions, "ptrust://PURPOSE: per-purpose trust anchors and CRLs"},
    {nullptr, nullptr, nullptr, nullptr},
};

void prov_teardown(void* provctx) { delete static_cast<ProvCtx*>(provctx); }

const OSSL_PARAM* prov_gettable_params(void*) {
  static const OSSL_PARAM kGettable[] = {
      OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_NAME, nullptr, 0),
      OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_VERSION, nullptr, 0),
      OSSL_PARAM_utf8_ptr(OSSL_PROV_PARAM_BUILDINFO, nullptr, 0),
      OSSL_PARAM_int(OSSL_PROV_PARAM_STATUS, nullptr),
      OSSL_PARAM_uint64(kParamSnapshotLoads, nullptr),
      OSSL_PARAM_END,
  };
  return kGettable;
}

int prov_get_params(void* provctx, OSSL_PARAM params[]) {
  OSSL_PARAM* p;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_NAME)) && !OSSL_PARAM_set_utf8_ptr(p, kName)) return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_VERSION)) && !OSSL_PARAM_set_utf8_ptr(p, PTRUST_VERSION))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_BUILDINFO)) && !OSSL_PARAM_set_utf8_ptr(p, kBuildInfo))
    return 0;
  if ((p = OSSL_PARAM_locate(params, OSSL_PROV_PARAM_STATUS)) && !OSSL_PARAM_set_int(p, 1)) return 0;
  if ((p = OSSL_PARAM_locate(params, kParamSnapshotLoads)) &&
      !OSSL_PARAM_set_uint64(p, static_cast<ProvCtx*>(provctx)->source.builds()))
    return 0;
  return 1;
}

const OSSL_ALGORITHM* prov_query_operation(void*, int operation_id, int* no_cache) {
  *no_cache = 0;
  return operation_id == OSSL_OP_STORE ? kStores : nullptr;
}

const OSSL_ITEM* prov_get_reason_strings(void*) { return reason_strings(); }

const OSSL_DISPATCH kProviderFunctions[] = {
    {OSSL_FUNC_PROVIDER_TEARDOWN, reinterpret_cast<void (*)()>(prov_teardown)},
    {OSSL_FUNC_PROVIDER_GETTABLE_PARAMS, reinterpret_cast<void (*)()>(prov_gettable_params)},
    {OSSL_FUNC_PROVIDER_GET_PARAMS, reinterpret_cast<void (*)()>(prov_get_params)},
    {OSSL_FUNC_PROVIDER_QUERY_OPERATION, reinterpret_cast<void (*)()>(prov_query_operation)},
    {OSSL_FUNC_PROVIDER_GET_REASON_STRINGS, reinterpret_cast<void (*)()>(prov_get_reason_strings)},
    {0, nullptr},
};

// $NAME when set and non-empty, else the provider section's `key = value`, else nothing.
std::optional<std::string> setting(const char* env, const char* value) {
  if (const char* e = std::getenv(env); e != nullptr && *e != '\0') return std::string(e);
  if (value != nullptr && *value != '\0') return std::string(value);
  return std::nullopt;
}

}  // namespace

}  // namespace ptrust::provider

extern "C" __attribute__((visibility("default"))) int OSSL_provider_init(const OSSL_CORE_HANDLE* handle,
                                                                          const OSSL_DISPATCH* in,
                                                                          const OSSL_DISPATCH** out,
                                                                          void** provctx) {
  using namespace ptrust::provider;
  CoreErrors errors;
  errors.handle = handle;
  OSSL_FUNC_core_get_params_fn* get_params = nullptr;
  for (; in != nullptr && in->function_id != 0; ++in) {
    switch (in->function_id) {
      case OSSL_FUNC_CORE_GET_PARAMS: get_params = OSSL_FUNC_core_get_params(in); break;
      case OSSL_FUNC_CORE_NEW_ERROR: errors.new_error = OSSL_FUNC_core_new_error(in); break;
      case OSSL_FUNC_CORE_SET_ERROR_DEBUG: errors.set_error_debug = OSSL_FUNC_core_set_error_debug(in); break;
      case OSSL_FUNC_CORE_VSET_ERROR: errors.vset_error = OSSL_FUNC_core_vset_error(in); break;
      default: break;
    }
  }
  // Settings from the provider's config section; absent keys leave the pointers null.
  const char* root = nullptr;
  const char* config = nullptr;
  if (get_params != nullptr) {
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_ptr("root", const_cast<char**>(&root), 0),
        OSSL_PARAM_construct_utf8_ptr("config", const_cast<char**>(&config), 0),
        OSSL_PARAM_construct_end(),
    };
    if (!get_params(handle, params)) return 0;
  }
  try {
    *provctx = new ProvCtx(errors, setting("PTRUST_ROOT", root), setting("PTRUST_CONFIG", config));
  } catch (...) {
    PTRUST_RAISE_CURRENT(errors);
    return 0;
  }
  *out = kProviderFunctions;
  return 1;
}
