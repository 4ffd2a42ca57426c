// Runs code in a thread with a small stack, as consumer code runs inside other programs:
// stunnel 5.68 worker threads have 64 KiB (its `stack =` default). A frame that does not fit
// kills the whole test binary with SIGSEGV, which is the failure these tests exist to show.
#pragma once

#include <pthread.h>

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

// Calls `fn` on a new thread created with a `stack_size` stack and joins it. An exception
// from `fn` is rethrown here. Keep the work in `fn` to what is measured (no gtest assertions:
// collect results and assert after the join).
inline void on_small_stack(const std::function<void()>& fn, size_t stack_size = kStunnelStack) {
  struct Job {
    const std::function<void()>* fn;
    std::exception_ptr error;
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
        try {
          (*j->fn)();
        } catch (...) {
          j->error = std::current_exception();
        }
        return nullptr;
      },
      &job);
  pthread_attr_destroy(&attr);
  if (rc != 0) throw std::runtime_error("pthread_create: " + std::string(std::strerror(rc)));
  pthread_join(t, nullptr);
  if (job.error) std::rethrow_exception(job.error);
}

}  // namespace ptrust::testing
