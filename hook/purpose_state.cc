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

namespace {

std::shared_ptr<const Snapshot> fail_closed_snapshot() {
  auto s = std::make_shared<Snapshot>();
  s->load_failure = PTRUST_REASON_INTERNAL_ERROR;
  s->load_error = "out of memory while reading the store";
  return s;
}

}  // namespace

PurposeState::PurposeState(Context ctx, std::string purpose, PurposePolicy policy)
    : ctx_(std::move(ctx)),
      purpose_(std::move(purpose)),
      policy_(policy),
      failed_(fail_closed_snapshot()),
      id_(g_next_id.fetch_add(1)) {}

// The mapped generation file. A missing file is looked for again, and a mapped one checked
// for having been replaced (deleted and re-created: its counter would never move again), at
// a bounded rate: one clock read per call, one fstat per second.
const GenerationView* PurposeState::view(std::int64_t now) noexcept {
  const GenerationView* v = view_.load(std::memory_order_acquire);
  if (now < next_view_try_ns_.load(std::memory_order_relaxed)) return v;
  std::lock_guard lk(mu_);
  v = view_.load(std::memory_order_acquire);
  if (now < next_view_try_ns_.load(std::memory_order_relaxed)) return v;
  next_view_try_ns_.store(now + std::chrono::nanoseconds(kFallbackRefresh).count(), std::memory_order_relaxed);
  if (v && !v->replaced()) return v;
  std::unique_ptr<GenerationView> fresh;
  try {
    fresh = GenerationView::open(ctx_.root);
  } catch (const std::exception&) {
  }
  if (!fresh && !v) return nullptr;
  // A replaced view is never used again, even when no new file exists yet: without a view
  // the snapshot is re-read once a second (a dead counter would look like "no change").
  // Replaced views stay mapped: other threads may still be reading them.
  try {
    if (view_owner_) retired_.push_back(std::move(view_owner_));
  } catch (const std::exception&) {
    view_owner_.release();  // leak rather than free a mapping another thread may read
  }
  view_owner_ = std::move(fresh);
  view_.store(view_owner_.get(), std::memory_order_release);
  return view_owner_.get();
}

std::uint64_t PurposeState::generation() noexcept {
  const GenerationView* v = view(steady_ns());
  return v ? v->load() : 0;
}

bool PurposeState::stale(const Snapshot& s, std::uint64_t gen, const GenerationView* v) const noexcept {
  if (s.generation != gen) return true;
  if (s.load_failure == PTRUST_REASON_INTERNAL_ERROR) return true;  // out of memory: try again
  // Nothing reliable tells us about changes when there is no generation file, or when the
  // snapshot was built while a writer was half-way (odd counter; the writer may have died):
  // re-read at a bounded rate.
  bool unsure = v == nullptr || !generation_stable(gen);
  return unsure && std::chrono::steady_clock::now() - s.built_at >= kFallbackRefresh;
}

const Snapshot* PurposeState::current() noexcept {
  const GenerationView* v = view(steady_ns());
  std::uint64_t gen = v ? v->load() : 0;
  std::shared_ptr<const Snapshot>* slot = local_slot(id_);
  if (slot && *slot && !stale(**slot, gen, v)) return slot->get();
  // Slow path, once per thread per change: the first thread rebuilds, the others take its
  // result rather than each re-reading the bundle.
  try {
    std::lock_guard lk(mu_);
    if (!snap_ || stale(*snap_, gen, v)) {
      auto fresh = build_snapshot(ctx_, purpose_, policy_, gen);
      snap_ = fresh ? std::move(fresh) : failed_;  // never keep trusting the old snapshot
    }
    if (!slot) return failed_.get();  // out of memory for the thread cache
    *slot = snap_;
    return slot->get();
  } catch (const std::exception&) {
    return failed_.get();
  }
}

}  // namespace ptrust::hook
