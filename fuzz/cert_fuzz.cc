// Certificate intake (`install`, import, adopt): Certificate::parse on PEM or DER, and what
// is done with an accepted certificate; and the consumers' reading of a bundle file
// (parse_bundle, scan_bundle), whose bytes a damaged or hostile disk may hold.
#include "core/cert.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  std::string_view in = fuzz::bytes(data, size);
  fuzz::refused([&] {
    Certificate c = Certificate::parse(in);
    CertInfo info = c.info();
    std::string pem = c.pem();
    // What is stored is the re-encoding: it must parse again to the same certificate.
    if (Certificate::parse(pem).der() != c.der() || Certificate::parse(c.der()).info().sha256 != info.sha256)
      __builtin_trap();
    fuzz::refused([&] { c.check_validity(0); });
  });
  fuzz::refused([&] { refuse_private_keys(in); });
  fuzz::refused([&] { parse_bundle(in, "fuzz bundle"); });
  fuzz::refused([&] { scan_bundle(in, "fuzz bundle"); });
  return 0;
}
