// Certificate intake (`install`, import, adopt): Certificate::parse on PEM or DER, and what
// is done with an accepted certificate; and the consumers' reading of a bundle file
// (parse_bundle, scan_bundle), whose bytes a damaged or hostile disk may hold. `import`
// decodes in a library context of its own per thread: every input must be taken or refused
// there as it is in the default one, and described the same.
#include <optional>

#include "core/cert.h"
#include "core/ossl.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  std::string_view in = fuzz::bytes(data, size);
  std::optional<CertInfo> theirs;  // the default context's
  fuzz::refused([&] {
    Certificate c = Certificate::parse(in);
    CertInfo info = c.info();
    theirs = info;
    std::string pem = c.pem();
    // What is stored is the re-encoding: it must parse again to the same certificate.
    if (Certificate::parse(pem).der() != c.der() || Certificate::parse(c.der()).info().sha256 != info.sha256)
      __builtin_trap();
    fuzz::refused([&] { c.check_validity(0); });
  });
  // In a context of its own (import's vetting threads): taken or refused alike, and what is
  // taken is the same certificate with the same description, its key included.
  static const ossl::LibCtxPtr own = Certificate::decoding_context();  // outlives its certificates
  std::optional<CertInfo> mine;
  fuzz::refused([&] { mine = Certificate::parse(in, own.get()).info(); });
  if (mine != theirs) __builtin_trap();  // both refused, or both taken and described alike
  fuzz::refused([&] { refuse_private_keys(in); });
  fuzz::refused([&] { parse_bundle(in, "fuzz bundle"); });
  fuzz::refused([&] { scan_bundle(in, "fuzz bundle"); });
  return 0;
}
