// File-system primitives for the stores. Everything inside a store is reached through
// directory file descriptors and *at() calls with O_NOFOLLOW: a symlink anywhere inside a
// store is refused (STORE_UNSAFE), never followed. Only the root prefix itself, which the
// administrator chose, is opened by path.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <string_view>
#include <vector>

namespace ptrust::fs {

class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();
  int get() const noexcept { return fd_; }
  int release() noexcept { int f = fd_; fd_ = -1; return f; }
  explicit operator bool() const noexcept { return fd_ >= 0; }

 private:
  int fd_ = -1;
};

inline constexpr mode_t kDirMode = 0755;
inline constexpr mode_t kFileMode = 0644;

// Opens the root prefix (a directory; symlinks in this path are the admin's business).
Fd open_root(const std::string& root);

// Walks `rel` ("a/b/c") below `base` one component at a time with O_NOFOLLOW.
// Returns an empty Fd when a component is missing and `create` is false.
// With `create`, missing directories are made with mode 0755 (umask-proof).
Fd open_dir(int base, std::string_view rel, bool create);

struct Entry {
  std::string name;
  mode_t type;  // S_IFREG, S_IFDIR, S_IFLNK, ...
  mode_t perm;  // permission bits
  off_t size;
};

// Entries of a directory (no "." or ".."), sorted by name. Uses lstat semantics.
std::vector<Entry> list_dir(int dirfd);
// Names and types from the directory alone (d_type; lstat only where the file system does not
// give it), unsorted and without a copy: f(name, type) for each entry as the directory yields
// it. For writers, which check the entries their change touches and leave the others to
// `sync` (a pass over a store of 20,000 entries stats and allocates nothing per entry).
void each_name(int dirfd, const std::function<void(std::string_view name, mode_t type)>& f);

// lstat of one entry; nullopt when it does not exist.
std::optional<struct stat> stat_at(int dirfd, const std::string& name);

// Reads a regular file inside a store. nullopt when missing. A symlink or any
// non-regular file is STORE_UNSAFE; a file over `max` bytes is STORE_CORRUPT.
// `huge_pages`: advise transparent huge pages for the buffer of a file of 4 MiB or more (a
// writer's bundle; never in a consumer's process, whose memory it would reshape).
std::optional<std::string> read_at(int dirfd, const std::string& name, size_t max, bool huge_pages = false);

// Replaces `name` atomically: temp file (hidden, not *.pem), write, fchmod, fsync,
// renameat, fsync(dir). A crash at any instant leaves the old or the new content.
// Returns the name that holds the new content now: `name`, or while a Batch is active the
// temp name until the batch is flushed (link_atomic can link to either).
std::string write_atomic(int dirfd, const std::string& name, std::string_view data, mode_t mode);
// The same for the concatenation of `parts` (a bundle of 10,000 records' PEM, never copied
// into one string), written with writev.
std::string write_atomic(int dirfd, const std::string& name, std::span<const std::string_view> parts, mode_t mode);

// A new directory (mode 0755 whatever the umask) under a fresh temp name in `parent`, for a
// tree built whole before it is renamed into place: its name and an open descriptor.
std::pair<std::string, Fd> create_temp_dir(int parent);

// Creates `name` (which must not exist; never through a symlink) holding `data` with `mode`;
// fsync'ed when `sync`. For a directory no reader can reach by name yet (a tree built under
// a temp name): nothing is replaced, so no temp name is needed.
void create_file(int dirfd, const std::string& name, std::string_view data, mode_t mode, bool sync);

// Replaces `name` atomically with a hard link to `from`, a file in the same directory that
// holds exactly the wanted content (a hash entry and its record's file): linkat to a temp
// name (never following a symlink), renameat, fsync(dir); batched as write_atomic. No inode
// is allocated and no byte written. False (nothing changed) when `from` is gone.
bool link_atomic(int dirfd, const std::string& from, const std::string& name);

// A batch of store writes made durable together (a whole-store write such as `import`):
// while one is active on this thread, write_atomic writes each temp file without fsync and
// queues its rename; flush() makes every temp file durable with one syncfs, then renames them
// in the order they were written, then one more syncfs for the directories. Removals are not
// deferred: a caller that removes after writing flushes first (wanted files before remnants). Each file is still old or new at any instant (a temp file is renamed into
// place only once its data is on disk), for two syncfs instead of two fsyncs per file.
// The destructor of an unflushed batch removes its temp files (nothing half-written stays).
class Batch {
 public:
  Batch();
  ~Batch();
  Batch(const Batch&) = delete;
  Batch& operator=(const Batch&) = delete;
  void flush();
  static Batch* active() noexcept;

  // Queues the rename of `tmp` to `name` in `dirfd` (one descriptor kept per directory).
  void queue(int dirfd, std::string tmp, std::string name);

 private:
  struct Op {
    size_t dir;  // index into dirs_
    std::string tmp;
    std::string name;
  };
  std::vector<Op> ops_;
  std::vector<Fd> dirs_;
  std::vector<std::pair<dev_t, ino_t>> dir_ids_;
  Batch* outer_;
};

// unlinkat + fsync(dir); a missing file is not an error. Returns whether it existed.
bool remove_at(int dirfd, const std::string& name);

// Removes an entry, a whole tree for a directory, never following a symlink (a symlink is
// removed itself). A missing entry is not an error.
void remove_tree(int dirfd, const std::string& name);

// Temp files written by write_atomic start with this prefix (sync removes leftovers).
inline constexpr std::string_view kTempPrefix = ".ptrust-tmp-";
// kTempPrefix + 16 random hex digits.
std::string temp_name();

// Reads a user-supplied input file: must be a regular file (not a symlink, not a
// directory), readable, at most `max` bytes. Errors are INPUT_UNREADABLE.
std::string read_input(const std::string& path, size_t max);

}  // namespace ptrust::fs
