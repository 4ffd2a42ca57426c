// The on-disk store layout (contract: ../shared/DESIGN.md "Store layout").
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace ptrust {

enum class CertType { kCa, kPinned };

std::string_view to_string(CertType t) noexcept;  // "ca" | "pinned"
std::optional<CertType> cert_type_from(std::string_view s) noexcept;

namespace layout {

inline constexpr std::string_view kTrustedDir = "etc/trusted-certs";
inline constexpr std::string_view kStateDir = "var/lib/ptrust";
inline constexpr std::string_view kDatabase = "db.json";
inline constexpr std::string_view kLockFile = "lock";
inline constexpr std::string_view kGenerationFile = "generation";

// One store: the certificates of one type for one purpose ("general" for general CAs).
struct StoreKey {
  CertType type;
  std::string purpose;
  auto operator<=>(const StoreKey&) const = default;
};

std::string store_dir(const StoreKey& k);    // ca-general, ca-<p>, pinned-<p>
std::string bundle_file(const StoreKey& k);  // ca-bundle-general.pem, ca-bundle-<p>.pem, pinned-bundle-<p>.pem
std::string cert_file(std::string_view uuid);  // <uuid>.pem

// Name rule for CRLs and legacy CAs (as xapi): [A-Za-z0-9._-], no leading '.', at most 255
// bytes; and never a name OpenSSL's hash-dir lookup would take for a hash entry.
bool valid_file_name(std::string_view name) noexcept;
// Legacy CA names: valid_file_name and ending in ".pem".
bool valid_legacy_name(std::string_view name) noexcept;

// Inverse of store_dir / bundle_file for names found on disk.
std::optional<StoreKey> parse_store_dir(std::string_view name);
std::optional<StoreKey> parse_bundle_file(std::string_view name);

}  // namespace layout
}  // namespace ptrust
