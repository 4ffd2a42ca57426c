// Verify hook benchmarks (run: build/bench/hook/hook_bench). Compare within one run:
//   PinnedDecide                      goal <= 2 us per call
//   CaDecide / RawX509VerifyCert      goal <= 1.10x (same chain, prebuilt store, CRLs off)
//   ChangeDetection                   goal <= 0.2 us per handshake
//   Handshake/hook vs /plain          goal >= 0.95x handshakes/s (TLS 1.3, ECDSA P-256)
//   Handshake/hook threads:2 vs :1    goal >= 1.8x
//   Count/shared vs Count/local       goal: added <= 20 ns per verdict (one relaxed add either way)
//   PinnedVerify/published vs /local  goal: added <= 20 ns per verification
#include <benchmark/benchmark.h>

#include "core/counters.h"
#include "hook/verifier.h"
#include "tests/hook/hook_util.h"

using namespace ptrust;
using namespace ptrust::testing;

namespace {

struct Fixture {
  Chain chain = make_chain(KeyKind::kP256, "Bench");
  Root root;
  std::string ca_file;
  PTRUST_CTX* pt;
  ossl::X509StackPtr untrusted{sk_X509_new_null()};
  ossl::X509Ptr wire_leaf;  // the leaf as a TLS client holds it: parsed from DER
  Fixture() {
    std::string der = chain.leaf.der();
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    wire_leaf.reset(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
    root.install(chain.root.cert.get(), CertType::kCa, {"licensing", "off-chain"});
    root.install(chain.leaf.cert.get(), CertType::kPinned, {"spki"});
    ca_file = root.path() + "/ca.pem";
    write_file(ca_file, chain.root.pem());
    pt = root.open();
    X509_up_ref(chain.inter.cert.get());
    sk_X509_push(untrusted.get(), chain.inter.cert.get());
  }
  std::unique_ptr<hook::PurposeState> state(const char* purpose, std::uint64_t* shared = nullptr) {
    auto source = std::make_shared<TrustSource>(root.path(), root.config());
    return std::make_unique<hook::PurposeState>(std::move(source), purpose, shared);
  }
};

Fixture& fx() {
  static Fixture f;
  return f;
}

void PinnedDecide(benchmark::State& s) {
  auto pinned = fx().state("spki");
  PurposePolicy policy;  // certificate pin, validity enforced
  auto view = pinned->with_policy(policy);
  if (view->state().mode != Mode::kPinned) s.SkipWithError("not pinned");
  for (auto _ : s) {
    hook::Verdict v = hook::decide(*view, fx().wire_leaf.get(), nullptr, nullptr);
    benchmark::DoNotOptimize(v.reason);
  }
}
BENCHMARK(PinnedDecide);

void PinDigestSha256(benchmark::State& s) {
  Digest d;
  for (auto _ : s) benchmark::DoNotOptimize(hook::pin_digest(fx().wire_leaf.get(), PinMatch::kCertificate, d));
}
BENCHMARK(PinDigestSha256);

void CaDecide(benchmark::State& s) {
  auto st = fx().state("off-chain");
  auto view = st->current();
  for (auto _ : s) {
    hook::Verdict v = hook::decide(*view, fx().wire_leaf.get(), fx().untrusted.get(), nullptr);
    if (v.reason != PTRUST_REASON_OK) s.SkipWithError("not verified");
  }
}
BENCHMARK(CaDecide);

void CaDecideIfPresentCrls(benchmark::State& s) {
  auto st = fx().state("licensing");  // crl-policy if-present, chain scope, no CRL present
  auto view = st->current();
  for (auto _ : s) {
    hook::Verdict v = hook::decide(*view, fx().wire_leaf.get(), fx().untrusted.get(), nullptr);
    if (v.reason != PTRUST_REASON_OK) s.SkipWithError("not verified");
  }
}
BENCHMARK(CaDecideIfPresentCrls);

void RawX509VerifyCert(benchmark::State& s) {
  ossl::X509StorePtr store(X509_STORE_new());
  X509_STORE_add_cert(store.get(), fx().chain.root.cert.get());
  for (auto _ : s) {
    ossl::X509StoreCtxPtr ctx(X509_STORE_CTX_new());
    X509_STORE_CTX_init(ctx.get(), store.get(), fx().wire_leaf.get(), fx().untrusted.get());
    if (X509_verify_cert(ctx.get()) != 1) s.SkipWithError("not verified");
  }
}
BENCHMARK(RawX509VerifyCert);

void ChangeDetection(benchmark::State& s) {
  auto st = fx().state("licensing");
  st->current();
  for (auto _ : s) benchmark::DoNotOptimize(st->current());
}
BENCHMARK(ChangeDetection);

// The verdict counter: in-process array vs a slot of the host-wide counters file
// (core/counters.h). Both are one relaxed atomic add through a pointer.
void Count(benchmark::State& s, bool shared) {
  // One PurposeState per side, shared by the threads as a process's handshakes share one.
  static Root published;  // has run/ptrust/counters
  static std::unique_ptr<hook::PurposeState> local_state = fx().state("licensing");
  static std::unique_ptr<hook::PurposeState> shared_state = [] {
    counters::ensure_counters_dir(published.path());
    counters::Publisher* pub = counters::publisher_for(published.path());
    return fx().state("licensing", pub ? pub->claim("licensing") : nullptr);
  }();
  hook::PurposeState& st = shared ? *shared_state : *local_state;
  if (st.published() != shared) s.SkipWithError("wrong side");
  const std::uint64_t before = st.counter(PTRUST_REASON_OK) + st.counter(PTRUST_REASON_PIN_MISMATCH);
  int i = 0;
  for (auto _ : s) {
    st.count(static_cast<ptrust_reason>(i & 1));  // OK / PIN_MISMATCH, as a mix of verdicts would
    ++i;
  }
  if (st.counter(PTRUST_REASON_OK) + st.counter(PTRUST_REASON_PIN_MISMATCH) - before < static_cast<std::uint64_t>(i))
    s.SkipWithError("lost counts");
}
BENCHMARK_CAPTURE(Count, local, false)->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(Count, shared, true)->Threads(1)->Threads(2);

// A whole offline verification (pinned, ~1-2 us) through the C API, counted in-process or
// published: the cost publishing adds per verification.
void PinnedVerify(benchmark::State& s, bool publish) {
  struct Side {
    Root root;
    PTRUST_CTX* pt = nullptr;
    explicit Side(bool publish) {
      root.install(fx().chain.leaf.cert.get(), CertType::kPinned, {"spki"});
      if (publish) counters::ensure_counters_dir(root.path());
      pt = root.open();
    }
  };
  static Side local(false), published(true);
  PTRUST_CTX* pt = publish ? published.pt : local.pt;
  ossl::X509StackPtr chain(sk_X509_new_null());
  X509_up_ref(fx().wire_leaf.get());
  sk_X509_push(chain.get(), fx().wire_leaf.get());
  PTRUST_RESULT r{};
  for (auto _ : s)
    if (ptrust_verify_chain(pt, "spki", chain.get(), nullptr, &r) != 1 || !r.verified) s.SkipWithError("not verified");
  // The published side's count must have reached the file.
  if (publish) {
    std::uint64_t seen = 0;
    for (const counters::ProcessCounters& p : counters::read_counters(published.root.path()))
      if (p.pid == ::getpid() && p.purposes.count("spki")) seen += p.purposes.at("spki")[PTRUST_REASON_OK];
    if (seen < static_cast<std::uint64_t>(s.iterations())) s.SkipWithError("not published");
  }
}
BENCHMARK_CAPTURE(PinnedVerify, local, false);
BENCHMARK_CAPTURE(PinnedVerify, published, true);

// Full TLS 1.3 handshakes over an in-memory BIO pair (both ends in this thread).
void Handshake(benchmark::State& s, bool hook) {
  static ossl::SslCtxPtr server = server_ctx(fx().chain.leaf, {&fx().chain.inter}, TLS1_3_VERSION);
  static ossl::SslCtxPtr hooked = [] {
    auto c = client_ctx(TLS1_3_VERSION);
    ptrust_SSL_CTX_set1_purpose(c.get(), fx().pt, "licensing");
    return c;
  }();
  static ossl::SslCtxPtr plain = [] {
    auto c = client_ctx(TLS1_3_VERSION);
    SSL_CTX_load_verify_file(c.get(), fx().ca_file.c_str());
    SSL_CTX_set_verify(c.get(), SSL_VERIFY_PEER, nullptr);
    return c;
  }();
  SSL_CTX* client = hook ? hooked.get() : plain.get();
  for (auto _ : s) {
    Outcome o = handshake(client, server.get(), "server.test");
    if (!o.ok) s.SkipWithError("handshake failed");
  }
  s.SetItemsProcessed(s.iterations());
}
BENCHMARK_CAPTURE(Handshake, hook, true)->UseRealTime()->Threads(1)->Threads(2);

// Control for the thread ratio: each thread with its own client and server SSL_CTX, so no
// SSL_CTX state is shared; what still does not scale is inside libssl/libcrypto.
void HandshakeOwnCtx(benchmark::State& s, bool hook) {
  ossl::SslCtxPtr server = server_ctx(fx().chain.leaf, {&fx().chain.inter}, TLS1_3_VERSION);
  ossl::SslCtxPtr client = client_ctx(TLS1_3_VERSION);
  if (hook) {
    ptrust_SSL_CTX_set1_purpose(client.get(), fx().pt, "licensing");
  } else {
    SSL_CTX_load_verify_file(client.get(), fx().ca_file.c_str());
    SSL_CTX_set_verify(client.get(), SSL_VERIFY_PEER, nullptr);
  }
  for (auto _ : s) {
    Outcome o = handshake(client.get(), server.get(), "server.test");
    if (!o.ok) s.SkipWithError("handshake failed");
  }
  s.SetItemsProcessed(s.iterations());
}
BENCHMARK_CAPTURE(HandshakeOwnCtx, hook, true)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(HandshakeOwnCtx, plain, false)->UseRealTime()->Threads(1)->Threads(2);
BENCHMARK_CAPTURE(Handshake, plain, false)->UseRealTime()->Threads(1)->Threads(2);

}  // namespace

BENCHMARK_MAIN();
