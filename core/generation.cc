#include "core/generation.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "core/error.h"
#include "core/fs.h"
#include "core/layout.h"

namespace ptrust {

namespace {

constexpr char kMagic[8] = {'P', 'T', 'R', 'U', 'S', 'T', 'G', '1'};
constexpr size_t kSize = 16;  // magic + counter; counter is 8-byte aligned at offset 8

struct Mapping {
  void* addr = MAP_FAILED;
  Mapping() = default;
  Mapping(const Mapping&) = delete;  // a copy would unmap twice
  Mapping& operator=(const Mapping&) = delete;
  ~Mapping() {
    if (addr != MAP_FAILED) ::munmap(addr, kSize);
  }
};

bool valid(const void* addr) { return std::memcmp(addr, kMagic, sizeof kMagic) == 0; }

std::string initial_content(bool odd) {
  // Seeded from the clock so that a re-created file never repeats a value readers saw.
  std::uint64_t seed = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  seed = (seed & ~std::uint64_t{1}) | (odd ? 1 : 0);
  std::string s(kSize, '\0');
  std::memcpy(s.data(), kMagic, sizeof kMagic);
  std::memcpy(s.data() + 8, &seed, sizeof seed);
  return s;
}

}  // namespace

namespace {

// Moves the counter to the next value of the wanted parity (odd: a change is in progress).
void advance(int state_dirfd, bool odd) {
  const std::string name(layout::kGenerationFile);
  int fd = ::openat(state_dirfd, name.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno != ENOENT) throw_errno(Code::kIoError, "cannot open generation file");
    fs::write_atomic(state_dirfd, name, initial_content(odd), fs::kFileMode);
    return;
  }
  fs::Fd guard(fd);
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != static_cast<off_t>(kSize)) {
    // Malformed: rewrite in place so existing mappings of this inode keep working.
    std::string init = initial_content(odd);
    if (::ftruncate(fd, kSize) != 0 || ::pwrite(fd, init.data(), kSize, 0) != static_cast<ssize_t>(kSize))
      throw_errno(Code::kIoError, "cannot repair generation file");
    return;
  }
  Mapping m;
  m.addr = ::mmap(nullptr, kSize, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (m.addr == MAP_FAILED) throw_errno(Code::kIoError, "cannot map generation file");
  if (!valid(m.addr)) {
    std::string init = initial_content(odd);
    std::memcpy(m.addr, init.data(), kSize);
    return;
  }
  auto* counter = reinterpret_cast<std::uint64_t*>(static_cast<char*>(m.addr) + 8);
  std::uint64_t now = __atomic_load_n(counter, __ATOMIC_ACQUIRE);
  std::uint64_t step = ((now & 1) == (odd ? 1u : 0u)) ? 2 : 1;  // always move, land on the parity
  __atomic_fetch_add(counter, step, __ATOMIC_RELEASE);
}

}  // namespace

void begin_change(int state_dirfd) { advance(state_dirfd, true); }
void end_change(int state_dirfd) { advance(state_dirfd, false); }

std::uint64_t read_generation(int state_dirfd) {
  auto data = fs::read_at(state_dirfd, std::string(layout::kGenerationFile), 4096);
  if (!data || data->size() != kSize || !valid(data->data())) return 0;
  std::uint64_t v;
  std::memcpy(&v, data->data() + 8, sizeof v);
  return v;
}

namespace {

// The counter of the open generation file, or GenerationView::kInvalid (short, garbled).
std::uint64_t pread_counter(int fd) noexcept {
  char buf[kSize + 1];  // one more: a grown file is malformed too
  ssize_t n;
  do {
    n = ::pread(fd, buf, sizeof buf, 0);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(kSize) || !valid(buf)) return GenerationView::kInvalid;
  std::uint64_t v;
  std::memcpy(&v, buf + 8, sizeof v);
  return v == GenerationView::kInvalid ? v - 2 : v;  // never confused with kInvalid
}

}  // namespace

std::unique_ptr<GenerationView> GenerationView::open(const std::string& root) {
  fs::Fd state;
  try {
    state = fs::open_dir(fs::open_root(root).get(), layout::kStateDir, false);
  } catch (const Error&) {
    return nullptr;
  }
  if (!state) return nullptr;
  int fd = ::openat(state.get(), std::string(layout::kGenerationFile).c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return nullptr;
  fs::Fd guard(fd);  // kept open (released below): read() and replaced() use it
  struct stat st;
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) return nullptr;
  std::uint64_t first = pread_counter(fd);
  if (first == kInvalid) return nullptr;
  std::string path = root + (root.ends_with('/') ? "" : "/") + std::string(layout::kStateDir) + "/" +
                     std::string(layout::kGenerationFile);
  return std::unique_ptr<GenerationView>(new GenerationView(guard.release(), first, std::move(path)));
}

GenerationView::GenerationView(int fd, std::uint64_t first, std::string path)
    : fd_(fd), path_(std::move(path)), value_(first) {}

GenerationView::~GenerationView() { ::close(fd_); }

std::uint64_t GenerationView::read() const noexcept { return pread_counter(fd_); }

std::uint64_t GenerationView::load(std::int64_t now_ns) const noexcept {
  std::int64_t due = next_read_ns_.load(std::memory_order_acquire);
  if (now_ns < due ||
      !next_read_ns_.compare_exchange_strong(due, now_ns + kPollNs, std::memory_order_acq_rel))
    return value_.load(std::memory_order_acquire);
  std::uint64_t v = read();
  value_.store(v, std::memory_order_release);
  return v;
}

bool GenerationView::replaced() const noexcept {
  struct stat mine, named;
  if (::fstat(fd_, &mine) != 0 || mine.st_nlink == 0) return true;
  if (::lstat(path_.c_str(), &named) != 0) return true;
  return named.st_dev != mine.st_dev || named.st_ino != mine.st_ino;
}

}  // namespace ptrust
