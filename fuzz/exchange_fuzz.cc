// The pool exchange document (`ptrust import`): document_purposes, parse_export (which vets
// every object as install does) and the merge into an empty database.
#include "core/exchange.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  static const Config cfg = default_config();
  std::string doc(fuzz::bytes(data, size));
  fuzz::refused([&] { document_purposes(doc); });
  fuzz::refused([&] {
    Incoming in = parse_export(doc, cfg);
    ImportPlan plan;
    Database merged = merge_import(Database{}, in, plan);
    // What an import writes is a database every later command reads back.
    Database::parse(merged.serialize(), "merged");
  });
  return 0;
}
