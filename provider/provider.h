// The private context of one loaded ptrust provider (one per OSSL_LIB_CTX that loads it).
#pragma once

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include <memory>
#include <optional>
#include <string>

#include "core/trust.h"
#include "provider/errors.h"
#include "provider/view.h"

namespace ptrust::provider {

struct ProvCtx {
  ProvCtx(CoreErrors e, std::optional<std::string> root, std::optional<std::string> config)
      : errors(e), source(std::move(root), std::move(config)) {}

  // What ptrust://`purpose` serves now. Throws ptrust::Error with the reason the purpose
  // cannot be served (CONFIG_INVALID, UNKNOWN_PURPOSE, STORE_*): open() fails, no fallback.
  std::shared_ptr<const StoreView> view(const std::string& purpose);

  CoreErrors errors;
  TrustSource source;
  TrustSlots<StoreView> slots;  // declared purposes (and general) only
};

// The OSSL_STORE loader's dispatch table (store.cc).
extern const OSSL_DISPATCH kStoreFunctions[];

}  // namespace ptrust::provider
