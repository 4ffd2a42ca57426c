// Change detection: a snapshot is reused while the store generation stays put.
#include "hook/verifier.h"

namespace ptrust::hook {

namespace {

std::int64_t steady_ns() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::atomic<std::uint64_t> g_next_id{1};

// Each thread's references to the snapshots it verifies with, per PurposeState id. Tiny
// (one entry per purpose the thread uses); an entry of a destroyed PurposeState holds its
// last snapshot until evicted or the thread exits.
struct LocalEntry {
  std::uint64_t id;
  std::shared_ptr<const Snapshot> snap;
};
constexpr size_t kLocalEntries = 8;
thread_local std::vector<LocalEntry> t_cache;

std::shared_ptr<const Snapshot>* local_slot(std::uint64_t id) noexcept {
  for (auto& e : t_cache)
    if (e.id == id) return &e.snap;
  try {
    if (t_cache.size() >= kLocalEntries) t_cache.erase(t_cache.begin());
    t_cache.push_back({id, nullptr});
    return &t_cache.back().snap;
  } catch (const std::exception&) {
    return nullptr;
  }
}

}  // namespace

PurposeState::PurposeState(Context ctx, std::string purpose, PurposePolicy policy)
    : ctx_(std::move(ctx)), purpose_(std::move(purpose)), policy_(policy), id_(g_next_id.fetch_add(1)) {}

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

const Snapshot* PurposeState::current() noexcept {
  const GenerationView* v = view();
  std::uint64_t gen = v ? v->load() : 0;
  std::shared_ptr<const Snapshot>* slot = local_slot(id_);
  if (slot && *slot && !stale(**slot, gen, v)) return slot->get();
  // Slow path, once per thread per change: the first thread rebuilds, the others take its
  // result rather than each re-reading the bundle.
  try {
    std::lock_guard lk(mu_);
    if (!snap_ || stale(*snap_, gen, v)) {
      if (auto fresh = build_snapshot(ctx_, purpose_, policy_, gen)) snap_ = std::move(fresh);
    }
    if (!slot) return nullptr;  // out of memory for the thread cache
    *slot = snap_;
    return slot->get();
  } catch (const std::exception&) {
    return slot ? slot->get() : nullptr;
  }
}

}  // namespace ptrust::hook
