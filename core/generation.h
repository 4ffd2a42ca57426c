// The store generation: a counter in <root>/var/lib/ptrust/generation that every writer
// moves before and after it changes any store file. Readers keep the file open and read the
// counter with pread at most once per GenerationView::kPollNs, so noticing "nothing changed"
// costs a clock read and an atomic load on most calls. The file is never mapped by readers:
// a truncated or garbled file (an admin's `: > generation`) must not kill the host process
// with SIGBUS; it reads as kInvalid and consumers re-read the store at a bounded rate.
//
// Seqlock-style: a writer makes the counter odd before it touches a file (begin_change) and
// even again when every file is written (end_change). A reader must not keep a view built
// while the counter was odd: a writer was (or died) half-way. `ptrust sync` finds an odd
// counter (a writer that died) and ends the change. The file is created once (atomically)
// and then only updated in place; if it is ever re-created, GenerationView::replaced() tells
// the reader to re-open.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace ptrust {

// Writer side; call with the store lock held. Both create the file when missing.
void begin_change(int state_dirfd);  // counter → next odd value
void end_change(int state_dirfd);    // counter → next even value

// True when no change is in progress (the counter is even).
constexpr bool generation_stable(std::uint64_t g) noexcept { return (g & 1) == 0; }

// 0 when the file is missing or malformed.
std::uint64_t read_generation(int state_dirfd);

class GenerationView {
 public:
  // What load() returns when the file no longer holds a valid generation (truncated, garbage).
  static constexpr std::uint64_t kInvalid = ~std::uint64_t{0};
  // How stale load() may be: a change is seen by every call that starts this long after the
  // writer finished.
  static constexpr std::int64_t kPollNs = 100'000;  // 100 µs

  // nullptr when <root>/var/lib/ptrust/generation does not exist (yet) or is malformed.
  static std::unique_ptr<GenerationView> open(const std::string& root);
  ~GenerationView();
  GenerationView(const GenerationView&) = delete;
  GenerationView& operator=(const GenerationView&) = delete;

  // The counter as of at most kPollNs before `now_ns` (steady clock); one caller re-reads it
  // (pread), the others take the value it read. kInvalid when the file went bad.
  std::uint64_t load(std::int64_t now_ns) const noexcept;
  // The counter now (one pread). kInvalid when the file went bad.
  std::uint64_t read() const noexcept;

  // True when the file was unlinked, or its path now names another file (deleted, replaced,
  // or the state directory moved): its counter will never move again and the reader must
  // open a new view. One fstat; call it at a bounded
  // rate, not per handshake.
  bool replaced() const noexcept;

 private:
  GenerationView(int fd, std::uint64_t first, std::string path);
  int fd_;
  std::string path_;  // where the file is expected (a moved or replaced state directory shows)
  mutable std::atomic<std::int64_t> next_read_ns_{0};
  mutable std::atomic<std::uint64_t> value_;
};

}  // namespace ptrust
