// The cluster CA (Ganeti's "Design for a X509 Certificate Authority"): a small self-signed CA
// that signs short-lived certificates for the cluster's own names, where an external CA is
// too hard to reach for automated work. Revocation is a minimum serial, not a CRL.
//
//   <root>/var/lib/ptrust/ca/ca.pem       the CA certificate          0644 (public)
//   <root>/var/lib/ptrust/ca/ca.key       its private key             0400
//   <root>/var/lib/ptrust/ca/serial       last serial issued          0600, never reset
//   <root>/var/lib/ptrust/ca/min-serial   lowest serial accepted      0644 (consumers read it)
//   <root>/var/lib/ptrust/ca/lock         flock of every CA writer    0600
//
// Serials come from `serial` under an exclusive flock of `lock`: read, increment, write
// (temp file, fsync, rename, fsync dir), then sign. A crash after the write burns a serial;
// no serial is ever issued twice, not across `init --renew` (which keeps the file).
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ossl.h"
#include "core/trust.h"

namespace ptrust::cluster_ca {

inline constexpr std::string_view kDir = "var/lib/ptrust/ca";
inline constexpr std::string_view kCert = "ca.pem";
inline constexpr std::string_view kKey = "ca.key";
inline constexpr std::string_view kSerial = "serial";
inline constexpr std::string_view kMinSerial = "min-serial";
inline constexpr std::string_view kLock = "lock";
// Ganeti's rule: a signed certificate lives strictly less than a week.
inline constexpr int kMaxHours = 168;

struct InitRequest {
  std::string cn;
  std::string key_type = "ec:p256";
  int days = 3650;
  bool renew = false;  // replace an existing CA: new key and certificate, same serial file
};

// Creates (or with `renew` replaces) the CA. CLUSTER_CA_ALREADY_EXISTS without `renew`;
// STORE_CORRUPT when renewing a CA whose serial file is gone (it is never reset). Call with
// the store's state lock held (the caller bumps the generation: consumers compare issuers
// with ca.pem). Returns the new CA certificate.
ossl::X509Ptr init(int root, const InitRequest& req, std::time_t now);

struct SignRequest {
  std::string csr;                      // PEM or DER
  std::string cn;                       // must be in `allowed`
  std::vector<std::string> allowed;     // the cluster name and declared node names
  int hours = 24;                       // 1 .. kMaxHours - 1
};

struct Signed {
  ossl::X509Ptr cert;
  std::uint64_t serial = 0;
};

// Checks the CSR (its own signature: CSR_INVALID), the CN (CSR_NAME_NOT_ALLOWED), the
// validity (VALIDITY_TOO_LONG) before anything is locked or written; then allocates a serial
// under the CA lock and signs with ptrust's extensions (never the CSR's): serverAuth +
// clientAuth, SAN DNS:<cn>, keyUsage digitalSignature (+keyEncipherment for RSA), AKI, SKI.
// CLUSTER_CA_MISSING without a CA; STORE_CORRUPT when its files do not match.
Signed sign(int root, const SignRequest& req, std::time_t now);

// Sets the lowest accepted serial (atomic 0644 file). Call with the store's state lock held
// and the generation moving (consumers read min-serial into their trust snapshot).
// CLUSTER_CA_MISSING without a CA; USAGE when it would lower the minimum unless `allow_lower`.
void revoke_below(int root, std::uint64_t min_serial, bool allow_lower);

struct Info {
  ossl::X509Ptr cert;
  std::uint64_t last_serial = 0;  // 0: none issued yet
  std::optional<std::uint64_t> min_serial;
};
// nullopt when there is no CA. Never reads the key.
std::optional<Info> info(int root);

// What consumers need: nullopt when min-serial does not exist (no minimum). STORE_CORRUPT
// when it does not parse, or when ca.pem is missing or does not parse beside it (fail closed).
struct Minimum {
  std::uint64_t min_serial = 0;
  Digest ca_sha256{};  // SHA-256 of the CA certificate's DER
};
std::optional<Minimum> load_minimum(int root);

// True when the verified chain's leaf was issued by the cluster CA (the chain element above
// it is the CA certificate, by SHA-256 of DER) and its serial is below the minimum. A chain
// of one, or a state without a minimum, is never below it.
bool below_minimum(const TrustState& state, STACK_OF(X509) * verified_chain) noexcept;

}  // namespace ptrust::cluster_ca
