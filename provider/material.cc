#include "provider/material.h"

#include <openssl/core_object.h>
#include <openssl/store.h>
#include <sys/stat.h>

#include <algorithm>
#include <stdexcept>

#include "core/crl.h"
#include "core/fs.h"
#include "core/layout.h"
#include "provider/context.h"

namespace ptrust::provider {

namespace {

template <typename T, int (*I2d)(const T*, unsigned char**)>
std::string to_der(const T* obj) {
  int len = I2d(obj, nullptr);
  if (len <= 0) throw std::runtime_error("cannot re-encode a parsed object");
  std::string der(static_cast<size_t>(len), '\0');
  auto* p = reinterpret_cast<unsigned char*>(der.data());
  I2d(obj, &p);
  return der;
}

bool name_less(const X509_NAME* a, const X509_NAME* b) { return X509_NAME_cmp(a, b) < 0; }

}  // namespace

Snapshot::Snapshot(Mode mode, std::vector<DerCert> certs, std::vector<ossl::X509CrlPtr> crls)
    : mode_(mode), certs_(std::move(certs)) {
  if (mode_ != Mode::kPinned) crls_ = std::move(crls);
  objects_.reserve(certs_.size() + crls_.size());
  // Certificates stay DER (libcrypto decodes what it is given); only subjects are parsed.
  for (const auto& c : certs_) objects_.push_back({OSSL_OBJECT_CERT, c.subject.get(), c.der});
  for (const auto& c : crls_)
    objects_.push_back({OSSL_OBJECT_CRL, X509_CRL_get_issuer(c.get()), to_der<X509_CRL, i2d_X509_CRL>(c.get())});
  index();
}

void Snapshot::index() {
  for (std::uint32_t i = 0; i < objects_.size(); ++i)
    (objects_[i].type == OSSL_OBJECT_CERT ? cert_order_ : crl_order_).push_back(i);
  auto by_name = [this](std::uint32_t a, std::uint32_t b) { return name_less(objects_[a].name, objects_[b].name); };
  std::stable_sort(cert_order_.begin(), cert_order_.end(), by_name);
  std::stable_sort(crl_order_.begin(), crl_order_.end(), by_name);
}

std::vector<const Object*> Snapshot::select(const X509_NAME* name, int expect) const {
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

namespace {

bool uses_crls(Mode m) {
  switch (m) {
    case Mode::kCa:
    case Mode::kGeneral: return true;
    case Mode::kPinned:
    case Mode::kNone: return false;
  }
  return false;
}

// What decides the content right now, taken *before* reading it: if a file changes while
// we read, the stamp kept is the older one and the next open reloads.
Stamp stamp_now(const Context& ctx, const Resolution& r, std::uint64_t generation) {
  Stamp s;
  s.mode = r.mode;
  s.path = r.path;
  s.generation = generation;
  if (r.mode == Mode::kNone) return s;
  if (auto id = stat_id(r.path, false)) s.bundle = *id;
  if (!uses_crls(r.mode)) return s;
  fs::Fd root = fs::open_root(ctx.root);
  if (fs::Fd dir = fs::open_dir(root.get(), layout::kCrlDir, false)) {
    struct stat st;
    if (::fstat(dir.get(), &st) == 0) s.crl_dir = file_id(st);
    for (const auto& e : fs::list_dir(dir.get()))
      if (auto est = fs::stat_at(dir.get(), e.name)) s.crl_files.emplace_back(e.name, file_id(*est));
  }
  s.crl_scope = stat_id(ctx.root + "/" + std::string(layout::kStateDir) + "/" + std::string(layout::kCrlScopeFile),
                        false);
  return s;
}

}  // namespace

std::uint64_t MaterialCache::generation(const std::string& root) {
  std::lock_guard lock(mu_);
  auto& view = generations_[root];
  if (!view) view = GenerationView::open(root);  // absent until the first write
  return view ? view->load() : 0;
}

std::shared_ptr<const Snapshot> MaterialCache::get(const Context& ctx, const std::string& purpose) {
  const Resolution r = resolve(ctx, purpose);  // UNKNOWN_PURPOSE, STORE_UNSAFE
  Stamp stamp = stamp_now(ctx, r, generation(ctx.root));
  // A purpose whose crl-policy is off gets no CRLs (and a broken CRL file cannot fail it),
  // as with the verify hook.
  auto policy = ctx.config.purposes.find(purpose);
  stamp.crls_off = policy != ctx.config.purposes.end() && policy->second.crl_policy == CrlPolicy::kOff;
  const std::string key = ctx.root + '\n' + purpose;
  {
    std::lock_guard lock(mu_);
    if (auto it = entries_.find(key); it != entries_.end() && it->second.stamp == stamp) return it->second.snapshot;
  }
  DerMaterial m = load_material_der(ctx, purpose);
  std::vector<ossl::X509CrlPtr> crls;
  if (uses_crls(m.resolution.mode) && !stamp.crls_off)
    for (auto& c : load_crls(ctx, purpose)) crls.push_back(std::move(c.crl));
  stamp.mode = m.resolution.mode;
  stamp.path = m.resolution.path;
  stamp.bundle = m.id;  // of the file actually read
  auto snap = std::make_shared<const Snapshot>(m.resolution.mode, std::move(m.certs), std::move(crls));
  __atomic_fetch_add(&loads_, 1, __ATOMIC_RELAXED);
  std::lock_guard lock(mu_);
  entries_[key] = {std::move(stamp), snap};
  return snap;
}

}  // namespace ptrust::provider
