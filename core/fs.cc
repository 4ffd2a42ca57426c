#include "core/fs.h"

#include <dirent.h>
#include <sys/uio.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/file.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <cerrno>
#include <cstring>

#include <openssl/rand.h>

#include "core/error.h"
#include "core/x509.h"

namespace ptrust::fs {

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = o.release();
  }
  return *this;
}

Fd::~Fd() {
  if (fd_ >= 0) ::close(fd_);
}

Fd open_root(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno(Code::kStoreUnreadable, "cannot open root " + root);
  return Fd(fd);
}

namespace {

[[noreturn]] void throw_unsafe_or(Code other, const std::string& what) {
  if (errno == ELOOP || errno == ENOTDIR)
    throw Error(Code::kStoreUnsafe, what + " is a symlink or not a directory; refusing to follow");
  throw_errno(other, "cannot open " + what);
}

}  // namespace

Fd open_dir(int base, std::string_view rel, bool create) {
  Fd cur(::dup(base));
  if (!cur) throw_errno(Code::kIoError, "dup");
  size_t pos = 0;
  while (pos < rel.size()) {
    size_t slash = rel.find('/', pos);
    std::string comp(rel.substr(pos, slash == std::string_view::npos ? rel.npos : slash - pos));
    pos = slash == std::string_view::npos ? rel.size() : slash + 1;
    if (comp.empty()) continue;
    constexpr int kFlags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
    int fd = ::openat(cur.get(), comp.c_str(), kFlags);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), comp.c_str(), kDirMode) != 0 && errno != EEXIST)
        throw_errno(Code::kIoError, "cannot create directory " + comp);
      fd = ::openat(cur.get(), comp.c_str(), kFlags);
      if (fd >= 0 && ::fchmod(fd, kDirMode) != 0) {
        ::close(fd);
        throw_errno(Code::kIoError, "cannot chmod directory " + comp);
      }
    }
    if (fd < 0) {
      if (errno == ENOENT) return Fd();
      throw_unsafe_or(Code::kStoreUnreadable, std::string(rel.substr(0, pos)));
    }
    cur = Fd(fd);
  }
  return cur;
}

namespace {

using DirStream = std::unique_ptr<DIR, int (*)(DIR*)>;

// A stream over the entries of `dirfd` (its own descriptor: the caller's keeps its offset).
DirStream open_stream(int dirfd) {
  int fd = ::openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno(Code::kStoreUnreadable, "cannot open directory");
  DIR* d = ::fdopendir(fd);
  if (!d) {
    ::close(fd);
    throw_errno(Code::kStoreUnreadable, "cannot read directory");
  }
  return DirStream(d, ::closedir);
}

}  // namespace

void each_name(int dirfd, const std::function<void(std::string_view, mode_t)>& f) {
  DirStream d = open_stream(dirfd);
  while (dirent* e = ::readdir(d.get())) {
    std::string_view name = e->d_name;
    if (name == "." || name == "..") continue;
    if (e->d_type != DT_UNKNOWN) {
      f(name, static_cast<mode_t>(DTTOIF(e->d_type)));
      continue;
    }
    struct stat st;
    if (::fstatat(dirfd, e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced away
    f(name, static_cast<mode_t>(st.st_mode & S_IFMT));
  }
}

std::vector<Entry> list_dir(int dirfd) {
  DirStream d = open_stream(dirfd);
  std::vector<Entry> out;
  while (dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) continue;  // raced away
    out.push_back({std::move(name), static_cast<mode_t>(st.st_mode & S_IFMT), static_cast<mode_t>(st.st_mode & 07777),
                   st.st_size});
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) { return a.name < b.name; });
  return out;
}

std::optional<struct stat> stat_at(int dirfd, const std::string& name) {
  struct stat st;
  if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno(Code::kStoreUnreadable, "cannot stat " + name);
  }
  return st;
}

namespace {

// Reads straight into the returned string, a chunk at a time: this runs on consumer paths
// (the provider inside stunnel's 64 KiB worker threads, the verify hook in its host's
// threads), so no buffer may live on the stack.
// `hint`: the file's size when it was opened (fstat). The whole file is then read with one
// allocation, not grown 64 KiB at a time (a 5 MB bundle: ~80 reallocations and copies).
std::string read_fd(int fd, size_t max, Code too_big, const std::string& what, size_t hint = 0,
                    bool huge_pages = false) {
  constexpr size_t kChunk = 64 * 1024;
  std::string data;
  hint = std::min(hint, max);
  if (hint > 0) data.reserve(hint + kChunk + 1);  // room for the read that finds the end
  if (huge_pages && hint >= (4u << 20)) {
    // A large file (a bundle of 10,000 CAs): transparent huge pages for its buffer where the
    // kernel allows them, a page fault per 2 MiB instead of per 4 KiB (measured: ~1.5 ms of
    // reading 5 MB). Advice only; the buffer is the same either way.
    constexpr std::uintptr_t kHuge = 2u << 20;
    const auto b = reinterpret_cast<std::uintptr_t>(data.data());
    const std::uintptr_t from = (b + kHuge - 1) & ~(kHuge - 1), to = (b + data.capacity()) & ~(kHuge - 1);
    if (to > from) (void)::madvise(reinterpret_cast<void*>(from), to - from, MADV_HUGEPAGE);
  }
  for (;;) {
    const size_t have = data.size();
    const size_t step = have == 0 && hint > 0 ? hint + 1 : kChunk;
    // Up to one byte past `max`, so a file of exactly `max` bytes is accepted.
    const size_t want = max - have < step ? max - have + 1 : step;
    data.resize(have + want);
    ssize_t n = ::read(fd, data.data() + have, want);
    if (n < 0) {
      data.resize(have);
      if (errno == EINTR) continue;
      throw_errno(too_big == Code::kInputUnreadable ? Code::kInputUnreadable : Code::kStoreUnreadable,
                  "cannot read " + what);
    }
    data.resize(have + static_cast<size_t>(n));
    if (n == 0) break;
    if (data.size() > max) throw Error(too_big, what + " is larger than " + std::to_string(max) + " bytes");
  }
  return data;
}

}  // namespace

std::optional<std::string> read_at(int dirfd, const std::string& name, size_t max, bool huge_pages) {
  int fd = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    if (errno == ELOOP) throw Error(Code::kStoreUnsafe, name + " is a symlink; refusing to follow");
    throw_errno(Code::kStoreUnreadable, "cannot open " + name);
  }
  Fd guard(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno(Code::kStoreUnreadable, "cannot stat " + name);
  if (!S_ISREG(st.st_mode)) throw Error(Code::kStoreUnsafe, name + " is not a regular file");
  return read_fd(fd, max, Code::kStoreCorrupt, name, static_cast<size_t>(st.st_size), huge_pages);
}

std::string temp_name() {
  unsigned char rnd[8];
  if (RAND_bytes(rnd, sizeof rnd) != 1) throw Error(Code::kIoError, "no randomness for a temporary name");
  return std::string(kTempPrefix) + x509::hex_lower(rnd);
}

std::string write_atomic(int dirfd, const std::string& name, std::string_view data, mode_t mode) {
  return write_atomic(dirfd, name, std::span<const std::string_view>(&data, 1), mode);
}

std::pair<std::string, Fd> create_temp_dir(int parent) {
  std::string tmp = temp_name();
  if (::mkdirat(parent, tmp.c_str(), kDirMode) != 0) throw_errno(Code::kIoError, "cannot create directory " + tmp);
  Fd d = open_dir(parent, tmp, false);
  if (!d || ::fchmod(d.get(), kDirMode) != 0) {
    int e = d ? errno : ENOENT;
    ::unlinkat(parent, tmp.c_str(), AT_REMOVEDIR);
    errno = e;
    throw_errno(Code::kIoError, "cannot set up directory " + tmp);
  }
  return {std::move(tmp), std::move(d)};
}

void create_file(int dirfd, const std::string& name, std::string_view data, mode_t mode, bool sync) {
  int fd = ::openat(dirfd, name.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw_errno(Code::kIoError, "cannot create " + name);
  Fd g(fd);
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno(Code::kIoError, "cannot write " + name);
    data.remove_prefix(static_cast<size_t>(n));
  }
  if (::fchmod(fd, mode) != 0) throw_errno(Code::kIoError, "cannot chmod " + name);
  if (sync && ::fsync(fd) != 0) throw_errno(Code::kIoError, "cannot fsync " + name);
}

bool link_atomic(int dirfd, const std::string& from, const std::string& name) {
  std::string tmp = temp_name();
  if (::linkat(dirfd, from.c_str(), dirfd, tmp.c_str(), 0) != 0) {  // flags 0: a symlink is never followed
    if (errno == ENOENT) return false;
    throw_errno(Code::kIoError, "cannot link " + name);
  }
  if (Batch* b = Batch::active()) {
    b->queue(dirfd, tmp, name);
    return true;
  }
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) {
    int e = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    errno = e;
    throw_errno(Code::kIoError, "cannot rename into place " + name);
  }
  if (::fsync(dirfd) != 0) throw_errno(Code::kIoError, "cannot fsync directory of " + name);
  return true;
}

std::string write_atomic(int dirfd, const std::string& name, std::span<const std::string_view> parts, mode_t mode) {
  std::string tmp = temp_name();
  int fd = ::openat(dirfd, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
  if (fd < 0) throw_errno(Code::kIoError, "cannot create temporary file for " + name);
  Fd guard(fd);
  auto fail = [&](const std::string& what) {
    int e = errno;
    ::unlinkat(dirfd, tmp.c_str(), 0);
    errno = e;
    throw_errno(Code::kIoError, what + " " + name);
  };
  // writev in batches of 64 parts; a short write resumes inside its part.
  size_t part = 0, off = 0;  // the first byte not yet written: parts[part], offset off
  while (part < parts.size()) {
    if (off == parts[part].size()) {
      ++part;
      off = 0;
      continue;
    }
    iovec iov[64];  // 1 KiB of stack: this runs in the daemon's threads too
    int n_iov = 0;
    for (size_t i = part; i < parts.size() && n_iov < 64; ++i) {
      const size_t skip = i == part ? off : 0;
      if (parts[i].size() == skip) continue;
      iov[n_iov++] = {const_cast<char*>(parts[i].data() + skip), parts[i].size() - skip};
    }
    ssize_t n = ::writev(fd, iov, n_iov);
    if (n < 0) {
      if (errno == EINTR) continue;
      fail("cannot write");
    }
    for (auto left = static_cast<size_t>(n); left > 0 && part < parts.size();) {
      size_t room = parts[part].size() - off;
      if (left < room) {
        off += left;
        left = 0;
      } else {
        left -= room;
        ++part;
        off = 0;
      }
    }
  }
  if (::fchmod(fd, mode) != 0) fail("cannot chmod");
  if (Batch* b = Batch::active()) {
    b->queue(dirfd, tmp, name);
    return tmp;
  }
  if (::fsync(fd) != 0) fail("cannot fsync");
  if (::renameat(dirfd, tmp.c_str(), dirfd, name.c_str()) != 0) fail("cannot rename into place");
  if (::fsync(dirfd) != 0) throw_errno(Code::kIoError, "cannot fsync directory of " + name);
  return name;
}

namespace {
thread_local Batch* g_batch = nullptr;
}

Batch::Batch() : outer_(g_batch) { g_batch = this; }

Batch::~Batch() {
  g_batch = outer_;
  for (auto& op : ops_) {
    if (op.tmp.empty()) continue;
    if (::unlinkat(dirs_[op.dir].get(), op.tmp.c_str(), 0) != 0 && errno == EISDIR) {
      try {  // a directory built whole under a temp name
        remove_tree(dirs_[op.dir].get(), op.tmp);
      } catch (...) {  // `sync` removes it
      }
    }
  }
}

Batch* Batch::active() noexcept { return g_batch; }

void Batch::queue(int dirfd, std::string tmp, std::string name) {
  struct stat st;
  if (::fstat(dirfd, &st) != 0) throw_errno(Code::kIoError, "cannot stat the directory of " + name);
  const std::pair<dev_t, ino_t> id{st.st_dev, st.st_ino};
  size_t at = 0;
  while (at < dir_ids_.size() && dir_ids_[at] != id) ++at;
  if (at == dir_ids_.size()) {
    Fd d(::fcntl(dirfd, F_DUPFD_CLOEXEC, 0));
    if (!d) {
      ::unlinkat(dirfd, tmp.c_str(), 0);
      throw_errno(Code::kIoError, "cannot keep the directory of " + name);
    }
    dirs_.push_back(std::move(d));
    dir_ids_.push_back(id);
  }
  ops_.push_back({at, std::move(tmp), std::move(name)});
}

void Batch::flush() {
  if (ops_.empty()) return;
  if (::syncfs(dirs_.front().get()) != 0) throw_errno(Code::kIoError, "cannot sync the store's file system");
  for (auto& op : ops_) {
    const int dir = dirs_[op.dir].get();
    if (::renameat(dir, op.tmp.c_str(), dir, op.name.c_str()) != 0)
      throw_errno(Code::kIoError, "cannot rename into place " + op.name);
    op.tmp.clear();
  }
  if (::syncfs(dirs_.front().get()) != 0) throw_errno(Code::kIoError, "cannot sync the store's file system");
  ops_.clear();
}

bool remove_at(int dirfd, const std::string& name) {
  if (::unlinkat(dirfd, name.c_str(), 0) != 0) {
    if (errno == ENOENT) return false;
    throw_errno(Code::kIoError, "cannot remove " + name);
  }
  if (::fsync(dirfd) != 0) throw_errno(Code::kIoError, "cannot fsync directory after removing " + name);
  return true;
}

void remove_tree(int dirfd, const std::string& name) {
  auto st = stat_at(dirfd, name);
  if (!st) return;
  if (S_ISDIR(st->st_mode)) {
    if (Fd sub = open_dir(dirfd, name, false))
      for (const auto& e : list_dir(sub.get())) remove_tree(sub.get(), e.name);
    if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
      throw_errno(Code::kIoError, "cannot remove directory " + name);
    if (::fsync(dirfd) != 0) throw_errno(Code::kIoError, "cannot fsync directory after removing " + name);
  } else {
    remove_at(dirfd, name);
  }
}

std::string read_input(const std::string& path, size_t max) {
  int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP) throw Error(Code::kInputUnreadable, path + " is a symlink; pass the file itself");
    throw_errno(Code::kInputUnreadable, "cannot open " + path);
  }
  Fd guard(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0) throw_errno(Code::kInputUnreadable, "cannot stat " + path);
  if (!S_ISREG(st.st_mode)) throw Error(Code::kInputUnreadable, path + " is not a regular file");
  if (static_cast<size_t>(st.st_size) > max)
    throw Error(Code::kInputUnreadable, path + " is larger than " + std::to_string(max) + " bytes");
  return read_fd(fd, max, Code::kInputUnreadable, path);
}

}  // namespace ptrust::fs
