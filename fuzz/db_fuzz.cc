// The helper's database (load_database). Input that starts as an SQLite file is written to
// <state>/ptrust.db of a scratch root and loaded: a tampered or broken file must be refused
// with DATABASE_INVALID (or read, and then pass the records' checks), never crash. Any other
// input is the db.json of an older root: parse, and the round trip serialize -> parse ->
// serialize, which must be stable. An SQLite file is read by a narrow writer's queries too
// (DatabaseSession): the same contract.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <optional>
#include <string>

#include "core/db.h"
#include "core/fs.h"
#include "fuzz/fuzz.h"

namespace {

// One scratch state directory for the whole run (removed at exit). A plain array, not a
// static std::string: an exit handler registered while such a string is being initialized
// runs after its destructor (ASan: heap-use-after-free at exit).
char g_dir[] = "/tmp/ptrust-dbfuzz-XXXXXX";

int state_dir() {
  static int fd = [] {
    if (!::mkdtemp(g_dir)) __builtin_trap();
    std::atexit([] {
      for (const char* name : {"ptrust.db", "ptrust.db-journal"}) ::unlinkat(AT_FDCWD, (std::string(g_dir) + "/" + name).c_str(), 0);
      ::rmdir(g_dir);
    });
    return ::open(g_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  }();
  return fd;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace ptrust;
  static const char kMagic[] = "SQLite format 3";  // with its NUL: the first 16 bytes
  if (size >= sizeof kMagic && std::memcmp(data, kMagic, sizeof kMagic) == 0) {
    int dir = state_dir();
    ::unlinkat(dir, "ptrust.db-journal", 0);
    fs::write_atomic(dir, "ptrust.db", fuzz::bytes(data, size), 0600);
    std::optional<Database> whole;
    fuzz::refused([&] { whole = load_database(dir); });
    // A narrow writer's reads of the same file (install, uninstall, crl install), selecting a
    // record the whole read found. No comparison with it: a damaged index can answer other
    // rows than the table scan, and SQLite does not always notice.
    fuzz::refused([&] {
      auto session = DatabaseSession::open(dir);
      if (!session) return;
      CertSelector sel{.uuid = "0", .sha256 = "0", .subject_hash = 0};
      if (whole && !whole->certs.empty()) {
        const CertRecord& r = whole->certs[size % whole->certs.size()];
        sel = {r.uuid, r.sha256, r.subject_hash};
      }
      Database some = session->load(sel);
      Shapes shapes = session->shapes();
      for (const auto& [shape, n] : shapes)
        if (n == 0) __builtin_trap();
      for (const layout::StoreKey& k : {layout::StoreKey{CertType::kCa, "general"}, layout::StoreKey{CertType::kPinned, "x"}}) {
        (void)session->bundle(k);
        (void)session->next_in_store(k, sel.uuid);
        (void)session->mark(k);
      }
    });
    return 0;
  }
  std::string json(fuzz::bytes(data, size));
  fuzz::refused([&] {
    Database db = Database::parse(json, "fuzz db.json");
    std::string once = db.serialize();
    Database again = Database::parse(once, "reserialized");
    if (again.serialize() != once) __builtin_trap();
  });
  return 0;
}
