// Host-wide verdict counters: every process running the verify hook publishes its per-purpose,
// per-reason counts in a small shared file, and the daemon (`ptrust serve`) reads them all.
//
// Where: <root>/run/ptrust/counters/ (layout::kCountersDir), created by the daemon with mode
// 01777 (sticky: any user's hook can add its own file, none can remove or rename another's).
// A hook publishes only when that directory already exists; it never creates directories.
//
// One file per (process, root), named "<pid>-<starttime>.cnt" (starttime: field 22 of
// /proc/<pid>/stat, clock ticks since boot), so a reused pid is told apart. Mode 0644, owned by
// the writing process's user, created O_EXCL and filled with zeros by write() (blocks are
// allocated before mapping: a full tmpfs fails the creation instead of raising SIGBUS on a
// later increment), then mapped MAP_SHARED by the writer only. Readers never map it.
//
// File format, version 1 (stable; all integers in the host's byte order, a file is only ever
// read on the host that wrote it). Readers accept any reason_count >= 1 and read the reasons
// they know (new reasons are only ever appended to ptrust_reason).
//
//   offset  size  header (kHeaderSize = 64 bytes)
//   0       8     magic "PTRCNT\0\1"
//   8       4     version (1)
//   12      4     header size (64)
//   16      4     pid
//   20      4     reserved (0)
//   24      8     start time (clock ticks since boot, as in the file name)
//   32      4     slot count
//   36      4     reason count (number of counters per slot)
//   40      4     slot size = 64 + round_up(8 * reason count, 64)
//   44      20    reserved (0)
//   64      slot count * slot size: the slots
//
//   slot (64-byte aligned)
//   0       8     state: 0 free, 1 used (set after the name is written; never reset)
//   8       56    purpose name, NUL-padded: [a-z0-9][a-z0-9_-]{0,31} ("general" included)
//   64      8 * reason count  counters indexed by ptrust_reason (PTRUST_REASON_OK = verified),
//                 incremented with relaxed atomic adds; monotonic
//
// A slot belongs to one purpose of one PTRUST_CTX for the process's lifetime (slots are never
// reused, so the counts stay monotonic); two slots may carry the same purpose name (two
// contexts) and readers sum them. A reader may see a count that is a few increments behind.
//
// fork: a child inherits the mapping, so its verdicts through contexts created before the
// fork land in the parent's file (host-wide sums stay right; ptrust_ctx_get_counters then
// shows parent + child). Contexts the child creates get a file of its own. The file stays
// "alive" while the process named in it runs or any process still holds its lock (a forked
// child keeps the inherited descriptor and its shared flock).
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ptrust/ptrust.h"

namespace ptrust::counters {

inline constexpr char kMagic[8] = {'P', 'T', 'R', 'C', 'N', 'T', '\0', '\1'};
inline constexpr std::uint32_t kVersion = 1;
inline constexpr std::uint32_t kHeaderSize = 64;
inline constexpr std::uint32_t kSlots = 64;
inline constexpr std::size_t kNameSize = 56;
// Readers' bounds on what a file may claim (a hostile file must not make them allocate much).
inline constexpr std::uint32_t kMaxSlots = 4096;
inline constexpr std::uint32_t kMaxReasons = 1024;

constexpr std::uint32_t slot_size(std::uint32_t reasons) { return 64 + (8 * reasons + 63) / 64 * 64; }
constexpr std::uint64_t file_size(std::uint32_t slots, std::uint32_t reasons) {
  return kHeaderSize + std::uint64_t{slots} * slot_size(reasons);
}

// Field 22 of /proc/<pid>/stat (start time in clock ticks since boot); nullopt when the
// process does not exist. 0 means this process.
std::optional<std::uint64_t> process_start_time(pid_t pid = 0) noexcept;

// ---- writer (the verify hook) ----

// One process's file for one root. Thread-safe; claim() runs when a purpose is first used
// by a PTRUST_CTX (never on the handshake path). Never throws.
class Publisher {
 public:
  // Creates this process's file in <root>/run/ptrust/counters; nullptr when that directory
  // does not exist or anything fails (the caller then counts in-process).
  static std::unique_ptr<Publisher> create(const std::string& root) noexcept;
  ~Publisher();  // unmaps; the file stays for the daemon to fold and remove
  Publisher(const Publisher&) = delete;
  Publisher& operator=(const Publisher&) = delete;

  // A free slot for `purpose`: its PTRUST_REASON_COUNT counters (8-byte aligned, to be
  // incremented with atomic operations), or nullptr when every slot is taken.
  std::uint64_t* claim(std::string_view purpose) noexcept;

  pid_t pid() const noexcept { return pid_; }
  const std::string& file() const noexcept { return file_; }

 private:
  Publisher() = default;
  std::mutex mu_;
  unsigned char* map_ = nullptr;
  std::uint32_t used_ = 0;  // slots claimed so far (guarded by mu_)
  pid_t pid_ = 0;
  int fd_ = -1;  // kept open: holds the shared flock that marks the file alive
  std::string file_;
};

// The publisher of this process for `root`, made on first use and kept for the process's
// lifetime (mappings handed out must outlive every context). A process forked from the one
// that made it gets its own. nullptr when the root publishes nothing. Never throws.
Publisher* publisher_for(const std::string& root) noexcept;

// ---- reader (the daemon) ----

using Counts = std::array<std::uint64_t, PTRUST_REASON_COUNT>;  // indexed by ptrust_reason

struct ProcessCounters {
  pid_t pid = 0;
  std::uint64_t start_time = 0;
  // The process named in the file runs (pid exists with that start time), or a process
  // forked from it still holds the file.
  bool alive = false;
  std::string file;                         // name in the counters directory
  std::map<std::string, Counts> purposes;  // slots with the same purpose summed
};

struct BadFile {
  std::string file;
  std::string why;
};

// Creates <root>/run/ptrust/counters with mode 01777 (and run/ptrust 0755) if missing.
// Throws ptrust::Error STORE_UNSAFE when it exists as something else (a symlink, a file, a
// directory of another owner), IO_ERROR when it cannot be made.
void ensure_counters_dir(const std::string& root);

// Every valid counters file of the root (sorted by file name). Files that are not a regular
// file of the expected size and format are skipped and listed in `bad` (when given). Opens
// with O_NOFOLLOW|O_NONBLOCK and reads with pread: a FIFO, a symlink, or a writer truncating
// its file can neither hang nor crash the reader. No directory: empty. Throws only
// std::bad_alloc.
std::vector<ProcessCounters> read_counters(const std::string& root, std::vector<BadFile>* bad = nullptr);

// Removes the file of `p` when its process is (still) gone; returns whether it was removed.
// A process that exited never comes back with the same pid and start time, so a file found
// dead stays dead. Never throws.
bool remove_dead(const std::string& root, const ProcessCounters& p) noexcept;

}  // namespace ptrust::counters
