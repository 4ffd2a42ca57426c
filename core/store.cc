#include "core/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <chrono>
#include <deque>
#include <future>
#include <map>
#include <set>
#include <thread>
#include <type_traits>

#include "core/adopt.h"
#include "core/capath.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/exchange.h"
#include "core/generation.h"
#include "core/ossl.h"
#include "core/records.h"
#include "core/trust.h"
#include "core/x509.h"

namespace ptrust {

namespace {

// Why `name` in `dirfd` is not a regular file ("a directory", "a symlink", ...); nullopt when
// it is one or does not exist.
std::optional<std::string> not_regular(int dirfd, const std::string& name) {
  auto st = fs::stat_at(dirfd, name);
  if (!st || S_ISREG(st->st_mode)) return std::nullopt;
  if (S_ISDIR(st->st_mode)) return "a directory";
  if (S_ISLNK(st->st_mode)) return "a symlink";
  return "not a regular file";
}

}  // namespace

// The critical section: a flock on <state>/lock, a 0600 file only the helper's user can
// open (so no other local user can hold the stores hostage). Writers lock it exclusively,
// readers shared; a reader on a root no writer ever touched takes no lock (and creates
// nothing): db.json is replaced atomically, so it always reads a whole database.
struct Store::Locked {
  // kState: kCreate, database not read. kRepair (sync): kCreate, and a lock that is not a
  // regular file (a directory, a symlink, a FIFO) is reported in `drift` and replaced.
  // kExisting: a writer's lock when the state directory and the lock file already exist (no
  // creation at all, so a refusal under it leaves the root as it was); otherwise `lock` is
  // empty and nothing was read.
  enum class Mode { kRead, kWrite, kCreate, kState, kRepair, kExisting };
  fs::Fd state;
  fs::Fd lock;
  Database db;
  bool db_found = false;    // db.json exists (and is not empty)
  std::vector<Drift> drift;  // kRead / kRepair: a lock that is not a regular file
  std::optional<std::string> bad_lock;  // kRead: what the lock is instead of a regular file
  bool load_db_ = true;

  // `load` false: the database is not read (a narrow write reads what it needs itself).
  Locked(int root, Mode mode, bool load_db = true) : load_db_(load_db) {
    const bool create = mode != Mode::kRead && mode != Mode::kWrite && mode != Mode::kExisting;
    state = fs::open_dir(root, layout::kStateDir, create);
    if (!state) return;
    if (create && ::fchmod(state.get(), fs::kDirMode) != 0)  // readers map the generation file
      throw_errno(Code::kIoError, "cannot chmod state directory");
    const std::string name(layout::kLockFile);
    const std::string path = std::string(layout::kStateDir) + "/" + name;
    const bool reader = mode == Mode::kRead;
    if (auto bad = not_regular(state.get(), name)) {
      if (mode != Mode::kRead && mode != Mode::kRepair) refuse_lock(*bad);
      drift.push_back({Drift::Kind::kUnsafe, path, *bad + ", expected the lock file"});
      bad_lock = bad;
      if (reader) {  // sync --check reports it; a reader reads without the lock (db.json is replaced atomically)
        load(mode);
        return;
      }
      fs::remove_tree(state.get(), name);  // kRepair: replaced by a fresh lock file below
    }
    // O_NONBLOCK: opening a FIFO planted as the lock never blocks.
    int fd = reader ? ::openat(state.get(), name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
             : mode == Mode::kExisting
                 ? ::openat(state.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
                 : ::openat(state.get(), name.c_str(), O_RDWR | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_CREAT, 0600);
    if (fd < 0 && mode == Mode::kExisting && errno == ENOENT) return;  // the caller takes the long way
    // A reader that cannot open the lock (none yet, a read-only mount, another user) reads
    // without it: db.json is replaced atomically, so it is always a whole database.
    if (fd < 0 && !(reader && (errno == ENOENT || errno == EROFS || errno == EACCES))) {
      if (errno == ELOOP || errno == EISDIR || errno == ENXIO) refuse_lock("not a regular file");
      throw_errno(Code::kLockFailed, "cannot open " + path);
    }
    if (fd >= 0) {
      lock = fs::Fd(fd);
      struct stat st;
      if (::fstat(fd, &st) != 0) throw_errno(Code::kLockFailed, "cannot stat " + path);
      if (!S_ISREG(st.st_mode)) refuse_lock("not a regular file");  // raced in after the check above
      acquire(mode == Mode::kRead ? LOCK_SH : LOCK_EX);
    }
    load(mode);
  }

  void load(Mode mode);

 public:
  [[noreturn]] static void refuse_lock(const std::string& what) {
    throw Error(Code::kLockFailed, std::string(layout::kStateDir) + "/" + std::string(layout::kLockFile) + " is " + what +
                                       ", not the lock file; nothing was changed: run `ptrust sync` to replace it");
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

void Store::Locked::load(Mode mode) {
  if (mode != Mode::kState && load_db_) db = load_database(state.get(), &db_found);
}

Store::Store(Context ctx) : ctx_(std::move(ctx)), root_(fs::open_root(ctx_.root)) {}

Database Store::database() const {
  Locked l(root_.get(), Locked::Mode::kRead);
  return std::move(l.db);
}

namespace {

bool holds_nothing(const Database& db) {
  return db.certs.empty() && db.crls.empty() && db.legacy.empty() && db.pool.empty();
}

// DATABASE_MISSING: db.json is gone (or empty) while the stores hold material. Writing, or
// syncing, from an empty database would delete every store file; adopting must be explicit.
void refuse_missing_database(int root, bool db_found) {
  if (db_found) return;
  auto material = store_material(root, 1);
  if (material.empty()) return;
  throw Error(Code::kDatabaseMissing,
              std::string(layout::kStateDir) + "/" + std::string(layout::kDatabase) +
                  " is missing but the stores hold trust material (" + material[0] +
                  "); nothing was changed: restore the database, or run `ptrust sync --adopt` to adopt what is on disk");
}

// A writer checks that it can finish before its commit point: a generation file that is not
// a regular file would fail the change after the database committed it.
void check_can_finish(int state_dir) {
  const std::string name(layout::kGenerationFile);
  if (auto bad = not_regular(state_dir, name))
    throw Error(Code::kStoreUnsafe, std::string(layout::kStateDir) + "/" + name + " is " + *bad +
                                        "; nothing was changed: run `ptrust sync` to repair it");
}

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

bool ModeChange::widens() const noexcept {
  auto rank = [](Mode m) { return m == Mode::kPinned ? 1 : m == Mode::kCa ? 2 : m == Mode::kGeneral ? 3 : 0; };
  return before != Mode::kNone && after != Mode::kNone && rank(after) > rank(before);
}

namespace {

Shapes shapes_of(const Database& db) {
  Shapes s;
  count_shapes(s, db.certs);
  return s;
}

}  // namespace

Mode mode_in(const Shapes& shapes, std::string_view purpose) {
  bool pinned = false, ca = false, general = false;
  for (const auto& [s, n] : shapes) {
    if (n == 0) continue;
    if (s.purposes.empty()) {
      general |= s.type == CertType::kCa;
    } else if (std::find(s.purposes.begin(), s.purposes.end(), purpose) != s.purposes.end()) {
      pinned |= s.type == CertType::kPinned;
      ca |= s.type == CertType::kCa;
    }
  }
  return pinned ? Mode::kPinned : ca ? Mode::kCa : general ? Mode::kGeneral : Mode::kNone;
}

Mode mode_in(const Database& db, std::string_view purpose) { return mode_in(shapes_of(db), purpose); }

namespace {

std::vector<ModeChange> changes_between(const Config& cfg, const Shapes& before, const Shapes& after) {
  std::vector<ModeChange> out;
  for (const auto& [p, _] : cfg.purposes) {
    ModeChange c{p, mode_in(before, p), mode_in(after, p)};
    if (c.before != c.after) out.push_back(std::move(c));
  }
  return out;
}

}  // namespace

// Refuses a change that widens a purpose's trust unless allowed; records every mode change.
void Store::guard_modes(std::vector<ModeChange> changes) {
  mode_changes_ = std::move(changes);
  if (allow_mode_change_) return;
  std::string widened;
  for (const auto& c : mode_changes_)
    if (c.widens())
      widened += (widened.empty() ? "" : ", ") + c.purpose + " " + std::string(to_string(c.before)) + " -> " +
                 std::string(to_string(c.after));
  if (!widened.empty())
    throw Error(Code::kModeChangeWidensTrust,
                "this change would widen trust: " + widened +
                    " (more certificates would be trusted for it); nothing was changed; repeat with "
                    "--allow-mode-change to accept");
}

// A narrow write's plan for its commit: the bundle marks it records and each trusted store's
// bundle (parts of `held` and of the records).
struct Store::Narrow {
  BundleMarks marks;
  std::map<layout::StoreKey, StoreBundle> bundles;
  std::deque<std::string> held;
};

namespace {

constexpr size_t kMaxBundle = 256u << 20;

std::string sha256_of(const std::vector<std::string_view>& parts) {
  ossl::Ptr<EVP_MD_CTX, EVP_MD_CTX_free> ctx(EVP_MD_CTX_new());
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int n = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), x509::sha256(), nullptr) == 1;
  for (auto p : parts) ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  if (!ok || EVP_DigestFinal_ex(ctx.get(), md, &n) != 1) throw Error(Code::kIoError, "cannot compute a SHA-256");
  return x509::hex_lower({md, n});
}

size_t records_in(const Shapes& shapes, const layout::StoreKey& k) {
  size_t n = 0;
  for (const auto& [shape, count] : shapes)
    if (in_store(shape.type, shape.purposes, k)) n += count;
  return n;
}

}  // namespace

// Under the writer lock, reads the records `sel` selects (and every shape), not the whole
// database; plans each trusted store's bundle as an edit of the one on disk (when its mark
// holds: the last narrow write made it and nothing changed since) or else of the bundle the
// records make; commits the rows it changed with the new marks; reconciles what moved. False,
// with nothing changed, when it cannot: no lock file yet, no ptrust.db (a new root, db.json),
// an unfinished change to repair, a store that does not gain or lose exactly one record, a
// bundle it cannot edit. Then the whole path runs.
template <typename Check, typename Change>
bool Store::write_narrow(const CertSelector& sel, Check& check, Change& change) {
  Locked l(root_.get(), Locked::Mode::kExisting, false);
  if (!l.lock) return false;
  check_can_finish(l.state.get());
  const std::uint64_t generation = read_generation(l.state.get());
  if (!generation_stable(generation) || fs::stat_at(l.state.get(), std::string(layout::kCapathUnfinished)))
    return false;
  std::unique_ptr<DatabaseSession> session = DatabaseSession::open(l.state.get());
  if (!session) return false;
  // A subject hash of 0 is a name X509_NAME_hash_ex could not hash: its bucket is not one
  // the index can find (the plan recomputes it from the PEM).
  if (sel.subject_hash == 0u) return false;
  l.db = session->load(sel);
  l.db_found = true;
  for (const auto& r : l.db.certs)
    if (r.subject_hash == 0) return false;
  if (!needed(check, l.db)) return true;
  const Shapes shapes = session->shapes();
  struct Reset {
    std::optional<Shapes>& s;
    ~Reset() { s.reset(); }
  } reset{narrow_shapes_};
  narrow_shapes_ = shapes;
  const Database loaded = l.db;
  Database before = without_cert_pem(l.db);
  std::vector<Area> areas = change(l.db);
  Shapes after = shapes;
  count_shapes(after, loaded.certs, -1);
  count_shapes(after, l.db.certs, +1);
  guard_modes(changes_between(ctx_.config, shapes, after));

  Narrow n;
  n.marks.start = generation;
  n.marks.generation = generation + 2;  // where this change ends (begin_change, end_change)
  for (const auto& a : areas) {
    if (a.kind != Area::Kind::kTrustedStore) continue;
    std::vector<const CertRecord*> gone, added;
    for (const auto& r : loaded.certs)
      if (in_store(r, a.key) && !l.db.find(r.uuid)) gone.push_back(&r);
    for (const auto& r : l.db.certs)
      if (in_store(r, a.key) && !loaded.find(r.uuid)) added.push_back(&r);
    if (gone.size() + added.size() != 1) return false;
    const CertRecord& moved = added.empty() ? *gone.front() : *added.front();
    std::string& old = n.held.emplace_back();
    std::optional<std::string> next;
    if (!added.empty()) next = session->next_in_store(a.key, moved.uuid);
    auto edit = [&] { return splice_bundle(old, moved.pem, !added.empty(), next); };
    std::optional<std::vector<std::string_view>> parts;
    std::string sum;  // the new bundle's SHA-256
    if (auto mark = session->mark(a.key); mark && mark->generation == generation) {
      try {
        fs::Fd top = fs::open_dir(root_.get(), layout::kTrustedDir, false);
        if (auto text = top ? fs::read_at(top.get(), layout::bundle_file(a.key), kMaxBundle, true) : std::nullopt)
          old = std::move(*text);
      } catch (const Error&) {  // not a regular file: the records' bundle, and the reconcile replaces it
      }
      // The bundle on disk is checked against its mark while the edit is planned and digested:
      // two SHA-256 passes over it (~3 ms each at 10,000 CAs), on two cores when there are.
      std::future<std::string> held_sum;
      if (old.size() >= (1u << 20)) {
        try {
          held_sum = std::async(std::launch::async, [&old] { return x509::sha256_hex(old); });
        } catch (const std::system_error&) {  // no thread: one after the other
        }
      }
      parts = edit();
      if (parts) sum = sha256_of(*parts);
      const std::string have = held_sum.valid() ? held_sum.get() : x509::sha256_hex(old);
      if (have != mark->sha256) {  // edited since: the records' bundle instead
        parts.reset();
        old.clear();
      }
    }
    if (!parts) {
      if (old.empty()) old = session->bundle(a.key);
      parts = edit();
      if (!parts) return false;
      sum = sha256_of(*parts);
    }
    n.marks.sha256[layout::store_dir(a.key)] = sum;
    n.bundles.emplace(a.key, StoreBundle{records_in(after, a.key), std::move(*parts)});
  }
  commit(l, areas, &before, &n);
  return true;
}

template <typename Check, typename Change>
void Store::write(bool create, Check check, Change change, const CertSelector* narrow) {
  mode_changes_.clear();
  if (narrow && write_narrow(*narrow, check, change)) return;
  {
    // The common case, a root with its lock file: one database read, under the lock.
    // Refusals there change nothing (nothing is created before the commit point).
    Locked l(root_.get(), Locked::Mode::kExisting);
    if (l.lock) {
      check_can_finish(l.state.get());
      refuse_missing_database(root_.get(), l.db_found);
      if (!needed(check, l.db)) return;
      Database before = without_cert_pem(l.db);
      std::vector<Area> areas = change(l.db);
      guard_modes(changes_between(ctx_.config, shapes_of(before), shapes_of(l.db)));
      commit(l, areas, &before);
      return;
    }
  }
  // Refusals (and no-ops) before anything is created, not even the lock file.
  {
    Locked r(root_.get(), Locked::Mode::kRead);
    if (r.bad_lock) Locked::refuse_lock(*r.bad_lock);
    if (r.state) check_can_finish(r.state.get());
    refuse_missing_database(root_.get(), r.db_found);
    if (!needed(check, r.db)) return;
    Database preview = r.db;
    change(preview);
    guard_modes(changes_between(ctx_.config, shapes_of(r.db), shapes_of(preview)));
  }
  Locked l(root_.get(), create ? Locked::Mode::kCreate : Locked::Mode::kWrite);
  // Again under the lock: another writer may have raced us.
  check_can_finish(l.state.get());
  refuse_missing_database(root_.get(), l.db_found);
  if (!needed(check, l.db)) return;
  Database before = without_cert_pem(l.db);
  std::vector<Area> areas = change(l.db);
  guard_modes(changes_between(ctx_.config, shapes_of(before), shapes_of(l.db)));
  commit(l, areas, &before);
}

void Store::with_state_lock(const std::function<void(int state_dir)>& fn) {
  Locked l(root_.get(), Locked::Mode::kState);
  fn(l.state.get());
}

void Store::commit(Locked& l, const std::vector<Area>& areas, const Database* before, const Narrow* narrow) {
  save_database(l.state.get(), l.db, before, narrow ? &narrow->marks : nullptr);  // the commit point
  try {
    apply(l, areas, false, before, narrow ? &narrow->bundles : nullptr);
  } catch (const Error& e) {  // a full disk, say: the change stands, and the refusal says so
    throw Error(e.code(), std::string(e.what()) +
                              " (the change is recorded in the database: `ptrust sync` finishes writing the stores)");
  }
}

// Makes `areas` match the database inside one change (odd generation), so readers rebuild
// after the last file is written. On an error the change still ends: readers must re-read
// whatever is on disk now, and `sync` completes the files.
void Store::apply(Locked& l, const std::vector<Area>& areas, bool full_capath, const Database* before,
                  const std::map<layout::StoreKey, StoreBundle>* narrow) {
  // A change a killed writer left unfinished (odd generation), or one that did not get to its
  // end (the marker: an error, a kill): this write's stores are compared entry by entry with
  // the database (a writer otherwise looks only at the names its own change moved), and every
  // CA directory with the whole selection, not derived from this change (a derivation trusts
  // the directories' manifests, which such a writer may have left behind the stores).
  const std::string unfinished(layout::kCapathUnfinished);
  const bool finished =
      generation_stable(read_generation(l.state.get())) && !fs::stat_at(l.state.get(), unfinished);
  // A narrow write checked, under this lock, that the last change finished: its database
  // holds only the records it touched, which a whole comparison would take for the store.
  // (Its commit stands; commit() says `sync` finishes it.)
  if (narrow && (!finished || !before))
    throw Error(Code::kIoError, "the stores changed under the writer lock during this write");
  begin_change(l.state.get());
  std::vector<Drift> ignored;
  std::vector<StoreChange> changes;  // a writer's: what each trusted store's change moved
  const Database* moved = finished ? before : nullptr;  // what the stores are compared against
  try {
    // The marker, until the stores and the CA directories followed this change. No fsync: a
    // kill loses no page cache, and after a power loss `sync` is the remedy anyway.
    int fd = ::openat(l.state.get(), unfinished.c_str(), O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, fs::kFileMode);
    if (fd < 0) throw_errno(Code::kIoError, "cannot create " + std::string(layout::kStateDir) + "/" + unfinished);
    ::close(fd);
    for (const auto& e : fs::list_dir(l.state.get()))  // temp files of a killed writer
      if (e.name.rfind(fs::kTempPrefix, 0) == 0) fs::remove_at(l.state.get(), e.name);
    // One CA store changed (install, uninstall): its CA directory's step is prepared on
    // another thread while the store is written (capath::Prepared).
    std::unique_ptr<capath::Prepared> prepared;
    {
      // A whole-store write (import, a sync repair): every file durable with one pass.
      std::optional<fs::Batch> batch;
      if (batch_writes_ || full_capath) batch.emplace();
      for (const auto& a : areas) {
        StoreChange* c = moved && a.kind == Area::Kind::kTrustedStore ? &changes.emplace_back() : nullptr;
        const StoreBundle* nb = narrow && a.kind == Area::Kind::kTrustedStore ? &narrow->at(a.key) : nullptr;
        auto prepare = [&] {
          if (c && areas.size() == 1 && !full_capath) prepared = std::make_unique<capath::Prepared>(root_.get(), ctx_, *c);
        };
        reconcile(root_.get(), l.db, a, true, ignored, moved, c, nb, prepare);
      }
      if (batch) batch->flush();  // before the CA directories read the bundles just written
    }
    // The per-purpose CA directories follow the bundles just written, in the same change.
    if (full_capath || !finished) capath::reconcile(root_.get(), ctx_, true, ignored);
    else capath::refresh(root_.get(), ctx_, areas, before ? &changes : nullptr, prepared.get());
    if (::unlinkat(l.state.get(), unfinished.c_str(), 0) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove " + std::string(layout::kStateDir) + "/" + unfinished);
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

template <typename Vec, typename Pred>
auto find_if_ptr(Vec& v, Pred p) -> decltype(&v[0]) {
  auto it = std::find_if(v.begin(), v.end(), p);
  return it == v.end() ? nullptr : &*it;
}

}  // namespace

namespace {

// A write whose files are made durable in one pass (fs::Batch in Store::apply) while it lives.
class BatchWrites {
 public:
  BatchWrites(bool& flag, bool on) : flag_(flag) { flag_ = on; }
  ~BatchWrites() { flag_ = false; }
  BatchWrites(const BatchWrites&) = delete;
  BatchWrites& operator=(const BatchWrites&) = delete;

 private:
  bool& flag_;
};

}  // namespace

std::vector<CertRecord> Store::install_each(const std::vector<Certificate>& certs, const InstallRequest& req,
                                            std::time_t now) {
  // Each is checked as a single install; the first refusal names its place in the bundle and
  // nothing is installed.
  std::vector<CertRecord> rs;
  for (size_t i = 0; i < certs.size(); ++i) {
    try {
      rs.push_back(vet_trusted(certs[i], req.type, req.purposes, ctx_.config, static_cast<std::int64_t>(now), now));
    } catch (const Error& e) {
      throw Error(e.code(), "certificate " + std::to_string(i + 1) + " of " + std::to_string(certs.size()) + ": " +
                                e.what() + "; nothing was installed");
    }
  }
  auto check = [&](const Database& db) {
    for (size_t i = 0; i < rs.size(); ++i) {
      try {
        if (const auto* o = duplicate_of(db, rs[i])) already_exists(*o);
        for (size_t j = 0; j < i; ++j)
          if (rs[j].sha256 == rs[i].sha256)
            throw Error(Code::kTrustedCertificateAlreadyExists,
                        "it repeats certificate " + std::to_string(j + 1) + " of the bundle");
      } catch (const Error& e) {
        throw Error(e.code(), "certificate " + std::to_string(i + 1) + " of " + std::to_string(rs.size()) + " (" +
                                  rs[i].subject + "): " + e.what() + "; nothing was installed");
      }
    }
  };
  // Many new files (a bundle of CAs): made durable with one pass, as `import` does, instead
  // of two fsyncs each (300 CAs: 4.5 s of wall time, nearly all fsync, before this).
  BatchWrites batch(batch_writes_, rs.size() > 16);
  write(true, check, [&](Database& db) {
    std::vector<Area> areas;
    for (auto& r : rs) {
      r.uuid = new_uuid();
      db.certs.push_back(r);
      for (const auto& a : areas_of(r))
        if (std::find(areas.begin(), areas.end(), a) == areas.end()) areas.push_back(a);
    }
    return areas;
  });
  return rs;
}

CertRecord Store::install(const Certificate& cert, const InstallRequest& req, std::time_t now) {
  CertRecord r = vet_trusted(cert, req.type, req.purposes, ctx_.config, static_cast<std::int64_t>(now), now);
  auto check = [&](const Database& db) {
    if (const auto* o = duplicate_of(db, r)) already_exists(*o);
  };
  // Its duplicates (same digest) and its hash bucket's records.
  const CertSelector narrow{.sha256 = r.sha256, .subject_hash = r.subject_hash};
  write(
      true, check,
      [&](Database& db) {
        r.uuid = new_uuid();
        db.certs.push_back(r);
        return areas_of(r);
      },
      &narrow);
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
  const CertSelector narrow{.uuid = uuid};  // the record and its hash bucket's records
  write(
      false, check,
      [&](Database& db) {
        auto it = std::find_if(db.certs.begin(), db.certs.end(), [&](const CertRecord& o) { return o.uuid == uuid; });
        r = *it;
        db.certs.erase(it);
        return areas_of(r);
      },
      &narrow);
  return r;
}

namespace {

// What the replacement and delta rules read from a CRL.
struct CrlFacts {
  using Int = ossl::Ptr<ASN1_INTEGER, ASN1_INTEGER_free>;
  ossl::X509CrlPtr crl;
  Int number;  // crlNumber; null when absent
  Int base;    // a delta's BaseCRLNumber; null for a complete CRL
  // What tells concurrent CRLs of one issuer name apart (a rolled-over key, CRLs partitioned
  // by distribution point or reasons): the AKID keyIdentifier and the issuingDistributionPoint
  // DER, nullopt when absent.
  std::optional<std::string> akid, idp;
  bool delta() const noexcept { return base != nullptr; }
};

std::optional<std::string> octets(const ASN1_OCTET_STRING* s) {
  if (!s) return std::nullopt;
  return std::string(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)), static_cast<size_t>(ASN1_STRING_length(s)));
}

CrlFacts facts_of(const CrlRecord& r) {
  CrlFacts f;
  f.crl = parse_crl(r.pem);
  if (!f.crl) throw Error(Code::kDatabaseInvalid, "the CRL '" + r.name + "' in the database does not parse");
  f.number.reset(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(f.crl.get(), NID_crl_number, nullptr, nullptr)));
  f.base.reset(static_cast<ASN1_INTEGER*>(X509_CRL_get_ext_d2i(f.crl.get(), NID_delta_crl, nullptr, nullptr)));
  ossl::Ptr<AUTHORITY_KEYID, AUTHORITY_KEYID_free> akid(
      static_cast<AUTHORITY_KEYID*>(X509_CRL_get_ext_d2i(f.crl.get(), NID_authority_key_identifier, nullptr, nullptr)));
  if (akid) f.akid = octets(akid->keyid);
  if (int i = X509_CRL_get_ext_by_NID(f.crl.get(), NID_issuing_distribution_point, -1); i >= 0)
    f.idp = octets(X509_EXTENSION_get_data(X509_CRL_get_ext(f.crl.get(), i)));
  return f;
}

// Newer: a higher crlNumber when both have one, otherwise a later thisUpdate.
bool newer(const CrlFacts& a, const CrlFacts& b) {
  if (a.number && b.number) return ASN1_INTEGER_cmp(a.number.get(), b.number.get()) > 0;
  return ASN1_TIME_compare(X509_CRL_get0_lastUpdate(a.crl.get()), X509_CRL_get0_lastUpdate(b.crl.get())) > 0;
}

// "crlNumber 3" or "thisUpdate 2026-...": what `newer` compared.
std::string order_of(const CrlFacts& f, bool by_number) {
  if (by_number) return "crlNumber " + x509::crl_number(f.crl.get());
  return "thisUpdate " + x509::format_time(x509::to_epoch(X509_CRL_get0_lastUpdate(f.crl.get())).value_or(0));
}

std::string scope_text(const std::vector<std::string>& purposes) {
  if (purposes.empty()) return "unscoped";
  std::string s;
  for (const auto& p : purposes) s += (s.empty() ? "" : ",") + p;
  return "--purpose " + s;
}

// The installed CRLs of the same line as `r` (other than `r`): the same issuer name
// (X509_NAME_cmp), AKID keyIdentifier, issuingDistributionPoint and scope (purpose set). Of
// those, a CRL replaces the older one of its own kind (complete or delta), and a delta's base
// is a complete one (OpenSSL matches a delta to its base on the same name, AKID and IDP). A
// CRL of another line is installed beside them. Only records whose issuer text has the same
// key are decoded.
struct Peer {
  const CrlRecord* record;
  CrlFacts facts;
};
std::vector<Peer> peers_of(const Database& db, const CrlRecord& r, const CrlFacts& rf) {
  std::vector<Peer> out;
  const std::string key = x509::name_key(r.issuer);
  for (const auto& o : db.crls) {
    if (&o == &r || o.purposes != r.purposes || x509::name_key(o.issuer) != key) continue;
    CrlFacts f = facts_of(o);
    if (X509_NAME_cmp(X509_CRL_get_issuer(f.crl.get()), X509_CRL_get_issuer(rf.crl.get())) == 0 && f.akid == rf.akid &&
        f.idp == rf.idp)
      out.push_back({&o, std::move(f)});
  }
  return out;
}

// What installing a CRL changes, decided on one database (the check's), applied to the same.
struct CrlPlan {
  std::string name;                        // the new record's name
  std::optional<std::string> replaced;     // name of the CRL it replaces
  std::string replaced_number, number;     // crlNumbers, for the report
  std::vector<std::string> dropped;        // names removed with it
  CrlSigner signer;
  std::string base_without_freshest;       // a delta's base that has no freshestCRL extension
};

CrlPlan plan_crl_install(const Database& db, const CrlRecord& r, const CrlFacts& rf, bool explicit_name,
                         const std::vector<Certificate>& issuers) {
  CrlPlan plan;
  // First: a forged CRL is refused as forged, whatever it would replace.
  plan.signer = check_crl_signature(db, r, issuers);
  plan.number = x509::crl_number(rf.crl.get());
  const std::string what = "from '" + r.issuer + "' (" + scope_text(r.purposes) + ")";
  std::vector<Peer> peers = peers_of(db, r, rf);
  const Peer* target = nullptr;  // the newest installed CRL of the same kind
  const Peer* base = nullptr;    // a delta's base: the complete CRL with the highest crlNumber
  for (const auto& p : peers) {
    if (p.facts.delta() == rf.delta() && (!target || newer(p.facts, target->facts))) target = &p;
    if (!p.facts.delta() && p.facts.number &&
        (!base || ASN1_INTEGER_cmp(p.facts.number.get(), base->facts.number.get()) > 0))
      base = &p;
  }
  if (rf.delta() && (!base || ASN1_INTEGER_cmp(base->facts.number.get(), rf.base.get()) < 0))
    throw Error(Code::kCrlDeltaWithoutBase,
                "this delta CRL " + what + " applies to a complete CRL with crlNumber " + x509::crl_delta_base(rf.crl.get()) +
                    " or higher, and none is installed" +
                    (base ? " (the installed one has crlNumber " + x509::crl_number(base->facts.crl.get()) + ")" : "") +
                    "; install the complete CRL first");
  if (rf.delta() && X509_CRL_get_ext_by_NID(base->facts.crl.get(), NID_freshest_crl, -1) < 0)
    plan.base_without_freshest = base->record->name;
  if (target) {
    if (!newer(rf, target->facts)) {
      bool by_number = rf.number && target->facts.number;
      throw Error(Code::kCrlNotNewer, "the installed " + std::string(rf.delta() ? "delta " : "") + "CRL '" +
                                          target->record->name + "' " + what + " has " + order_of(target->facts, by_number) +
                                          ", this one " + order_of(rf, by_number) + "; only a newer CRL replaces it");
    }
    plan.replaced = target->record->name;
    plan.replaced_number = x509::crl_number(target->facts.crl.get());
  }
  // One CRL of each kind per issuer and scope: older ones of the same kind go too, and a
  // complete CRL takes the deltas whose base is below its number (they no longer apply).
  for (const auto& p : peers) {
    if (&p == target) continue;
    bool drop = p.facts.delta() == rf.delta() ||
                (!rf.delta() && p.facts.delta() && (!rf.number || ASN1_INTEGER_cmp(p.facts.base.get(), rf.number.get()) < 0));
    if (drop) plan.dropped.push_back(p.record->name);
  }
  plan.name = explicit_name || !plan.replaced ? r.name : *plan.replaced;
  auto taken = [&](const std::string& n) -> const CrlRecord* {
    if (n == plan.replaced || std::find(plan.dropped.begin(), plan.dropped.end(), n) != plan.dropped.end()) return nullptr;
    auto it = std::find_if(db.crls.begin(), db.crls.end(), [&](const CrlRecord& o) { return o.name == n; });
    return it == db.crls.end() ? nullptr : &*it;
  };
  if (!explicit_name && !plan.replaced) {
    // A derived name that another line holds: Name-2.crl, Name-3.crl, ...
    const std::string stem = r.name.substr(0, r.name.size() - 4);  // derived names end in .crl
    for (int i = 2; taken(plan.name) && i <= 1000; ++i) plan.name = stem + "-" + std::to_string(i) + ".crl";
  }
  if (const CrlRecord* o = taken(plan.name))
    throw Error(Code::kCrlAlreadyExists, "a CRL named '" + plan.name + "' is already installed (from '" + o->issuer +
                                             "', " + scope_text(o->purposes) + ")");
  return plan;
}


}  // namespace

std::string_view to_string(CrlStatus::State s) noexcept {
  switch (s) {
    case CrlStatus::State::kOk: return "ok";
    case CrlStatus::State::kExpired: return "expired";
    case CrlStatus::State::kNotYetValid: return "not-yet-valid";
  }
  return "ok";
}

CrlStatus crl_status(const Config& cfg, const Database& db, const CrlRecord& crl, std::time_t now) {
  return crl_status(cfg, shapes_of(db), crl, now);
}

CrlStatus crl_status(const Config& cfg, const Shapes& shapes, const CrlRecord& crl, std::time_t now) {
  CrlStatus st;
  if (crl.last_update > now) st.state = CrlStatus::State::kNotYetValid;
  else if (crl.next_update != 0 && crl.next_update < now) st.state = CrlStatus::State::kExpired;
  // Which purposes verify with it: the rule build_trust applies on disk (core/trust.h), here on
  // the records: the mode the selection rule gives, takes_crls, the CRL's scope.
  std::vector<std::string> names;
  for (const auto& [p, _] : cfg.purposes) names.push_back(p);
  names.push_back(std::string(kGeneral));
  const bool general = shapes.count(Shape{CertType::kCa, {}}) > 0;
  for (const auto& p : names) {
    Mode mode = p == kGeneral ? (general ? Mode::kGeneral : Mode::kNone) : mode_in(shapes, p);
    PurposePolicy policy = policy_of(cfg, p);
    if (!takes_crls(mode, policy) || !crl_in_scope(crl.purposes, p)) continue;
    st.checking.push_back(p);
    if (!crl.delta_base.empty()) continue;  // an unusable delta is skipped, not failed
    if (st.state == CrlStatus::State::kNotYetValid ||
        (st.state == CrlStatus::State::kExpired && !policy.allow_expired_crl))
      st.failing.push_back(p);
  }
  return st;
}

CrlInstallResult Store::crl_install(std::string_view data, const std::string& name_in,
                                    const std::vector<std::string>& purposes, std::time_t now,
                                    const std::vector<Certificate>& issuers) {
  CrlInstallResult res;
  CrlRecord r = vet_crl(data, name_in, purposes, ctx_.config, static_cast<std::int64_t>(now));
  const CrlFacts rf = facts_of(r);
  CrlPlan plan;
  std::optional<CrlStatus> status;
  // The plan is decided by each check (the read view, then under the lock) and applied by the
  // change that follows it on the same database.
  auto check = [&](const Database& db) { plan = plan_crl_install(db, r, rf, !name_in.empty(), issuers); };
  // The CAs that may have signed it: the records of its issuer name's hash bucket.
  const CertSelector narrow{.subject_hash = static_cast<std::uint32_t>(
                                X509_NAME_hash_ex(X509_CRL_get_issuer(rf.crl.get()), nullptr, nullptr, nullptr))};
  write(true, check, [&](Database& db) {
    CrlRecord rec = r;
    rec.name = plan.name;
    rec.issuer_pem = plan.signer.pem;
    res.replaced.reset();
    res.dropped.clear();
    std::erase_if(db.crls, [&](const CrlRecord& o) {
      bool gone = o.name == plan.replaced;
      if (gone) res.replaced = o;
      if (std::find(plan.dropped.begin(), plan.dropped.end(), o.name) != plan.dropped.end()) {
        res.dropped.push_back(o);
        gone = true;
      }
      return gone;
    });
    db.crls.push_back(rec);
    res.record = std::move(rec);
    // Its status on the database this change commits (no second load of it afterwards).
    try {
      status = narrow_shapes_ ? crl_status(ctx_.config, *narrow_shapes_, res.record, now)
                              : crl_status(ctx_.config, db, res.record, now);
    } catch (const std::exception&) {
      status.reset();
    }
    return std::vector<Area>{{Area::Kind::kCrl}};
  }, &narrow);
  res.replaced_number = plan.replaced_number;
  res.number = plan.number;
  res.signer = plan.signer.how;

  const std::string& n = res.record.name;
  CrlStatus st = status ? *status : crl_status(ctx_.config, database(), res.record, now);
  auto purposes_text = [&] {
    std::string s;
    for (const auto& p : st.failing) s += (s.empty() ? "" : ", ") + p;
    return s;
  };
  if (st.state == CrlStatus::State::kExpired)
    res.warnings.push_back(
        "CRL '" + n + "' is past its nextUpdate (" + x509::format_time(res.record.next_update) + "): " +
        (st.failing.empty() ? std::string(r.delta_base.empty() ? "no purpose fails because of it (none verifies with it, or allow-expired-crl)"
                                                               : "consumers skip an expired delta CRL")
                            : "verification for purposes " + purposes_text() + " fails until it is replaced"));
  else if (st.state == CrlStatus::State::kNotYetValid)
    res.warnings.push_back("CRL '" + n + "' is not valid before its thisUpdate (" + x509::format_time(res.record.last_update) +
                           ")" + (st.failing.empty() ? std::string() : ": verification for purposes " + purposes_text() + " fails until then"));
  // OpenSSL (RFC 5280 5.2.6) looks for a delta only when the base CRL or the certificate
  // being checked has a freshestCRL extension.
  if (!plan.base_without_freshest.empty())
    res.warnings.push_back("delta CRL '" + n + "': its base '" + plan.base_without_freshest +
                           "' has no freshestCRL extension, so consumers apply the delta only to certificates that "
                           "carry one");
  if (res.signer == CrlSigner::How::kUnchecked)
    res.warnings.push_back("CRL '" + n + "': no installed CA is named '" + res.record.issuer +
                           "', so its signature is checked only at verification time; give its signer with --issuer FILE "
                           "to check it now");
  return res;
}

CrlRemoval Store::crl_uninstall(const std::string& name) {
  auto check = [&](const Database& db) {
    if (!find_if_ptr(db.crls, [&](const CrlRecord& r) { return r.name == name; }))
      throw Error(Code::kCrlDoesNotExist, "no CRL named '" + name + "'");
  };
  CrlRemoval res;
  const CertSelector narrow;  // no certificate record
  write(false, check, [&](Database& db) {
    auto it = std::find_if(db.crls.begin(), db.crls.end(), [&](const CrlRecord& o) { return o.name == name; });
    res.record = *it;
    res.dropped.clear();
    std::optional<CrlFacts> f;
    try {
      f = facts_of(*it);
    } catch (const Error&) {  // a record that does not parse is removed all the same
    }
    if (f && !f->delta()) {
      // Its deltas go with it, unless another complete CRL of the issuer and scope is their base.
      std::vector<Peer> peers = peers_of(db, *it, *f);
      std::vector<std::string> drop;
      for (const auto& p : peers) {
        if (!p.facts.delta()) continue;
        bool based = std::any_of(peers.begin(), peers.end(), [&](const Peer& q) {
          return !q.facts.delta() && q.facts.number && ASN1_INTEGER_cmp(q.facts.number.get(), p.facts.base.get()) >= 0;
        });
        if (!based) drop.push_back(p.record->name);
      }
      std::erase_if(db.crls, [&](const CrlRecord& o) {
        if (std::find(drop.begin(), drop.end(), o.name) == drop.end()) return false;
        res.dropped.push_back(o);
        return true;
      });
    }
    std::erase_if(db.crls, [&](const CrlRecord& o) { return o.name == name; });
    return std::vector<Area>{{Area::Kind::kCrl}};
  }, &narrow);
  return res;
}

LegacyRecord Store::legacy_install(const std::string& name, const Certificate& cert, std::time_t now) {
  LegacyRecord r = vet_legacy(name, cert, static_cast<std::int64_t>(now), now);
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
  PoolRecord r = vet_pool(host, staged, cert, static_cast<std::int64_t>(now), now);
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

std::string Store::export_document() const { return export_json(database(), &ctx_.config); }

ImportPlan Store::import_document(const std::string& doc, bool dry_run) {
  Incoming in = parse_export(doc, ctx_.config);  // validates everything before any lock
  ImportPlan plan;
  Database merged;
  auto check = [&](const Database& db) {
    plan = {};
    merged = merge_import(db, in, plan);  // throws on any conflict
    // Anything added changes the database; otherwise only an earlier installed_at can.
    return !dry_run && (!plan.added.empty() || !same_content(merged, db));
  };
  BatchWrites batch(batch_writes_, true);
  write(true, check, [&](Database& db) {
    db = std::move(merged);  // every change follows its own check, which merges again
    return all_areas(root_.get(), db);
  });
  return plan;
}

ImportPlan Store::replace_document(const std::string& doc) {
  Incoming in = parse_export(doc, ctx_.config);  // validates everything before any lock
  ImportPlan plan;
  Database replaced;
  auto check = [&](const Database& db) {
    plan = {};
    replaced = replace_import(db, in, plan);
    return !same_content(replaced, db);
  };
  BatchWrites batch(batch_writes_, true);
  write(true, check, [&](Database& db) {
    db = std::move(replaced);  // as in import_document
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
  {
    // Refusals before anything is repaired (not even a lock that is not a file).
    Locked r(root_.get(), Locked::Mode::kRead);
    refuse_missing_database(root_.get(), r.db_found);
    if (!repair) return drift(r, false);
  }
  Locked l(root_.get(), Locked::Mode::kRepair);
  refuse_missing_database(root_.get(), l.db_found);
  return drift(l, true);
}

std::vector<Drift> Store::check(Database& db) {
  Locked r(root_.get(), Locked::Mode::kRead);
  refuse_missing_database(root_.get(), r.db_found);
  std::vector<Drift> out = drift(r, false);
  db = std::move(r.db);
  return out;
}

AdoptResult Store::adopt(std::time_t now) {
  auto adopt = [&](const Locked& l) {
    if (l.db_found && !holds_nothing(l.db))
      throw Error(Code::kUsage, "this root has a database (" + std::to_string(l.db.certs.size() + l.db.crls.size() +
                                                                           l.db.legacy.size() + l.db.pool.size()) +
                                    " records): --adopt only recovers a root whose database is missing or empty; "
                                    "run `ptrust sync`");
    return adopt_from_disk(root_.get(), ctx_.config, now);
  };
  {
    Locked r(root_.get(), Locked::Mode::kRead);  // every refusal before anything is written
    adopt(r);
  }
  Locked l(root_.get(), Locked::Mode::kRepair);
  Adopted a = adopt(l);
  AdoptResult res;
  res.warnings = std::move(a.warnings);
  res.adopted = a.db;
  l.db = std::move(a.db);
  save_database(l.state.get(), l.db);  // the commit point; the files follow from it
  l.db_found = true;
  res.repaired = drift(l, true);
  return res;
}

namespace {

std::string mode_detail(mode_t have, mode_t want) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mode %04o, expected %04o", have & 07777, want);
  return buf;
}

}  // namespace

std::vector<Drift> Store::drift(Locked& l, bool repair) {
  std::vector<Drift> out = l.drift;  // a lock that is not a regular file (already replaced when repairing)
  std::vector<std::function<void()>> fixes;  // repairs of the state files and directories, run before apply
  const std::string state_dir(layout::kStateDir);
  const std::string gen_name(layout::kGenerationFile);
  const std::string gen_path = state_dir + "/" + gen_name;

  // The directories ptrust owns must be 0755: consumers (stunnel after setuid, the provider
  // in any process) must be able to reach the stores and the generation file.
  for (std::string_view rel : {layout::kTrustedDir, layout::kStunnelDir, layout::kStateDir}) {
    fs::Fd d = fs::open_dir(root_.get(), rel, false);
    struct stat st;
    if (!d || ::fstat(d.get(), &st) != 0 || (st.st_mode & 07777) == fs::kDirMode) continue;
    out.push_back({Drift::Kind::kMode, std::string(rel), mode_detail(st.st_mode, fs::kDirMode)});
    fixes.push_back([this, rel] {
      fs::Fd d = fs::open_dir(root_.get(), rel, false);
      if (d && ::fchmod(d.get(), fs::kDirMode) != 0) throw_errno(Code::kIoError, "cannot chmod " + std::string(rel));
    });
  }
  if (l.lock) {
    struct stat st;
    if (::fstat(l.lock.get(), &st) == 0 && (st.st_mode & 07777) != 0600) {
      out.push_back({Drift::Kind::kMode, state_dir + "/" + std::string(layout::kLockFile), mode_detail(st.st_mode, 0600)});
      int fd = l.lock.get();
      fixes.push_back([fd] {
        if (::fchmod(fd, 0600) != 0) throw_errno(Code::kIoError, "cannot chmod the lock file");
      });
    }
  }

  std::uint64_t gen = 0;
  bool gen_unsafe = false;
  if (l.state) {
    if (auto bad = not_regular(l.state.get(), gen_name)) {
      // Writers refuse to start a change on it; sync replaces it (begin_change creates it).
      gen_unsafe = true;
      out.push_back({Drift::Kind::kUnsafe, gen_path, *bad + ", expected the generation file"});
      int sfd = l.state.get();
      fixes.push_back([sfd, gen_name] { fs::remove_tree(sfd, gen_name); });
    } else {
      gen = read_generation(l.state.get());
      auto st = fs::stat_at(l.state.get(), gen_name);
      if (st && (st->st_mode & 07777) != fs::kFileMode) {
        out.push_back({Drift::Kind::kMode, gen_path, mode_detail(st->st_mode, fs::kFileMode)});
        int sfd = l.state.get();
        fixes.push_back([sfd, gen_name] {
          int fd = ::openat(sfd, gen_name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
          if (fd < 0) throw_errno(Code::kIoError, "cannot open the generation file");
          fs::Fd g(fd);
          if (::fchmod(fd, fs::kFileMode) != 0) throw_errno(Code::kIoError, "cannot chmod the generation file");
        });
      }
    }
  }
  if (l.state && !gen_unsafe && gen == 0 && !holds_nothing(l.db))
    out.push_back({Drift::Kind::kMissing, gen_path, "store generation"});
  if (gen != 0 && !generation_stable(gen))
    out.push_back({Drift::Kind::kStale, gen_path, "a writer did not finish its change; readers must reload"});
  if (l.state && fs::stat_at(l.state.get(), std::string(layout::kCapathUnfinished)))
    out.push_back({Drift::Kind::kStale, state_dir + "/" + std::string(layout::kCapathUnfinished),
                   "a write stopped before the stores and CA directories followed it; sync compares them all"});
  // Temp files a killed writer left in the state directory (never visible as state), and
  // beside the legacy and pool bundles in etc/stunnel (a writer killed in `legacy install`
  // or `pool add`); the store directories and etc/trusted-certs report their own.
  if (l.state)
    for (const auto& e : fs::list_dir(l.state.get()))
      if (e.name.rfind(fs::kTempPrefix, 0) == 0)
        out.push_back({Drift::Kind::kRemnant, state_dir + "/" + e.name, "temporary file"});
  if (fs::Fd st = fs::open_dir(root_.get(), layout::kStunnelDir, false)) {
    for (const auto& e : fs::list_dir(st.get())) {
      if (e.name.rfind(fs::kTempPrefix, 0) != 0) continue;
      out.push_back({Drift::Kind::kRemnant, std::string(layout::kStunnelDir) + "/" + e.name,
                     "temporary file of a killed writer"});
      std::string name = e.name;
      fixes.push_back([this, name] {
        if (fs::Fd d = fs::open_dir(root_.get(), layout::kStunnelDir, false)) fs::remove_tree(d.get(), name);
      });
    }
  }

  std::vector<Area> areas = all_areas(root_.get(), l.db);
  for (const auto& a : areas) reconcile(root_.get(), l.db, a, false, out);
  // The CA directories derive from the trusted stores and CRLs on disk: they are compared once
  // those are clean (a repair fixes the stores first, then rebuilds them from the result). A
  // root ptrust never wrote has none.
  if (l.state && !capath::inputs_drift(out)) capath::reconcile(root_.get(), ctx_, false, out);
  if (!repair || out.empty()) return out;
  for (const auto& f : fixes) f();
  apply(l, areas, true);
  return out;
}

}  // namespace ptrust
