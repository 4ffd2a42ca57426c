#include "core/reconcile.h"

#include "core/cert.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <unordered_map>
#include <span>

#include <boost/json.hpp>
#include <openssl/pem.h>

#include "core/capath.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/fs.h"

namespace ptrust {

std::string_view to_string(Drift::Kind k) noexcept {
  switch (k) {
    case Drift::Kind::kMissing: return "missing";
    case Drift::Kind::kRemnant: return "remnant";
    case Drift::Kind::kStale: return "stale";
    case Drift::Kind::kMode: return "mode";
    case Drift::Kind::kUnsafe: return "unsafe";
  }
  return "?";
}

namespace {

using layout::StoreKey;
constexpr size_t kMaxStoreFile = 256u << 20;

std::string join(std::string_view a, std::string_view b) { return std::string(a) + "/" + std::string(b); }

// Defence in depth: every name written or removed here is one path component.
const std::string& component(const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos)
    throw Error(Code::kDatabaseInvalid, "refusing to use '" + name + "' as a file name in a store");
  return name;
}

// ---- What an area must hold ------------------------------------------------------------

// An owned directory's wanted entries, sorted by name, each a view of its record's PEM (the
// database outlives every plan). A flat vector, not a map: at 10,000 certificates a store
// has 20,000 entries, built and searched on every write, and a node per entry cost more than
// a third of a write's CPU.
class Files {
 public:
  using Entry = std::pair<std::string, std::string_view>;
  void reserve(size_t n) { v_.reserve(n); }
  void add(std::string name, std::string_view content) { v_.emplace_back(std::move(name), content); }
  // Sorts what was added; of two entries with one name, the later added stays (a map's `[]=`).
  void finish() {
    std::stable_sort(v_.begin(), v_.end(), [](const Entry& a, const Entry& b) { return a.first < b.first; });
    auto out = v_.begin();
    for (auto it = v_.begin(); it != v_.end(); ++it) {
      if (std::next(it) != v_.end() && std::next(it)->first == it->first) continue;
      if (out != it) *out = std::move(*it);
      ++out;
    }
    v_.erase(out, v_.end());
  }
  // Position of `name` in iteration order, or size() when it is not wanted.
  size_t index_of(std::string_view name) const {
    auto it = std::lower_bound(v_.begin(), v_.end(), name, [](const Entry& e, std::string_view n) { return e.first < n; });
    return it != v_.end() && it->first == name ? static_cast<size_t>(it - v_.begin()) : v_.size();
  }
  std::string_view at(std::string_view name) const {
    if (size_t i = index_of(name); i < v_.size()) return v_[i].second;
    throw std::out_of_range("no such entry");
  }
  bool empty() const { return v_.empty(); }
  size_t size() const { return v_.size(); }
  auto begin() const { return v_.begin(); }
  auto end() const { return v_.end(); }

 private:
  std::vector<Entry> v_;
};

struct ManagedFile {
  std::string parent;  // relative directory
  std::string name;
  std::optional<std::string> content;  // nullopt: must not exist
  // With content "": the content is these views of records' PEM, in order (a bundle is never
  // copied into one string: 10 MB at 10,000 certificates).
  std::vector<std::string_view> parts;
};

struct Plan {
  std::string parent;  // relative directory holding the owned directory
  std::string dir;     // owned directory name ("" for none): holds exactly `files`
  // Views of the records' PEM: no copy of 10,000 certificates, twice (file and hash entry),
  // per write.
  Files files;
  std::vector<ManagedFile> managed;
  std::vector<std::string> top_allowed;  // kTrustedTop: names that belong to some store
  // A writer's plan (reconcile with `before`): the only entries of `dir` whose content the
  // change can have moved. Every other wanted entry is checked from the directory's names
  // alone (there, and a regular file by its d_type; no stat per entry): records are
  // immutable, so an entry the change did not touch is read (and its mode checked) only by
  // `sync`. nullopt: every entry is stat'ed, read and compared.
  std::optional<std::set<std::string>> changed;
  std::set<std::string> buckets;  // with `changed`: the hash buckets ("<8 hex>.") it moved
};

// OpenSSL hash-directory entries (<hash>.<n> for certificates, <hash>.r<n> for CRLs), so
// CApath / CRLpath consumers find them. A writer makes each a hard link to its record's file
// (owned_dir), never a symlink: nothing in a store is ever a symlink.
// `files` holds the entries to number (finished), in the order their numbers are given.
template <typename Hash>
void add_hash_entries(Files& files, const char* sep, Hash hash) {
  std::unordered_map<unsigned long, int> seen;
  std::vector<std::pair<std::string, std::string_view>> extra;
  extra.reserve(files.size());
  size_t i = 0;
  for (const auto& [name, content] : files) {
    unsigned long h = hash(i++, name, content);
    char buf[32];
    std::snprintf(buf, sizeof buf, "%08lx%s%d", h, sep, seen[h]++);
    extra.emplace_back(buf, content);
  }
  for (auto& e : extra) files.add(std::move(e.first), e.second);
  files.finish();
}

// Calls put(i, name, content, from) for each entry of `files` (i: its position): every
// record's own file first, then the hash entries, each with `from` naming the file that put()
// said holds the same record's bytes now (nullptr when none did), so that the hash entry
// becomes a hard link to it: no inode and no copy of the bytes per hash entry (an import of
// 10,000 CAs allocated 20,000 inodes for them, and inode allocation is what file creation
// costs most on a busy ext4). put() returns the name that holds its entry's bytes now, or
// nullopt when it did not write or read them whole.
template <typename Put>
void put_linked(const Files& files, Put put) {
  std::unordered_map<const char*, std::string> holder;  // a record's PEM → the file holding it
  for (const bool hash_pass : {false, true}) {
    size_t i = 0;
    for (const auto& [name, content] : files) {
      const size_t at = i++;
      if (layout::is_hash_link_name(name) != hash_pass) continue;
      const std::string* from = nullptr;
      if (hash_pass)
        if (auto it = holder.find(content.data()); it != holder.end()) from = &it->second;
      std::optional<std::string> held = put(at, name, content, from);
      if (!hash_pass && held) holder.emplace(content.data(), std::move(*held));
    }
  }
}

std::string hash_prefix(unsigned long h) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "%08lx.", h);
  return buf;
}

// The subject-name hash of a record's certificate, from its subject alone: decoding the whole
// certificate (its public key above all) costs ~10x more, for every record of every sync.
unsigned long cert_hash(size_t, const std::string&, std::string_view pem) {
  std::vector<DerCert> c;
  try {
    c = scan_bundle(pem, "the database");
  } catch (const Error&) {
  }
  if (c.size() != 1 || !c[0].subject) throw Error(Code::kDatabaseInvalid, "a certificate in the database does not parse");
  return X509_NAME_hash_ex(c[0].subject.get(), nullptr, nullptr, nullptr);
}

unsigned long crl_hash(size_t, const std::string&, std::string_view pem) {
  auto crl = parse_crl(pem);
  if (!crl) throw Error(Code::kDatabaseInvalid, "a CRL in the database does not parse");
  return X509_NAME_hash_ex(X509_CRL_get_issuer(crl.get()), nullptr, nullptr, nullptr);
}

// In uuid order. A loaded database is in uuid order already; a writer's change appends.
std::vector<const CertRecord*> records_in(const Database& db, const StoreKey& k) {
  std::vector<const CertRecord*> recs;
  recs.reserve(db.certs.size());
  for (const auto& r : db.certs)
    if (in_store(r, k)) recs.push_back(&r);
  auto by_uuid = [](const CertRecord* a, const CertRecord* b) { return a->uuid < b->uuid; };
  if (!std::is_sorted(recs.begin(), recs.end(), by_uuid)) std::sort(recs.begin(), recs.end(), by_uuid);
  return recs;
}

std::uint32_t subject_hash(const CertRecord& r) {
  // 0: a record made without it (kept at install, computed when an older database loads).
  return r.subject_hash ? r.subject_hash : static_cast<std::uint32_t>(cert_hash(0, "", r.pem));
}

// `before`: the database before a writer's change; the plan then names the entries it moved.
// `narrow`: the bundle and record count of a narrow writer (reconcile.h).
Plan trusted_plan(const Database& db, const StoreKey& k, const Database* before, const StoreBundle* narrow) {
  std::vector<const CertRecord*> recs = records_in(db, k);
  Plan p;
  p.parent = std::string(layout::kTrustedDir);
  p.dir = layout::store_dir(k);
  std::vector<std::string_view> bundle;
  bundle.reserve(recs.size());
  p.files.reserve(2 * recs.size());
  for (const auto* r : recs) {
    // "<uuid>.pem" sorts as the uuids do (every uuid has 36 characters): recs' order.
    p.files.add(layout::cert_file(r->uuid), r->pem);
    bundle.push_back(r->pem);
  }
  p.files.finish();
  if (p.files.size() == recs.size())
    add_hash_entries(p.files, ".", [&](size_t i, const std::string&, std::string_view) { return subject_hash(*recs[i]); });
  else  // two records with one uuid: validate() refuses such a database
    throw Error(Code::kDatabaseInvalid, "two certificates in the database have one uuid");
  if (narrow) bundle = narrow->parts;
  const bool holds = narrow ? narrow->records > 0 : !recs.empty();
  p.managed.push_back(
      {p.parent, layout::bundle_file(k), holds ? std::optional<std::string>("") : std::nullopt, std::move(bundle)});
  if (before) {
    // The records added or removed in this store, and the hash buckets they number in: a
    // merge of the two uuid-ordered lists.
    std::vector<const CertRecord*> was = records_in(*before, k);
    std::set<std::string> changed;
    std::set<std::string> buckets;
    auto moved = [&](const CertRecord& r) {
      changed.insert(layout::cert_file(r.uuid));
      buckets.insert(hash_prefix(subject_hash(r)));
    };
    size_t i = 0, j = 0;
    while (i < was.size() || j < recs.size()) {
      if (j == recs.size() || (i < was.size() && was[i]->uuid < recs[j]->uuid)) {
        moved(*was[i++]);  // removed
      } else if (i == was.size() || recs[j]->uuid < was[i]->uuid) {
        moved(*recs[j++]);  // added
      } else {
        // The digest, not the PEM: a writer's `before` holds no certificate PEM (a copy of
        // every certificate per write); a record's PEM is the canonical encoding of its DER.
        if (was[i]->sha256 != recs[j]->sha256) moved(*was[i]);
        ++i, ++j;
      }
    }
    // A hash entry is "<8 hex>.<n>": its bucket is its first 9 characters (one lookup per
    // entry; a scan of every bucket per entry was quadratic in an import of 10,000).
    for (const auto& [name, _] : p.files)
      if (layout::is_hash_link_name(name) && buckets.count(name.substr(0, 9))) changed.insert(name);
    p.changed = std::move(changed);
    p.buckets = std::move(buckets);
  }
  return p;
}

Plan crl_plan(const Database& db) {
  Plan p;
  p.parent = std::string(layout::kStunnelDir);
  p.dir = "crls";
  // The index is written in name order whatever order the records are in (an install appends,
  // a loaded database is canonical): the same records always give the same bytes.
  std::map<std::string, const CrlRecord*> by_name;
  for (const auto& c : db.crls) by_name[c.name] = &c;
  boost::json::object scope;
  for (const auto& [_, cp] : by_name) {
    const CrlRecord& c = *cp;
    p.files.add(c.name, c.pem);
    if (!c.purposes.empty()) {
      boost::json::array a;
      for (const auto& x : c.purposes) a.emplace_back(x);
      scope[c.name] = std::move(a);
    }
  }
  p.files.finish();
  add_hash_entries(p.files, ".r", crl_hash);
  // The scope index is public: consumers that drop privileges read it.
  p.managed.push_back({std::string(layout::kStateDir), std::string(layout::kCrlScopeFile),
                       scope.empty() ? std::nullopt : std::optional(boost::json::serialize(scope) + "\n")});
  return p;
}

template <typename Rec>
Plan bundle_dir_plan(const std::vector<Rec>& recs, std::string_view dir, std::string_view bundle_name,
                     bool staged_first) {
  Plan p;
  p.parent = std::string(layout::kStunnelDir);
  p.dir = std::string(dir);
  std::vector<std::pair<std::string, const std::string*>> order;
  for (const auto& r : recs) {
    std::string file;
    bool first = false;
    if constexpr (std::is_same_v<Rec, PoolRecord>) {
      file = r.file();
      first = staged_first && r.staged;
    } else {
      file = r.name;
    }
    p.files.add(file, r.pem);
    order.emplace_back((first ? "0" : "1") + file, &r.pem);
  }
  std::sort(order.begin(), order.end());
  std::string bundle;
  for (const auto& [key, pem] : order) bundle += *pem;
  p.files.finish();
  add_hash_entries(p.files, ".", cert_hash);
  p.managed.push_back({p.parent, std::string(bundle_name), recs.empty() ? std::nullopt : std::optional(bundle)});
  return p;
}

Plan top_plan() {
  Plan p;
  p.parent = std::string(layout::kTrustedDir);
  return p;
}

Plan plan_for(const Database& db, const Area& a, const Database* before, const StoreBundle* narrow) {
  switch (a.kind) {
    case Area::Kind::kTrustedStore: return trusted_plan(db, a.key, before, narrow);
    case Area::Kind::kTrustedTop: return top_plan();
    case Area::Kind::kCrl: return crl_plan(db);
    case Area::Kind::kLegacy: return bundle_dir_plan(db.legacy, layout::kLegacyDir, layout::kLegacyBundle, false);
    case Area::Kind::kPool: return bundle_dir_plan(db.pool, layout::kPoolDir, layout::kPoolBundle, true);
  }
  return {};
}

// ---- Making disk match a plan ----------------------------------------------------------

void remove_tree(int dirfd, const std::string& name) {
  auto st = fs::stat_at(dirfd, name);
  if (!st) return;
  if (S_ISDIR(st->st_mode)) {
    fs::Fd sub = fs::open_dir(dirfd, name, false);
    for (const auto& e : fs::list_dir(sub.get())) remove_tree(sub.get(), e.name);
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove directory " + name);
  } else {
    fs::remove_at(dirfd, name);
  }
}

void set_mode(int dirfd, const std::string& name, mode_t mode) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw_errno(Code::kIoError, "cannot open " + name);
  fs::Fd g(fd);
  if (::fchmod(fd, mode) != 0) throw_errno(Code::kIoError, "cannot chmod " + name);
}

std::string mode_detail(mode_t have, mode_t want) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mode %04o, expected %04o", have & 07777, want);
  return buf;
}

class Reconciler {
 public:
  Reconciler(int root, bool apply, std::vector<Drift>& out) : root_(root), apply_(apply), out_(out) {}

  void run(const Plan& p, const std::set<std::string>& top_known) {
    bool needed = !p.files.empty();
    for (const auto& m : p.managed) needed |= m.content.has_value();
    fs::Fd parent = fs::open_dir(root_, p.parent, apply_ && needed);
    if (!parent && needed) {  // checking only: the whole parent directory is gone
      if (!p.dir.empty() && !p.files.empty()) report(Drift::Kind::kMissing, join(p.parent, p.dir), "directory");
      for (const auto& m : p.managed)
        if (m.content && m.parent == p.parent) report(Drift::Kind::kMissing, join(m.parent, m.name), "");
    }
    if (parent && !p.dir.empty()) owned_dir(parent.get(), p, !p.files.empty());
    if (parent && p.dir.empty() && p.managed.empty()) top(parent.get(), p.parent, top_known);
    for (const auto& m : p.managed) {
      fs::Fd mp;
      if (m.parent == p.parent) {
        if (!parent) continue;
        mp = fs::Fd(::dup(parent.get()));
      } else {
        mp = fs::open_dir(root_, m.parent, apply_ && m.content.has_value());
      }
      if (!mp) continue;
      const std::string_view whole = m.content ? std::string_view(*m.content) : std::string_view();
      if (m.content)
        regular(mp.get(), m.name, join(m.parent, m.name),
                m.parts.empty() ? std::span<const std::string_view>(&whole, 1) : std::span<const std::string_view>(m.parts));
      else absent(mp.get(), m.name, join(m.parent, m.name));
    }
  }

 private:
  // A batch (fs::Batch) renames its files into place before anything is removed: wanted
  // files first, remnants after, and its temp files never look like remnants.
  static void settle() {
    if (fs::Batch* b = fs::Batch::active()) b->flush();
  }

  void report(Drift::Kind k, std::string path, std::string detail) {
    out_.push_back({k, std::move(path), std::move(detail)});
  }

  void owned_dir(int parent, const Plan& p, bool needed) {
    const std::string path = join(p.parent, p.dir);
    auto st = fs::stat_at(parent, component(p.dir));
    if (st && !S_ISDIR(st->st_mode)) {
      report(Drift::Kind::kUnsafe, path, "expected a directory");
      if (!apply_) return;
      remove_tree(parent, p.dir);
      st.reset();
    }
    if (!st) {
      if (!needed) return;
      report(Drift::Kind::kMissing, path, "directory");
      if (!apply_) return;
      if (fs::Batch::active()) return fresh_dir(parent, p, path);
    } else if ((st->st_mode & 07777) != fs::kDirMode) {
      report(Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kDirMode));
      if (apply_) set_mode(parent, p.dir, fs::kDirMode);
    }
    fs::Fd dir = fs::open_dir(parent, p.dir, apply_);
    std::vector<std::string> remnants;
    if (p.changed) {
      // A writer whose previous change finished (Store::apply) looks at the names its change
      // moved and nothing else: no listing of 20,000 entries. Its remnants are the moved names
      // no longer wanted (a removed record's file) and the entries past the end of a moved
      // hash bucket (a renumbering; `changed` holds wanted hash entries only). What the change
      // did not move is `sync`'s to check.
      for (const auto& name : *p.changed)
        if (p.files.index_of(name) == p.files.size() && fs::stat_at(dir.get(), component(name))) remnants.push_back(name);
      for (const auto& bucket : p.buckets)
        for (int n = 0;; ++n) {
          std::string name = bucket + std::to_string(n);
          if (p.files.index_of(name) < p.files.size()) continue;
          if (!fs::stat_at(dir.get(), name)) break;
          remnants.push_back(std::move(name));
        }
    } else {
      for (const auto& e : fs::list_dir(dir.get()))
        if (p.files.index_of(e.name) == p.files.size()) remnants.push_back(e.name);
    }
    std::sort(remnants.begin(), remnants.end());
    // Wanted files first, remnants after: a reader never sees a store emptier than either state.
    put_linked(p.files, [&](size_t, const std::string& name, std::string_view content,
                            const std::string* from) -> std::optional<std::string> {
      if (p.changed && !p.changed->count(name)) return std::nullopt;  // untouched: `sync` reads it
      return regular(dir.get(), name, join(path, name), std::span<const std::string_view>(&content, 1), from);
    });
    if (apply_ && !remnants.empty()) settle();
    for (const auto& name : remnants) {
      report(Drift::Kind::kRemnant, join(path, name), "no record owns it");
      if (apply_) remove_tree(dir.get(), name);
    }
  }

  // A directory that does not exist yet, in a batch (an import, a sync that rebuilds a store):
  // built whole under a temp name, its entries under their final names (each hash entry a
  // hard link to its record's file), and renamed into place by the batch's flush after one
  // syncfs made every entry durable: no temp name and no rename per file. Readers see no
  // directory, then the whole one.
  void fresh_dir(int parent, const Plan& p, const std::string& path) {
    // Not a structured binding: clang 14 cannot capture one in the lambda below.
    std::pair<std::string, fs::Fd> created = fs::create_temp_dir(parent);
    const std::string& tmp = created.first;
    const int dir = created.second.get();
    try {
      put_linked(p.files, [&](size_t, const std::string& name, std::string_view content,
                              const std::string* from) -> std::optional<std::string> {
        report(Drift::Kind::kMissing, join(path, component(name)), "");
        if (from) {
          if (::linkat(dir, from->c_str(), dir, name.c_str(), 0) != 0)
            throw_errno(Code::kIoError, "cannot link " + join(path, name));
          return std::nullopt;
        }
        fs::create_file(dir, name, content, fs::kFileMode, false);
        return name;
      });
      fs::Batch::active()->queue(parent, tmp, p.dir);
    } catch (...) {
      try {
        remove_tree(parent, tmp);
      } catch (...) {  // `sync` removes it
      }
      throw;
    }
  }

  void top(int dirfd, const std::string& path, const std::set<std::string>& known) {
    if (apply_) settle();  // a batch's pending temp files are not remnants
    for (const auto& e : fs::list_dir(dirfd)) {
      if (known.count(e.name)) continue;
      report(Drift::Kind::kRemnant, join(path, e.name), "not part of any store");
      if (apply_) remove_tree(dirfd, e.name);
    }
  }

  void absent(int dirfd, const std::string& name, const std::string& path) {
    if (!fs::stat_at(dirfd, component(name))) return;
    report(Drift::Kind::kRemnant, path, "must not exist while its store is empty");
    if (apply_) {
      settle();
      remove_tree(dirfd, name);
    }
  }

  // `content`: the file's bytes, the concatenation of these parts. `from`: a file in the same
  // directory known to hold exactly `content` (written or read whole in this pass): a
  // missing or stale `name` becomes a hard link to it. Returns the name that holds `content`
  // now when it was written or read whole (nullopt: only its mode was checked, or checking).
  std::optional<std::string> regular(int dirfd, const std::string& name, const std::string& path,
                                     std::span<const std::string_view> content, const std::string* from = nullptr) {
    auto put = [&]() -> std::optional<std::string> {
      if (from && fs::link_atomic(dirfd, *from, name)) return name;
      return fs::write_atomic(dirfd, name, content, fs::kFileMode);
    };
    size_t size = 0;
    for (auto part : content) size += part.size();
    auto same = [&](std::string_view have) {
      if (have.size() != size) return false;
      for (auto part : content) {
        if (have.substr(0, part.size()) != part) return false;
        have.remove_prefix(part.size());
      }
      return true;
    };
    auto st = fs::stat_at(dirfd, component(name));
    if (st && !S_ISREG(st->st_mode)) {
      report(Drift::Kind::kUnsafe, path, "not a regular file");
      if (apply_) remove_tree(dirfd, name);
      st.reset();
    }
    if (!st) {
      report(Drift::Kind::kMissing, path, "");
      if (apply_) return put();
      return std::nullopt;
    }
    // A file of another size differs without being read (a writer's bundle: 10 MB at 10,000).
    std::optional<std::string> have;
    if (static_cast<size_t>(st->st_size) == size) have = fs::read_at(dirfd, name, kMaxStoreFile);
    if (!have || !same(*have)) {
      report(Drift::Kind::kStale, path, "content differs from the database");
      if (apply_) return put();
      return std::nullopt;
    }
    if ((st->st_mode & 07777) != fs::kFileMode) {
      report(Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kFileMode));
      if (apply_) set_mode(dirfd, name, fs::kFileMode);
      return std::nullopt;  // a hard link to it would share the fix, not be checked
    }
    return name;
  }

  int root_;
  bool apply_;
  std::vector<Drift>& out_;
};

}  // namespace

std::optional<std::vector<std::string_view>> splice_bundle(std::string_view old, std::string_view pem, bool add,
                                                           const std::optional<std::string>& next) {
  // A block starts with "-----BEGIN", which base64 lines never hold: a match of a whole block
  // starts at a block and ends at one.
  // memmem, not string_view::find: every block starts with the same ~30 bytes, which find's
  // first-byte scan meets at every dash (a 5 MB bundle: ~3 ms per search, against ~0.3 ms).
  auto find = [&](std::string_view block, size_t from) -> const char* {
    return static_cast<const char*>(::memmem(old.data() + from, old.size() - from, block.data(), block.size()));
  };
  auto only = [&](std::string_view block) -> std::optional<size_t> {
    if (block.empty()) return std::nullopt;
    const char* at = find(block, 0);
    if (!at) return std::nullopt;
    const size_t pos = static_cast<size_t>(at - old.data());
    if (find(block, pos + 1)) return std::nullopt;
    return pos;
  };
  std::vector<std::string_view> parts;
  if (!add) {
    auto at = only(pem);
    if (!at) return std::nullopt;
    parts = {old.substr(0, *at), old.substr(*at + pem.size())};
  } else {
    size_t at = old.size();
    if (next) {
      auto n = only(*next);
      if (!n) return std::nullopt;
      at = *n;
    }
    parts = {old.substr(0, at), pem, old.substr(at)};
  }
  std::erase_if(parts, [](std::string_view v) { return v.empty(); });
  return parts;
}

std::vector<Area> areas_of(const CertRecord& r) {
  std::vector<Area> out;
  for (const auto& k : r.stores()) out.push_back(Area::trusted(k));
  return out;
}

std::vector<Area> all_areas(int root, const Database& db) {
  std::set<Area> areas{{Area::Kind::kTrustedTop}, {Area::Kind::kCrl}, {Area::Kind::kLegacy}, {Area::Kind::kPool}};
  for (const auto& r : db.certs)
    for (const auto& a : areas_of(r)) areas.insert(a);
  if (fs::Fd top = fs::open_dir(root, layout::kTrustedDir, false)) {
    for (const auto& e : fs::list_dir(top.get())) {
      std::optional<StoreKey> k =
          e.type == S_IFDIR ? layout::parse_store_dir(e.name) : layout::parse_bundle_file(e.name);
      if (k) areas.insert(Area::trusted(*k));
    }
  }
  return {areas.begin(), areas.end()};
}

void reconcile(int root, const Database& db, const Area& area, bool apply, std::vector<Drift>& out,
               const Database* before, StoreChange* change, const StoreBundle* narrow,
               const std::function<void()>& planned) {
  if (narrow && (!before || area.kind != Area::Kind::kTrustedStore))
    throw std::logic_error("a narrow plan is a writer's plan of a trusted store");
  std::set<std::string> top_known;
  if (area.kind == Area::Kind::kTrustedTop) {
    // Names at the top of etc/trusted-certs that some store accounts for; the per-purpose
    // CA directories (core/capath.h) check their own contents.
    top_known.insert(std::string(layout::kCapathName));
    for (const auto& a : all_areas(root, db)) {
      if (a.kind != Area::Kind::kTrustedStore) continue;
      top_known.insert(layout::store_dir(a.key));
      top_known.insert(layout::bundle_file(a.key));
    }
  }
  Plan plan = plan_for(db, area, before, narrow);
  if (change && area.kind == Area::Kind::kTrustedStore && plan.changed) {
    change->key = area.key;
    change->buckets = plan.buckets;
    change->empty = narrow ? narrow->records == 0 : plan.files.empty();
    if (narrow) change->hash_entries = narrow->records;  // one hash entry per record
    else
      for (const auto& [name, _] : plan.files) change->hash_entries += layout::is_hash_link_name(name);
    for (const auto& name : *plan.changed)
      if (layout::is_hash_link_name(name) && plan.buckets.count(name.substr(0, 9)))
        change->entries.emplace(name, std::string(plan.files.at(name)));
  }
  if (planned) planned();
  Reconciler(root, apply, out).run(plan, top_known);
}

}  // namespace ptrust
