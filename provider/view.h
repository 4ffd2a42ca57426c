// What ptrust://PURPOSE serves: a purpose's TrustState (core/trust.h) as the objects an
// OSSL_STORE loader hands out, indexed by name. Built once per state and shared by every
// loader using it (read only), so concurrent loaders need no lock.
#pragma once

#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/trust.h"

namespace ptrust::provider {

struct Object {
  int type;               // OSSL_OBJECT_CERT or OSSL_OBJECT_CRL
  const X509_NAME* name;  // subject of a certificate, issuer of a CRL (owned by the state)
  std::string_view der;   // owned by the state
};

class StoreView {
 public:
  explicit StoreView(std::shared_ptr<const TrustState> state);

  const TrustState& state() const noexcept { return *state_; }

  // The objects a loader returns, in order: certificates (bundle order), then CRLs.
  // `name` (nullable) selects certificates by subject and CRLs by issuer; `expect` is an
  // OSSL_STORE_INFO_* type or 0 for any.
  std::vector<const Object*> select(const X509_NAME* name, int expect) const;

 private:
  std::shared_ptr<const TrustState> state_;
  std::vector<Object> objects_;
  std::vector<std::uint32_t> cert_order_, crl_order_;  // indices into objects_, sorted by name
};

}  // namespace ptrust::provider
