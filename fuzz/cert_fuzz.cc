// Certificate intake (`install`, import, adopt): Certificate::parse on PEM or DER, and what
// is done with an accepted certificate; and the consumers' reading of a bundle file
// (parse_bundle, scan_bundle), whose bytes a damaged or hostile disk may hold. `import`
// decodes in a library context of its own per thread: what is taken must be taken there too,
// as the same certificate.
#include "core/cert.h"
#include "core/ossl.h"
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
    // Taken in a context of its own too, as the same certificate (checked only for what the
    // default context takes: a second parse of every input would halve this slow target).
    static const ossl::LibCtxPtr own(OSSL_LIB_CTX_new());  // outlives every certificate of it
    std::string own_der;
    if (fuzz::refused([&] { own_der = Certificate::parse(in, own.get()).der(); }) || own_der != c.der())
      __builtin_trap();
  });
  fuzz::refused([&] { refuse_private_keys(in); });
  fuzz::refused([&] { parse_bundle(in, "fuzz bundle"); });
  fuzz::refused([&] { scan_bundle(in, "fuzz bundle"); });
  return 0;
}
