#include "core/store.h"

#include <sys/file.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include "core/error.h"
#include "core/generation.h"

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
using Desired = std::map<StoreKey, std::vector<const CertRecord*>>;

constexpr size_t kMaxStoreFile = 64u << 20;

Desired desired_state(const Database& db) {
  Desired d;
  for (const auto& r : db.certs)
    for (const auto& k : r.stores()) d[k].push_back(&r);
  for (auto& [k, v] : d)
    std::sort(v.begin(), v.end(), [](const CertRecord* a, const CertRecord* b) { return a->uuid < b->uuid; });
  return d;
}

std::string bundle_content(const std::vector<const CertRecord*>& recs) {
  std::string s;
  for (const auto* r : recs) s += r->pem;
  return s;
}

std::string join(std::string_view a, std::string_view b) { return std::string(a) + "/" + std::string(b); }

// Removes a non-directory entry, or a directory tree, without following symlinks.
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

// Derives the files of the trusted-certificate stores from the database.
class Reconciler {
 public:
  Reconciler(int trusted_fd, bool apply, std::vector<Drift>& out) : top_(trusted_fd), apply_(apply), out_(out) {}

  void store(const StoreKey& k, const std::vector<const CertRecord*>& recs) {
    const std::string dname = layout::store_dir(k);
    const std::string dpath = join(layout::kTrustedDir, dname);
    std::map<std::string, const CertRecord*> want;
    for (const auto* r : recs) want[layout::cert_file(r->uuid)] = r;

    fs::Fd dir = directory(dname, dpath, !recs.empty());
    if (dir) {
      // Remnants first in the listing order, but removal happens after the writes below.
      std::vector<std::string> remnants;
      for (const auto& e : fs::list_dir(dir.get())) {
        if (want.count(e.name) && e.type == S_IFREG) continue;
        if (want.count(e.name)) {
          report(Drift::Kind::kUnsafe, join(dpath, e.name), "not a regular file");
          if (apply_) remove_tree(dir.get(), e.name);
          continue;
        }
        remnants.push_back(e.name);
      }
      for (const auto& [file, rec] : want) regular(dir.get(), file, join(dpath, file), rec->pem);
      for (const auto& name : remnants) {
        report(Drift::Kind::kRemnant, join(dpath, name), "no record owns it");
        if (apply_) remove_tree(dir.get(), name);
      }
    }
    const std::string bname = layout::bundle_file(k);
    const std::string bpath = join(layout::kTrustedDir, bname);
    if (recs.empty()) {
      if (fs::stat_at(top_, bname)) {
        report(Drift::Kind::kRemnant, bpath, "bundle of an empty store must not exist");
        if (apply_) remove_tree(top_, bname);
      }
    } else {
      regular(top_, bname, bpath, bundle_content(recs));
    }
  }

  // Entries at the top of etc/trusted-certs that belong to no store.
  void unknown(const std::string& name) {
    report(Drift::Kind::kRemnant, join(layout::kTrustedDir, name), "not part of any store");
    if (apply_) remove_tree(top_, name);
  }

 private:
  void report(Drift::Kind k, std::string path, std::string detail) {
    out_.push_back({k, std::move(path), std::move(detail)});
  }

  // Opens (and with apply, creates or repairs) a store directory.
  fs::Fd directory(const std::string& name, const std::string& path, bool needed) {
    auto st = fs::stat_at(top_, name);
    if (st && !S_ISDIR(st->st_mode)) {
      report(Drift::Kind::kUnsafe, path, "expected a directory");
      if (!apply_) return fs::Fd();
      remove_tree(top_, name);
      st.reset();
    }
    if (!st) {
      if (!needed) return fs::Fd();
      report(Drift::Kind::kMissing, path, "store directory");
      if (!apply_) return fs::Fd();
      return fs::open_dir(top_, name, true);
    }
    if ((st->st_mode & 07777) != fs::kDirMode) {
      report(Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kDirMode));
      if (apply_) set_mode(top_, name, fs::kDirMode);
    }
    return fs::open_dir(top_, name, false);
  }

  void regular(int dirfd, const std::string& name, const std::string& path, const std::string& content) {
    auto st = fs::stat_at(dirfd, name);
    if (st && !S_ISREG(st->st_mode)) {
      report(Drift::Kind::kUnsafe, path, "not a regular file");
      if (apply_) remove_tree(dirfd, name);
      st.reset();
    }
    if (!st) {
      report(Drift::Kind::kMissing, path, "");
      if (apply_) fs::write_atomic(dirfd, name, content, fs::kFileMode);
      return;
    }
    auto have = fs::read_at(dirfd, name, kMaxStoreFile);
    if (!have || *have != content) {
      report(Drift::Kind::kStale, path, "content differs from the database");
      if (apply_) fs::write_atomic(dirfd, name, content, fs::kFileMode);
      return;
    }
    if ((st->st_mode & 07777) != fs::kFileMode) {
      report(Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kFileMode));
      if (apply_) set_mode(dirfd, name, fs::kFileMode);
    }
  }

  static std::string mode_detail(mode_t have, mode_t want) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "mode %04o, expected %04o", have & 07777, want);
    return buf;
  }

  int top_;
  bool apply_;
  std::vector<Drift>& out_;
};

}  // namespace

// The writer's critical section: the exclusive lock is a flock on the state directory
// itself, so taking it writes nothing to disk.
struct Store::Locked {
  fs::Fd state;
  Database db;

  // With `create`, makes var/lib/ptrust. Without, `state` stays empty when it is missing.
  Locked(int root, bool create) {
    state = fs::open_dir(root, layout::kStateDir, create);
    if (!state) return;
    if (create) {
      // Readers (verify hook, provider) map the generation file: keep the dir world-readable.
      if (::fchmod(state.get(), fs::kDirMode) != 0) throw_errno(Code::kIoError, "cannot chmod state directory");
    }
    while (::flock(state.get(), LOCK_EX) != 0)
      if (errno != EINTR) throw_errno(Code::kLockFailed, "cannot lock " + std::string(layout::kStateDir));
    db = load_database(state.get());
  }
};

Store::Store(Context ctx) : ctx_(std::move(ctx)), root_(fs::open_root(ctx_.root)) {}

Database Store::database() const {
  Locked l(root_.get(), false);
  return std::move(l.db);
}

namespace {

bool overlap(const CertRecord& r, const std::vector<layout::StoreKey>& stores) {
  for (const auto& a : r.stores())
    if (std::find(stores.begin(), stores.end(), a) != stores.end()) return true;
  return false;
}

void write_stores(int root, const Database& db, const std::vector<StoreKey>& scope, int state) {
  bump_generation(state);
  fs::Fd top = fs::open_dir(root, layout::kTrustedDir, true);
  std::vector<Drift> ignored;
  Reconciler rec(top.get(), true, ignored);
  Desired want = desired_state(db);
  for (const auto& k : scope) rec.store(k, want[k]);
  bump_generation(state);
}

}  // namespace

CertRecord Store::install(const Certificate& cert, const InstallRequest& req, std::time_t now) {
  CertInfo info = cert.info();
  if (req.type == CertType::kCa && !info.is_ca)
    throw Error(Code::kNotACaCertificate,
                "'" + info.subject + "' is not a CA certificate (needs basicConstraints CA:TRUE and keyCertSign); "
                "use --pinned to trust this peer certificate itself");
  if (req.type == CertType::kPinned && req.purposes.empty())
    throw Error(Code::kCertificateLacksPurpose, "a pinned certificate needs --purpose (pins are per purpose)");
  for (const auto& p : req.purposes)
    if (!ctx_.config.declares(p))
      throw Error(Code::kUnknownPurpose, "purpose '" + p + "' is not declared in " + ctx_.config.source);
  cert.check_validity(now);

  CertRecord r;
  r.type = req.type;
  r.purposes = req.purposes;
  std::sort(r.purposes.begin(), r.purposes.end());
  r.sha256 = info.sha256;
  r.sha1 = info.sha1;
  r.subject = info.subject;
  r.issuer = info.issuer;
  r.serial = info.serial;
  r.not_before = info.not_before;
  r.not_after = info.not_after;
  r.key_type = info.key_type;
  r.key_bits = info.key_bits;
  r.installed_at = static_cast<std::int64_t>(now);
  r.pem = cert.pem();

  // Duplicate check against the current database, before anything is created on disk.
  auto stores = r.stores();
  {
    Locked peek(root_.get(), false);
    for (const auto& o : peek.db.certs)
      if (o.type == r.type && o.sha256 == r.sha256 && overlap(o, stores))
        throw Error(Code::kTrustedCertificateAlreadyExists,
                    "this certificate is already installed as " + std::string(to_string(o.type)) + " " + o.uuid +
                        " for an overlapping purpose set");
  }
  Locked l(root_.get(), true);
  for (const auto& o : l.db.certs)  // again under the lock: another writer may have raced us
    if (o.type == r.type && o.sha256 == r.sha256 && overlap(o, stores))
      throw Error(Code::kTrustedCertificateAlreadyExists,
                  "this certificate is already installed as " + std::string(to_string(o.type)) + " " + o.uuid);
  r.uuid = new_uuid();
  l.db.certs.push_back(r);
  save_database(l.state.get(), l.db);  // commit point
  write_stores(root_.get(), l.db, stores, l.state.get());
  return r;
}

CertRecord Store::uninstall(const std::string& uuid, bool force) {
  Locked l(root_.get(), false);
  auto it = l.state ? std::find_if(l.db.certs.begin(), l.db.certs.end(), [&](const CertRecord& r) { return r.uuid == uuid; })
                    : l.db.certs.end();
  if (it == l.db.certs.end())
    throw Error(Code::kTrustedCertificateNotFound, "no trusted certificate with UUID '" + uuid + "'");
  CertRecord r = *it;
  if (!force) {
    fs::Fd top = fs::open_dir(root_.get(), layout::kTrustedDir, false);
    for (const auto& k : r.stores()) {
      std::string rel = layout::store_dir(k) + "/" + layout::cert_file(uuid);
      fs::Fd dir = top ? fs::open_dir(top.get(), layout::store_dir(k), false) : fs::Fd();
      auto st = dir ? fs::stat_at(dir.get(), layout::cert_file(uuid)) : std::nullopt;
      if (!st || !S_ISREG(st->st_mode))
        throw Error(Code::kTrustedCertificateFileMissing,
                    std::string(layout::kTrustedDir) + "/" + rel +
                        " is missing; run `ptrust sync` to restore it, or uninstall with --force");
    }
  }
  l.db.certs.erase(it);
  save_database(l.state.get(), l.db);
  write_stores(root_.get(), l.db, r.stores(), l.state.get());
  return r;
}

std::vector<Drift> Store::sync(bool apply) {
  Locked l(root_.get(), apply);
  std::vector<Drift> out;
  fs::Fd top = fs::open_dir(root_.get(), layout::kTrustedDir, false);
  Desired want = desired_state(l.db);
  if (!top && want.empty() && !apply) return out;
  if (!top) {
    if (!want.empty()) out.push_back({Drift::Kind::kMissing, std::string(layout::kTrustedDir), "store directory"});
    if (!apply) return out;
    top = fs::open_dir(root_.get(), layout::kTrustedDir, true);
  }
  if (l.state && read_generation(l.state.get()) == 0 && !l.db.certs.empty())
    out.push_back({Drift::Kind::kMissing, std::string(layout::kStateDir) + "/" + std::string(layout::kGenerationFile),
                   "store generation"});

  // Temp files a killed writer left in the state directory (never visible as state).
  if (l.state) {
    for (const auto& e : fs::list_dir(l.state.get())) {
      if (e.name.rfind(fs::kTempPrefix, 0) != 0) continue;
      out.push_back({Drift::Kind::kRemnant, std::string(layout::kStateDir) + "/" + e.name, "temporary file"});
      if (apply) fs::remove_at(l.state.get(), e.name);
    }
  }

  // Every store the database wants plus every store-shaped name on disk.
  std::set<StoreKey> keys;
  for (const auto& [k, v] : want) keys.insert(k);
  std::vector<std::string> unknown;
  for (const auto& e : fs::list_dir(top.get())) {
    if (e.type == S_IFDIR) {
      if (auto k = layout::parse_store_dir(e.name)) {
        keys.insert(*k);
        continue;
      }
    } else if (auto k = layout::parse_bundle_file(e.name)) {
      keys.insert(*k);
      continue;
    }
    unknown.push_back(e.name);
  }
  auto run = [&](bool fix, std::vector<Drift>& sink) {
    Reconciler rec(top.get(), fix, sink);
    for (const auto& k : keys) rec.store(k, want[k]);
    for (const auto& n : unknown) rec.unknown(n);
  };
  run(false, out);
  if (!apply || out.empty()) return out;
  // Repair between two generation bumps so readers rebuild after the last change.
  std::vector<Drift> again;
  bump_generation(l.state.get());
  run(true, again);
  bump_generation(l.state.get());
  return out;
}

}  // namespace ptrust
