#include "core/capath.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string_view>
#include <unordered_set>

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

// A purpose directory as its manifest describes it: the directory (mode 0755, opened without
// following a symlink), the manifest's text, and its entry lines ("<64 hex> <name>") as views
// into that text, in name order: a write at 10,000 CAs parses 10,000 lines once, with no
// allocation per line.
using Entries = std::vector<std::pair<std::string_view, std::string_view>>;  // name, SHA-256 (hex)

struct Manifest {
  fs::Fd dir;
  std::unique_ptr<const std::string> text;  // owned apart: `entries` view into it
  Entries entries;

  // The SHA-256 the manifest gives `name`, or nullptr.
  const std::string_view* sum_of(std::string_view name) const {
    auto it = std::lower_bound(entries.begin(), entries.end(), name,
                               [](const auto& e, std::string_view n) { return e.first < n; });
    return it != entries.end() && it->first == name ? &it->second : nullptr;
  }
};

// A character test, not find_first_not_of: that scans the 16-character set once per
// character (10,000 lines of 64: a third of reading a manifest).
bool lower_hex(std::string_view s) {
  static constexpr auto kHex = [] {
    std::array<bool, 256> t{};
    for (char c : std::string_view("0123456789abcdef")) t[static_cast<unsigned char>(c)] = true;
    return t;
  }();
  bool ok = true;
  for (char c : s) ok &= kHex[static_cast<unsigned char>(c)];  // no branch per character
  return ok;
}

// nullopt when the directory is not a 0755 directory with a manifest, when a line is neither a
// header line nor an entry line, or when the entries are not in strict name order (every
// writer writes them so): the manifest is then not trusted for a diff.
std::optional<Manifest> read_manifest(int capfd, const std::string& purpose) {
  Manifest m;
  try {
    auto st = fs::stat_at(capfd, purpose);
    if (!st || !S_ISDIR(st->st_mode) || (st->st_mode & 07777) != fs::kDirMode) return std::nullopt;
    m.dir = fs::open_dir(capfd, purpose, false);
    if (!m.dir) return std::nullopt;
    auto text = fs::read_at(m.dir.get(), std::string(layout::kCapathManifest), kMaxEntry);
    if (!text) return std::nullopt;
    m.text = std::make_unique<const std::string>(std::move(*text));
  } catch (const Error&) {
    return std::nullopt;
  }
  std::string_view t = *m.text;
  m.entries.reserve(std::count(t.begin(), t.end(), '\n'));
  bool first = true;
  while (!t.empty()) {
    size_t nl = t.find('\n');
    if (nl == std::string_view::npos) return std::nullopt;  // always newline-terminated
    std::string_view line = t.substr(0, nl);
    t.remove_prefix(nl + 1);
    if (first) {
      if (line != "ptrust-capath 1") return std::nullopt;
      first = false;
    } else if (line.starts_with("purpose ") || line.starts_with("mode ") || line.starts_with("error ")) {
      continue;
    } else if (line.size() > 65 && line[64] == ' ' && lower_hex(line.substr(0, 64))) {
      std::string_view name = line.substr(65);
      if (!m.entries.empty() && !(m.entries.back().first < name)) return std::nullopt;
      m.entries.emplace_back(name, line.substr(0, 64));
    } else {
      return std::nullopt;
    }
  }
  if (first) return std::nullopt;
  return m;
}

std::string manifest_text(std::string_view header, const Entries& entries) {
  std::string out(header);
  out.reserve(header.size() + entries.size() * 80);
  for (const auto& [name, sum] : entries) {
    out += sum;
    out += ' ';
    out += name;
    out += '\n';
  }
  return out;
}

// What one write does to a purpose directory, against its manifest: entries created or
// replaced (name, content, SHA-256 of the content), entries removed, the new manifest.
struct Step {
  struct Put {
    std::string name, content, sum;
  };
  std::vector<Put> put;
  std::vector<std::string> removed;
  std::string manifest;
  bool many = false;  // more than apply_step can do in place (put and removed then incomplete)
};

// The step from what `m` describes to `w` (a whole selection): a merge of two name-ordered
// lists.
Step step_to(const Manifest& m, const Wanted& w) {
  Step s;
  auto old = m.entries.begin();
  for (const auto& [name, sum] : w.sums) {
    for (; old != m.entries.end() && old->first < name; ++old) s.removed.emplace_back(old->first);
    const bool same = old != m.entries.end() && old->first == name && old->second == sum;
    if (old != m.entries.end() && old->first == name) ++old;
    if (!same) s.put.push_back({name, w.files.at(name), sum});
    if (s.put.size() > 1 || s.removed.size() > 1) {  // a new tree: no copy of the rest
      s.many = true;
      return s;
    }
  }
  for (; old != m.entries.end(); ++old) s.removed.emplace_back(old->first);
  s.manifest = w.files.at(std::string(layout::kCapathManifest));
  return s;
}

// A purpose directory's names, and whether every entry is a regular file: from the directory
// alone (no stat of 10,000 entries; an entry's mode and content are `sync`'s to check, as for
// every entry a write does not touch). A large directory is listed on another thread while the
// manifest is read and the step derived: at 10,000 entries the listing (the kernel's walk of
// an ext4 hash tree, mostly) takes as long as those two together.
class Listing {
 public:
  // The directory is opened here, so the listing does not depend on `capfd` staying open.
  Listing(int capfd, const std::string& purpose) {
    std::shared_ptr<fs::Fd> dir;
    try {
      dir = std::make_shared<fs::Fd>(fs::open_dir(capfd, purpose, false));
    } catch (const Error&) {  // not a directory: no step is applied to it
    }
    auto list = [dir] {
      Names n;
      if (!dir || !*dir) {
        n.regular = false;
        return n;
      }
      fs::each_name(dir->get(), [&](std::string_view name, mode_t type) {
        n.regular &= type == S_IFREG;
        n.names.emplace_back(name);
      });
      return n;
    };
    struct stat st;
    if (dir && *dir && ::fstat(dir->get(), &st) == 0 && st.st_size > 64 * 1024) {
      try {
        later_ = std::async(std::launch::async, list);
        return;
      } catch (const std::system_error&) {  // no thread: listed when asked
      }
    }
    list_ = list;
  }
  struct Names {
    std::vector<std::string> names;
    bool regular = true;
  };
  const Names& get() {
    if (!names_) names_ = later_.valid() ? later_.get() : list_();
    return *names_;
  }

 private:
  std::function<Names()> list_;
  std::future<Names> later_;
  std::optional<Names> names_;
};

// The cheap path of a write: when the directory on disk is exactly what its manifest
// describes (same names, only regular files; mode 0755, checked when read) and the step is
// ONE change a reader can only see whole — one entry created or replaced (temp file, fsync,
// rename), one entry removed (unlink), or one entry renamed onto another (the renumbering of a
// same-subject bucket after a removal) — does it in place, then replaces the manifest. A
// reader of the directory sees the old or the new selection, as with a swap, for a cost that
// does not grow with the directory. Returns false (nothing done) when the step is more than
// one change or the directory is not as its manifest says (a killed writer's leftovers,
// drift): the caller swaps in a whole new tree. A step that changes nothing and keeps the
// manifest's bytes is done without a look at the directory.
bool apply_step(const std::string& purpose, const Manifest& m, const Step& s, Listing& listing) {
  if (s.many || s.put.size() > 1 || s.removed.size() > 1) return false;
  if (s.put.empty() && s.removed.empty() && s.manifest == *m.text) return true;
  const int d = m.dir.get();
  const std::string manifest_name(layout::kCapathManifest);
  // The names come in the directory's order: looked up in a hash set of the manifest's (a
  // binary search each cost three times as much at 10,000).
  const Listing::Names& listed = listing.get();
  if (!listed.regular) return false;
  std::unordered_set<std::string_view> names;
  names.reserve(m.entries.size());
  for (const auto& e : m.entries) names.insert(e.first);
  size_t count = 0;
  for (const auto& name : listed.names) {
    if (name == manifest_name) continue;
    if (!names.count(name)) return false;  // not the manifest's: a leftover, or drift
    ++count;
  }
  if (count != m.entries.size()) return false;  // one missing

  const std::string path = join(layout::kCapathDir, purpose);
  if (s.put.size() == 1 && s.removed.size() == 1) {
    // Only a rename moves one entry's content to another name in one step.
    if (*m.sum_of(s.removed[0]) != s.put[0].sum) return false;
    if (::renameat(d, s.removed[0].c_str(), d, s.put[0].name.c_str()) != 0)
      throw_errno(Code::kIoError, "cannot rename " + join(path, s.removed[0]));
  } else if (s.put.size() == 1) {
    const std::string tmp = fs::temp_name();
    try {
      fs::create_file(d, tmp, s.put[0].content, fs::kFileMode, true);
      if (::renameat(d, tmp.c_str(), d, s.put[0].name.c_str()) != 0)
        throw_errno(Code::kIoError, "cannot rename into " + join(path, s.put[0].name));
    } catch (...) {
      ::unlinkat(d, tmp.c_str(), 0);
      throw;
    }
  } else if (s.removed.size() == 1) {
    if (::unlinkat(d, s.removed[0].c_str(), 0) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove " + join(path, s.removed[0]));
  }
  if (!s.put.empty() || !s.removed.empty()) fsync_fd(d, path);
  // Last, so that a killed writer leaves a directory that differs from its manifest: the next
  // writer sees that and swaps in a whole tree, and `sync` reports it.
  fs::write_atomic(d, manifest_name, s.manifest, fs::kFileMode);
  return true;
}

// What a write's derivation starts from besides the manifest: the header the manifest must
// have (`mode`, no error) and the CRL entries (name → PEM, named as wanted() names them) the
// purpose takes now. nullopt: not derivable, the whole selection decides (and reports a
// failure as it does).
struct Base {
  std::string header;
  std::map<std::string, std::string> crls;  // the CRL entries the purpose takes now
};

std::optional<Base> base_of(const Manifest& m, const Context& ctx, const std::string& purpose, Mode mode) {
  Base b;
  b.header = "ptrust-capath 1\npurpose " + purpose + "\nmode " + std::string(to_string(mode)) + "\n";
  if (!m.text->starts_with(b.header) || m.text->find("\nerror ") != std::string::npos) return std::nullopt;
  try {
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

bool is_crl_entry(std::string_view name) { return layout::is_hash_link_name(name) && name[9] == 'r'; }

// `kept` (name-ordered views of the manifest's entries that stay) with `fresh` (name → PEM,
// name-ordered, names kept has not) as the directory's new entries: the step against `m`.
// nullopt when two entries would have one name.
std::optional<Step> step_with(const Manifest& m, const std::string& header, Entries kept,
                              const std::map<std::string, std::string>& fresh) {
  Step s;
  std::vector<std::string> sums;
  sums.reserve(fresh.size());
  for (const auto& [name, pem] : fresh) sums.push_back(x509::sha256_hex(pem));
  const size_t mid = kept.size();
  size_t i = 0;
  for (const auto& [name, pem] : fresh) {
    const std::string_view* old = m.sum_of(name);
    if (!old || *old != sums[i]) s.put.push_back({name, pem, sums[i]});
    kept.emplace_back(name, sums[i++]);
  }
  auto by_name = [](const auto& a, const auto& b) { return a.first < b.first; };
  std::inplace_merge(kept.begin(), kept.begin() + static_cast<std::ptrdiff_t>(mid), kept.end(), by_name);
  if (std::adjacent_find(kept.begin(), kept.end(), [](const auto& a, const auto& b) { return a.first == b.first; }) !=
      kept.end())
    return std::nullopt;
  // Removed: the manifest's entries the new list has not (both name-ordered).
  auto now = kept.begin();
  for (const auto& [name, sum] : m.entries) {
    while (now != kept.end() && now->first < name) ++now;
    if (now == kept.end() || now->first != name) s.removed.emplace_back(name);
  }
  s.manifest = manifest_text(header, kept);
  return s;
}

// A write's cheap derivation, when it changed one CA store of `purpose` and the directory
// holds that purpose in mode ca (its manifest says so, without an error): the certificate
// entries are the store's own hash entries (both are numbered in bundle order within a hash
// bucket and hold the same PEM), so the new directory is the manifest's with the moved
// buckets replaced by what the store's change wrote into them — provided the CRL entries the
// purpose takes now are exactly the manifest's (a CRL or crl-policy edited since the last write
// is not derivable: nullopt). The store stays non-empty, so the mode stays ca: a pinned store
// (which would win) is not part of the change, and with pins the manifest would say pinned.
// nullopt: the caller then derives the directory from the whole selection.
std::optional<Step> derived(const Manifest& m, const Context& ctx, const std::string& purpose, const StoreChange& c) {
  if (c.empty || c.key.type != CertType::kCa || c.key.purpose != purpose || purpose == kGeneral) return std::nullopt;
  std::optional<Base> b = base_of(m, ctx, purpose, Mode::kCa);
  if (!b) return std::nullopt;
  std::map<std::string, std::string, std::less<>> crls;
  for (const auto& [name, pem] : b->crls) crls.emplace(name, x509::sha256_hex(pem));
  Entries kept;
  kept.reserve(m.entries.size() + c.entries.size());
  size_t old_crls = 0;
  for (const auto& [name, sum] : m.entries) {
    if (is_crl_entry(name)) {  // a CRL entry: must be one the purpose takes now, unchanged
      auto it = crls.find(name);
      if (it == crls.end() || it->second != sum) return std::nullopt;
      ++old_crls;
    } else if (layout::is_hash_link_name(name) && c.buckets.count(std::string(name.substr(0, 9)))) {
      continue;  // a moved bucket: its entries are the store's, below
    }
    kept.emplace_back(name, sum);
  }
  if (old_crls != crls.size()) return std::nullopt;
  // As many certificate entries as the store has hash entries: a directory that missed an
  // earlier change (a writer that failed before it got here) is not patched further.
  if (kept.size() - crls.size() + c.entries.size() != c.hash_entries) return std::nullopt;
  return step_with(m, b->header, std::move(kept), c.entries);
}

// The same for a write that changed only CRLs (crl install / uninstall): the purpose's
// certificates are untouched, so the new directory is the manifest's certificate entries
// with the CRL entries the purpose takes now — provided the manifest's mode is still the
// selection's (ca or general: pinned takes no CRL and is small) and its certificate entries
// are, by name, exactly the chosen store's hash entries (the same names and PEM; a directory
// that missed an earlier change, or a store edited since, is not patched).
std::optional<Step> derived_crls(const Manifest& m, int trusted, const Context& ctx, const std::string& purpose) {
  Resolution r;
  try {
    r = resolve(ctx, purpose);
  } catch (const Error&) {
    return std::nullopt;
  }
  if ((r.mode != Mode::kCa && r.mode != Mode::kGeneral) || r.store_dir.empty()) return std::nullopt;
  std::optional<Base> b = base_of(m, ctx, purpose, r.mode);
  if (!b) return std::nullopt;
  Entries certs;  // the manifest's certificate entries, in name order
  certs.reserve(m.entries.size());
  for (const auto& e : m.entries)
    if (!is_crl_entry(e.first)) certs.push_back(e);
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
  if (store.size() != certs.size() ||
      !std::equal(store.begin(), store.end(), certs.begin(), [](const std::string& a, const auto& e) { return a == e.first; }))
    return std::nullopt;  // both sorted by name
  return step_with(m, b->header, std::move(certs), b->crls);
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

struct Prepared::Impl {
  std::string purpose;
  struct Ready {
    std::optional<Manifest> m;
    std::optional<Step> s;
    Listing listing;
  };
  std::future<Ready> ready;
};

Prepared::Prepared(int root, const Context& ctx, const StoreChange& change) : impl_(std::make_unique<Impl>()) {
  // derived() takes only such a change; anything else is refresh's to do.
  if (change.empty || change.key.type != CertType::kCa || change.key.purpose == kGeneral) return;
  impl_->purpose = change.key.purpose;
  try {
    impl_->ready = std::async(std::launch::async, [root, &ctx, change, purpose = impl_->purpose] {
      // Read-only: refresh itself makes etc/trusted-certs/capath what it must be.
      fs::Fd trusted = fs::open_dir(root, layout::kTrustedDir, false);
      fs::Fd cap = trusted ? fs::open_dir(trusted.get(), layout::kCapathName, false) : fs::Fd();
      if (!cap) throw Error(Code::kIoError, "no CA directories yet");
      Impl::Ready r{std::nullopt, std::nullopt, Listing(cap.get(), purpose)};
      r.m = read_manifest(cap.get(), purpose);
      if (r.m) r.s = derived(*r.m, ctx, purpose, change);
      return r;
    });
  } catch (const std::system_error&) {  // no thread: refresh does it
    impl_->purpose.clear();
  }
}

Prepared::~Prepared() = default;  // waits for the thread (a std::async future)

void refresh(int root, const Context& ctx, const std::vector<Area>& areas, const std::vector<StoreChange>* changes,
             Prepared* prepared) {
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
    std::optional<Prepared::Impl::Ready> ready;
    if (prepared && prepared->impl_->purpose == p && prepared->impl_->ready.valid()) {
      try {
        ready = prepared->impl_->ready.get();
      } catch (const std::exception&) {  // done here instead
      }
    }
    // The directory's manifest, read once: what every cheaper path starts from.
    Listing listing = ready ? std::move(ready->listing) : Listing(cap.get(), p);
    std::optional<Manifest> m = ready ? std::move(ready->m) : read_manifest(cap.get(), p);
    if (m) {
      std::optional<Step> s;
      // One CA store changed (install, uninstall of a one-purpose CA): derived from its change.
      if (ready) s = std::move(ready->s);
      else if (changes && changes->size() == 1 && areas.size() == 1) s = derived(*m, ctx, p, changes->front());
      // Only CRLs changed (crl install, crl uninstall): the certificate entries stay.
      if (!s && only_crls) s = derived_crls(*m, trusted.get(), ctx, p);
      if (s && apply_step(p, *m, *s, listing)) continue;
    }
    Wanted w = wanted(ctx, p);
    if (!m || !apply_step(p, *m, step_to(*m, w), listing)) swap_in(cap.get(), p, w, ctx);
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
