// The store generation: a counter in <root>/var/lib/ptrust/generation that every writer
// bumps before and after it changes any bundle. Readers map the file once and compare one
// 64-bit load per handshake, so noticing "nothing changed" costs about a nanosecond.
//
// Bumping before and after a change means a reader that built its view while a writer was
// half-way (or crashed half-way) always sees the counter move again afterwards.
// The file is created once (atomically) and then only updated in place, so a mapping
// stays valid for the life of the reader.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace ptrust {

// Writer side; call with the store lock held. Creates the file when missing.
void bump_generation(int state_dirfd);

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

 private:
  GenerationView(void* map, size_t len);
  void* map_;
  size_t len_;
  const std::uint64_t* counter_;
};

}  // namespace ptrust
