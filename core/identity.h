// Host identity: this host's own key and certificate (as xapi keeps them), and the key and
// certificate making shared with the cluster CA (core/cluster_ca.h).
//
//   <root>/etc/xensource/xapi-ssl.pem       server identity (clients outside the pool)
//   <root>/etc/xensource/xapi-pool-tls.pem  internal identity (host-to-host TLS); its public
//                                           certificate is what `pool add` distributes
//
// Each file holds the private key, then the certificate (then its chain), mode 0400, written
// atomically (temp file, fsync, rename, fsync dir) through a directory descriptor that never
// follows a symlink. A private key is never written anywhere else: not into a trust store
// (etc/trusted-certs, etc/stunnel/*), not into a bundle.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/ossl.h"

namespace ptrust::identity {

// rsa:2048 | rsa:3072 | ec:p256 | ed25519; USAGE otherwise.
ossl::PkeyPtr generate_key(std::string_view key_type);
// PKCS#8 PEM, unencrypted (the file's mode is the protection, as xapi's).
std::string key_pem(EVP_PKEY* key);

// What a certificate ptrust makes says. Extensions are always ptrust's own choice.
struct CertProfile {
  std::string cn;
  std::vector<std::string> san;  // "DNS:name" / "IP:addr" entries
  bool ca = false;               // CA:TRUE critical, pathlen:0, keyCertSign+cRLSign
  std::int64_t not_before = 0;   // seconds since the epoch
  std::int64_t not_after = 0;
  std::uint64_t serial = 0;      // 0: 16 random bytes (self-signed identities)
};

// Builds and signs a certificate for `key` (public part) with `signer_key`; `issuer` null
// means self-signed. Leaf profile: CA:FALSE critical, keyUsage digitalSignature (+
// keyEncipherment for RSA) critical, EKU serverAuth+clientAuth, SAN, SKI, AKI.
ossl::X509Ptr make_certificate(const CertProfile& p, EVP_PKEY* key, X509* issuer, EVP_PKEY* signer_key);

// "DNS:a,IP:1.2.3.4" -> entries; each must be DNS:<name> or IP:<v4/v6>; USAGE otherwise.
std::vector<std::string> parse_san(std::string_view csv);

enum class Kind { kServer, kInternal };
std::string_view to_string(Kind k) noexcept;  // "server" | "internal"
std::optional<Kind> kind_from(std::string_view s) noexcept;
std::string_view file_name(Kind k) noexcept;   // xapi-ssl.pem | xapi-pool-tls.pem
inline constexpr std::string_view kDir = "etc/xensource";
// The staged internal identity of a rotation (`host-cert refresh`), switched in by --switch.
inline constexpr std::string_view kStagedInternal = "xapi-pool-tls.new.pem";

// One identity file, parsed: the key and the certificates (leaf first).
struct Identity {
  ossl::PkeyPtr key;
  std::vector<ossl::X509Ptr> certs;
};

// Parses an identity file's text: exactly one unencrypted private key and one or more
// certificates. STORE_CORRUPT otherwise (`what` names the file).
Identity parse_identity(std::string_view pem, const std::string& what);

// Checks an identity before it is installed: the certificate is valid now (TRUSTED_
// CERTIFICATE_EXPIRED / _NOT_VALID_YET), is not a CA (HOST_CERTIFICATE_IS_CA), matches the
// key (HOST_KEY_MISMATCH), and each chain certificate issued and signed the one before it
// (HOST_CHAIN_INVALID).
void vet_identity(const Identity& id, std::time_t now);

// Key then certificates, as the file holds them.
std::string identity_pem(const Identity& id);

// Parses a private key file: exactly one PEM private key, not encrypted (HOST_KEY_INVALID).
ossl::PkeyPtr parse_private_key(std::string_view pem);
// Every CERTIFICATE block of `pem` (at least one); no other block allowed (TRUSTED_CERTIFICATE_INVALID).
std::vector<ossl::X509Ptr> parse_certificates(std::string_view pem, const std::string& what);

// <root>/etc/xensource/<name>: read (nullopt when missing) and written (0400, atomically,
// leftovers of a killed writer removed first). No symlink is followed.
std::optional<std::string> read_file(int root, std::string_view name);
void write_file(int root, std::string_view name, std::string_view data);
// Renames `from` over `to` inside etc/xensource (atomic) and fsyncs the directory.
void rename_file(int root, std::string_view from, std::string_view to);

}  // namespace ptrust::identity
