#include "core/crl.h"

#include <openssl/err.h>
#include <openssl/pem.h>

#include <algorithm>
#include <map>

#include <boost/json.hpp>

#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"

namespace ptrust {

ossl::X509CrlPtr parse_crl(std::string_view data) {
  if (data.empty()) return nullptr;
  ERR_set_mark();  // a failed parse leaves the caller's error queue as it was
  struct PopMark {
    ~PopMark() { ERR_pop_to_mark(); }
  } pop;
  ossl::X509CrlPtr crl;
  if (data.find("-----BEGIN") != std::string_view::npos) {
    // Exactly one "X509 CRL" block and no other block.
    size_t blocks = 0, pos = 0;
    while ((pos = data.find("-----BEGIN ", pos)) != std::string_view::npos) {
      ++blocks;
      if (data.substr(pos, 20) != "-----BEGIN X509 CRL-") return nullptr;
      pos += 11;
    }
    if (blocks != 1) return nullptr;
    ossl::BioPtr bio(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
    crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  } else {
    auto p = reinterpret_cast<const unsigned char*>(data.data());
    const unsigned char* q = p;
    crl.reset(d2i_X509_CRL(nullptr, &q, static_cast<long>(data.size())));
    if (crl && q != p + data.size()) crl.reset();
  }
  return crl;
}

bool crl_in_scope(const std::vector<std::string>& scope, std::string_view purpose) noexcept {
  if (scope.empty()) return true;
  for (const auto& p : scope)
    if (p == purpose) return true;
  return false;
}

namespace {

// name → purposes for CRLs limited to some purposes.
std::map<std::string, std::vector<std::string>> load_scope(int root) {
  std::map<std::string, std::vector<std::string>> out;
  fs::Fd state = fs::open_dir(root, layout::kStateDir, false);
  if (!state) return out;
  auto text = fs::read_at(state.get(), std::string(layout::kCrlScopeFile), 16u << 20);
  if (!text) return out;
  try {
    boost::json::value doc = boost::json::parse(*text);
    for (const auto& kv : doc.as_object()) {
      auto& v = out[std::string(kv.key())];
      for (const auto& p : kv.value().as_array()) v.emplace_back(p.as_string());
    }
  } catch (const std::exception& e) {
    throw Error(Code::kStoreCorrupt, std::string(layout::kStateDir) + "/" + std::string(layout::kCrlScopeFile) +
                                         " is malformed (" + e.what() + ")");
  }
  return out;
}

}  // namespace

std::vector<NamedCrl> load_crls(const Context& ctx, std::string_view purpose) {
  std::vector<NamedCrl> out;
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd dir = fs::open_dir(root.get(), layout::kCrlDir, false);
  if (!dir) return out;
  auto scope = load_scope(root.get());
  for (const auto& e : fs::list_dir(dir.get())) {
    if (e.name[0] == '.' || layout::is_hash_link_name(e.name)) continue;
    // In the index = limited to its purposes (the writer never indexes an unscoped CRL).
    if (auto it = scope.find(e.name);
        it != scope.end() && (it->second.empty() || !crl_in_scope(it->second, purpose)))
      continue;
    auto data = fs::read_at(dir.get(), e.name, 64u << 20);
    if (!data) continue;  // removed while we listed
    auto crl = parse_crl(*data);
    if (!crl) throw Error(Code::kStoreCorrupt, std::string(layout::kCrlDir) + "/" + e.name + " is not a valid CRL");
    out.push_back({e.name, std::move(crl)});
  }
  return out;
}

std::vector<std::string> crls_scoped_to(const Context& ctx, std::string_view purpose) {
  std::vector<std::string> out;
  fs::Fd root = fs::open_root(ctx.root);
  for (const auto& [name, purposes] : load_scope(root.get()))
    if (std::find(purposes.begin(), purposes.end(), purpose) != purposes.end()) out.push_back(name);
  return out;  // std::map order: sorted
}

}  // namespace ptrust
