#include "provider/view.h"

#include <openssl/core_object.h>
#include <openssl/store.h>

#include <algorithm>

namespace ptrust::provider {

namespace {

bool name_less(const X509_NAME* a, const X509_NAME* b) { return X509_NAME_cmp(a, b) < 0; }

}  // namespace

StoreView::StoreView(std::shared_ptr<const TrustState> state) : state_(std::move(state)) {
  // Certificates stay DER (libcrypto decodes what it is given); only subjects were parsed.
  objects_.reserve(state_->certs.size() + state_->crls.size());
  for (const auto& c : state_->certs) objects_.push_back({OSSL_OBJECT_CERT, c.subject.get(), c.der});
  for (const auto& c : state_->crls) objects_.push_back({OSSL_OBJECT_CRL, X509_CRL_get_issuer(c.crl.get()), c.der});
  for (std::uint32_t i = 0; i < objects_.size(); ++i)
    (objects_[i].type == OSSL_OBJECT_CERT ? cert_order_ : crl_order_).push_back(i);
  auto by_name = [this](std::uint32_t a, std::uint32_t b) { return name_less(objects_[a].name, objects_[b].name); };
  std::stable_sort(cert_order_.begin(), cert_order_.end(), by_name);
  std::stable_sort(crl_order_.begin(), crl_order_.end(), by_name);
}

std::vector<const Object*> StoreView::select(const X509_NAME* name, int expect) const {
  const bool certs = expect == 0 || expect == OSSL_STORE_INFO_CERT;
  const bool crls = expect == 0 || expect == OSSL_STORE_INFO_CRL;
  std::vector<const Object*> out;
  if (name == nullptr) {
    for (const auto& o : objects_)
      if (o.type == OSSL_OBJECT_CERT ? certs : crls) out.push_back(&o);
    return out;
  }
  auto add_matching = [&](const std::vector<std::uint32_t>& order) {
    auto it = std::lower_bound(order.begin(), order.end(), name,
                               [this](std::uint32_t i, const X509_NAME* n) { return name_less(objects_[i].name, n); });
    for (; it != order.end() && X509_NAME_cmp(objects_[*it].name, name) == 0; ++it) out.push_back(&objects_[*it]);
  };
  if (certs) add_matching(cert_order_);
  if (crls) add_matching(crl_order_);
  return out;
}

}  // namespace ptrust::provider
