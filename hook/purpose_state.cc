// Change detection: a snapshot is reused while the store generation stays put.
#include "hook/verifier.h"

namespace ptrust::hook {

namespace {

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

}  // namespace

PurposeState::PurposeState(Context ctx, std::string purpose, PurposePolicy policy)
    : ctx_(std::move(ctx)), purpose_(std::move(purpose)), policy_(policy) {}

const GenerationView* PurposeState::view() noexcept {
  if (const GenerationView* v = view_.load(std::memory_order_acquire)) return v;
  // No generation file yet: look for it again at a bounded rate.
  std::int64_t now = steady_ns();
  if (now < next_view_try_ns_.load(std::memory_order_relaxed)) return nullptr;
  std::lock_guard lk(mu_);
  if (const GenerationView* v = view_.load(std::memory_order_acquire)) return v;
  next_view_try_ns_.store(now + std::chrono::nanoseconds(kFallbackRefresh).count(), std::memory_order_relaxed);
  try {
    view_owner_ = GenerationView::open(ctx_.root);
  } catch (const std::exception&) {
    view_owner_.reset();
  }
  view_.store(view_owner_.get(), std::memory_order_release);
  return view_owner_.get();
}

std::uint64_t PurposeState::generation() noexcept {
  const GenerationView* v = view();
  return v ? v->load() : 0;
}

bool PurposeState::stale(const Snapshot& s, std::uint64_t gen, const GenerationView* v) const noexcept {
  if (s.generation != gen) return true;
  // Without a generation file nothing tells us about changes: re-read at a bounded rate.
  return v == nullptr && std::chrono::steady_clock::now() - s.built_at >= kFallbackRefresh;
}

std::shared_ptr<const Snapshot> PurposeState::current() noexcept {
  const GenerationView* v = view();
  std::uint64_t gen = v ? v->load() : 0;
  std::shared_ptr<const Snapshot> s = snap_.load(std::memory_order_acquire);
  if (s && !stale(*s, gen, v)) return s;
  // Slow path, once per change: one thread rebuilds, the others wait for its result
  // rather than each re-reading the bundle.
  std::lock_guard lk(mu_);
  s = snap_.load(std::memory_order_acquire);
  if (s && !stale(*s, gen, v)) return s;
  std::shared_ptr<const Snapshot> fresh = build_snapshot(ctx_, purpose_, policy_, gen);
  if (!fresh) return s;  // out of memory: keep the previous snapshot (may be null)
  snap_.store(fresh, std::memory_order_release);
  return fresh;
}

}  // namespace ptrust::hook
