// CRL intake (`crl install`, import, adopt, consumers reading etc/stunnel/crls): parse_crl
// and the full vetting of records.h (vet_crl), unscoped and scoped to a purpose.
#include "core/config.h"
#include "core/crl.h"
#include "core/records.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  static const Config cfg = default_config();
  std::string_view in = fuzz::bytes(data, size);
  ossl::X509CrlPtr crl = parse_crl(in);
  fuzz::refused([&] {
    CrlRecord r = vet_crl(in, "fuzz.crl", {}, cfg, 0);
    // The stored re-encoding must be a CRL again.
    if (!parse_crl(r.pem)) __builtin_trap();
  });
  fuzz::refused([&] { vet_crl(in, "fuzz.crl", {"licensing"}, cfg, 0); });
  return 0;
}
