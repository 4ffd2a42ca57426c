#include "core/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <set>
#include <thread>
#include <type_traits>

#include "core/capath.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/exchange.h"
#include "core/generation.h"
#include "core/records.h"
#include "core/x509.h"

namespace ptrust {

// The critical section: a flock on <state>/lock, a 0600 file only the helper's user can
// open (so no other local user can hold the stores hostage). Writers lock it exclusively,
// readers shared; a reader on a root no writer ever touched takes no lock (and creates
// nothing): db.json is replaced atomically, so it always reads a whole database.
struct Store::Locked {
  enum class Mode { kRead, kWrite, kCreate, kState };  // kState: kCreate, database not read
  fs::Fd state;
  fs::Fd lock;
  Database db;

  Locked(int root, Mode mode) {
    const bool create = mode == Mode::kCreate || mode == Mode::kState;
    state = fs::open_dir(root, layout::kStateDir, create);
    if (!state) return;
    if (create && ::fchmod(state.get(), fs::kDirMode) != 0)  // readers map the generation file
      throw_errno(Code::kIoError, "cannot chmod state directory");
    const std::string name(layout::kLockFile);
    const bool reader = mode == Mode::kRead;
    int fd = reader ? ::openat(state.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                    : ::openat(state.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_CREAT, 0600);
    // A reader that cannot open the lock (none yet, a read-only mount, another user) reads
    // without it: db.json is replaced atomically, so it is always a whole database.
    if (fd < 0 && !(reader && (errno == ENOENT || errno == EROFS || errno == EACCES)))
      throw_errno(Code::kLockFailed, "cannot open " + std::string(layout::kStateDir) + "/" + name);
    if (fd >= 0) {
      lock = fs::Fd(fd);
      acquire(mode == Mode::kRead ? LOCK_SH : LOCK_EX);
    }
    if (mode != Mode::kState) db = load_database(state.get());
  }

 private:
  // Bounded: a writer never waits forever behind a stuck process.
  void acquire(int how) {
    constexpr auto kPatience = std::chrono::seconds(30);
    auto deadline = std::chrono::steady_clock::now() + kPatience;
    while (::flock(lock.get(), how | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK && errno != EINTR)
        throw_errno(Code::kLockFailed, "cannot lock " + std::string(layout::kStateDir));
      if (std::chrono::steady_clock::now() > deadline)
        throw Error(Code::kLockFailed, "another process has held " + std::string(layout::kStateDir) +
                                           "/lock for 30 s; nothing was changed");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
};

Store::Store(Context ctx) : ctx_(std::move(ctx)), root_(fs::open_root(ctx_.root)) {}

Database Store::database() const {
  Locked l(root_.get(), Locked::Mode::kRead);
  return std::move(l.db);
}

namespace {

// Runs a writer's check: true when there is something to change (a void check always has).
template <typename Check>
bool needed(Check& check, const Database& db) {
  if constexpr (std::is_void_v<std::invoke_result_t<Check&, const Database&>>) {
    check(db);
    return true;
  } else {
    return check(db);
  }
}

}  // namespace

template <typename Check, typename Change>
void Store::write(bool create, Check check, Change change) {
  // Refusals (and no-ops) before anything is created, not even the lock file.
  if (!needed(check, Locked(root_.get(), Locked::Mode::kRead).db)) return;
  Locked l(root_.get(), create ? Locked::Mode::kCreate : Locked::Mode::kWrite);
  if (!needed(check, l.db)) return;  // again under the lock: another writer may have raced us
  std::vector<Area> areas = change(l.db);
  commit(l, areas);
}

void Store::with_state_lock(const std::function<void(int state_dir)>& fn) {
  Locked l(root_.get(), Locked::Mode::kState);
  fn(l.state.get());
}

void Store::commit(Locked& l, const std::vector<Area>& areas) {
  save_database(l.state.get(), l.db);  // the commit point
  apply(l, areas);
}

// Makes `areas` match the database inside one change (odd generation), so readers rebuild
// after the last file is written. On an error the change still ends: readers must re-read
// whatever is on disk now, and `sync` completes the files.
void Store::apply(Locked& l, const std::vector<Area>& areas, bool full_capath) {
  begin_change(l.state.get());
  std::vector<Drift> ignored;
  try {
    for (const auto& e : fs::list_dir(l.state.get()))  // temp files of a killed writer
      if (e.name.rfind(fs::kTempPrefix, 0) == 0) fs::remove_at(l.state.get(), e.name);
    for (const auto& a : areas) reconcile(root_.get(), l.db, a, true, ignored);
    // The per-purpose CA directories follow the bundles just written, in the same change.
    if (full_capath) capath::reconcile(root_.get(), ctx_, true, ignored);
    else capath::refresh(root_.get(), ctx_, areas);
  } catch (...) {
    end_change(l.state.get());
    throw;
  }
  end_change(l.state.get());
}

namespace {

bool overlap(const CertRecord& r, const std::vector<layout::StoreKey>& stores) {
  for (const auto& a : r.stores())
    if (std::find(stores.begin(), stores.end(), a) != stores.end()) return true;
  return false;
}

const CertRecord* duplicate_of(const Database& db, const CertRecord& r) {
  auto stores = r.stores();
  for (const auto& o : db.certs)
    if (o.type == r.type && o.sha256 == r.sha256 && overlap(o, stores)) return &o;
  return nullptr;
}

[[noreturn]] void already_exists(const CertRecord& o) {
  throw Error(Code::kTrustedCertificateAlreadyExists, "this certificate is already installed as " +
                                                          std::string(to_string(o.type)) + " " + o.uuid +
                                                          " for an overlapping purpose set");
}

void check_declared(const Config& cfg, const std::vector<std::string>& purposes) {
  for (const auto& p : purposes)
    if (!cfg.declares(p)) throw Error(Code::kUnknownPurpose, "purpose '" + p + "' is not declared in " + cfg.source);
}

template <typename Vec, typename Pred>
auto find_if_ptr(Vec& v, Pred p) -> decltype(&v[0]) {
  auto it = std::find_if(v.begin(), v.end(), p);
  return it == v.end() ? nullptr : &*it;
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
  check_declared(ctx_.config, req.purposes);
  cert.check_validity(now);

  CertRecord r = make_cert_record(cert, req.type, req.purposes, static_cast<std::int64_t>(now));
  auto check = [&](const Database& db) {
    if (const auto* o = duplicate_of(db, r)) already_exists(*o);
  };
  write(true, check, [&](Database& db) {
    r.uuid = new_uuid();
    db.certs.push_back(r);
    return areas_of(r);
  });
  return r;
}

CertRecord Store::uninstall(const std::string& uuid, bool force) {
  auto check = [&](const Database& db) {
    const CertRecord* r = db.find(uuid);
    if (!r) throw Error(Code::kTrustedCertificateNotFound, "no trusted certificate with UUID '" + uuid + "'");
    if (force) return;
    for (const auto& k : r->stores()) {
      std::string rel = std::string(layout::kTrustedDir) + "/" + layout::store_dir(k);
      fs::Fd dir = fs::open_dir(root_.get(), rel, false);
      auto st = dir ? fs::stat_at(dir.get(), layout::cert_file(uuid)) : std::nullopt;
      if (!st || !S_ISREG(st->st_mode))
        throw Error(Code::kTrustedCertificateFileMissing, rel + "/" + layout::cert_file(uuid) +
                                                              " is missing; run `ptrust sync` to restore it, or "
                                                              "uninstall with --force");
    }
  };
  CertRecord r;
  write(false, check, [&](Database& db) {
    auto it = std::find_if(db.certs.begin(), db.certs.end(), [&](const CertRecord& o) { return o.uuid == uuid; });
    r = *it;
    db.certs.erase(it);
    return areas_of(r);
  });
  return r;
}

CrlInstallResult Store::crl_install(std::string_view data, const std::string& name_in,
                                    const std::vector<std::string>& purposes, std::time_t now) {
  check_declared(ctx_.config, purposes);
  CrlInstallResult res;
  res.record = make_crl_record(data, name_in, purposes, static_cast<std::int64_t>(now));
  CrlRecord& r = res.record;
  if (!layout::valid_file_name(r.name))
    throw Error(Code::kCrlNameInvalid, "CRL name '" + r.name + "' must use [A-Za-z0-9._-], not start with '.', "
                                       "and not look like an OpenSSL hash entry");
  if (r.next_update != 0 && r.next_update < now)
    res.warnings.push_back("CRL from '" + r.issuer + "' is past its nextUpdate (" + x509::format_time(r.next_update) +
                           "); verification under a strict CRL policy will fail until it is replaced");

  auto check = [&](const Database& db) {
    if (find_if_ptr(db.crls, [&](const CrlRecord& o) { return o.name == r.name; }))
      throw Error(Code::kCrlAlreadyExists, "a CRL named '" + r.name + "' is already installed");
    check_crl_signature(db, r);
  };
  write(true, check, [&](Database& db) {
    db.crls.push_back(r);
    return std::vector<Area>{{Area::Kind::kCrl}};
  });
  return res;
}

CrlRecord Store::crl_uninstall(const std::string& name) {
  auto check = [&](const Database& db) {
    if (!find_if_ptr(db.crls, [&](const CrlRecord& r) { return r.name == name; }))
      throw Error(Code::kCrlDoesNotExist, "no CRL named '" + name + "'");
  };
  CrlRecord r;
  write(false, check, [&](Database& db) {
    auto it = std::find_if(db.crls.begin(), db.crls.end(), [&](const CrlRecord& o) { return o.name == name; });
    r = *it;
    db.crls.erase(it);
    return std::vector<Area>{{Area::Kind::kCrl}};
  });
  return r;
}

LegacyRecord Store::legacy_install(const std::string& name, const Certificate& cert, std::time_t now) {
  if (!layout::valid_legacy_name(name))
    throw Error(Code::kCertificateNameInvalid,
                "certificate name '" + name + "' must use [A-Za-z0-9._-], not start with '.', and end in .pem");
  cert.check_validity(now);
  LegacyRecord r = make_legacy_record(name, cert, static_cast<std::int64_t>(now));
  auto check = [&](const Database& db) {
    if (find_if_ptr(db.legacy, [&](const LegacyRecord& o) { return o.name == name; }))
      throw Error(Code::kCaCertificateAlreadyExists, "a legacy CA named '" + name + "' is already installed");
  };
  write(true, check, [&](Database& db) {
    db.legacy.push_back(r);
    return std::vector<Area>{{Area::Kind::kLegacy}};
  });
  return r;
}

LegacyRecord Store::legacy_uninstall(const std::string& name, bool force) {
  auto check = [&](const Database& db) {
    if (!find_if_ptr(db.legacy, [&](const LegacyRecord& r) { return r.name == name; }))
      throw Error(Code::kCertificateDoesNotExist, "no legacy CA named '" + name + "'");
    if (force) return;
    const std::string rel = std::string(layout::kStunnelDir) + "/" + std::string(layout::kLegacyDir);
    fs::Fd dir = fs::open_dir(root_.get(), rel, false);
    auto st = dir ? fs::stat_at(dir.get(), name) : std::nullopt;
    if (!st || !S_ISREG(st->st_mode))
      throw Error(Code::kTrustedCertificateFileMissing,
                  rel + "/" + name + " is missing; run `ptrust sync` to restore it, or uninstall with --force");
  };
  LegacyRecord r;
  write(false, check, [&](Database& db) {
    auto it = std::find_if(db.legacy.begin(), db.legacy.end(), [&](const LegacyRecord& o) { return o.name == name; });
    r = *it;
    db.legacy.erase(it);
    return std::vector<Area>{{Area::Kind::kLegacy}};
  });
  return r;
}

PoolRecord Store::pool_add(const std::string& host, const Certificate& cert, bool staged, std::time_t now) {
  if (!valid_uuid(host)) throw Error(Code::kHostUuidInvalid, "'" + host + "' is not a host UUID (lower-case 8-4-4-4-12 hex)");
  cert.check_validity(now);
  PoolRecord r = make_pool_record(host, staged, cert, static_cast<std::int64_t>(now));
  auto check = [](const Database&) {};  // adding replaces: nothing in the database refuses it
  write(true, check, [&](Database& db) {
    // A host has one current certificate and at most one staged one.
    std::erase_if(db.pool, [&](const PoolRecord& o) { return o.host == host && o.staged == staged; });
    db.pool.push_back(r);
    return std::vector<Area>{{Area::Kind::kPool}};
  });
  return r;
}

std::vector<PoolRecord> Store::pool_remove(const std::string& host, bool staged_only) {
  auto selected = [&](const PoolRecord& o) { return o.host == host && (o.staged || !staged_only); };
  auto check = [&](const Database& db) {
    if (std::none_of(db.pool.begin(), db.pool.end(), selected))
      throw Error(Code::kCertificateDoesNotExist, "no " + std::string(staged_only ? "staged " : "") +
                                                      "pool certificate for host '" + host + "'");
  };
  std::vector<PoolRecord> removed;
  write(false, check, [&](Database& db) {
    std::copy_if(db.pool.begin(), db.pool.end(), std::back_inserter(removed), selected);
    std::erase_if(db.pool, selected);
    return std::vector<Area>{{Area::Kind::kPool}};
  });
  return removed;
}

std::string Store::export_document() const { return export_json(database()); }

ImportPlan Store::import_document(const std::string& doc, bool dry_run) {
  Incoming in = parse_export(doc, ctx_.config);  // validates everything before any lock
  ImportPlan plan;
  Database merged;
  auto check = [&](const Database& db) {
    plan = {};
    merged = merge_import(db, in, plan);  // throws on any conflict
    return !dry_run && merged.serialize() != db.serialize();
  };
  write(true, check, [&](Database& db) {
    db = std::move(merged);
    return all_areas(root_.get(), db);
  });
  return plan;
}

Database Store::eject() {
  auto check = [](const Database& db) { return !(db.certs.empty() && db.crls.empty() && db.legacy.empty()); };
  Database removed;
  write(false, check, [&](Database& db) {
    removed = db;
    removed.pool.clear();
    std::vector<Area> areas;
    for (const auto& r : db.certs)
      for (const auto& a : areas_of(r)) areas.push_back(a);
    areas.push_back({Area::Kind::kCrl});
    areas.push_back({Area::Kind::kLegacy});
    db.certs.clear();
    db.crls.clear();
    db.legacy.clear();
    return areas;
  });
  return removed;
}

std::vector<Drift> Store::sync(bool repair) {
  Locked l(root_.get(), repair ? Locked::Mode::kCreate : Locked::Mode::kRead);
  std::vector<Drift> out;
  const std::string gen_path = std::string(layout::kStateDir) + "/" + std::string(layout::kGenerationFile);
  std::uint64_t gen = l.state ? read_generation(l.state.get()) : 0;
  if (l.state && gen == 0 && !(l.db.certs.empty() && l.db.crls.empty() && l.db.legacy.empty() && l.db.pool.empty()))
    out.push_back({Drift::Kind::kMissing, gen_path, "store generation"});
  if (gen != 0 && !generation_stable(gen))
    out.push_back({Drift::Kind::kStale, gen_path, "a writer did not finish its change; readers must reload"});
  // Temp files a killed writer left in the state directory (never visible as state).
  if (l.state)
    for (const auto& e : fs::list_dir(l.state.get()))
      if (e.name.rfind(fs::kTempPrefix, 0) == 0)
        out.push_back({Drift::Kind::kRemnant, std::string(layout::kStateDir) + "/" + e.name, "temporary file"});

  std::vector<Area> areas = all_areas(root_.get(), l.db);
  for (const auto& a : areas) reconcile(root_.get(), l.db, a, false, out);
  // The CA directories derive from the trusted stores and CRLs on disk: they are compared once
  // those are clean (a repair fixes the stores first, then rebuilds them from the result). A
  // root ptrust never wrote has none.
  if (l.state && !capath::inputs_drift(out)) capath::reconcile(root_.get(), ctx_, false, out);
  if (!repair || out.empty()) return out;
  apply(l, areas, true);
  return out;
}

}  // namespace ptrust
