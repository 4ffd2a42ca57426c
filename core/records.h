// Building database records from validated input. Metadata is always recomputed from the
// parsed object, never taken from the caller.
#pragma once

#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/cert.h"
#include "core/config.h"
#include "core/db.h"

namespace ptrust {

CertRecord make_cert_record(const Certificate& cert, CertType type, std::vector<std::string> purposes,
                            std::int64_t installed_at);

// Parses exactly one CRL (PEM or DER). CRL_INVALID otherwise; PRIVATE_KEY_NOT_ALLOWED when
// the input holds a key. An empty `name` is derived from the issuer's CN.
CrlRecord make_crl_record(std::string_view data, std::string name, std::vector<std::string> purposes,
                          std::int64_t installed_at);

LegacyRecord make_legacy_record(const std::string& name, const Certificate& cert, std::int64_t installed_at);
PoolRecord make_pool_record(const std::string& host, bool staged, const Certificate& cert, std::int64_t installed_at);

// The checks of every intake path (install, crl install, legacy install, pool add, import and
// sync --adopt), each in one place, so no path accepts what another refuses. `now` unset:
// validity dates are not checked (import: a pool member's store may legitimately hold an
// expiring certificate).
//   trusted: NOT_A_CA_CERTIFICATE, CERTIFICATE_LACKS_PURPOSE, UNKNOWN_PURPOSE (malformed,
//            undeclared, repeated, general), TRUSTED_CERTIFICATE_EXPIRED / _NOT_VALID_YET
//   crl:     CRL_INVALID, PRIVATE_KEY_NOT_ALLOWED, CRL_NAME_INVALID, UNKNOWN_PURPOSE
//   legacy:  CERTIFICATE_NAME_INVALID, the dates
//   pool:    HOST_UUID_INVALID, the dates
CertRecord vet_trusted(const Certificate& cert, CertType type, std::vector<std::string> purposes, const Config& cfg,
                       std::int64_t installed_at, std::optional<std::time_t> now);
CrlRecord vet_crl(std::string_view data, std::string name, std::vector<std::string> purposes, const Config& cfg,
                  std::int64_t installed_at);
LegacyRecord vet_legacy(const std::string& name, const Certificate& cert, std::int64_t installed_at,
                        std::optional<std::time_t> now);
PoolRecord vet_pool(const std::string& host, bool staged, const Certificate& cert, std::int64_t installed_at,
                    std::optional<std::time_t> now);

// The certificates of `crl install --issuer FILE` (PEM with one or more CERTIFICATE blocks,
// or one DER certificate): candidates for the signature check only, never trusted.
// PRIVATE_KEY_NOT_ALLOWED for a key anywhere; TRUSTED_CERTIFICATE_INVALID for anything that
// is not a certificate (as `install` refuses it).
std::vector<Certificate> parse_crl_issuers(std::string_view input);

// The PEMs that may have signed a CRL of `issuer` (RFC 2253 text): installed CAs (trusted and
// legacy) and --issuer certificates recorded with other CRLs, found by name (x509::name_key)
// without decoding any certificate. Callers confirm with X509_NAME_cmp.
std::vector<const std::string*> crl_signer_candidates(const Database& db, const std::string& issuer);

// How the signature of a CRL was checked at intake.
struct CrlSigner {
  enum class How { kUnchecked, kInstalledCa, kRecordedIssuer, kGivenIssuer };
  How how = How::kUnchecked;
  std::string pem;  // kGivenIssuer / kRecordedIssuer: the certificate that verified it
};

// With `given` (--issuer): the CRL must verify with one of them whose subject is its issuer
// name. Without: when an installed CA, or an --issuer certificate recorded with another CRL,
// has the CRL's issuer name, it must verify with one of them; when none has, it is
// kUnchecked (consumers check it at verification). CRL_SIGNATURE_INVALID otherwise.
CrlSigner check_crl_signature(const Database& db, const CrlRecord& crl, const std::vector<Certificate>& given = {});

}  // namespace ptrust
