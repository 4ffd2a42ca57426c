#include "core/db.h"

#include <fcntl.h>
#include <limits.h>
#include <openssl/rand.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <tuple>
#include <unordered_map>

#include <boost/json.hpp>

#include "core/cert.h"
#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/x509.h"

namespace ptrust {

namespace json = boost::json;

std::vector<layout::StoreKey> CertRecord::stores() const {
  std::vector<layout::StoreKey> out;
  if (purposes.empty()) {
    out.push_back({type, "general"});
  } else {
    for (const auto& p : purposes) out.push_back({type, p});
  }
  return out;
}

bool in_store(CertType type, const std::vector<std::string>& purposes, const layout::StoreKey& k) {
  if (type != k.type) return false;
  if (purposes.empty()) return k.purpose == "general";
  return std::find(purposes.begin(), purposes.end(), k.purpose) != purposes.end();
}

const CertRecord* Database::find(const std::string& uuid) const {
  for (const auto& r : certs)
    if (r.uuid == uuid) return &r;
  return nullptr;
}

namespace {

std::string hash_hex(std::uint32_t h) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08x", h);
  return buf;
}

// The subject hash of a record written before the database kept it (decodes the subject only).
std::uint32_t subject_hash_of(const std::string& pem) {
  std::vector<DerCert> c;
  try {
    c = scan_bundle(pem, "the database");
  } catch (const Error&) {
  }
  if (c.size() != 1 || !c[0].subject) throw std::invalid_argument("a certificate in the database does not parse");
  return static_cast<std::uint32_t>(X509_NAME_hash_ex(c[0].subject.get(), nullptr, nullptr, nullptr));
}

json::object to_json(const CertRecord& r) {
  json::array ps;
  for (const auto& p : r.purposes) ps.emplace_back(p);
  return json::object{
      {"uuid", r.uuid},
      {"type", std::string(to_string(r.type))},
      {"purposes", std::move(ps)},
      {"sha256", r.sha256},
      {"sha1", r.sha1},
      {"subject", r.subject},
      {"issuer", r.issuer},
      {"serial", r.serial},
      {"not_before", r.not_before},
      {"not_after", r.not_after},
      {"key_type", r.key_type},
      {"key_bits", r.key_bits},
      {"installed_at", r.installed_at},
      {"pem", r.pem},
      {"subject_hash", hash_hex(r.subject_hash)},
  };
}

CertRecord cert_from_json(const json::value& v) {
  const json::object& o = v.as_object();
  CertRecord r;
  r.uuid = json::value_to<std::string>(o.at("uuid"));
  auto t = cert_type_from(o.at("type").as_string());
  if (!t) throw std::invalid_argument("bad type");
  r.type = *t;
  for (const auto& p : o.at("purposes").as_array()) r.purposes.push_back(json::value_to<std::string>(p));
  r.sha256 = json::value_to<std::string>(o.at("sha256"));
  r.sha1 = json::value_to<std::string>(o.at("sha1"));
  r.subject = json::value_to<std::string>(o.at("subject"));
  r.issuer = json::value_to<std::string>(o.at("issuer"));
  r.serial = json::value_to<std::string>(o.at("serial"));
  r.not_before = o.at("not_before").to_number<std::int64_t>();
  r.not_after = o.at("not_after").to_number<std::int64_t>();
  r.key_type = json::value_to<std::string>(o.at("key_type"));
  r.key_bits = o.at("key_bits").to_number<int>();
  r.installed_at = o.at("installed_at").to_number<std::int64_t>();
  r.pem = json::value_to<std::string>(o.at("pem"));
  if (const auto* h = o.if_contains("subject_hash")) {
    const json::string& x = h->as_string();
    char* end = nullptr;
    unsigned long v = x.size() == 8 ? std::strtoul(x.c_str(), &end, 16) : 0;
    if (!end || *end) throw std::invalid_argument("malformed subject_hash");
    r.subject_hash = static_cast<std::uint32_t>(v);
  } else {
    r.subject_hash = subject_hash_of(r.pem);
  }
  return r;
}

}  // namespace

bool valid_uuid(std::string_view u) noexcept {
  if (u.size() != 36) return false;
  for (size_t i = 0; i < u.size(); ++i) {
    char c = u[i];
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

namespace {

std::string str(const json::object& o, const char* k) { return json::value_to<std::string>(o.at(k)); }
std::int64_t num(const json::object& o, const char* k) { return o.at(k).to_number<std::int64_t>(); }

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

std::vector<std::string> strings_from(const json::value& v) {
  std::vector<std::string> out;
  for (const auto& s : v.as_array()) out.push_back(json::value_to<std::string>(s));
  return out;
}

json::object to_json(const CrlRecord& r) {
  json::object o{{"name", r.name},         {"purposes", strings(r.purposes)}, {"issuer", r.issuer},
                 {"sha256", r.sha256},     {"last_update", r.last_update},    {"next_update", r.next_update},
                 {"installed_at", r.installed_at}, {"pem", r.pem}};
  // Written only when set: a database without deltas or --issuer keeps its bytes.
  if (!r.delta_base.empty()) o["delta_base"] = r.delta_base;
  if (!r.issuer_pem.empty()) o["issuer_pem"] = r.issuer_pem;
  return o;
}

CrlRecord crl_from_json(const json::object& o) {
  CrlRecord r{str(o, "name"),        strings_from(o.at("purposes")), str(o, "issuer"),      str(o, "sha256"),
              num(o, "last_update"), num(o, "next_update"),          num(o, "installed_at"), str(o, "pem"), "", ""};
  if (o.if_contains("delta_base")) r.delta_base = str(o, "delta_base");
  if (o.if_contains("issuer_pem")) r.issuer_pem = str(o, "issuer_pem");
  return r;
}

json::object to_json(const LegacyRecord& r) {
  return {{"name", r.name}, {"sha256", r.sha256}, {"subject", r.subject}, {"not_after", r.not_after},
          {"installed_at", r.installed_at}, {"pem", r.pem}};
}

LegacyRecord legacy_from_json(const json::object& o) {
  return {str(o, "name"), str(o, "sha256"), str(o, "subject"), num(o, "not_after"), num(o, "installed_at"),
          str(o, "pem")};
}

json::object to_json(const PoolRecord& r) {
  return {{"host", r.host}, {"staged", r.staged}, {"sha256", r.sha256}, {"subject", r.subject},
          {"not_after", r.not_after}, {"installed_at", r.installed_at}, {"pem", r.pem}};
}

PoolRecord pool_from_json(const json::object& o) {
  return {str(o, "host"), o.at("staged").as_bool(), str(o, "sha256"), str(o, "subject"), num(o, "not_after"),
          num(o, "installed_at"), str(o, "pem")};
}

}  // namespace

void Database::canonicalize() {
  std::sort(certs.begin(), certs.end(), [](const auto& a, const auto& b) { return a.uuid < b.uuid; });
  std::sort(crls.begin(), crls.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(legacy.begin(), legacy.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  std::sort(pool.begin(), pool.end(), [](const auto& a, const auto& b) { return a.file() < b.file(); });
}

namespace {

// Converts a parsed database document into records, freeing each element of the document as
// soon as it is converted: the peak is about one copy of the data, not the document plus the
// records (10,000 certificates: a ~10 MB file).
Database from_document(json::value& v) {
  Database db;
  json::object& o = v.as_object();
  if (o.at("format").as_string() != "ptrust-db") throw std::invalid_argument("not a ptrust database");
  if (o.at("version").to_number<int>() != Database::kVersion) throw std::invalid_argument("unsupported version");
  json::array& cs = o.at("certificates").as_array();
  db.certs.reserve(cs.size());
  for (auto& c : cs) {
    db.certs.push_back(cert_from_json(c));
    c = nullptr;
  }
  if (auto* a = o.if_contains("crls"))
    for (auto& c : a->as_array()) {
      db.crls.push_back(crl_from_json(c.as_object()));
      c = nullptr;
    }
  if (auto* a = o.if_contains("legacy"))
    for (auto& c : a->as_array()) {
      db.legacy.push_back(legacy_from_json(c.as_object()));
      c = nullptr;
    }
  if (auto* a = o.if_contains("pool"))
    for (auto& c : a->as_array()) {
      db.pool.push_back(pool_from_json(c.as_object()));
      c = nullptr;
    }
  db.validate();
  return db;
}

}  // namespace

Database Database::parse(const std::string& text, const std::string& what) {
  try {
    json::value v = json::parse(text);
    return from_document(v);
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, what + " is not a valid ptrust database (" + e.what() + ")");
  }
}

void Database::validate() const {
  for (const auto& r : certs)
    if (!valid_uuid(r.uuid)) throw std::invalid_argument("malformed uuid '" + r.uuid + "'");
  // Every name that becomes a path is checked again: the database is input too.
  for (const auto& r : certs)
    for (const auto& p : r.purposes)
      if (!valid_purpose_name(p)) throw std::invalid_argument("invalid purpose '" + p + "'");
  for (const auto& r : crls) {
    if (!layout::valid_file_name(r.name)) throw std::invalid_argument("invalid CRL name '" + r.name + "'");
    for (const auto& p : r.purposes)
      if (!valid_purpose_name(p)) throw std::invalid_argument("invalid purpose '" + p + "'");
  }
  for (const auto& r : legacy)
    if (!layout::valid_legacy_name(r.name)) throw std::invalid_argument("invalid legacy name '" + r.name + "'");
  for (const auto& r : pool)
    if (!valid_uuid(r.host)) throw std::invalid_argument("invalid pool host '" + r.host + "'");
}

std::string Database::serialize() const {
  // The bytes json::serialize gives for {"format", "version", "certificates", "crls",
  // "legacy", "pool"} with records in canonical order, written record by record: no copy of
  // the database and no document of the whole (the peak of a write at 10,000 certificates).
  auto sorted = [](const auto& v, auto key) {
    std::vector<const typename std::decay_t<decltype(v)>::value_type*> out;
    out.reserve(v.size());
    for (const auto& r : v) out.push_back(&r);
    std::sort(out.begin(), out.end(), [&](const auto* a, const auto* b) { return key(*a) < key(*b); });
    return out;
  };
  size_t estimate = 128;
  for (const auto& r : certs) estimate += r.pem.size() + 768;
  for (const auto& r : crls) estimate += r.pem.size() + r.issuer_pem.size() + 512;
  for (const auto& r : legacy) estimate += r.pem.size() + 512;
  for (const auto& r : pool) estimate += r.pem.size() + 512;
  std::string out;
  out.reserve(estimate);
  auto array = [&](const char* name, const auto& records) {
    out += ",\"";
    out += name;
    out += "\":[";
    bool first = true;
    for (const auto* r : records) {
      if (!first) out += ',';
      first = false;
      out += json::serialize(to_json(*r));
    }
    out += ']';
  };
  out += "{\"format\":\"ptrust-db\",\"version\":" + std::to_string(kVersion);
  array("certificates", sorted(certs, [](const CertRecord& r) -> const std::string& { return r.uuid; }));
  array("crls", sorted(crls, [](const CrlRecord& r) -> const std::string& { return r.name; }));
  array("legacy", sorted(legacy, [](const LegacyRecord& r) -> const std::string& { return r.name; }));
  array("pool", sorted(pool, [](const PoolRecord& r) { return r.file(); }));
  out += "}\n";
  return out;
}

// ---- The database file: SQLite -------------------------------------------------------------
//
// <state>/ptrust.db (0600). One transaction per change is the commit point; a write touches
// the rows it changes (save_database diffs the records against `before`), so its cost grows
// with the change, not with the store. Rollback journal (journal_mode=DELETE), not WAL: every
// ptrust process is short-lived and writers are serialized by the writer lock anyway, so WAL's
// concurrent readers buy nothing, while its -wal/-shm files would be created by readers too
// (a reader would change the root) and a closing connection checkpoints with as many fsyncs
// as a journal commit. A reader (read-only) leaves nothing behind; a writer's journal exists
// only during its commit, and a hot journal left by a killed writer is rolled back by the
// next process that opens the database. A root written before ptrust.db existed
// has db.json: it is read as it is, and the first write creates ptrust.db from it in one
// step (built beside, made durable, renamed into place) and then removes db.json.

namespace {

constexpr std::int32_t kApplicationId = 0x70747275;  // "ptru"
constexpr const char* kSchema =
    "CREATE TABLE certs(uuid TEXT PRIMARY KEY NOT NULL, type TEXT NOT NULL, purposes TEXT NOT NULL,"
    " sha256 TEXT NOT NULL, sha1 TEXT NOT NULL, subject TEXT NOT NULL, issuer TEXT NOT NULL,"
    " serial TEXT NOT NULL, not_before INTEGER NOT NULL, not_after INTEGER NOT NULL, key_type TEXT NOT NULL,"
    " key_bits INTEGER NOT NULL, installed_at INTEGER NOT NULL, subject_hash INTEGER NOT NULL, pem TEXT NOT NULL);"
    "CREATE TABLE crls(name TEXT PRIMARY KEY NOT NULL, record TEXT NOT NULL);"
    "CREATE TABLE legacy(name TEXT PRIMARY KEY NOT NULL, record TEXT NOT NULL);"
    "CREATE TABLE pool(file TEXT PRIMARY KEY NOT NULL, record TEXT NOT NULL);";
// What narrow writes (DatabaseSession) query by, and the marks of the bundles they wrote. A
// database made before them gets these with its first narrow commit; no reader needs them.
constexpr const char* kNarrowSchema =
    "CREATE INDEX IF NOT EXISTS certs_sha256 ON certs(sha256);"
    "CREATE INDEX IF NOT EXISTS certs_subject_hash ON certs(subject_hash);"
    "CREATE INDEX IF NOT EXISTS certs_shape ON certs(type, purposes);"
    "CREATE TABLE IF NOT EXISTS bundles(store TEXT PRIMARY KEY NOT NULL, sha256 TEXT NOT NULL,"
    " generation INTEGER NOT NULL);";

std::string db_what() { return std::string(layout::kStateDir) + "/" + std::string(layout::kDatabase); }

// A read-only connection found the hot journal of a killed writer (see load_database).
struct HotJournal {};

[[noreturn]] void db_fail(sqlite3* db, const std::string& doing) {
  const int code = db ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
  if (code == SQLITE_READONLY_ROLLBACK) throw HotJournal{};
  const std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
  const int primary = code & 0xff;
  // A full or failing disk is an I/O error; anything else about the file is a bad database.
  if (primary == SQLITE_FULL || primary == SQLITE_IOERR || primary == SQLITE_CANTOPEN || primary == SQLITE_READONLY ||
      primary == SQLITE_PERM || primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
    throw Error(Code::kIoError, "cannot " + doing + " " + db_what() + ": " + msg);
  throw Error(Code::kDatabaseInvalid, db_what() + " is not a valid ptrust database (" + doing + ": " + msg + ")");
}

struct Conn {
  sqlite3* db = nullptr;
  Conn() = default;
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() { sqlite3_close_v2(db); }
  void exec(const char* sql, const char* doing) {
    if (sqlite3_exec(db, sql, nullptr, nullptr, nullptr) != SQLITE_OK) db_fail(db, doing);
  }
};

class Stmt {
 public:
  Stmt(sqlite3* db, const char* sql) : db_(db) {
    if (sqlite3_prepare_v2(db, sql, -1, &s_, nullptr) != SQLITE_OK) db_fail(db, "prepare");
  }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  ~Stmt() { sqlite3_finalize(s_); }
  Stmt& text(int i, std::string_view v) {
    if (sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_STATIC) != SQLITE_OK) db_fail(db_, "bind");
    return *this;
  }
  Stmt& int64(int i, std::int64_t v) {
    if (sqlite3_bind_int64(s_, i, v) != SQLITE_OK) db_fail(db_, "bind");
    return *this;
  }
  bool step(const char* doing) {  // true: a row
    int rc = sqlite3_step(s_);
    if (rc == SQLITE_ROW) return true;
    if (rc != SQLITE_DONE) db_fail(db_, doing);
    return false;
  }
  void run(const char* doing) {
    step(doing);
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }
  std::string col_text(int i) const {
    // The type first: sqlite3_column_text converts a BLOB (or a number) to text, after which
    // sqlite3_column_type is undefined (SQLite says so; here it answered TEXT for a BLOB, and
    // a row's PEM of bytes x'01' was read as text).
    if (sqlite3_column_type(s_, i) != SQLITE_TEXT) throw std::invalid_argument("a text column is not text");
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(s_, i));
    if (!p) throw std::invalid_argument("a text column is not text");
    return std::string(p, static_cast<size_t>(sqlite3_column_bytes(s_, i)));
  }
  std::int64_t col_int(int i) const {
    if (sqlite3_column_type(s_, i) != SQLITE_INTEGER) throw std::invalid_argument("an integer column is not an integer");
    return sqlite3_column_int64(s_, i);
  }

 private:
  sqlite3* db_;
  sqlite3_stmt* s_ = nullptr;
};

// The state directory's path, for SQLite (which opens by name): the kernel's name of the
// descriptor the caller opened without following symlinks, checked to be that directory.
std::string state_path(int dirfd) {
  char buf[PATH_MAX + 1];
  const std::string link = "/proc/self/fd/" + std::to_string(dirfd);
  ssize_t n = ::readlink(link.c_str(), buf, PATH_MAX);
  if (n <= 0) throw_errno(Code::kIoError, "cannot name the state directory");
  std::string path(buf, static_cast<size_t>(n));
  struct stat a, b;
  if (path.front() != '/' || ::fstat(dirfd, &a) != 0 || ::stat(path.c_str(), &b) != 0 || a.st_dev != b.st_dev ||
      a.st_ino != b.st_ino)
    throw Error(Code::kIoError, "cannot name the state directory (" + path + ")");
  return path;
}

// SQLITE_OPEN_NOFOLLOW: no symlink anywhere in the path. Never created here. Readers open it
// read-only: a file opened for writing signals IN_CLOSE_WRITE when closed, which the daemon
// (watching the state directory) would take for a change, every time it reads. Defensive
// mode: the file is input.
void open_db(Conn& c, const std::string& path, bool write) {
  const int flags = (write ? SQLITE_OPEN_READWRITE : SQLITE_OPEN_READONLY) | SQLITE_OPEN_NOFOLLOW |
                    SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_PRIVATECACHE;
  if (sqlite3_open_v2(path.c_str(), &c.db, flags, nullptr) != SQLITE_OK) db_fail(c.db, "open");
  sqlite3_extended_result_codes(c.db, 1);
  sqlite3_db_config(c.db, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
  sqlite3_db_config(c.db, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
  sqlite3_busy_timeout(c.db, 30000);
}

std::string join_purposes(const std::vector<std::string>& ps) {
  std::string out;
  for (const auto& p : ps) {
    if (!out.empty()) out += ',';
    out += p;
  }
  return out;
}

std::vector<std::string> split_purposes(const std::string& s) {
  std::vector<std::string> out;
  size_t at = 0;
  while (at < s.size()) {
    size_t comma = s.find(',', at);
    if (comma == std::string::npos) comma = s.size();
    out.push_back(s.substr(at, comma - at));
    at = comma + 1;
  }
  return out;
}

constexpr const char* kCertColumns =
    "SELECT uuid,type,purposes,sha256,sha1,subject,issuer,serial,not_before,not_after,key_type,key_bits,"
    "installed_at,subject_hash,pem FROM certs";

CertType type_from(const std::string& text) {
  auto t = cert_type_from(text);
  if (!t) throw std::invalid_argument("bad type");
  return *t;
}

// A row of kCertColumns.
CertRecord cert_from_row(const Stmt& s) {
  CertRecord r;
  r.uuid = s.col_text(0);
  r.type = type_from(s.col_text(1));
  r.purposes = split_purposes(s.col_text(2));
  r.sha256 = s.col_text(3);
  r.sha1 = s.col_text(4);
  r.subject = s.col_text(5);
  r.issuer = s.col_text(6);
  r.serial = s.col_text(7);
  r.not_before = s.col_int(8);
  r.not_after = s.col_int(9);
  r.key_type = s.col_text(10);
  std::int64_t bits = s.col_int(11), hash = s.col_int(13);
  if (bits < 0 || bits > 1 << 20 || hash < 0 || hash > 0xffffffffLL) throw std::invalid_argument("bad number");
  r.key_bits = static_cast<int>(bits);
  r.installed_at = s.col_int(12);
  r.subject_hash = static_cast<std::uint32_t>(hash);
  r.pem = s.col_text(14);
  return r;
}

// The CRL, legacy and pool tables (a JSON record per row), in name order.
void read_other_tables(Conn& c, Database& db) {
  auto each_json = [&](const char* sql, auto add) {
    Stmt s(c.db, sql);
    while (s.step("read")) add(json::parse(s.col_text(0)).as_object());
  };
  each_json("SELECT record FROM crls ORDER BY name", [&](const json::object& o) { db.crls.push_back(crl_from_json(o)); });
  each_json("SELECT record FROM legacy ORDER BY name",
            [&](const json::object& o) { db.legacy.push_back(legacy_from_json(o)); });
  each_json("SELECT record FROM pool ORDER BY file", [&](const json::object& o) { db.pool.push_back(pool_from_json(o)); });
}

// The application id and schema version of a ptrust database.
void check_identity(Conn& c) {
  {
    Stmt s(c.db, "PRAGMA application_id");
    if (!s.step("read") || s.col_int(0) != kApplicationId) throw std::invalid_argument("not a ptrust database");
  }
  Stmt s(c.db, "PRAGMA user_version");
  if (!s.step("read") || s.col_int(0) != Database::kVersion) throw std::invalid_argument("unsupported version");
}

constexpr const char* kInsertCert =
    "INSERT OR REPLACE INTO certs(uuid,type,purposes,sha256,sha1,subject,issuer,serial,not_before,not_after,"
    "key_type,key_bits,installed_at,subject_hash,pem) VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)";

struct Writer {
  Stmt cert, crl, legacy, pool;
  Stmt del_cert, del_crl, del_legacy, del_pool;
  std::string scratch;
  explicit Writer(sqlite3* db)
      : cert(db, kInsertCert),
        crl(db, "INSERT OR REPLACE INTO crls(name,record) VALUES(?,?)"),
        legacy(db, "INSERT OR REPLACE INTO legacy(name,record) VALUES(?,?)"),
        pool(db, "INSERT OR REPLACE INTO pool(file,record) VALUES(?,?)"),
        del_cert(db, "DELETE FROM certs WHERE uuid=?"),
        del_crl(db, "DELETE FROM crls WHERE name=?"),
        del_legacy(db, "DELETE FROM legacy WHERE name=?"),
        del_pool(db, "DELETE FROM pool WHERE file=?") {}

  void put(const CertRecord& r) {
    scratch = join_purposes(r.purposes);
    cert.text(1, r.uuid).text(2, to_string(r.type)).text(3, scratch).text(4, r.sha256).text(5, r.sha1);
    cert.text(6, r.subject).text(7, r.issuer).text(8, r.serial).int64(9, r.not_before).int64(10, r.not_after);
    cert.text(11, r.key_type).int64(12, r.key_bits).int64(13, r.installed_at).int64(14, r.subject_hash);
    cert.text(15, r.pem).run("write");
  }
  void put(const CrlRecord& r) { put_json(crl, r.name, json::serialize(to_json(r))); }
  void put(const LegacyRecord& r) { put_json(legacy, r.name, json::serialize(to_json(r))); }
  void put(const PoolRecord& r) { put_json(pool, r.file(), json::serialize(to_json(r))); }
  void put_json(Stmt& s, const std::string& key, std::string text) {
    scratch = std::move(text);
    s.text(1, key).text(2, scratch).run("write");
  }
  void drop(const CertRecord& r) { del_cert.text(1, r.uuid).run("write"); }
  void drop(const CrlRecord& r) { del_crl.text(1, r.name).run("write"); }
  void drop(const LegacyRecord& r) { del_legacy.text(1, r.name).run("write"); }
  void drop(const PoolRecord& r) { del_pool.text(1, r.file()).run("write"); }
};

std::string key_of(const CertRecord& r) { return r.uuid; }
std::string key_of(const CrlRecord& r) { return r.name; }
std::string key_of(const LegacyRecord& r) { return r.name; }
std::string key_of(const PoolRecord& r) { return r.file(); }

// A record of `before` and one of `after` alike. A certificate record of a `before` made by
// without_cert_pem has no PEM: it is compared by everything else, its digest included.
bool same_record(const CertRecord& before, const CertRecord& after) {
  if (!before.pem.empty()) return before == after;
  auto fields = [](const CertRecord& r) {
    return std::tie(r.uuid, r.type, r.purposes, r.sha256, r.sha1, r.subject, r.issuer, r.serial, r.not_before,
                    r.not_after, r.key_type, r.key_bits, r.installed_at, r.subject_hash);
  };
  return fields(before) == fields(after);
}
template <typename Rec>
bool same_record(const Rec& before, const Rec& after) {
  return before == after;
}

// Calls put() for each record of `after` that is new or differs from `before`, drop() for
// each record of `before` that `after` no longer has: O(records) compares, O(change) writes.
template <typename Rec, typename Put, typename Drop>
void diff_records(const std::vector<Rec>& before, const std::vector<Rec>& after, Put put, Drop drop) {
  std::unordered_map<std::string, const Rec*> old;
  old.reserve(before.size());
  for (const auto& r : before) old.emplace(key_of(r), &r);
  for (const auto& r : after) {
    auto it = old.find(key_of(r));
    if (it == old.end()) {
      put(r);
      continue;
    }
    if (!same_record(*it->second, r)) put(r);
    old.erase(it);
  }
  for (const auto& [k, r] : old) drop(*r);
}

bool has_database_file(int dirfd) {
  auto st = fs::stat_at(dirfd, std::string(layout::kDatabase));
  if (!st) return false;
  if (!S_ISREG(st->st_mode)) throw Error(Code::kStoreUnsafe, db_what() + " is not a regular file");
  return st->st_size > 0;  // a zero-length file is no database (as a missing one)
}

Database read_sqlite(int dirfd, bool write) {
  Conn c;
  open_db(c, state_path(dirfd) + "/" + std::string(layout::kDatabase), write);
  Database db;
  try {
    c.exec("BEGIN", "read");  // one snapshot of every table
    check_identity(c);
    {
      Stmt s(c.db, (std::string(kCertColumns) + " ORDER BY uuid").c_str());
      while (s.step("read")) db.certs.push_back(cert_from_row(s));
    }
    read_other_tables(c, db);
    c.exec("COMMIT", "read");
    db.validate();
  } catch (const Error&) {
    throw;
  } catch (const HotJournal&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, db_what() + " is not a valid ptrust database (" + e.what() + ")");
  }
  return db;
}

void unlink_quiet(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) throw_errno(Code::kIoError, "cannot remove " + name);
}

void fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) throw_errno(Code::kIoError, "cannot fsync " + what);
}

// A whole new database file, built beside under a temp name, made durable, renamed into
// place: a crash leaves the old file (or db.json) or the new one, never a half-built one.
void create_sqlite(int dirfd, const Database& db) {
  const std::string tmp = std::string(fs::kTempPrefix) + std::string(layout::kDatabase);
  for (const char* suffix : {"", "-journal"}) unlink_quiet(dirfd, tmp + suffix);
  {
    int fd = ::openat(dirfd, tmp.c_str(), O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno(Code::kIoError, "cannot create " + tmp);
    fs::Fd guard(fd);
    if (::fchmod(fd, 0600) != 0) throw_errno(Code::kIoError, "cannot chmod " + tmp);
  }
  try {
    {
      Conn c;
      open_db(c, state_path(dirfd) + "/" + tmp, true);
      c.exec("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF", "create");
      c.exec(("PRAGMA application_id=" + std::to_string(kApplicationId) +
              "; PRAGMA user_version=" + std::to_string(Database::kVersion))
                 .c_str(),
             "create");
      c.exec("BEGIN", "create");
      c.exec(kSchema, "create");
      {
        Writer w(c.db);
        for (const auto& r : db.certs) w.put(r);
        for (const auto& r : db.crls) w.put(r);
        for (const auto& r : db.legacy) w.put(r);
        for (const auto& r : db.pool) w.put(r);
      }
      c.exec(kNarrowSchema, "create");  // after the rows: one sort per index, not a insert each
      c.exec("COMMIT", "create");
    }
    int fd = ::openat(dirfd, tmp.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) throw_errno(Code::kIoError, "cannot reopen " + tmp);
    fs::Fd guard(fd);
    fsync_fd(fd, tmp);
    const std::string name(layout::kDatabase);
    if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) throw_errno(Code::kIoError, "cannot rename " + tmp);
  } catch (...) {
    for (const char* suffix : {"", "-journal"}) ::unlinkat(dirfd, (tmp + suffix).c_str(), 0);
    throw;
  }
  fsync_fd(dirfd, std::string(layout::kStateDir));
  // db.json goes only after ptrust.db is durable; until then a crash leaves both, and
  // ptrust.db (complete, or absent) decides.
  if (fs::stat_at(dirfd, std::string(layout::kLegacyDatabase))) fs::remove_at(dirfd, std::string(layout::kLegacyDatabase));
}

}  // namespace

Database load_database(int state_dirfd, bool* found) {
  if (has_database_file(state_dirfd)) {
    if (found) *found = true;
    try {
      return read_sqlite(state_dirfd, false);
    } catch (const HotJournal&) {
      // A writer was killed during its commit: the first reader that can write rolls the
      // journal back (SQLite does, on opening read-write), as the next writer would.
      try {
        return read_sqlite(state_dirfd, true);
      } catch (const HotJournal&) {
        throw Error(Code::kIoError, db_what() + " has the journal of an interrupted write to roll back; run `ptrust sync`");
      }
    }
  }
  // A root from before ptrust.db: db.json, read as it is (the first write migrates it).
  auto text = fs::read_at(state_dirfd, std::string(layout::kLegacyDatabase), 256u << 20);
  if (found) *found = text && !text->empty();
  if (!text || text->empty()) return {};
  const std::string what = std::string(layout::kStateDir) + "/" + std::string(layout::kLegacyDatabase);
  try {
    json::value v = json::parse(*text);
    text.reset();  // the document holds it all now
    return from_document(v);
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, what + " is not a valid ptrust database (" + e.what() + ")");
  }
}

void save_database(int state_dirfd, const Database& db, const Database* before, const BundleMarks* marks) {
  // Never commit what could not be loaded again (names that are not file names, ...).
  try {
    db.validate();
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, std::string("the database about to be written is not valid (") + e.what() + ")");
  }
  if (!has_database_file(state_dirfd)) {
    // A narrow write's database is the records it read: never the whole of a new file.
    if (marks)
      throw Error(Code::kIoError, db_what() + " disappeared during this write; nothing was changed: restore it, or run `ptrust sync --adopt`");
    create_sqlite(state_dirfd, db);
    return;
  }
  Conn c;
  open_db(c, state_path(state_dirfd) + "/" + std::string(layout::kDatabase), true);
  // synchronous=FULL: the journal is durable before the file changes, and the file before the
  // journal goes; the change is durable when COMMIT returns. That is the commit point.
  c.exec("PRAGMA journal_mode=DELETE; PRAGMA synchronous=FULL", "write");
  c.exec("BEGIN IMMEDIATE", "write");
  {
    Writer w(c.db);
    auto put = [&](const auto& r) { w.put(r); };
    auto drop = [&](const auto& r) { w.drop(r); };
    if (before) {
      diff_records(before->certs, db.certs, put, drop);
      diff_records(before->crls, db.crls, put, drop);
      diff_records(before->legacy, db.legacy, put, drop);
      diff_records(before->pool, db.pool, put, drop);
    } else {  // no record of what is there: replace every row
      c.exec("DELETE FROM certs; DELETE FROM crls; DELETE FROM legacy; DELETE FROM pool", "write");
      for (const auto& r : db.certs) w.put(r);
      for (const auto& r : db.crls) w.put(r);
      for (const auto& r : db.legacy) w.put(r);
      for (const auto& r : db.pool) w.put(r);
    }
  }
  // The indexes and the marks table, in the first commit of a database made before them.
  c.exec(kNarrowSchema, "write");
  if (marks) {
    Stmt stale(c.db, "DELETE FROM bundles WHERE generation IS NOT ?");
    stale.int64(1, static_cast<std::int64_t>(marks->start)).run("write");
    Stmt moved(c.db, "UPDATE bundles SET generation=?");
    moved.int64(1, static_cast<std::int64_t>(marks->generation)).run("write");
    Stmt put(c.db, "INSERT OR REPLACE INTO bundles(store,sha256,generation) VALUES(?,?,?)");
    for (const auto& [store, sum] : marks->sha256)
      put.text(1, store).text(2, sum).int64(3, static_cast<std::int64_t>(marks->generation)).run("write");
  } else {
    c.exec("DELETE FROM bundles", "write");  // a whole write: no bundle is the last narrow write's any more
  }
  c.exec("COMMIT", "write");
}

Database without_cert_pem(const Database& db) {
  Database out;
  out.certs.reserve(db.certs.size());
  for (const auto& r : db.certs) {
    out.certs.push_back(r);
    std::string().swap(out.certs.back().pem);  // its memory, not only its length
  }
  out.crls = db.crls;
  out.legacy = db.legacy;
  out.pool = db.pool;
  return out;
}

bool same_content(const Database& a, const Database& b) {
  bool differ = false;
  auto mark = [&](const auto&) { differ = true; };
  diff_records(a.certs, b.certs, mark, mark);
  diff_records(a.crls, b.crls, mark, mark);
  diff_records(a.legacy, b.legacy, mark, mark);
  diff_records(a.pool, b.pool, mark, mark);
  return !differ;
}

void count_shapes(Shapes& s, const std::vector<CertRecord>& certs, int sign) {
  for (const auto& r : certs) {
    Shape k{r.type, r.purposes};
    if (sign > 0) {
      ++s[k];
    } else if (auto it = s.find(k); it != s.end() && --it->second == 0) {
      s.erase(it);
    }
  }
}

// ---- Narrow reads ---------------------------------------------------------------------------

struct DatabaseSession::Impl {
  Conn c;
  bool marks = false;  // the bundles table exists
};

DatabaseSession::DatabaseSession(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
DatabaseSession::~DatabaseSession() = default;

namespace {

// Runs `body` turning what a hostile file can make SQLite or the parsers throw into
// DATABASE_INVALID (I/O errors stay IO_ERROR).
template <typename Body>
auto guarded(Body body) -> decltype(body()) {
  try {
    return body();
  } catch (const Error&) {
    throw;
  } catch (const HotJournal&) {
    throw Error(Code::kIoError, db_what() + " has the journal of an interrupted write to roll back; run `ptrust sync`");
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, db_what() + " is not a valid ptrust database (" + e.what() + ")");
  }
}

}  // namespace

std::unique_ptr<DatabaseSession> DatabaseSession::open(int state_dirfd) {
  if (!has_database_file(state_dirfd)) return nullptr;
  auto impl = std::make_unique<Impl>();
  try {
    open_db(impl->c, state_path(state_dirfd) + "/" + std::string(layout::kDatabase), false);
    check_identity(impl->c);
    Stmt s(impl->c.db, "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='bundles'");
    impl->marks = s.step("read") && s.col_int(0) == 1;
  } catch (const HotJournal&) {
    return nullptr;  // a killed writer's journal: the whole path rolls it back (load_database)
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, db_what() + " is not a valid ptrust database (" + e.what() + ")");
  }
  return std::unique_ptr<DatabaseSession>(new DatabaseSession(std::move(impl)));
}

Database DatabaseSession::load(const CertSelector& sel) {
  return guarded([&] {
    Database db;
    Conn& c = impl_->c;
    c.exec("BEGIN", "read");  // one snapshot of every table
    {
      // Each arm on its own index (OR of indexed terms: one lookup each, no scan).
      Stmt s(c.db, (std::string(kCertColumns) +
                    " WHERE uuid=?1 OR sha256=?2 OR subject_hash=?3"
                    " OR subject_hash IN (SELECT subject_hash FROM certs WHERE uuid=?1) ORDER BY uuid")
                       .c_str());
      s.text(1, sel.uuid).text(2, sel.sha256).int64(3, sel.subject_hash ? std::int64_t{*sel.subject_hash} : -1);
      while (s.step("read")) db.certs.push_back(cert_from_row(s));
    }
    read_other_tables(c, db);
    c.exec("COMMIT", "read");
    db.validate();
    return db;
  });
}

Shapes DatabaseSession::shapes() {
  return guarded([&] {
    Shapes out;
    Stmt s(impl_->c.db, "SELECT type,purposes,count(*) FROM certs GROUP BY type,purposes");
    while (s.step("read")) {
      Shape k{type_from(s.col_text(0)), split_purposes(s.col_text(1))};
      for (const auto& p : k.purposes)
        if (!valid_purpose_name(p)) throw std::invalid_argument("invalid purpose '" + p + "'");
      out[std::move(k)] += static_cast<std::size_t>(s.col_int(2));
    }
    return out;
  });
}

std::string DatabaseSession::bundle(const layout::StoreKey& k) {
  return guarded([&] {
    std::string out;
    Stmt s(impl_->c.db, "SELECT type,purposes,pem FROM certs ORDER BY uuid");
    while (s.step("read"))
      if (in_store(type_from(s.col_text(0)), split_purposes(s.col_text(1)), k)) out += s.col_text(2);
    return out;
  });
}

std::optional<std::string> DatabaseSession::next_in_store(const layout::StoreKey& k, const std::string& uuid) {
  return guarded([&]() -> std::optional<std::string> {
    Stmt s(impl_->c.db, "SELECT type,purposes,pem FROM certs WHERE uuid>? ORDER BY uuid");
    s.text(1, uuid);
    while (s.step("read"))
      if (in_store(type_from(s.col_text(0)), split_purposes(s.col_text(1)), k)) return s.col_text(2);
    return std::nullopt;
  });
}

std::optional<BundleMark> DatabaseSession::mark(const layout::StoreKey& k) {
  if (!impl_->marks) return std::nullopt;
  return guarded([&]() -> std::optional<BundleMark> {
    Stmt s(impl_->c.db, "SELECT sha256,generation FROM bundles WHERE store=?");
    const std::string store = layout::store_dir(k);
    s.text(1, store);
    if (!s.step("read")) return std::nullopt;
    try {
      return BundleMark{s.col_text(0), static_cast<std::uint64_t>(s.col_int(1))};
    } catch (const std::invalid_argument&) {  // a malformed mark is none: the records' bundle is read
      return std::nullopt;
    }
  });
}

std::string new_uuid() {
  unsigned char b[16];
  if (RAND_bytes(b, sizeof b) != 1) throw Error(Code::kIoError, "no randomness for a UUID");
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  // 8-4-4-4-12 groups of the 16 bytes.
  std::span<const unsigned char> all(b);
  return x509::hex_lower(all.subspan(0, 4)) + "-" + x509::hex_lower(all.subspan(4, 2)) + "-" +
         x509::hex_lower(all.subspan(6, 2)) + "-" + x509::hex_lower(all.subspan(8, 2)) + "-" +
         x509::hex_lower(all.subspan(10, 6));
}

}  // namespace ptrust
