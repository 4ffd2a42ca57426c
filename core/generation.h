// The store generation: a counter in <root>/var/lib/ptrust/generation that every writer
// moves before and after it changes any store file. Readers map the file once and compare
// one 64-bit load per handshake, so noticing "nothing changed" costs about a nanosecond.
//
// Seqlock-style: a writer makes the counter odd before it touches a file (begin_change) and
// even again when every file is written (end_change). A reader must not keep a view built
// while the counter was odd: a writer was (or died) half-way. `ptrust sync` finds an odd
// counter (a writer that died) and ends the change. The file is created once (atomically)
// and then only updated in place, so a mapping stays valid for the life of the reader;
// if the file is ever re-created, GenerationView::replaced() tells the reader to re-open.
#pragma once

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
  // nullptr when <root>/var/lib/ptrust/generation does not exist (yet) or is malformed.
  static std::unique_ptr<GenerationView> open(const std::string& root);
  ~GenerationView();
  GenerationView(const GenerationView&) = delete;
  GenerationView& operator=(const GenerationView&) = delete;

  std::uint64_t load() const noexcept { return __atomic_load_n(counter_, __ATOMIC_ACQUIRE); }

  // True when the mapped file was unlinked (deleted or replaced by a new file): its counter
  // will never move again and the reader must open a new view. One fstat; call it at a
  // bounded rate, not per handshake.
  bool replaced() const noexcept;

 private:
  GenerationView(int fd, void* map, size_t len);
  int fd_;
  void* map_;
  size_t len_;
  const std::uint64_t* counter_;
};

}  // namespace ptrust
