#include "core/layout.h"

#include <cctype>

#include "core/config.h"

namespace ptrust {

std::string_view to_string(CertType t) noexcept {
  switch (t) {
    case CertType::kCa: return "ca";
    case CertType::kPinned: return "pinned";
  }
  return "?";
}

std::optional<CertType> cert_type_from(std::string_view s) noexcept {
  if (s == "ca") return CertType::kCa;
  if (s == "pinned") return CertType::kPinned;
  return std::nullopt;
}

namespace layout {

std::string store_dir(const StoreKey& k) { return std::string(to_string(k.type)) + "-" + k.purpose; }

std::string bundle_file(const StoreKey& k) {
  return std::string(to_string(k.type)) + "-bundle-" + k.purpose + ".pem";
}

std::string cert_file(std::string_view uuid) { return std::string(uuid) + ".pem"; }

bool valid_file_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 255 || n[0] == '.') return false;
  for (char c : n)
    if (!std::isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') return false;
  return !is_hash_link_name(n);
}

bool is_hash_link_name(std::string_view n) noexcept {
  if (n.size() < 10) return false;
  for (size_t i = 0; i < 8; ++i)
    if (!std::isxdigit(static_cast<unsigned char>(n[i]))) return false;
  std::string_view rest = n.substr(8);
  if (rest.substr(0, 2) == ".r") rest = rest.substr(2);
  else if (rest[0] == '.') rest = rest.substr(1);
  else return false;
  if (rest.empty()) return false;
  for (char c : rest)
    if (c < '0' || c > '9') return false;
  return true;
}

bool valid_legacy_name(std::string_view n) noexcept {
  return valid_file_name(n) && n.size() > 4 && n.substr(n.size() - 4) == ".pem";
}

namespace {

bool valid_store_purpose(CertType t, std::string_view p) {
  if (p == kGeneral) return t == CertType::kCa;
  return valid_purpose_name(p);
}

std::optional<StoreKey> split(std::string_view name, std::string_view infix) {
  for (CertType t : {CertType::kCa, CertType::kPinned}) {
    std::string prefix = std::string(to_string(t)) + std::string(infix);
    if (name.substr(0, prefix.size()) == prefix) {
      std::string_view p = name.substr(prefix.size());
      if (valid_store_purpose(t, p)) return StoreKey{t, std::string(p)};
    }
  }
  return std::nullopt;
}

}  // namespace

std::optional<StoreKey> parse_store_dir(std::string_view name) { return split(name, "-"); }

std::optional<StoreKey> parse_bundle_file(std::string_view name) {
  constexpr std::string_view kExt = ".pem";
  if (name.size() <= kExt.size() || name.substr(name.size() - kExt.size()) != kExt) return std::nullopt;
  return split(name.substr(0, name.size() - kExt.size()), "-bundle-");
}

}  // namespace layout
}  // namespace ptrust
