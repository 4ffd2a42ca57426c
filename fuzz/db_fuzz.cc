// The helper's database (var/lib/ptrust/db.json, load_database): parse, and the round trip
// serialize -> parse -> serialize, which must be stable (every write re-reads what it wrote).
#include "core/db.h"
#include "fuzz/fuzz.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  std::string json(fuzz::bytes(data, size));
  fuzz::refused([&] {
    Database db = Database::parse(json, "fuzz db.json");
    std::string once = db.serialize();
    Database again = Database::parse(once, "reserialized");
    if (again.serialize() != once) __builtin_trap();
  });
  return 0;
}
