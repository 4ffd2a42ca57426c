#include "core/db.h"

#include <openssl/rand.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>

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

Database load_database(int state_dirfd, bool* found) {
  auto text = fs::read_at(state_dirfd, std::string(layout::kDatabase), 256u << 20);
  if (found) *found = text && !text->empty();
  if (!text || text->empty()) return {};
  const std::string what = std::string(layout::kStateDir) + "/" + std::string(layout::kDatabase);
  try {
    json::value v = json::parse(*text);
    text.reset();  // the document holds it all now
    return from_document(v);
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, what + " is not a valid ptrust database (" + e.what() + ")");
  }
}

void save_database(int state_dirfd, const Database& db) {
  std::string text = db.serialize();
  // Never commit what could not be loaded again (names that are not file names, ...): the
  // same checks parse() makes, on the records (not a second parse of the whole text).
  try {
    db.validate();
  } catch (const std::exception& e) {
    throw Error(Code::kDatabaseInvalid, std::string("the database about to be written is not valid (") + e.what() + ")");
  }
  // The database holds only public material, but it is the helper's private state.
  fs::write_atomic(state_dirfd, std::string(layout::kDatabase), text, 0600);
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
