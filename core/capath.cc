#include "core/capath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <set>
#include <string_view>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "core/cluster_ca.h"
#include "core/crl.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"
#include "core/trust.h"
#include "core/x509.h"

namespace ptrust::capath {

// ---- The seam: what a purpose selects right now ------------------------------------------

Selected selected(const Context& ctx, std::string_view purpose) {
  // The one trust state every consumer reads (selection, pinned mode has no CRLs, CRL scope
  // and crl-policy): the directory holds exactly what the provider and the hook trust.
  // The directory needs DER and subjects only: no full decode of a 10,000-CA bundle per write.
  std::shared_ptr<const TrustState> t = build_trust_undecoded(ctx, purpose);
  if (!t) throw std::bad_alloc();
  if (t->failure) throw Error(*t->failure, t->failure_message);
  refuse_ca_pins_for_chain_consumers(*t);  // programs build chains from the directory
  Selected s;
  s.mode = t->mode;
  for (const auto& c : t->certs)
    s.certs.push_back({c.der, X509_NAME_hash_ex(c.subject.get(), nullptr, nullptr, nullptr)});
  for (const auto& c : t->crls)
    s.crls.push_back({c.der, X509_NAME_hash_ex(X509_CRL_get_issuer(c.crl.get()), nullptr, nullptr, nullptr)});
  return s;
}

// ---- What a purpose directory must hold ---------------------------------------------------

std::vector<std::string> purposes(const Config& cfg) {
  std::set<std::string> out{std::string(kGeneral)};
  for (const auto& [name, policy] : cfg.purposes) out.insert(name);
  return {out.begin(), out.end()};
}

std::vector<std::string> affected(const Config& cfg, const std::vector<Area>& areas) {
  std::set<std::string> out;
  for (const auto& a : areas) {
    switch (a.kind) {
      case Area::Kind::kTrustedStore:
        if (a.key.purpose != kGeneral) {
          if (cfg.declares(a.key.purpose)) out.insert(a.key.purpose);
          break;
        }
        [[fallthrough]];
      case Area::Kind::kTrustedTop:
      case Area::Kind::kCrl: return purposes(cfg);
      case Area::Kind::kLegacy:
      case Area::Kind::kPool: break;
    }
  }
  return {out.begin(), out.end()};
}

namespace {

constexpr size_t kMaxEntry = 64u << 20;

std::string join(std::string_view a, std::string_view b) { return std::string(a) + "/" + std::string(b); }

std::string to_pem(const char* type, const std::string& der) {
  ossl::BioPtr b(BIO_new(BIO_s_mem()));
  if (!b || PEM_write_bio(b.get(), type, "", reinterpret_cast<const unsigned char*>(der.data()),
                          static_cast<long>(der.size())) <= 0)
    throw Error(Code::kIoError, "cannot PEM-encode a selected object");
  char* p = nullptr;
  long n = BIO_get_mem_data(b.get(), &p);
  return std::string(p, static_cast<size_t>(n));
}

struct Wanted {
  std::map<std::string, std::string> files;  // entry name → content, manifest included
  std::map<std::string, std::string> sums;   // entry name → SHA-256 (hex) of its content, manifest excluded
};

// Hash entries for `objects` in selection order, numbered within each hash as c_rehash does
// (<hash><sep><n>), each the PEM of its DER.
void add_entries(std::map<std::string, std::string>& files, const std::vector<Object>& objects, const char* sep,
                 const char* pem_type) {
  std::map<unsigned long, int> seen;
  char name[32];
  for (const auto& o : objects) {
    std::snprintf(name, sizeof name, "%08lx%s%d", o.hash, sep, seen[o.hash]++);
    files[name] = to_pem(pem_type, o.der);
  }
}

// The directory for `purpose`: OpenSSL hash entries (numbered in selection order, as
// c_rehash does) and the manifest. A selection that fails (corrupt or unsafe chosen
// bundle) is an empty directory: fail closed, as every other consumer.
Wanted wanted(const Context& ctx, const std::string& purpose) {
  Selected s;
  std::string error;
  try {
    s = selected(ctx, purpose);
  } catch (const Error& e) {
    s = {};
    error = std::string(code_name(e.code()));
  }
  Wanted w;
  add_entries(w.files, s.certs, ".", "CERTIFICATE");
  add_entries(w.files, s.crls, ".r", "X509 CRL");
  std::string manifest = "ptrust-capath 1\npurpose " + purpose + "\nmode " +
                         std::string(error.empty() ? to_string(s.mode) : "none") + "\n";
  if (!error.empty()) manifest += "error " + error + "\n";
  for (const auto& [n, content] : w.files) {
    std::string sum = x509::sha256_hex(content);
    manifest += sum + " " + n + "\n";
    w.sums.emplace(n, std::move(sum));
  }
  w.files[std::string(layout::kCapathManifest)] = std::move(manifest);
  return w;
}

// ---- File-system steps (all relative to directory fds, never following a symlink) ----------

// Removes an entry (a whole tree for a directory) without following symlinks and without a
// directory fsync per file: used for trees no reader can reach by name any more.
void remove_tree(int dirfd, const std::string& name) {
  auto st = fs::stat_at(dirfd, name);
  if (!st) return;
  if (S_ISDIR(st->st_mode)) {
    fs::Fd sub = fs::open_dir(dirfd, name, false);
    if (sub) {
      // The manifest goes last: a reader still holding this directory never finds entries
      // its manifest does not describe.
      const std::string manifest(layout::kCapathManifest);
      for (const auto& e : fs::list_dir(sub.get()))
        if (e.name != manifest) remove_tree(sub.get(), e.name);
      remove_tree(sub.get(), manifest);
    }
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove directory " + name);
  } else if (::unlinkat(dirfd, name.c_str(), 0) != 0 && errno != ENOENT) {
    throw_errno(Code::kIoError, "cannot remove " + name);
  }
}

void fsync_fd(int fd, const std::string& what) {
  if (::fsync(fd) != 0) throw_errno(Code::kIoError, "cannot fsync " + what);
}


// Links `name` from `from` into `to` when it is a regular 0644 file holding exactly `content`.
bool reuse(int from, int to, const std::string& name, const std::string& content) {
  auto st = fs::stat_at(from, name);
  if (!st || !S_ISREG(st->st_mode) || (st->st_mode & 07777) != fs::kFileMode ||
      static_cast<size_t>(st->st_size) != content.size())
    return false;
  try {
    auto have = fs::read_at(from, name, kMaxEntry);
    if (!have || *have != content) return false;
  } catch (const Error&) {
    return false;
  }
  return ::linkat(from, name.c_str(), to, name.c_str(), 0) == 0;  // flags 0: a symlink is never followed
}

// Builds the complete directory under a temp name and swaps it in: a reader opening
// capath/<purpose>/... sees the old tree or the new one, never a mix and never nothing.
// The store directory the purpose's selection comes from (its hash entries have the names and
// the PEM of the directory's certificate entries), or none.
fs::Fd chosen_store(const Context& ctx, const std::string& purpose) {
  try {
    Resolution r = resolve(ctx, purpose);
    if (r.store_dir.empty()) return {};
    fs::Fd root = fs::open_root(ctx.root);
    fs::Fd trusted = fs::open_dir(root.get(), layout::kTrustedDir, false);
    return trusted ? fs::open_dir(trusted.get(), r.store_dir, false) : fs::Fd();
  } catch (const Error&) {
    return {};
  }
}

void swap_in(int capfd, const std::string& purpose, const Wanted& w, const Context& ctx) {
  auto [tmp, d] = fs::create_temp_dir(capfd);
  try {
    // Entries that stay are hard links to the old tree's files (checked byte for byte; the
    // files are immutable, and the old names go away below): an install into a purpose of N
    // CAs writes and fsyncs only what changed, not N files.
    fs::Fd old;
    if (auto st = fs::stat_at(capfd, purpose); st && S_ISDIR(st->st_mode)) old = fs::open_dir(capfd, purpose, false);
    // Many new entries (a first build, an import): one syncfs makes them all durable before
    // the swap, instead of an fsync each.
    // Entries new to the directory are hard links to the chosen store's hash entry of the same
    // name when it holds the same bytes (checked as above): a first build or an import of
    // 10,000 CAs allocates no inode here.
    fs::Fd store;
    bool store_opened = false;
    std::vector<const std::pair<const std::string, std::string>*> fresh;
    for (const auto& e : w.files) {
      if (old && reuse(old.get(), d.get(), e.first, e.second)) continue;
      if (!store_opened && layout::is_hash_link_name(e.first)) {
        store = chosen_store(ctx, purpose);
        store_opened = true;
      }
      if (store && layout::is_hash_link_name(e.first) && reuse(store.get(), d.get(), e.first, e.second)) continue;
      fresh.push_back(&e);
    }
    const bool one_sync = fresh.size() > 16;
    for (const auto* e : fresh) fs::create_file(d.get(), e->first, e->second, fs::kFileMode, !one_sync);
    if (one_sync && ::syncfs(d.get()) != 0) throw_errno(Code::kIoError, "cannot sync " + join(layout::kCapathDir, tmp));
    fsync_fd(d.get(), join(layout::kCapathDir, tmp));
    if (fs::stat_at(capfd, purpose)) {
      if (::renameat2(capfd, tmp.c_str(), capfd, purpose.c_str(), RENAME_EXCHANGE) != 0)
        throw_errno(Code::kIoError, "cannot swap in " + join(layout::kCapathDir, purpose) +
                                        " (the file system must support renameat2 RENAME_EXCHANGE)");
    } else if (::renameat2(capfd, tmp.c_str(), capfd, purpose.c_str(), RENAME_NOREPLACE) != 0) {
      throw_errno(Code::kIoError, "cannot move " + join(layout::kCapathDir, purpose) + " into place");
    }
    fsync_fd(capfd, std::string(layout::kCapathDir));
  } catch (...) {
    try {
      remove_tree(capfd, tmp);
    } catch (...) {  // the next writer or sync removes it
    }
    throw;
  }
  remove_tree(capfd, tmp);  // the old tree, unreachable by name now
}

// The entry lines of a manifest ("<64 hex> <name>"): name → SHA-256. nullopt when a line is
// neither a header line nor an entry line (the manifest is then not trusted for a diff).
std::optional<std::map<std::string, std::string>> manifest_sums(std::string_view m) {
  std::map<std::string, std::string> out;
  size_t pos = 0;
  bool first = true;
  while (pos < m.size()) {
    size_t nl = m.find('\n', pos);
    if (nl == std::string_view::npos) return std::nullopt;  // always newline-terminated
    std::string_view line = m.substr(pos, nl - pos);
    pos = nl + 1;
    if (first) {
      if (line != "ptrust-capath 1") return std::nullopt;
      first = false;
    } else if (line.starts_with("purpose ") || line.starts_with("mode ") || line.starts_with("error ")) {
      continue;
    } else if (line.size() > 65 && line[64] == ' ' &&
               line.substr(0, 64).find_first_not_of("0123456789abcdef") == std::string_view::npos) {
      if (!out.emplace(std::string(line.substr(65)), std::string(line.substr(0, 64))).second) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  if (first) return std::nullopt;
  return out;
}

// The cheap path of a write: when the directory on disk is exactly what its manifest
// describes (same names, only regular 0644 files, mode 0755) and the selection differs from
// it by ONE step a reader can only see whole — one entry created or replaced (temp file,
// fsync, rename), one entry removed (unlink), or one entry renamed onto another (the
// renumbering of a same-subject bucket after a removal) — does that step in place, then
// replaces the manifest. A reader of the directory sees the old or the new selection, as
// with a swap, for a cost that does not grow with the directory. Returns false (nothing
// done) when the change needs more than one step or the directory is not as its manifest
// says (a killed writer's leftovers, drift): the caller swaps in a whole new tree.
bool update_in_place(int capfd, const std::string& purpose, const Wanted& w) {
  auto st = fs::stat_at(capfd, purpose);
  if (!st || !S_ISDIR(st->st_mode) || (st->st_mode & 07777) != fs::kDirMode) return false;
  fs::Fd d = fs::open_dir(capfd, purpose, false);
  if (!d) return false;
  const std::string manifest_name(layout::kCapathManifest);
  std::optional<std::map<std::string, std::string>> old;
  try {
    auto m = fs::read_at(d.get(), manifest_name, kMaxEntry);
    if (m) old = manifest_sums(*m);
  } catch (const Error&) {
    return false;
  }
  if (!old) return false;
  size_t listed = 0;
  // Names and types from the directory alone (no stat of 10,000 entries): an entry's mode
  // and content are `sync`'s to check, as for every entry a write does not touch.
  bool as_manifest = true;
  std::string key;
  fs::each_name(d.get(), [&](std::string_view name, mode_t type) {
    if (!as_manifest) return;
    if (type != S_IFREG) as_manifest = false;
    if (name == manifest_name) return;
    key.assign(name);
    if (!old->count(key)) as_manifest = false;  // not the manifest's: a leftover, or drift
    ++listed;
  });
  if (!as_manifest || listed != old->size()) return false;  // a stray entry, or one missing

  std::vector<std::string> changed, removed;  // at most a few kept: more means "swap"
  for (const auto& [name, sum] : w.sums) {
    auto it = old->find(name);
    if (it == old->end() || it->second != sum) changed.push_back(name);
    if (changed.size() > 1) return false;
  }
  for (const auto& [name, sum] : *old) {
    if (!w.sums.count(name)) removed.push_back(name);
    if (removed.size() > 1) return false;
  }
  const std::string path = join(layout::kCapathDir, purpose);
  if (changed.size() == 1 && removed.size() == 1) {
    // Only a rename moves one entry's content to another name in one step.
    if (old->at(removed[0]) != w.sums.at(changed[0])) return false;
    if (::renameat(d.get(), removed[0].c_str(), d.get(), changed[0].c_str()) != 0)
      throw_errno(Code::kIoError, "cannot rename " + join(path, removed[0]));
  } else if (changed.size() == 1) {
    const std::string tmp = fs::temp_name();
    try {
      fs::create_file(d.get(), tmp, w.files.at(changed[0]), fs::kFileMode, true);
      if (::renameat(d.get(), tmp.c_str(), d.get(), changed[0].c_str()) != 0)
        throw_errno(Code::kIoError, "cannot rename into " + join(path, changed[0]));
    } catch (...) {
      ::unlinkat(d.get(), tmp.c_str(), 0);
      throw;
    }
  } else if (removed.size() == 1) {
    if (::unlinkat(d.get(), removed[0].c_str(), 0) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove " + join(path, removed[0]));
  }
  if (!changed.empty() || !removed.empty()) fsync_fd(d.get(), path);
  // Last, so that a killed writer leaves a directory that differs from its manifest: the next
  // writer sees that and swaps in a whole tree, and `sync` reports it.
  fs::write_atomic(d.get(), manifest_name, w.files.at(manifest_name), fs::kFileMode);
  return true;
}

// What a write's derivation starts from: the directory's manifest, when it says `mode`
// without an error, and the CRL entries (name → PEM, named as wanted() names them) the
// purpose takes now. nullopt: not derivable, the whole selection decides (and reports a
// failure as it does).
struct Base {
  std::string header;
  std::map<std::string, std::string> old;   // the manifest's entries: name → SHA-256
  std::map<std::string, std::string> crls;  // the CRL entries the purpose takes now
};

std::optional<Base> base_of(int capfd, const Context& ctx, const std::string& purpose, Mode mode) {
  Base b;
  b.header = "ptrust-capath 1\npurpose " + purpose + "\nmode " + std::string(to_string(mode)) + "\n";
  try {
    auto st = fs::stat_at(capfd, purpose);
    if (!st || !S_ISDIR(st->st_mode)) return std::nullopt;
    fs::Fd d = fs::open_dir(capfd, purpose, false);
    auto m = d ? fs::read_at(d.get(), std::string(layout::kCapathManifest), kMaxEntry) : std::nullopt;
    if (!m || !m->starts_with(b.header) || m->find("\nerror ") != std::string::npos) return std::nullopt;
    auto old = manifest_sums(*m);
    if (!old) return std::nullopt;
    b.old = std::move(*old);
    // What else fails a ca-mode selection closed (a malformed cluster-CA minimum): the whole
    // selection reports it.
    fs::Fd r = fs::open_root(ctx.root);
    (void)cluster_ca::load_minimum(r.get());
    if (takes_crls(mode, policy_of(ctx.config, purpose))) {
      std::vector<Object> objects;
      for (const auto& n : load_crls(ctx, purpose)) {
        unsigned char* der = nullptr;
        int len = i2d_X509_CRL(n.crl.get(), &der);
        if (len <= 0) return std::nullopt;
        ossl::OsslStr owned(reinterpret_cast<char*>(der));
        objects.push_back({std::string(owned.get(), static_cast<size_t>(len)),
                           X509_NAME_hash_ex(X509_CRL_get_issuer(n.crl.get()), nullptr, nullptr, nullptr)});
      }
      add_entries(b.crls, objects, ".r", "X509 CRL");
    }
  } catch (const Error&) {
    return std::nullopt;
  }
  return b;
}

bool is_crl_entry(const std::string& name) { return layout::is_hash_link_name(name) && name[9] == 'r'; }

void add_manifest(Wanted& w, const std::string& header) {
  std::string manifest = header;
  for (const auto& [name, sum] : w.sums) manifest += sum + " " + name + "\n";
  w.files[std::string(layout::kCapathManifest)] = std::move(manifest);
}

// A write's cheap derivation, when it changed one CA store of `purpose` and the directory
// holds that purpose in mode ca (its manifest says so, without an error): the certificate
// entries are the store's own hash entries (both are numbered in bundle order within a hash
// bucket and hold the same PEM), so the new directory is the manifest's with the moved
// buckets replaced by what the store's change wrote into them — provided the CRL entries the
// purpose takes now are exactly the manifest's (a CRL or crl-policy edited since the last write
// is not derivable: nullopt). The store stays non-empty, so the mode stays ca: a pinned store
// (which would win) is not part of the change, and with pins the manifest would say pinned.
// Returns what update_in_place needs (every sum; the moved entries' content and the
// manifest), or nullopt: the caller then derives the directory from the whole selection.
std::optional<Wanted> derived(int capfd, const Context& ctx, const std::string& purpose, const StoreChange& c) {
  if (c.empty || c.key.type != CertType::kCa || c.key.purpose != purpose || purpose == kGeneral) return std::nullopt;
  std::optional<Base> b = base_of(capfd, ctx, purpose, Mode::kCa);
  if (!b) return std::nullopt;
  std::map<std::string, std::string> crls;
  for (const auto& [name, pem] : b->crls) crls.emplace(name, x509::sha256_hex(pem));
  Wanted w;
  size_t old_crls = 0;
  for (const auto& [name, sum] : b->old) {
    const bool hash_entry = layout::is_hash_link_name(name);
    if (is_crl_entry(name)) {  // a CRL entry: must be one the purpose takes now, unchanged
      auto it = crls.find(name);
      if (it == crls.end() || it->second != sum) return std::nullopt;
      ++old_crls;
    } else if (hash_entry && c.buckets.count(name.substr(0, 9))) {
      continue;  // a moved bucket: its entries are the store's, below
    }
    w.sums.emplace(name, sum);
  }
  if (old_crls != crls.size()) return std::nullopt;
  for (const auto& [name, pem] : c.entries) {
    w.sums[name] = x509::sha256_hex(pem);
    w.files[name] = pem;
  }
  // As many certificate entries as the store has hash entries: a directory that missed an
  // earlier change (a writer that failed before it got here) is not patched further.
  if (w.sums.size() - crls.size() != c.hash_entries) return std::nullopt;
  add_manifest(w, b->header);
  return w;
}

// The same for a write that changed only CRLs (crl install / uninstall): the purpose's
// certificates are untouched, so the new directory is the manifest's certificate entries
// with the CRL entries the purpose takes now — provided the manifest's mode is still the
// selection's (ca or general: pinned takes no CRL and is small) and its certificate entries
// are, by name, exactly the chosen store's hash entries (the same names and PEM; a directory
// that missed an earlier change, or a store edited since, is not patched).
std::optional<Wanted> derived_crls(int capfd, int trusted, const Context& ctx, const std::string& purpose) {
  Resolution r;
  try {
    r = resolve(ctx, purpose);
  } catch (const Error&) {
    return std::nullopt;
  }
  if ((r.mode != Mode::kCa && r.mode != Mode::kGeneral) || r.store_dir.empty()) return std::nullopt;
  std::optional<Base> b = base_of(capfd, ctx, purpose, r.mode);
  if (!b) return std::nullopt;
  Wanted w;
  std::vector<std::string> certs;  // the manifest's certificate entries, in name order
  for (const auto& [name, sum] : b->old) {
    if (is_crl_entry(name)) continue;
    certs.push_back(name);
    w.sums.emplace(name, sum);
  }
  std::vector<std::string> store;  // the chosen store's hash entries
  try {
    fs::Fd d = fs::open_dir(trusted, r.store_dir, false);
    if (!d) return std::nullopt;
    fs::each_name(d.get(), [&](std::string_view name, mode_t) {
      if (layout::is_hash_link_name(name)) store.emplace_back(name);
    });
    std::sort(store.begin(), store.end());
  } catch (const Error&) {
    return std::nullopt;
  }
  if (store != certs) return std::nullopt;  // both sorted by name
  for (auto& [name, pem] : b->crls) {
    w.sums[name] = x509::sha256_hex(pem);
    w.files[name] = std::move(pem);
  }
  add_manifest(w, b->header);
  return w;
}

// etc/trusted-certs/capath as a directory (mode 0755): something else in its place (a
// symlink, a file) is removed, never followed.
fs::Fd open_capath(int trusted) {
  const std::string name(layout::kCapathName);
  auto st = fs::stat_at(trusted, name);
  if (st && !S_ISDIR(st->st_mode)) remove_tree(trusted, name);
  fs::Fd cap = fs::open_dir(trusted, name, true);
  struct stat cs;
  if (::fstat(cap.get(), &cs) != 0) throw_errno(Code::kIoError, "cannot stat " + std::string(layout::kCapathDir));
  if ((cs.st_mode & 07777) != fs::kDirMode && ::fchmod(cap.get(), fs::kDirMode) != 0)
    throw_errno(Code::kIoError, "cannot chmod " + std::string(layout::kCapathDir));
  return cap;
}

// The manifest says the directory already holds `w` (the writer's cheap check; sync reads
// every entry).
bool current(int capfd, const std::string& purpose, const Wanted& w) {
  auto st = fs::stat_at(capfd, purpose);
  if (!st || !S_ISDIR(st->st_mode) || (st->st_mode & 07777) != fs::kDirMode) return false;
  try {
    fs::Fd d = fs::open_dir(capfd, purpose, false);
    auto m = d ? fs::read_at(d.get(), std::string(layout::kCapathManifest), kMaxEntry) : std::nullopt;
    return m && *m == w.files.at(std::string(layout::kCapathManifest));
  } catch (const Error&) {
    return false;
  }
}

std::string mode_detail(mode_t have, mode_t want) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "mode %04o, expected %04o", have & 07777, want);
  return buf;
}

// One regular file: reports (and with `apply` repairs in place, atomically) what differs.
bool check_file(int dirfd, const std::string& name, const std::string& path, const std::string& content,
                std::vector<Drift>& out) {
  auto st = fs::stat_at(dirfd, name);
  if (st && !S_ISREG(st->st_mode)) {
    out.push_back({Drift::Kind::kUnsafe, path, S_ISLNK(st->st_mode) ? "a symlink" : "not a regular file"});
    return false;
  }
  if (!st) {
    out.push_back({Drift::Kind::kMissing, path, ""});
    return false;
  }
  auto have = fs::read_at(dirfd, name, kMaxEntry);
  if (!have || *have != content) {
    out.push_back({Drift::Kind::kStale, path, "content differs from the purpose's selection"});
    return false;
  }
  if ((st->st_mode & 07777) != fs::kFileMode) {
    out.push_back({Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kFileMode)});
    return false;
  }
  return true;
}

// Compares capath/<purpose> with `w`; true when it matches exactly.
bool check_dir(int capfd, const std::string& purpose, const Wanted& w, std::vector<Drift>& out) {
  const std::string path = join(layout::kCapathDir, purpose);
  auto st = fs::stat_at(capfd, purpose);
  if (st && !S_ISDIR(st->st_mode)) {
    out.push_back({Drift::Kind::kUnsafe, path, S_ISLNK(st->st_mode) ? "a symlink, expected a directory"
                                                                    : "expected a directory"});
    return false;
  }
  if (!st) {
    out.push_back({Drift::Kind::kMissing, path, "directory"});
    return false;
  }
  bool ok = true;
  if ((st->st_mode & 07777) != fs::kDirMode) {
    out.push_back({Drift::Kind::kMode, path, mode_detail(st->st_mode, fs::kDirMode)});
    ok = false;
  }
  fs::Fd d = fs::open_dir(capfd, purpose, false);
  for (const auto& e : fs::list_dir(d.get())) {
    if (w.files.count(e.name)) continue;
    out.push_back({e.type == S_IFLNK ? Drift::Kind::kUnsafe : Drift::Kind::kRemnant, join(path, e.name),
                   e.type == S_IFLNK ? "a symlink" : "not part of the purpose's selection"});
    ok = false;
  }
  for (const auto& [name, content] : w.files) ok &= check_file(d.get(), name, join(path, name), content, out);
  return ok;
}

}  // namespace

const std::string& no_ca_pem() {
  // An empty CRL (no revoked entries, no nextUpdate) from a name no CA has, signed with an
  // Ed25519 key from a fixed seed: deterministic, so every host holds the same bytes. It
  // holds no certificate, so as a CA file it can never grant trust; it exists because curl
  // always loads a CA file and fails on one that holds nothing at all.
  static const std::string pem = [] {
    unsigned char seed[32];
    const std::string label = "ptrust capath no-ca placeholder v1";
    unsigned int len = 0;
    unsigned char md[EVP_MAX_MD_SIZE];
    EVP_Digest(label.data(), label.size(), md, &len, EVP_sha256(), nullptr);
    std::copy(md, md + sizeof seed, seed);
    ossl::PkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed, sizeof seed));
    ossl::X509CrlPtr crl(X509_CRL_new());
    ossl::Ptr<X509_NAME, X509_NAME_free> name(X509_NAME_new());
    ossl::Ptr<ASN1_TIME, ASN1_TIME_free> last(ASN1_TIME_set(nullptr, 1577836800));  // 2020-01-01
    if (!key || !crl || !name || !last ||
        !X509_NAME_add_entry_by_txt(name.get(), "CN", MBSTRING_ASC,
                                    reinterpret_cast<const unsigned char*>("ptrust capath: no CA (trusts nothing)"),
                                    -1, -1, 0) ||
        !X509_CRL_set_version(crl.get(), 1) || !X509_CRL_set_issuer_name(crl.get(), name.get()) ||
        !X509_CRL_set1_lastUpdate(crl.get(), last.get()) || X509_CRL_sign(crl.get(), key.get(), nullptr) <= 0)
      throw Error(Code::kIoError, "cannot build " + std::string(layout::kCapathNoCa));
    ossl::BioPtr b(BIO_new(BIO_s_mem()));
    PEM_write_bio_X509_CRL(b.get(), crl.get());
    char* p = nullptr;
    long n = BIO_get_mem_data(b.get(), &p);
    ERR_clear_error();
    return std::string(p, static_cast<size_t>(n));
  }();
  return pem;
}

bool inputs_drift(const std::vector<Drift>& drift) {
  for (const auto& d : drift) {
    std::string_view p = d.path;
    if (p.starts_with(layout::kTrustedDir) || p.starts_with(layout::kCrlDir) ||
        p == join(layout::kStateDir, layout::kCrlScopeFile))
      return true;
  }
  return false;
}

void refresh(int root, const Context& ctx, const std::vector<Area>& areas, const std::vector<StoreChange>* changes) {
  std::set<std::string> todo;
  for (auto& p : affected(ctx.config, areas)) todo.insert(std::move(p));
  fs::Fd trusted = fs::open_dir(root, layout::kTrustedDir, true);
  fs::Fd cap = open_capath(trusted.get());
  std::set<std::string> present;
  bool removed = false;
  for (const auto& e : fs::list_dir(cap.get())) {
    if (e.name.rfind(fs::kTempPrefix, 0) == 0) {  // a killed writer's half-built directory
      remove_tree(cap.get(), e.name);
      removed = true;
    } else if (e.type == S_IFDIR) {
      present.insert(e.name);
    }
  }
  if (removed) fsync_fd(cap.get(), std::string(layout::kCapathDir));
  for (const auto& p : purposes(ctx.config))
    if (!present.count(p)) todo.insert(p);  // a purpose declared since the last write
  const std::string no_ca(layout::kCapathNoCa);
  if (auto st = fs::stat_at(cap.get(), no_ca); !st || !S_ISREG(st->st_mode)) {
    if (st) remove_tree(cap.get(), no_ca);
    fs::write_atomic(cap.get(), no_ca, no_ca_pem(), fs::kFileMode);
  }
  const bool only_crls = changes && changes->empty() && !areas.empty() &&
                         std::all_of(areas.begin(), areas.end(), [](const Area& a) { return a.kind == Area::Kind::kCrl; });
  for (const auto& p : todo) {
    // One CA store changed (install, uninstall of a one-purpose CA): derived from its change.
    if (changes && changes->size() == 1 && areas.size() == 1)
      if (auto w = derived(cap.get(), ctx, p, changes->front()))
        if (current(cap.get(), p, *w) || update_in_place(cap.get(), p, *w)) continue;
    // Only CRLs changed (crl install, crl uninstall): the certificate entries stay.
    if (only_crls)
      if (auto w = derived_crls(cap.get(), trusted.get(), ctx, p))
        if (current(cap.get(), p, *w) || update_in_place(cap.get(), p, *w)) continue;
    Wanted w = wanted(ctx, p);
    if (!current(cap.get(), p, w) && !update_in_place(cap.get(), p, w)) swap_in(cap.get(), p, w, ctx);
  }
}

void reconcile(int root, const Context& ctx, bool apply, std::vector<Drift>& out) {
  const std::string top(layout::kCapathDir);
  const std::string name(layout::kCapathName);
  fs::Fd trusted = fs::open_dir(root, layout::kTrustedDir, apply);
  auto st = trusted ? fs::stat_at(trusted.get(), name) : std::nullopt;
  if (st && !S_ISDIR(st->st_mode)) {
    out.push_back({Drift::Kind::kUnsafe, top, S_ISLNK(st->st_mode) ? "a symlink, expected a directory"
                                                                   : "expected a directory"});
    st.reset();
    if (!apply) return;
  } else if (!st) {
    out.push_back({Drift::Kind::kMissing, top, "directory"});
    if (!apply) return;
  } else if ((st->st_mode & 07777) != fs::kDirMode) {
    out.push_back({Drift::Kind::kMode, top, mode_detail(st->st_mode, fs::kDirMode)});
  }
  fs::Fd cap = apply ? open_capath(trusted.get()) : fs::open_dir(trusted.get(), name, false);

  const std::vector<std::string> ps = purposes(ctx.config);
  const std::set<std::string> known(ps.begin(), ps.end());
  const std::string no_ca(layout::kCapathNoCa);
  bool removed = false;
  for (const auto& e : fs::list_dir(cap.get())) {
    if (known.count(e.name) || e.name == no_ca) continue;
    const bool temp = e.name.rfind(fs::kTempPrefix, 0) == 0;
    out.push_back({e.type == S_IFLNK ? Drift::Kind::kUnsafe : Drift::Kind::kRemnant, join(top, e.name),
                   e.type == S_IFLNK ? "a symlink"
                   : temp            ? "temporary directory of a killed writer"
                                     : "not a declared purpose"});
    if (apply) {
      remove_tree(cap.get(), e.name);
      removed = true;
    }
  }
  if (removed) fsync_fd(cap.get(), top);
  if (!check_file(cap.get(), no_ca, join(top, no_ca), no_ca_pem(), out) && apply) {
    if (auto s = fs::stat_at(cap.get(), no_ca); s && !S_ISREG(s->st_mode)) remove_tree(cap.get(), no_ca);
    fs::write_atomic(cap.get(), no_ca, no_ca_pem(), fs::kFileMode);
  }
  for (const auto& p : ps) {
    Wanted w = wanted(ctx, p);
    if (!check_dir(cap.get(), p, w, out) && apply) swap_in(cap.get(), p, w, ctx);
  }
}

}  // namespace ptrust::capath
