// The private context of one loaded ptrust provider (one per OSSL_LIB_CTX that loads it).
#pragma once

#include <openssl/core.h>
#include <openssl/core_dispatch.h>

#include "provider/context.h"
#include "provider/errors.h"
#include "provider/material.h"

namespace ptrust::provider {

struct ProvCtx {
  ProvCtx(CoreErrors e, std::optional<std::string> root, std::optional<std::string> config)
      : errors(e), contexts(std::move(root), std::move(config)) {}

  CoreErrors errors;
  ContextSource contexts;
  MaterialCache cache;
};

// The OSSL_STORE loader's dispatch table (store.cc).
extern const OSSL_DISPATCH kStoreFunctions[];

}  // namespace ptrust::provider
