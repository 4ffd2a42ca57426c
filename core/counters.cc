#include "core/counters.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"

namespace ptrust::counters {

namespace {

// Header field offsets (see the format in counters.h).
constexpr std::size_t kOffVersion = 8, kOffHeaderSize = 12, kOffPid = 16, kOffStart = 24, kOffSlots = 32,
                      kOffReasons = 36, kOffSlotSize = 40;

template <class T>
T load(const unsigned char* p) {
  T v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class T>
void store(unsigned char* p, T v) {
  std::memcpy(p, &v, sizeof v);
}

// "<pid>-<starttime>.cnt" -> (pid, start); nullopt for any other name.
std::optional<std::pair<pid_t, std::uint64_t>> parse_name(std::string_view n) {
  constexpr std::string_view kExt = ".cnt";
  if (n.size() <= kExt.size() || !n.ends_with(kExt)) return std::nullopt;
  n.remove_suffix(kExt.size());
  size_t dash = n.find('-');
  if (dash == 0 || dash == n.npos || dash + 1 == n.size()) return std::nullopt;
  auto digits = [](std::string_view s) { return s.find_first_not_of("0123456789") == s.npos; };
  std::string_view p = n.substr(0, dash), s = n.substr(dash + 1);
  if (!digits(p) || !digits(s) || (p.size() > 1 && p[0] == '0') || (s.size() > 1 && s[0] == '0')) return std::nullopt;
  std::int32_t pid = 0;
  std::uint64_t start = 0;
  if (std::from_chars(p.data(), p.data() + p.size(), pid).ec != std::errc() || pid <= 0) return std::nullopt;
  if (std::from_chars(s.data(), s.data() + s.size(), start).ec != std::errc()) return std::nullopt;
  return std::pair{static_cast<pid_t>(pid), start};
}

std::string file_name(pid_t pid, std::uint64_t start) {
  return std::to_string(pid) + "-" + std::to_string(start) + ".cnt";
}

// Opens the counters directory of `root` without following symlinks; empty when missing.
fs::Fd open_counters_dir(const std::string& root) {
  fs::Fd r = fs::open_root(root);
  return fs::open_dir(r.get(), layout::kCountersDir, false);
}

// True when a process holds the file's shared lock (the writer or a child it forked).
bool held(int fd) noexcept {
  if (::flock(fd, LOCK_EX | LOCK_NB) == 0) {
    ::flock(fd, LOCK_UN);
    return false;
  }
  return errno == EWOULDBLOCK;
}

bool runs(pid_t pid, std::uint64_t start) noexcept {
  std::optional<std::uint64_t> s = process_start_time(pid);
  return s && *s == start;
}

}  // namespace

std::optional<std::uint64_t> process_start_time(pid_t pid) noexcept {
  char path[48];
  if (pid == 0)
    std::strcpy(path, "/proc/self/stat");
  else
    std::snprintf(path, sizeof path, "/proc/%d/stat", static_cast<int>(pid));
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::nullopt;
  char buf[1024];  // comm is at most 64 bytes; the fields up to 22 fit well within this
  ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return std::nullopt;
  std::string_view s(buf, static_cast<size_t>(n));
  // comm (field 2) may hold spaces and ')': fields 3.. start after the last ')'.
  size_t pos = s.rfind(')');
  if (pos == s.npos) return std::nullopt;
  s.remove_prefix(pos + 1);
  for (int field = 3; field <= 22; ++field) {  // " <state> <ppid> ... <starttime> ..."
    if (s.empty() || s[0] != ' ') return std::nullopt;
    s.remove_prefix(1);
    if (field == 22) break;
    size_t sp = s.find(' ');
    if (sp == s.npos) return std::nullopt;
    s.remove_prefix(sp);
  }
  std::uint64_t v = 0;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  if (r.ec != std::errc()) return std::nullopt;
  return v;
}

// ---- writer ----

std::unique_ptr<Publisher> Publisher::create(const std::string& root) noexcept {
  constexpr std::uint64_t kSize = file_size(kSlots, PTRUST_REASON_COUNT);
  static_assert(kSize % 4096 == 64, "header + slots; keep the file small");
  try {
    fs::Fd dir = open_counters_dir(root);
    if (!dir) return nullptr;  // the daemon has not made it: count in-process
    std::optional<std::uint64_t> start = process_start_time();
    if (!start) return nullptr;
    std::unique_ptr<Publisher> p(new Publisher);
    p->pid_ = ::getpid();
    p->file_ = file_name(p->pid_, *start);
    fs::Fd fd(::openat(dir.get(), p->file_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644));
    if (!fd) return nullptr;  // EACCES, EEXIST (pre-created by someone else), ...
    auto give_up = [&] {
      ::unlinkat(dir.get(), p->file_.c_str(), 0);
      return nullptr;
    };
    // Best effort: a reader holding the lock this instant only costs the fork liveness signal.
    ::flock(fd.get(), LOCK_SH | LOCK_NB);
    if (::fchmod(fd.get(), 0644) != 0) return give_up();  // umask-proof: the daemon may run as another user
    // Write real zeros rather than ftruncate: a sparse file on a full file system would raise
    // SIGBUS in the host on the first increment of an untouched page.
    static const unsigned char kZeros[4096] = {};
    for (std::uint64_t off = 0; off < kSize;) {
      size_t len = static_cast<size_t>(std::min<std::uint64_t>(sizeof kZeros, kSize - off));
      ssize_t w = ::pwrite(fd.get(), kZeros, len, static_cast<off_t>(off));
      if (w <= 0) {
        if (w < 0 && errno == EINTR) continue;
        return give_up();  // ENOSPC, EDQUOT, ...
      }
      off += static_cast<std::uint64_t>(w);
    }
    void* m = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd.get(), 0);
    if (m == MAP_FAILED) return give_up();
    p->map_ = static_cast<unsigned char*>(m);
    unsigned char* h = p->map_;
    store<std::uint32_t>(h + kOffVersion, kVersion);
    store<std::uint32_t>(h + kOffHeaderSize, kHeaderSize);
    store<std::int32_t>(h + kOffPid, static_cast<std::int32_t>(p->pid_));
    store<std::uint64_t>(h + kOffStart, *start);
    store<std::uint32_t>(h + kOffSlots, kSlots);
    store<std::uint32_t>(h + kOffReasons, PTRUST_REASON_COUNT);
    store<std::uint32_t>(h + kOffSlotSize, slot_size(PTRUST_REASON_COUNT));
    // The magic last, as one release store: a reader that sees it sees a complete header.
    std::uint64_t magic;
    std::memcpy(&magic, kMagic, sizeof magic);
    std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(h)).store(magic, std::memory_order_release);
    p->fd_ = fd.release();
    return p;
  } catch (...) {
    return nullptr;
  }
}

Publisher::~Publisher() {
  if (map_) ::munmap(map_, file_size(kSlots, PTRUST_REASON_COUNT));
  if (fd_ >= 0) ::close(fd_);
}

std::uint64_t* Publisher::claim(std::string_view purpose) noexcept {
  if (!valid_purpose_name(purpose) || purpose.size() >= kNameSize) return nullptr;
  std::lock_guard lk(mu_);
  if (used_ == kSlots) return nullptr;
  unsigned char* slot = map_ + kHeaderSize + std::size_t{used_} * slot_size(PTRUST_REASON_COUNT);
  ++used_;
  std::memcpy(slot + 8, purpose.data(), purpose.size());  // the rest is still zero
  std::atomic_ref<std::uint64_t>(*reinterpret_cast<std::uint64_t*>(slot)).store(1, std::memory_order_release);
  return reinterpret_cast<std::uint64_t*>(slot + 64);
}

Publisher* publisher_for(const std::string& root) noexcept {
  // Never destroyed: counters handed out stay mapped until the process ends (contexts may be
  // freed during static destruction, or never).
  static std::mutex mu;
  static auto* registry = new (std::nothrow) std::map<std::string, Publisher*>;
  try {
    std::lock_guard lk(mu);
    if (!registry) return nullptr;
    pid_t self = ::getpid();
    auto it = registry->find(root);
    // After fork the parent's publisher is not ours: slots are claimed by one process only.
    // The parent's stays mapped (leaked) for the contexts the child inherited.
    if (it != registry->end() && it->second->pid() == self) return it->second;
    std::unique_ptr<Publisher> p = Publisher::create(root);
    if (!p) return nullptr;  // tried again for the next purpose: the daemon may start later
    Publisher* raw = p.release();
    (*registry)[root] = raw;
    return raw;
  } catch (...) {
    return nullptr;
  }
}

// ---- reader ----

void ensure_counters_dir(const std::string& root) {
  fs::Fd r = fs::open_root(root);
  std::string_view rel = layout::kCountersDir;
  size_t slash = rel.rfind('/');
  fs::Fd parent = fs::open_dir(r.get(), rel.substr(0, slash), true);
  std::string name(rel.substr(slash + 1));
  if (::mkdirat(parent.get(), name.c_str(), 0700) != 0 && errno != EEXIST)
    throw_errno(Code::kIoError, "cannot create " + std::string(rel));
  int fd = ::openat(parent.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ELOOP || errno == ENOTDIR)
      throw Error(Code::kStoreUnsafe, std::string(rel) + " is a symlink or not a directory");
    throw_errno(Code::kIoError, "cannot open " + std::string(rel));
  }
  fs::Fd d(fd);
  struct stat st;
  if (::fstat(d.get(), &st) != 0) throw_errno(Code::kIoError, "cannot stat " + std::string(rel));
  // Someone else's directory would let them remove or replace every process's file.
  if (st.st_uid != ::geteuid()) throw Error(Code::kStoreUnsafe, std::string(rel) + " belongs to another user");
  if (::fchmod(d.get(), 01777) != 0) throw_errno(Code::kIoError, "cannot chmod " + std::string(rel));
}

namespace {

// Reads one file; the reason it is bad, or "" with `out` filled.
std::string read_one(int dirfd, const std::string& name, ProcessCounters& out) {
  std::optional<std::pair<pid_t, std::uint64_t>> id = parse_name(name);
  if (!id) return "unexpected name";
  // O_NONBLOCK: opening a FIFO must not wait for a writer.
  int raw = ::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
  if (raw < 0) return errno == ELOOP ? "symlink" : std::string("cannot open: ") + std::strerror(errno);
  fs::Fd fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return "cannot stat";
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if (st.st_size < static_cast<off_t>(kHeaderSize)) return "truncated";
  if (static_cast<std::uint64_t>(st.st_size) > file_size(kMaxSlots, kMaxReasons)) return "too large";
  // One pread of the header, then one of the whole file (the size is bounded above); a file
  // shrinking meanwhile gives a short read, reported, never a fault.
  unsigned char h[kHeaderSize];
  if (::pread(fd.get(), h, sizeof h, 0) != static_cast<ssize_t>(sizeof h)) return "truncated";
  if (std::memcmp(h, kMagic, sizeof kMagic) != 0) return "bad magic";
  if (load<std::uint32_t>(h + kOffVersion) != kVersion) return "unsupported version";
  if (load<std::uint32_t>(h + kOffHeaderSize) != kHeaderSize) return "bad header size";
  const auto pid = load<std::int32_t>(h + kOffPid);
  const auto start = load<std::uint64_t>(h + kOffStart);
  if (pid != id->first || start != id->second) return "header does not match the file name";
  const auto slots = load<std::uint32_t>(h + kOffSlots);
  const auto reasons = load<std::uint32_t>(h + kOffReasons);
  if (slots < 1 || slots > kMaxSlots) return "bad slot count";
  if (reasons < 1 || reasons > kMaxReasons) return "bad reason count";
  if (load<std::uint32_t>(h + kOffSlotSize) != slot_size(reasons)) return "bad slot size";
  const std::uint64_t size = file_size(slots, reasons);
  if (static_cast<std::uint64_t>(st.st_size) != size) return "wrong size";
  std::vector<unsigned char> data(size);
  for (std::uint64_t off = 0; off < size;) {
    ssize_t n = ::pread(fd.get(), data.data() + off, size - off, static_cast<off_t>(off));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return "truncated while reading";
    off += static_cast<std::uint64_t>(n);
  }
  const std::uint32_t known = std::min<std::uint32_t>(reasons, PTRUST_REASON_COUNT);
  for (std::uint32_t i = 0; i < slots; ++i) {
    const unsigned char* slot = data.data() + kHeaderSize + std::size_t{i} * slot_size(reasons);
    const auto state = load<std::uint64_t>(slot);
    if (state == 0) continue;
    if (state != 1) return "bad slot state";
    const char* n = reinterpret_cast<const char*>(slot + 8);
    std::string_view purpose(n, strnlen(n, kNameSize));
    if (purpose.size() == kNameSize || !valid_purpose_name(purpose)) return "bad purpose name";
    Counts& sum = out.purposes[std::string(purpose)];
    for (std::uint32_t r = 0; r < known; ++r) sum[r] += load<std::uint64_t>(slot + 64 + 8 * r);
  }
  out.pid = pid;
  out.start_time = start;
  out.file = name;
  out.alive = runs(pid, start) || held(fd.get());
  return "";
}

}  // namespace

std::vector<ProcessCounters> read_counters(const std::string& root, std::vector<BadFile>* bad) {
  std::vector<ProcessCounters> all;
  fs::Fd dir;
  try {
    dir = open_counters_dir(root);
  } catch (const Error& e) {
    if (bad) bad->push_back({std::string(layout::kCountersDir), e.what()});
    return all;
  }
  if (!dir) return all;
  std::vector<fs::Entry> entries;
  try {
    entries = fs::list_dir(dir.get());
  } catch (const Error& e) {
    if (bad) bad->push_back({std::string(layout::kCountersDir), e.what()});
    return all;
  }
  for (const fs::Entry& e : entries) {
    ProcessCounters pc;
    std::string why = read_one(dir.get(), e.name, pc);
    if (why.empty())
      all.push_back(std::move(pc));
    else if (bad)
      bad->push_back({e.name, std::move(why)});
  }
  return all;
}

bool remove_dead(const std::string& root, const ProcessCounters& p) noexcept {
  try {
    std::optional<std::pair<pid_t, std::uint64_t>> id = parse_name(p.file);
    if (!id || id->first != p.pid || id->second != p.start_time) return false;
    if (runs(p.pid, p.start_time)) return false;
    fs::Fd dir = open_counters_dir(root);
    if (!dir) return false;
    fs::Fd fd(::openat(dir.get(), p.file.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY));
    if (!fd || held(fd.get())) return false;
    // Nobody can take the lock any more (it is only inherited from a holder): dead for good.
    return ::unlinkat(dir.get(), p.file.c_str(), 0) == 0;
  } catch (...) {
    return false;
  }
}

}  // namespace ptrust::counters
