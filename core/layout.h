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
// Per-purpose OpenSSL hashed directories (core/capath.h) for CApath / default-path programs.
inline constexpr std::string_view kCapathName = "capath";  // in kTrustedDir
inline constexpr std::string_view kCapathDir = "etc/trusted-certs/capath";
inline constexpr std::string_view kCapathManifest = ".ptrust-capath";  // in each purpose directory
inline constexpr std::string_view kCapathNoCa = "no-ca.pem";           // in kCapathDir
inline constexpr std::string_view kStateDir = "var/lib/ptrust";
inline constexpr std::string_view kDatabase = "ptrust.db";        // in kStateDir (core/db.h)
inline constexpr std::string_view kLegacyDatabase = "db.json";     // before ptrust.db: migrated by the first write
inline constexpr std::string_view kLockFile = "lock";
inline constexpr std::string_view kGenerationFile = "generation";
// JSON object {"<crl name>": ["purpose", ...]} for CRLs installed with --purpose; 0644.
inline constexpr std::string_view kCrlScopeFile = "crl-scope.json";  // in kStateDir
inline constexpr std::string_view kStunnelStateDir = "stunnel";      // in kStateDir: stunnel sync's records
// Present while a change brings the stores and CA directories up to date, and left behind when
// it stopped before they were (an error, a kill): the next writer then compares its stores entry
// by entry and every directory with the whole selection, instead of looking only at what its
// own change moved. In kStateDir; empty, 0644.
inline constexpr std::string_view kCapathUnfinished = "capath-unfinished";
// Host-wide verdict counters (core/counters.h): one file per process running the verify hook;
// made 01777 by the daemon, never created by a hook.
inline constexpr std::string_view kCountersDir = "run/ptrust/counters";

// ptrust's own configuration directory; the file read when none is named.
inline constexpr std::string_view kEtcDir = "etc/ptrust";
inline constexpr std::string_view kConfigFile = "etc/ptrust/ptrust.yaml";  // kEtcDir + "/ptrust.yaml"
inline constexpr std::string_view kStunnelPlaceholder = "stunnel-placeholder.pem";  // in kEtcDir
// `stunnel render`/`sync --via files`: one PEM file of CRLs per purpose and CRL set, named
// <purpose>.<16 hex of its SHA-256>.pem (never rewritten with other content), for CRLfile.
inline constexpr std::string_view kStunnelCrlDir = "etc/ptrust/stunnel-crls";

// The xapi stunnel directory: CRLs, legacy CAs, pool members' certificates.
inline constexpr std::string_view kStunnelDir = "etc/stunnel";
inline constexpr std::string_view kCrlDir = "etc/stunnel/crls";  // kStunnelDir + "/crls"
inline constexpr std::string_view kLegacyDir = "certs";  // in kStunnelDir
inline constexpr std::string_view kLegacyBundle = "xapi-stunnel-ca-bundle.pem";
inline constexpr std::string_view kPoolDir = "certs-pool";  // in kStunnelDir
inline constexpr std::string_view kPoolBundle = "xapi-pool-ca-bundle.pem";

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
// True for names OpenSSL's hash-dir lookup uses: 8 hex digits, ".r" or ".", a number.
bool is_hash_link_name(std::string_view name) noexcept;
// Legacy CA names: valid_file_name and ending in ".pem".
bool valid_legacy_name(std::string_view name) noexcept;

// Inverse of store_dir / bundle_file for names found on disk.
std::optional<StoreKey> parse_store_dir(std::string_view name);
std::optional<StoreKey> parse_bundle_file(std::string_view name);

}  // namespace layout
}  // namespace ptrust
