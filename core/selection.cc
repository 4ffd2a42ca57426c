#include "core/selection.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/cert.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"

namespace ptrust {

std::string_view to_string(Mode m) noexcept {
  switch (m) {
    case Mode::kPinned: return "pinned";
    case Mode::kCa: return "ca";
    case Mode::kGeneral: return "general";
    case Mode::kNone: return "none";
  }
  return "?";
}

FileId file_id(const struct stat& st) noexcept {
  return {st.st_dev, st.st_ino, static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
          static_cast<std::int64_t>(st.st_ctim.tv_sec) * 1000000000 + st.st_ctim.tv_nsec, st.st_size};
}

namespace {

constexpr size_t kMaxBundle = 256u << 20;

void check_purpose(const Context& ctx, std::string_view purpose) {
  if (purpose == kGeneral) return;
  if (!valid_purpose_name(purpose))
    throw Error(Code::kUnknownPurpose, "malformed purpose '" + std::string(purpose) + "'");
  if (!ctx.config.declares(purpose))
    throw unknown_purpose(ctx.config, purpose, ctx.root);
}

struct Candidate {
  Mode mode;
  layout::StoreKey key;
};

std::vector<Candidate> candidates(std::string_view purpose) {
  std::string p(purpose);
  if (purpose == kGeneral) return {{Mode::kGeneral, {CertType::kCa, p}}};
  return {{Mode::kPinned, {CertType::kPinned, p}},
          {Mode::kCa, {CertType::kCa, p}},
          {Mode::kGeneral, {CertType::kCa, std::string(kGeneral)}}};
}

// Whether a store directory holds any certificate file (hidden names, such as a killed
// writer's temp files, do not count). One getdents, whatever the store size.
bool holds_certificates(int trusted_fd, const std::string& dir) {
  int fd = ::openat(trusted_fd, dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    if (errno == ELOOP || errno == ENOTDIR)
      throw Error(Code::kStoreUnsafe, std::string(layout::kTrustedDir) + "/" + dir +
                                          " is a symlink or not a directory; refusing it (no fallback)");
    throw_errno(Code::kStoreUnreadable, "cannot open " + std::string(layout::kTrustedDir) + "/" + dir);
  }
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    ::close(fd);
    throw_errno(Code::kStoreUnreadable, "cannot read " + std::string(layout::kTrustedDir) + "/" + dir);
  }
  bool found = false;
  while (const dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') {
      found = true;
      break;
    }
  ::closedir(d);
  return found;
}

Resolution resolve_in(int trusted_fd, const Context& ctx, std::string_view purpose) {
  Resolution r;
  r.purpose = std::string(purpose);
  if (trusted_fd < 0) return r;
  for (const auto& c : candidates(purpose)) {
    std::string name = layout::bundle_file(c.key);
    std::string dir = layout::store_dir(c.key);
    auto st = fs::stat_at(trusted_fd, name);
    // A bundle and its store directory exist together: one without the other is a damaged
    // store, never an empty one (reading it as empty would fall back to a lower-precedence
    // bundle: a deleted ca-bundle-<p>.pem must not make <p> trust the general CAs).
    const bool certs = holds_certificates(trusted_fd, dir);
    if (!st) {
      if (certs)
        throw Error(Code::kStoreCorrupt, std::string(layout::kTrustedDir) + "/" + name + " is missing but " + dir +
                                             "/ holds certificates; refusing a lower-precedence bundle (run `ptrust "
                                             "sync` to restore it)");
      continue;
    }
    if (!S_ISREG(st->st_mode))
      throw Error(Code::kStoreUnsafe, std::string(layout::kTrustedDir) + "/" + name +
                                          " is not a regular file; refusing it (no fallback)");
    if (!certs)
      throw Error(Code::kStoreCorrupt, std::string(layout::kTrustedDir) + "/" + name + " exists but " + dir +
                                           "/ holds no certificate; refusing it (run `ptrust sync` to repair the store)");
    r.mode = c.mode;
    r.bundle = name;
    r.store_dir = dir;
    r.path = ctx.root + (ctx.root.ends_with('/') ? "" : "/") + std::string(layout::kTrustedDir) + "/" + name;
    return r;
  }
  return r;
}

}  // namespace

Resolution resolve(const Context& ctx, std::string_view purpose) {
  check_purpose(ctx, purpose);
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd top = fs::open_dir(root.get(), layout::kTrustedDir, false);
  return resolve_in(top ? top.get() : -1, ctx, purpose);
}

namespace {

struct BundleRead {
  Resolution resolution;
  FileId id;
  std::string data;
};

BundleRead read_chosen(const Context& ctx, std::string_view purpose) {
  check_purpose(ctx, purpose);
  fs::Fd root = fs::open_root(ctx.root);
  fs::Fd top = fs::open_dir(root.get(), layout::kTrustedDir, false);
  // A writer may replace or remove the chosen bundle between the choice and the read:
  // choose again (a few times) rather than read a file that is no longer chosen.
  for (int attempt = 0; attempt < 5; ++attempt) {
    BundleRead m;
    m.resolution = resolve_in(top ? top.get() : -1, ctx, purpose);
    if (m.resolution.mode == Mode::kNone) return m;
    int fd = ::openat(top.get(), m.resolution.bundle.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT) continue;
      if (errno == ELOOP) throw Error(Code::kStoreUnsafe, m.resolution.path + " is a symlink; refusing it");
      throw_errno(Code::kStoreUnreadable, "cannot open " + m.resolution.path);
    }
    fs::Fd g(fd);
    struct stat st;
    if (::fstat(fd, &st) != 0) throw_errno(Code::kStoreUnreadable, "cannot stat " + m.resolution.path);
    if (!S_ISREG(st.st_mode)) throw Error(Code::kStoreUnsafe, m.resolution.path + " is not a regular file");
    if (static_cast<size_t>(st.st_size) > kMaxBundle) throw Error(Code::kStoreCorrupt, m.resolution.path + " is too large");
    m.data.resize(static_cast<size_t>(st.st_size));
    size_t off = 0;
    while (off < m.data.size()) {
      ssize_t n = ::pread(fd, m.data.data() + off, m.data.size() - off, static_cast<off_t>(off));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) throw_errno(Code::kStoreUnreadable, "cannot read " + m.resolution.path);
      if (n == 0) break;
      off += static_cast<size_t>(n);
    }
    m.data.resize(off);
    m.id = file_id(st);
    return m;
  }
  throw Error(Code::kStoreUnreadable, "the store for '" + std::string(purpose) + "' kept changing while being read");
}

}  // namespace

Material load_material(const Context& ctx, std::string_view purpose) {
  BundleRead b = read_chosen(ctx, purpose);
  Material m{b.resolution, b.id, {}};
  if (b.resolution.mode != Mode::kNone) m.certs = scan_bundle(b.data, b.resolution.path);
  return m;
}

}  // namespace ptrust
