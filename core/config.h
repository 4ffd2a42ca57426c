// Configuration: the declared purposes and their verification policies (YAML).
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ptrust {

enum class CrlPolicy { kOff, kIfPresent, kRequire };
enum class CrlScope { kLeaf, kChain };
enum class PinMatch { kCertificate, kSpki };

std::string_view to_string(CrlPolicy p) noexcept;
std::string_view to_string(CrlScope s) noexcept;
std::string_view to_string(PinMatch m) noexcept;
std::optional<CrlPolicy> crl_policy_from(std::string_view s) noexcept;
std::optional<CrlScope> crl_scope_from(std::string_view s) noexcept;

// How one purpose is verified. Defaults are the strict ones.
struct PurposePolicy {
  CrlPolicy crl_policy = CrlPolicy::kIfPresent;
  CrlScope crl_scope = CrlScope::kChain;
  bool allow_expired_crl = false;
  PinMatch pin_match = PinMatch::kCertificate;
  bool enforce_pin_validity = true;
  bool report_only = false;  // explicit opt-in: verdict reported, handshake proceeds
  // The verify hook's verified-chain cache (ca / general): how long a repeated peer's verified
  // chain may be answered without a new X509_verify_cert, at most. 0 disables the cache.
  std::uint32_t verify_cache_seconds = 300;
  static constexpr std::uint32_t kMaxVerifyCacheSeconds = 86400;
  bool operator==(const PurposePolicy&) const = default;
};

struct Config {
  std::string source;               // file it came from, or "<built-in>"
  std::string text;                 // its YAML text: sections core does not interpret (`stunnel:`)
  std::optional<std::string> root;  // `root:` key
  std::map<std::string, PurposePolicy> purposes;

  bool declares(std::string_view purpose) const { return purposes.count(std::string(purpose)) != 0; }
};

// The purpose name grammar: [a-z0-9][a-z0-9_-]{0,31}. "general" is reserved.
bool valid_purpose_name(std::string_view name) noexcept;
inline constexpr std::string_view kGeneral = "general";

// The configuration used when no file exists: purposes `licensing` and `ldaps`.
Config default_config();

// Parses YAML text. Errors are CONFIG_INVALID and name source, line and column. The
// `stunnel:` key is accepted and left to the helper (helper/stunnel_config.h): consumers
// never read it, so a broken stunnel section cannot break verification.
Config parse_config(const std::string& text, const std::string& source);
Config load_config_file(const std::string& path);

// The UNKNOWN_PURPOSE refusal for `purpose`, saying where and how to declare it: the line to
// add under `purposes:` in the configuration file (or, with the built-in configuration, the
// file to create under `root`).
class Error;
Error unknown_purpose(const Config& cfg, std::string_view purpose, std::string_view root = "");

// Parses "a,b" for install: every name well-formed, declared, not `general`, not repeated.
// UNKNOWN_PURPOSE otherwise. An empty string is refused (omit --purpose for general).
std::vector<std::string> parse_purpose_list(std::string_view csv, const Config& cfg, std::string_view root = "");
// The same rule for a list already split (import, adopt, the store writer): every name
// well-formed, declared, not `general`, not repeated; UNKNOWN_PURPOSE otherwise. An empty
// list is allowed (general).
void check_purposes(const std::vector<std::string>& purposes, const Config& cfg, std::string_view root = "");

// A path that can be written into openssl.cnf or a stunnel configuration as it is: one line,
// none of # $ \ " (comment, variable, escape and quote characters of openssl.cnf).
bool safe_config_path(std::string_view path) noexcept;

struct TrustMemo;  // core/trust.h

// Where ptrust works: the root prefix and the configuration.
struct Context {
  std::string root;
  Config config;
  // Set by a caller that builds the same purposes several times in a row (a status report:
  // its own view, the drift check's capath comparison, stunnel rendering): build_trust then
  // lends each purpose's last decoded certificates to its next build. Null for consumers.
  std::shared_ptr<TrustMemo> memo;
};

// The configuration file open_context() reads (when it exists): `config`, else
// <root or />/etc/ptrust/ptrust.yaml. The environment is not consulted here.
std::string config_path_for(const std::optional<std::string>& root, const std::optional<std::string>& config);

// Resolves root and config. Root: `root_opt`, else $PTRUST_ROOT, else the config's
// `root:`, else "/"; made absolute (it is written into stunnel and OpenSSL configurations). Config: `config_opt`, else $PTRUST_CONFIG, else
// <root>/etc/ptrust/ptrust.yaml if it exists, else the built-in default. An explicitly
// named config file that is missing is an error.
Context open_context(const std::optional<std::string>& root_opt,
                     const std::optional<std::string>& config_opt);

}  // namespace ptrust
