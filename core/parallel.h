// Runs independent, CPU-bound steps of one helper command on the machine's cores: decoding
// 10,000 certificates costs ~175 us each in OpenSSL 3.0 (its public-key decoders), and an
// `import` of that many spends most of its time there. Helper processes only: nothing here
// runs inside a consumer's process (the provider and the hook never start a thread).
#pragma once

#include <algorithm>
#include <cstddef>
#include <exception>
#include <thread>
#include <vector>

namespace ptrust {

// How many threads parallel_for(_with) runs n steps on: at least 64 steps each, at most one
// per core and `max_threads`; 1 runs them inline.
inline unsigned parallel_threads(std::size_t n, unsigned max_threads = 4) {
  constexpr std::size_t kMinPerThread = 64;
  return std::max(1u, std::min({std::thread::hardware_concurrency(), max_threads,
                                static_cast<unsigned>(std::min<std::size_t>(n / kMinPerThread, 64))}));
}

// Calls f(state, i) for every i in [0, n), in contiguous chunks on up to `max_threads`
// threads (the calling one included); small n runs inline. Each thread makes its own `State`
// (default-constructed) before its chunk and destroys it after: what must not be shared
// between threads (an OpenSSL library context, whose shared decoder lookups make 3.0's
// threads wait on each other). A chunk stops at its first exception; after every chunk
// ended, the exception of the lowest i that threw is rethrown, so a refusal names the object
// a sequential loop would have named.
template <typename State, typename F>
void parallel_for_with(std::size_t n, F f, unsigned max_threads = 4) {
  const unsigned threads = parallel_threads(n, max_threads);
  std::vector<std::exception_ptr> error(threads);
  auto run = [&](unsigned t) {
    const std::size_t begin = n * t / threads, end = n * (t + 1) / threads;
    try {
      State state;
      for (std::size_t i = begin; i < end; ++i) f(state, i);
    } catch (...) {  // the lowest failing index of this chunk; later chunks are still searched
      error[t] = std::current_exception();
    }
  };
  std::vector<std::thread> pool;
  try {
    for (unsigned t = 1; t < threads; ++t) pool.emplace_back(run, t);
  } catch (...) {  // no thread to be had: the rest of the chunks run here
    for (unsigned t = static_cast<unsigned>(pool.size()) + 1; t < threads; ++t) run(t);
  }
  run(0);
  for (auto& th : pool) th.join();
  for (unsigned t = 0; t < threads; ++t)
    if (error[t]) std::rethrow_exception(error[t]);  // chunks are in index order
}

// parallel_for_with without per-thread state: f(i).
template <typename F>
void parallel_for(std::size_t n, F f, unsigned max_threads = 4) {
  struct None {};
  parallel_for_with<None>(n, [&f](None&, std::size_t i) { f(i); }, max_threads);
}

}  // namespace ptrust
