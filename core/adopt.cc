#include "core/adopt.h"

#include <sys/stat.h>

#include <map>
#include <optional>
#include <set>

#include <boost/json.hpp>

#include "core/cert.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/records.h"
#include "core/x509.h"

namespace ptrust {

namespace {

constexpr size_t kMaxInput = 1u << 20;  // what every intake command reads at most

std::string join(std::string_view a, std::string_view b) { return std::string(a) + "/" + std::string(b); }

bool is_temp(const std::string& name) { return name.rfind(fs::kTempPrefix, 0) == 0; }

// Runs one intake check; a refusal names the file it was about.
template <typename F>
auto at(const std::string& path, F f) -> decltype(f()) {
  try {
    return f();
  } catch (const Error& e) {
    throw Error(e.code(), path + ": " + e.what() + "; nothing was adopted");
  }
}

[[noreturn]] void cannot_adopt(Code code, const std::string& path, const std::string& why) {
  throw Error(code, path + ": " + why + "; move it aside (and install it again after adopting) or remove it; "
                                        "nothing was adopted");
}

// The content of a regular file of a store (a symlink or anything else is STORE_UNSAFE).
std::string read_store_file(int dirfd, const fs::Entry& e, const std::string& path) {
  if (e.type != S_IFREG) cannot_adopt(Code::kStoreUnsafe, path, "not a regular file");
  auto data = at(path, [&] { return fs::read_at(dirfd, e.name, kMaxInput); });
  if (!data) cannot_adopt(Code::kStoreUnreadable, path, "vanished while it was read");
  return *data;
}

std::string cert_sha256(const std::string& pem) { return Certificate::parse(pem).info().sha256; }

// A derived file (hash entry or bundle) may only repeat what the adopted files hold: it is
// rewritten from them, so anything else in it would be lost silently.
void check_hash_entry(int dirfd, const fs::Entry& e, const std::string& path, const std::set<std::string>& have,
                      bool crl) {
  if (e.type == S_IFLNK) return;  // never followed; the sync after adopting reports and removes it
  std::string data = read_store_file(dirfd, e, path);
  std::string sha;
  if (crl) {
    auto c = parse_crl(data);
    if (!c) cannot_adopt(Code::kStoreCorrupt, path, "a hash entry that is not a CRL");
    sha = x509::fingerprint(c.get(), EVP_sha256());
  } else {
    sha = at(path, [&] { return cert_sha256(data); });
  }
  if (!have.count(sha)) cannot_adopt(Code::kStoreCorrupt, path, "a hash entry holding an object no file of its directory holds");
}

// Calls `f(entry, path)` for each certificate file of a store directory (a killed writer's
// temp files skipped), then checks its OpenSSL hash entries against `have`, which `f` fills.
template <typename F>
void each_store_file(int dirfd, const std::string& dir_path, const std::set<std::string>& have, F f) {
  std::vector<fs::Entry> hash_entries;
  for (const auto& e : fs::list_dir(dirfd)) {
    if (is_temp(e.name)) continue;
    if (layout::is_hash_link_name(e.name)) {
      hash_entries.push_back(e);
      continue;
    }
    f(e, join(dir_path, e.name));
  }
  for (const auto& e : hash_entries) check_hash_entry(dirfd, e, join(dir_path, e.name), have, false);
}

void check_bundle(int dirfd, const std::string& name, const std::string& path, const std::set<std::string>& have) {
  auto st = fs::stat_at(dirfd, name);
  if (!st) return;
  std::string data = read_store_file(dirfd, {name, static_cast<mode_t>(st->st_mode & S_IFMT), 0, 0}, path);
  for (const auto& x : parse_bundle(data, path))
    if (!have.count(x509::fingerprint(x.get(), EVP_sha256())))
      cannot_adopt(Code::kStoreCorrupt, path, "holds a certificate that no file of its store holds");
}

struct Found {
  CertType type;
  std::string pem;
  std::string path;  // first file seen, for messages
  bool general = false;
  std::vector<std::string> purposes;
};

void adopt_trusted(int root, const Config& cfg, std::time_t now, Database& db) {
  fs::Fd top = fs::open_dir(root, layout::kTrustedDir, false);
  if (!top) return;
  std::map<std::string, Found> by_uuid;
  std::map<layout::StoreKey, std::set<std::string>> store_sha;  // per store: SHA-256 of its certificates
  std::vector<std::pair<layout::StoreKey, std::string>> bundles;
  for (const auto& d : fs::list_dir(top.get())) {
    if (d.type != S_IFDIR) {
      if (auto k = layout::parse_bundle_file(d.name)) bundles.emplace_back(*k, d.name);
      continue;
    }
    auto key = layout::parse_store_dir(d.name);
    if (!key) continue;  // not a store (capath is derived; anything else is reported by sync)
    const std::string dir_path = join(layout::kTrustedDir, d.name);
    fs::Fd dir = fs::open_dir(top.get(), d.name, false);
    each_store_file(dir.get(), dir_path, store_sha[*key], [&](const fs::Entry& e, const std::string& path) {
      constexpr std::string_view kExt = ".pem";
      std::string uuid = e.name.size() > kExt.size() ? e.name.substr(0, e.name.size() - kExt.size()) : "";
      if (!valid_uuid(uuid) || e.name != layout::cert_file(uuid))
        cannot_adopt(Code::kTrustedCertificateInvalid, path, "not a <uuid>.pem file ptrust writes");
      std::string data = read_store_file(dir.get(), e, path);
      Certificate cert = at(path, [&] { return Certificate::parse(data); });
      auto [it, fresh] = by_uuid.try_emplace(uuid, Found{key->type, cert.pem(), path});
      Found& f = it->second;
      if (!fresh && (f.type != key->type || f.pem != cert.pem()))
        cannot_adopt(Code::kStoreCorrupt, path, "the same UUID as " + f.path + " with another type or certificate");
      if (key->purpose == kGeneral) f.general = true;
      else f.purposes.push_back(key->purpose);
      if (f.general && !f.purposes.empty())
        cannot_adopt(Code::kStoreCorrupt, path, "the same UUID in the general store and a purpose's store");
      store_sha[*key].insert(cert.info().sha256);
    });
  }
  for (const auto& [key, name] : bundles) check_bundle(top.get(), name, join(layout::kTrustedDir, name), store_sha[key]);
  for (auto& [uuid, found] : by_uuid) {
    auto& f = found;  // a lambda may not capture a structured binding before clang 16
    CertRecord r = at(f.path, [&] {
      return vet_trusted(Certificate::parse(f.pem), f.type, f.purposes, cfg, static_cast<std::int64_t>(now), now);
    });
    r.uuid = uuid;
    // The duplicate rule of install: same type and SHA-256 with overlapping purpose sets.
    for (const auto& o : db.certs) {
      if (o.type != r.type || o.sha256 != r.sha256) continue;
      for (const auto& a : o.stores())
        for (const auto& b : r.stores())
          if (a == b)
            cannot_adopt(Code::kTrustedCertificateAlreadyExists, f.path,
                         "the same certificate as " + o.uuid + " for an overlapping purpose set");
    }
    db.certs.push_back(std::move(r));
  }
}

// name → purposes of the CRLs limited to some purposes (the scope index ptrust writes).
std::map<std::string, std::vector<std::string>> crl_scope(int root) {
  std::map<std::string, std::vector<std::string>> out;
  fs::Fd state = fs::open_dir(root, layout::kStateDir, false);
  const std::string path = join(layout::kStateDir, layout::kCrlScopeFile);
  auto text = state ? at(path, [&] { return fs::read_at(state.get(), std::string(layout::kCrlScopeFile), kMaxInput); })
                    : std::nullopt;
  if (!text) return out;
  try {
    const boost::json::value doc = boost::json::parse(*text);
    for (const auto& kv : doc.as_object()) {
      auto& v = out[std::string(kv.key())];
      for (const auto& p : kv.value().as_array()) v.emplace_back(p.as_string());
    }
  } catch (const std::exception& e) {
    cannot_adopt(Code::kStoreCorrupt, path, std::string("malformed (") + e.what() + ")");
  }
  return out;
}

void adopt_crls(int root, const Config& cfg, std::time_t now, Database& db, std::vector<std::string>& warnings) {
  fs::Fd dir = fs::open_dir(root, layout::kCrlDir, false);
  if (!dir) return;
  auto scope = crl_scope(root);
  std::set<std::string> have;
  std::vector<fs::Entry> hash_entries;
  for (const auto& e : fs::list_dir(dir.get())) {
    const std::string path = join(layout::kCrlDir, e.name);
    if (is_temp(e.name)) continue;
    if (layout::is_hash_link_name(e.name)) {
      hash_entries.push_back(e);
      continue;
    }
    std::string data = read_store_file(dir.get(), e, path);
    auto it = scope.find(e.name);
    CrlRecord r = at(path, [&] {
      return vet_crl(data, e.name, it == scope.end() ? std::vector<std::string>{} : it->second, cfg,
                     static_cast<std::int64_t>(now));
    });
    if (r.next_update != 0 && r.next_update < now)
      warnings.push_back(path + " is past its nextUpdate (" + x509::format_time(r.next_update) + ")");
    have.insert(r.sha256);
    db.crls.push_back(std::move(r));
  }
  for (const auto& e : hash_entries) check_hash_entry(dir.get(), e, join(layout::kCrlDir, e.name), have, true);
  for (const auto& r : db.crls) at(join(layout::kCrlDir, r.name), [&] { check_crl_signature(db, r); });
}

// etc/stunnel/certs (legacy) and etc/stunnel/certs-pool: one certificate per file, a bundle.
template <typename Make>
void adopt_cert_dir(int root, std::string_view sub, std::string_view bundle, Make make) {
  fs::Fd stunnel = fs::open_dir(root, layout::kStunnelDir, false);
  fs::Fd dir = stunnel ? fs::open_dir(stunnel.get(), sub, false) : fs::Fd();
  const std::string dir_path = join(layout::kStunnelDir, sub);
  std::set<std::string> have;
  if (dir) {
    each_store_file(dir.get(), dir_path, have, [&](const fs::Entry& e, const std::string& path) {
      std::string data = read_store_file(dir.get(), e, path);
      Certificate cert = at(path, [&] { return Certificate::parse(data); });
      at(path, [&] { make(e.name, cert); });
      have.insert(cert.info().sha256);
    });
  }
  if (stunnel) check_bundle(stunnel.get(), std::string(bundle), join(layout::kStunnelDir, bundle), have);
}

}  // namespace

Adopted adopt_from_disk(int root, const Config& cfg, std::time_t now) {
  Adopted out;
  Database& db = out.db;
  const auto at_time = static_cast<std::int64_t>(now);
  adopt_trusted(root, cfg, now, db);
  adopt_cert_dir(root, layout::kLegacyDir, layout::kLegacyBundle, [&](const std::string& name, const Certificate& c) {
    db.legacy.push_back(vet_legacy(name, c, at_time, now));
  });
  adopt_cert_dir(root, layout::kPoolDir, layout::kPoolBundle, [&](const std::string& name, const Certificate& c) {
    constexpr std::string_view kStaged = ".new.pem", kCurrent = ".pem";
    const bool staged = name.size() > kStaged.size() && name.ends_with(kStaged);
    const size_t ext = staged ? kStaged.size() : kCurrent.size();
    std::string host = name.size() > ext && name.ends_with(kCurrent) ? name.substr(0, name.size() - ext) : name;
    PoolRecord r = vet_pool(host, staged, c, at_time, now);
    if (r.file() != name) throw Error(Code::kHostUuidInvalid, "not a <host-uuid>[.new].pem file ptrust writes");
    db.pool.push_back(std::move(r));
  });
  adopt_crls(root, cfg, now, db, out.warnings);  // after the CAs: a CRL's signature is checked against them
  db.canonicalize();
  return out;
}

std::vector<std::string> store_material(int root, size_t limit) {
  std::vector<std::string> out;
  auto add = [&](std::string p) {
    if (out.size() < limit) out.push_back(std::move(p));
  };
  auto dir_material = [&](int parent, const std::string& name, const std::string& path) {
    fs::Fd d = fs::open_dir(parent, name, false);
    if (!d) return;
    for (const auto& e : fs::list_dir(d.get()))
      if (!is_temp(e.name) && !layout::is_hash_link_name(e.name)) add(join(path, e.name));
  };
  if (fs::Fd top = fs::open_dir(root, layout::kTrustedDir, false)) {
    for (const auto& e : fs::list_dir(top.get())) {
      if (e.type == S_IFDIR && layout::parse_store_dir(e.name)) dir_material(top.get(), e.name, join(layout::kTrustedDir, e.name));
      else if (e.type != S_IFDIR && layout::parse_bundle_file(e.name)) add(join(layout::kTrustedDir, e.name));
    }
  }
  if (fs::Fd st = fs::open_dir(root, layout::kStunnelDir, false)) {
    for (std::string_view sub : {std::string_view("crls"), layout::kLegacyDir, layout::kPoolDir})
      if (auto s = fs::stat_at(st.get(), std::string(sub)); s && S_ISDIR(s->st_mode))
        dir_material(st.get(), std::string(sub), join(layout::kStunnelDir, sub));
    for (std::string_view b : {layout::kLegacyBundle, layout::kPoolBundle})
      if (fs::stat_at(st.get(), std::string(b))) add(join(layout::kStunnelDir, b));
  }
  return out;
}

}  // namespace ptrust
