// Runs code in a thread with a small stack, as consumer code runs inside other programs:
// stunnel 5.68 worker threads have 64 KiB (its `stack =` default). A frame that does not fit
// kills the whole test binary with SIGSEGV, which is the failure these tests exist to show.
#pragma once

#include <pthread.h>

#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <stdexcept>
#include <string>

namespace ptrust::testing {

inline constexpr size_t kStunnelStack = 65536;
// A frame that overflows the stack writes below it: into the guard page if it is close, but
// a 64 KiB buffer reaches past glibc's one-page guard into whatever is mapped there (and may
// corrupt memory silently instead of crashing). A wide guard makes every overflow of up to
// this much fault, so the test fails the same way on every run.
inline constexpr size_t kWideGuard = 1 << 20;

namespace detail {

constexpr unsigned char kPaint = 0xa5;

// Fills the unused part of this thread's stack (below the caller's frame) with kPaint.
[[gnu::noinline]] inline void paint_below(unsigned char* lo) {
  const auto end = reinterpret_cast<uintptr_t>(__builtin_frame_address(0)) - 512;  // below this frame
  for (auto* p = reinterpret_cast<volatile unsigned char*>(lo); reinterpret_cast<uintptr_t>(p) < end; ++p) *p = kPaint;
}

// Bytes of stack used since paint_below: the lowest byte that lost its paint.
inline size_t used_since_paint(unsigned char* lo, unsigned char* hi) {
  unsigned char* p = lo;
  while (p < hi && *static_cast<volatile unsigned char*>(p) == kPaint) ++p;
  return static_cast<size_t>(hi - p);
}

}  // namespace detail

// Calls `fn` on a new thread created with a `stack_size` stack and joins it. An exception
// from `fn` is rethrown here. Keep the work in `fn` to what is measured (no gtest assertions:
// collect results and assert after the join). Returns the most stack the thread used (the
// stack is painted first), to show the margin left.
inline size_t on_small_stack(const std::function<void()>& fn, size_t stack_size = kStunnelStack) {
  struct Job {
    const std::function<void()>* fn;
    std::exception_ptr error;
    size_t used = 0;
  } job{&fn, nullptr};
  pthread_attr_t attr;
  if (int rc = pthread_attr_init(&attr); rc != 0) throw std::runtime_error("pthread_attr_init: " + std::string(std::strerror(rc)));
  int rc = pthread_attr_setstacksize(&attr, stack_size);
  if (rc == 0) rc = pthread_attr_setguardsize(&attr, kWideGuard);
  if (rc != 0) {
    pthread_attr_destroy(&attr);
    throw std::runtime_error("pthread_attr_setstacksize/setguardsize: " + std::string(std::strerror(rc)));
  }
  pthread_t t;
  rc = pthread_create(
      &t, &attr,
      [](void* p) -> void* {
        auto* j = static_cast<Job*>(p);
        pthread_attr_t self;
        void* base = nullptr;
        size_t size = 0;
        bool measured = pthread_getattr_np(pthread_self(), &self) == 0;
        if (measured) {
          measured = pthread_attr_getstack(&self, &base, &size) == 0;
          pthread_attr_destroy(&self);
        }
        auto* lo = static_cast<unsigned char*>(base);
        if (measured) detail::paint_below(lo);
        try {
          (*j->fn)();
        } catch (...) {
          j->error = std::current_exception();
        }
        if (measured) j->used = detail::used_since_paint(lo, lo + size);
        return nullptr;
      },
      &job);
  pthread_attr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("pthread_create: " + std::string(std::strerror(rc)));
  pthread_join(t, nullptr);
  if (job.error) std::rethrow_exception(job.error);
  return job.used;
}

}  // namespace ptrust::testing
