// One purpose's trust, as every consumer sees it. The provider, the verify hook, `stunnel
// render`/`sync`, `verify`/`probe` and the daemon all read trust through this header:
//
//   disk (bundles, CRLs, crl-scope.json) + ptrust.yaml
//       -> build_trust()        one immutable TrustState per purpose, generation and config
//       -> TrustSource          one change detector: generation counter, config file, re-created
//                               generation file
//       -> TrustSlot<View>      per purpose: the consumer's OpenSSL objects built once per state
//
// Every rule about what a purpose trusts lives in build_trust(): the selection (via
// selection.h), "pinned mode has no CRLs", CRL scope and crl-policy, the policy defaults.
// Consumers only turn a TrustState into OpenSSL objects.
//
// Safe inside any host process: nothing here keeps more than a few hundred bytes on the
// stack, uses thread-local storage, maps a file another process could truncate (SIGBUS), or
// takes a lock shared between purposes on the path where nothing changed (stamp() is a clock
// read and an atomic load, with a pread of the generation file at most every 100 µs;
// TrustSlot::get a shared_ptr copy under that purpose's own short mutex).
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstring>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_set>
#include <utility>
#include <vector>

#include "core/cert.h"
#include "core/config.h"
#include "core/error.h"
#include "core/generation.h"
#include "core/ossl.h"
#include "core/selection.h"

namespace ptrust {

using Digest = std::array<unsigned char, 32>;

// When a TrustState was built: what the change detector saw.
struct TrustStamp {
  std::uint64_t generation = 0;  // store generation counter (0: no generation file)
  std::uint64_t epoch = 0;       // the source's epoch: moves when the config was re-read or the
                                 // generation file re-opened
  bool watched = false;          // a valid generation file is open, so its counter sees every change
  std::int64_t now_ns = 0;       // steady clock
};

// What a state was read from, so that changes made without ptrust (drift, a restored backup)
// are noticed too: the trusted-certs directory (bundles added, removed or replaced), the chosen
// bundle and its store directory, the CRL directory and the CRL scope index. Writers move the
// generation; these are looked at once per TrustSource::kRecheck per purpose (five stats,
// whatever the store size).
struct TrustInputs {
  std::optional<FileId> trusted_dir, bundle, store_dir, crl_dir, crl_scope;
  std::optional<FileId> ca_min_serial, ca_cert;  // the cluster CA's min-serial and ca.pem
  std::vector<std::pair<std::string, FileId>> crl_files;  // a CRL replaced in place moves no directory
  bool operator==(const TrustInputs&) const = default;
};

struct TrustCrl {
  std::string name;       // file name in etc/stunnel/crls
  std::string der;
  ossl::X509CrlPtr crl;   // parsed once; consumers only read it
};

// One purpose's trust as of one store generation and one configuration. Immutable once built
// and shared between threads.
struct TrustState {
  std::string purpose;
  std::string root;
  TrustStamp stamp;
  TrustInputs inputs;
  PurposePolicy policy;
  Mode mode = Mode::kNone;
  std::string bundle;  // absolute path of the chosen bundle ("" for none)
  std::string store_dir;  // absolute path of its store directory ("" for none)
  // Set when this purpose cannot be trusted now (config invalid, purpose not declared, chosen
  // bundle or a CRL unreadable, corrupt or unsafe): every verification fails with it. There is
  // no fallback; certs and crls are then empty.
  std::optional<Code> failure;
  std::string failure_message;
  std::vector<DerCert> certs;  // pinned: the pins; ca / general: the anchors (bundle order)
  // The same certificates decoded by libcrypto (and its extension caches computed), so that
  // every consumer reaches one verdict on a bundle: one that libcrypto cannot decode fails
  // the purpose (STORE_CORRUPT) for the provider too, not only for the hook. Read only.
  std::vector<ossl::X509Ptr> decoded;
  std::vector<TrustCrl> crls;  // ca / general unless crl-policy is off: the CRLs that apply
  // ca / general: the cluster CA's minimum serial (core/cluster_ca.h), when min-serial exists;
  // a leaf issued by the certificate whose SHA-256 is `cluster_ca` with a lower serial fails.
  std::optional<std::uint64_t> min_serial;
  Digest cluster_ca{};
  // SHA-256 of purpose, generation, policy, mode, failure and every certificate and CRL: the
  // same in every process that sees the same store (keys server-side session resumption).
  Digest material{};
  // When `inputs` are next compared with the disk, and when a reader first saw the next
  // writer begin (steady clock): the only mutable fields, change detection bookkeeping.
  mutable std::atomic<std::int64_t> next_input_check_ns{0};
  mutable std::atomic<std::int64_t> writer_seen_ns{0};

  bool failed() const noexcept { return failure.has_value(); }
};

// The policy `purpose` is verified with: the configured one, or the strict defaults
// (`general`, or a purpose the configuration does not declare).
PurposePolicy policy_of(const Config& cfg, std::string_view purpose);

// Whether a purpose in `mode` under `policy` verifies with CRLs: ca and general mode, unless
// crl-policy is off (pinned mode has no CRLs: a pin is not a chain).
bool takes_crls(Mode mode, const PurposePolicy& policy) noexcept;

// SHA-256 digests of certificates libcrypto decoded: whether d2i_X509 takes a DER whole is a
// function of its bytes alone (OpenSSL 3.0 does not fail it on a public key it cannot decode),
// so one that decoded once decodes again. Kept by a long-lived reader (the daemon) across
// reports; only ever used to skip re-decoding byte-identical certificates.
struct DecodeVerdicts {
  struct Hash {
    size_t operator()(const Digest& d) const noexcept {
      size_t h;
      std::memcpy(&h, d.data(), sizeof h);
      return h;
    }
  };
  std::mutex mu;
  std::unordered_set<Digest, Hash> good;  // decoded
  std::unordered_set<Digest, Hash> used;  // looked up or added since the last retain_used()
  // Forgets every digest not looked up since the last call (certificates no longer stored).
  void retain_used() {
    std::lock_guard lk(mu);
    good.swap(used);
    used.clear();
  }
};

// Each purpose's last state built under a Context that carries this memo (Context::memo).
struct TrustMemo {
  std::mutex mu;
  std::map<std::string, std::shared_ptr<const TrustState>, std::less<>> last;
  // Reports only (status, the daemon), never a consumer that verifies: when set, build_trust
  // under this memo reaches the same verdict on each certificate (STORE_CORRUPT when
  // libcrypto cannot decode one) but keeps none decoded (TrustState::decoded stays empty
  // except in pinned mode), decoding only certificates not in `verdicts` and freeing each at
  // once: O(new certificates) time, one certificate's memory (10,000 decoded CAs hold ~100 MiB).
  // `last` is then not kept (nothing decoded to lend).
  std::shared_ptr<DecodeVerdicts> verdicts;
};

// Builds `purpose`'s trust under `ctx`. `policy` replaces the configured policy (an offline
// verification with another crl-policy). Never throws: failures are recorded in the state;
// nullptr only when memory runs out.
// `previous` (the purpose's last state, if any) lends the certificates it already decoded;
// without one, ctx.memo's last state of the purpose does (and the new state is kept there).
std::shared_ptr<const TrustState> build_trust(const Context& ctx, std::string_view purpose, const TrustStamp& at,
                                              const PurposePolicy* policy = nullptr,
                                              const TrustState* previous = nullptr) noexcept;

// As build_trust, for a writer that needs only each certificate's DER and subject (the
// per-purpose CA directories, capath.h): `decoded` is filled in pinned mode only (for
// refuse_ca_pins_for_chain_consumers). OpenSSL 3.0's d2i_X509 costs ~175 µs per certificate
// (it decodes the public key through the provider decoders): 1.75 s for 10,000 CAs.
std::shared_ptr<const TrustState> build_trust_undecoded(const Context& ctx, std::string_view purpose) noexcept;

// Pinned mode trusts the pinned certificates themselves, nothing they sign. A consumer that
// builds chains from what ptrust serves (OpenSSL's X509_STORE through ptrust://P, a CA
// directory) cannot be held to that when a pin is a CA (CA:TRUE, keyCertSign, or a v1
// self-signed certificate; a default `openssl req -x509` is one): it would also trust every
// certificate that pin signs. Such consumers refuse the purpose with PIN_IS_CA: throws it
// when `t` is pinned and a pin is a CA. The verify hook and stunnel's verifyPeer match the
// leaf itself and serve it.
void refuse_ca_pins_for_chain_consumers(const TrustState& t);

// A state that fails every verification with `code` (e.g. CONFIG_INVALID).
std::shared_ptr<const TrustState> failed_trust(std::string_view purpose, Code code, std::string_view message,
                                               const TrustStamp& at) noexcept;

// Where one consumer reads trust from (a provider instance, a PTRUST_CTX, the CLI, the daemon):
// its root, its configuration (re-read when the file changes) and the one change detector.
class TrustSource {
 public:
  // How often the config file and the generation file's identity are looked at, and how often
  // a state is re-read when nothing reliable reports changes (no generation file, or a writer
  // half-way). The generation counter itself is read on every stamp().
  static constexpr std::chrono::milliseconds kRecheck{1000};

  // The configuration now, or why there is none.
  struct Configured {
    std::shared_ptr<const Context> ctx;  // null when the configuration does not load
    Code code = Code::kConfigInvalid;
    std::string error;  // "CONFIG_INVALID: file:line:col: ..." details when ctx is null
  };

  // Root and configuration as open_context(root, config); the environment is read once, here.
  // A configuration that does not load is recorded: every purpose then fails with it until the
  // file is fixed. Throws only std::bad_alloc.
  TrustSource(std::optional<std::string> root, std::optional<std::string> config);
  ~TrustSource();
  TrustSource(const TrustSource&) = delete;
  TrustSource& operator=(const TrustSource&) = delete;

  // What the change detector sees now. A clock read and the generation counter (re-read with
  // pread at most every GenerationView::kPollNs, an atomic load otherwise); at most once per kRecheck it also stats the config file and the generation
  // file (and re-reads / re-opens what changed).
  TrustStamp stamp() noexcept;

  std::shared_ptr<const Configured> configured() const noexcept;

  // `purpose`'s trust as of `at` (see build_trust). Never throws; nullptr only out of memory.
  std::shared_ptr<const TrustState> build(std::string_view purpose, const TrustStamp& at,
                                          const PurposePolicy* policy = nullptr,
                                          const TrustState* previous = nullptr) noexcept;

  // True when `state` does not describe what `now` sees: the generation or the epoch moved
  // (except while the next writer is half-way, for at most kRecheck: the state of the finished
  // store is kept meanwhile), or it was built while nothing reliable reports changes and is
  // older than kRecheck.
  static bool stale(const TrustState& state, const TrustStamp& now) noexcept;
  // !stale(), and once per kRecheck also: the files the state was read from are unchanged
  // (one caller compares them; the others keep the state meanwhile).
  static bool fresh(const TrustState& state, const TrustStamp& now) noexcept;

  // How many states this source has built (tests, benchmarks, the provider's diagnostics).
  std::uint64_t builds() const noexcept { return builds_.load(std::memory_order_relaxed); }

 private:
  void recheck(std::int64_t now_ns) noexcept;
  void load_config();  // under mu_
  void open_generation(const std::string& root);  // under mu_

  const std::optional<std::string> root_opt_;
  const std::optional<std::string> config_opt_;
  const std::string config_path_;  // the file open_context() reads, if it exists

  std::atomic<std::int64_t> next_check_ns_{0};
  std::atomic<std::uint64_t> epoch_{1};
  std::atomic<const GenerationView*> view_{nullptr};
  std::shared_ptr<const Configured> configured_;  // guarded by configured_mu_
  mutable std::mutex configured_mu_;
  std::atomic<std::uint64_t> builds_{0};

  std::mutex mu_;  // the recheck: taken at most once per kRecheck, never waited for by readers
  std::optional<FileId> config_id_;                     // of config_path_ when last read
  std::string view_root_;                               // root the open view belongs to
  std::vector<std::unique_ptr<GenerationView>> views_;  // current last; replaced ones stay
                                                        // open (other threads may read them)
};

// One purpose's current View: a consumer's OpenSSL objects made from a TrustState. View must
// be constructible from std::shared_ptr<const TrustState> (it may throw) and expose
// `const TrustState& state() const`. get() on an unchanged store copies this slot's
// shared_ptr under the slot's own mutex (held for the copy only: a few nanoseconds, never
// while anything is built or freed); after a change the first caller rebuilds under a second
// mutex while the other callers of this purpose are served the previous view of the same
// configuration (TrustStamp::epoch) meanwhile; only callers with none (the first build, a
// configuration change) wait for it. Callers of another purpose never wait for it.
// std::atomic<std::shared_ptr> is not used: libstdc++ 12 releases its internal lock with
// relaxed order after a load, a data race ThreadSanitizer reports.
template <class View>
class TrustSlot {
 public:
  // The view as of `now`, or nullptr when memory ran out (fail closed). Never throws.
  std::shared_ptr<const View> get(TrustSource& src, std::string_view purpose, const TrustStamp& now) noexcept {
    std::shared_ptr<const View> seen = load();
    if (seen && TrustSource::fresh(seen->state(), now)) return seen;
    if (seen && now.now_ns < hold_until_ns_.load(std::memory_order_acquire) && seen->state().stamp.epoch == now.epoch)
      return seen;  // a writer is half-way: the last settled view, until the next retry
    try {
      std::unique_lock lk(build_mu_, std::try_to_lock);
      if (!lk.owns_lock()) {
        // Another caller is rebuilding: a handshake does not wait for it when the previous
        // view is of the same configuration (the rebuild publishes the change when it is done).
        if (seen && seen->state().stamp.epoch == now.epoch) return seen;
        lk.lock();
      }
      std::shared_ptr<const View> cur = load();
      if (cur && cur != seen && !TrustSource::stale(cur->state(), now)) return cur;  // rebuilt meanwhile
      const std::shared_ptr<const View>& prev = cur ? cur : seen;
      std::shared_ptr<const TrustState> state = src.build(purpose, now, nullptr, prev ? &prev->state() : nullptr);
      if (!state) return nullptr;  // never keep serving the old view
      // No settled view of this configuration to serve meanwhile (the first build, a new
      // configuration): a read made while a writer was half-way is not a state to decide on (a
      // bundle without its directory reads as STORE_CORRUPT). Read again, a few milliseconds
      // apart, until a read is whole or the generation has not moved for kRecheck (a dead
      // writer). These callers wait for the build anyway.
      if (now.watched && !(prev && generation_stable(prev->state().stamp.generation) && prev->state().stamp.epoch == now.epoch)) {
        std::uint64_t moved_at_gen = state->stamp.generation;
        std::int64_t moved_at_ns = now.now_ns;
        for (TrustStamp again = now; !generation_stable(state->stamp.generation);) {
          std::this_thread::sleep_for(std::chrono::milliseconds(2));
          again = src.stamp();
          if (again.generation != moved_at_gen) {
            moved_at_gen = again.generation;
            moved_at_ns = again.now_ns;
          } else if (again.now_ns - moved_at_ns >= std::chrono::nanoseconds(TrustSource::kRecheck).count()) {
            break;
          }
          std::shared_ptr<const TrustState> next = src.build(purpose, again, nullptr, prev ? &prev->state() : nullptr);
          if (!next) return nullptr;
          state = std::move(next);
        }
      }
      // Seqlock retry without blocking: a state read while a writer was half-way (labelled with
      // an odd generation) may mix old and new files, or see a bundle without its directory.
      // While the last settled view is of the same configuration, serve it and retry every
      // kTornRetryNs, until the generation has not moved for TrustSource::kRecheck (a writer
      // that stops half-way that long has died). Writers that follow each other move it, so a
      // store under steady changes is never taken for a dead writer's.
      const bool torn = now.watched && !generation_stable(state->stamp.generation);
      if (torn && prev && generation_stable(prev->state().stamp.generation) && prev->state().stamp.epoch == now.epoch) {
        // Counted from when this writer was first seen: by stale(), which may already have kept
        // the view, when it is the writer right after it; else by the first torn read.
        if (torn_since_ns_ == 0 || now.generation != torn_generation_) torn_since_ns_ = now.now_ns;
        torn_generation_ = now.generation;
        std::int64_t since = torn_since_ns_;
        if (now.generation == prev->state().stamp.generation + 1)
          if (std::int64_t seen_at = prev->state().writer_seen_ns.load(std::memory_order_relaxed); seen_at != 0)
            since = std::min(since, seen_at);
        if (now.now_ns - since < std::chrono::nanoseconds(TrustSource::kRecheck).count()) {
          hold_until_ns_.store(now.now_ns + kTornRetryNs, std::memory_order_release);
          return prev;
        }
      }
      torn_since_ns_ = 0;
      hold_until_ns_.store(0, std::memory_order_release);
      auto fresh = std::make_shared<const View>(std::move(state));
      std::shared_ptr<const View> old = fresh;
      {
        std::lock_guard g(ptr_mu_);
        current_.swap(old);
      }
      return fresh;  // `old` is released here, outside ptr_mu_
    } catch (...) {
      return nullptr;
    }
  }

 private:
  std::shared_ptr<const View> load() const noexcept {
    std::lock_guard g(ptr_mu_);
    return current_;
  }

  static constexpr std::int64_t kTornRetryNs = 5'000'000;  // 5 ms

  mutable std::mutex ptr_mu_;  // guards current_ (copies and swaps only)
  std::shared_ptr<const View> current_;
  std::mutex build_mu_;  // one rebuilder per purpose
  std::int64_t torn_since_ns_ = 0;  // guarded by build_mu_: first torn read of this writer
  std::uint64_t torn_generation_ = 0;  // guarded by build_mu_: the generation it saw then
  std::atomic<std::int64_t> hold_until_ns_{0};  // serve the settled view until then
};

// Slots by purpose name for consumers that learn purposes at run time (the provider). Insert
// only: a lookup walks a short immutable list without a lock; adding takes a mutex.
template <class View>
class TrustSlots {
 public:
  TrustSlots() = default;
  TrustSlots(const TrustSlots&) = delete;
  TrustSlots& operator=(const TrustSlots&) = delete;
  ~TrustSlots() {
    for (Node* n = head_.load(); n != nullptr;) delete std::exchange(n, n->next);
  }

  // The slot of `purpose` if it has one (no lock).
  TrustSlot<View>* find_slot(std::string_view purpose) const noexcept {
    Node* n = find(purpose);
    return n ? &n->slot : nullptr;
  }

  // The slot of `purpose`, created on first use. Throws std::bad_alloc.
  TrustSlot<View>& at(std::string_view purpose) {
    if (Node* n = find(purpose)) return n->slot;
    std::lock_guard lk(add_mu_);
    if (Node* n = find(purpose)) return n->slot;
    auto* n = new Node{std::string(purpose), {}, head_.load(std::memory_order_relaxed)};
    head_.store(n, std::memory_order_release);
    return n->slot;
  }

 private:
  struct Node {
    std::string purpose;
    TrustSlot<View> slot;
    Node* next;
  };
  Node* find(std::string_view purpose) const noexcept {
    for (Node* n = head_.load(std::memory_order_acquire); n != nullptr; n = n->next)
      if (n->purpose == purpose) return n;
    return nullptr;
  }
  std::atomic<Node*> head_{nullptr};
  std::mutex add_mu_;
};

}  // namespace ptrust
