// The C entry points and the glue to OpenSSL's SSL objects. Nothing here throws into the
// caller or into OpenSSL: every entry point and callback catches at its boundary.
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <map>
#include <type_traits>

#include "core/counters.h"
#include "core/error.h"
#include "hook/verifier.h"
#include "ptrust/ptrust.h"

struct ptrust_ctx_st {
  std::atomic<int> refs{1};
  std::shared_ptr<ptrust::TrustSource> source;  // root, configuration (followed), change detector
  std::mutex mu;  // guards `purposes` (attach time, offline verify and counters only)
  std::map<std::string, std::shared_ptr<ptrust::hook::PurposeState>, std::less<>> purposes;
};

namespace ptrust::hook {

namespace {

// The C API's enums (a reason, a mode, a CRL policy or scope) may hold any int a C caller
// stored (C allows it); reading one as the C++ enum type is undefined unless it holds an
// enumerator's value (found by UBSan, hook.api_test under scripts/asan.sh), and a compiler
// may then drop the `default:` that refuses it. Their bytes are read as the integer type.
template <typename E>
std::underlying_type_t<E> raw(const E& e) noexcept {
  std::underlying_type_t<E> v;
  static_assert(sizeof v == sizeof e);
  std::memcpy(&v, &e, sizeof v);
  return v;
}

}  // namespace

namespace {

// What ptrust_SSL_CTX_set1_purpose leaves on an SSL_CTX (its ex_data).
struct Attachment {
  PTRUST_CTX* owner;  // one reference
  std::shared_ptr<PurposeState> state;
  void (*prev_info_cb)(const SSL*, int, int);
  std::uint64_t serial;  // unique per attachment: the verified-chain cache's scope
  ~Attachment() { ptrust_ctx_free(owner); }
};

std::atomic<std::uint64_t> next_attachment_serial{1};  // 0 is the offline scope

// What a verification leaves on an SSL_SESSION, to refuse resuming it under other trust
// and to report the original verdict when it is resumed.
struct Stamp {
  Digest material;  // of the TrustState it was verified under
  PTRUST_RESULT result;
};

void free_attachment(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<Attachment*>(ptr); }
void free_result(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<PTRUST_RESULT*>(ptr); }
void free_stamp(void*, void* ptr, CRYPTO_EX_DATA*, int, long, void*) { delete static_cast<Stamp*>(ptr); }
// TLS 1.3 tickets duplicate the session: give each copy its own stamp.
int dup_stamp(CRYPTO_EX_DATA*, const CRYPTO_EX_DATA*, void** from_d, int, long, void*) {
  auto** p = reinterpret_cast<Stamp**>(from_d);
  if (*p == nullptr) return 1;
  *p = new (std::nothrow) Stamp(**p);
  return *p != nullptr;
}

struct Indices {
  int ssl_ctx, ssl, session;
};

const Indices& indices() {
  static const Indices idx = {
      SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, free_attachment),
      SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, free_result),
      SSL_SESSION_get_ex_new_index(0, nullptr, nullptr, dup_stamp, free_stamp),
  };
  return idx;
}

Attachment* attachment_of(const SSL_CTX* c) {
  return static_cast<Attachment*>(SSL_CTX_get_ex_data(c, indices().ssl_ctx));
}

void copy_purpose(PTRUST_RESULT& r, const std::string& purpose) {
  std::memset(r.purpose, 0, sizeof r.purpose);
  std::memcpy(r.purpose, purpose.data(), std::min(purpose.size(), sizeof r.purpose - 1));
}

PTRUST_RESULT make_result(const PurposeState& st, const HookView* view, const Verdict& v) {
  PTRUST_RESULT r{};
  r.verified = v.reason == PTRUST_REASON_OK;
  r.enforced = !(view && view->state().policy.report_only);
  r.reason = v.reason;
  r.x509_error = v.x509_error;
  r.error_depth = r.verified ? -1 : v.depth;
  r.mode = view ? to_c(view->state().mode) : PTRUST_MODE_NONE;
  r.generation = view ? view->state().stamp.generation : 0;
  copy_purpose(r, st.purpose());
  return r;
}

// The verdict as a server puts it in a session ticket's application data.
constexpr char kTicketMagic[8] = {'p', 't', 'r', 'u', 's', 't', '1', '\0'};
struct TicketVerdict {
  char magic[8];
  PTRUST_RESULT result;
};
static_assert(std::is_trivially_copyable_v<TicketVerdict>);

// Keeps the verdict on the SSL (for ptrust_SSL_get_result) and stamps the session being
// established with the trust it was verified under.
void record(SSL* ssl, const PTRUST_RESULT& r, const Digest& material) {
  auto* held = static_cast<PTRUST_RESULT*>(SSL_get_ex_data(ssl, indices().ssl));
  if (!held) {
    held = new (std::nothrow) PTRUST_RESULT;
    if (held && !SSL_set_ex_data(ssl, indices().ssl, held)) {
      delete held;
      held = nullptr;
    }
  }
  if (held) *held = r;
  if (SSL_SESSION* sess = SSL_get_session(ssl)) {
    auto* stamp = static_cast<Stamp*>(SSL_SESSION_get_ex_data(sess, indices().session));
    if (!stamp) {
      stamp = new (std::nothrow) Stamp;
      if (stamp && !SSL_SESSION_set_ex_data(sess, indices().session, stamp)) {
        delete stamp;
        stamp = nullptr;
      }
    }
    if (stamp) *stamp = {material, r};
    // A server's session may come back in a ticket, which carries no ex_data: the verdict
    // travels inside the ticket too (encrypted under the server's ticket key, like the rest of
    // the session). An application that sets its own ticket appdata later keeps it; such a
    // resumed session then reports no result, as before.
    if (SSL_is_server(ssl)) {
      TicketVerdict t;
      std::memcpy(t.magic, kTicketMagic, sizeof t.magic);
      t.result = r;
      SSL_SESSION_set1_ticket_appdata(sess, &t, sizeof t);
    }
  }
}

// The verdict a resumed server session brought back in its ticket, if it carries ptrust's.
bool verdict_from_ticket(SSL_SESSION* sess, PTRUST_RESULT& out) {
  void* data = nullptr;
  size_t len = 0;
  if (SSL_SESSION_get0_ticket_appdata(sess, &data, &len) != 1 || len != sizeof(TicketVerdict) || !data) return false;
  TicketVerdict t;
  std::memcpy(&t, data, sizeof t);
  if (std::memcmp(t.magic, kTicketMagic, sizeof t.magic) != 0) return false;
  t.result.purpose[sizeof t.result.purpose - 1] = '\0';
  out = t.result;
  return true;
}

// The decision, or INTERNAL_ERROR when no view could be made (out of memory: fail closed).
Verdict verdict(const HookView* view, X509* leaf, STACK_OF(X509) * untrusted, const X509_VERIFY_PARAM* param,
                const CacheScope* scope) {
  if (view) return decide(*view, leaf, untrusted, param, scope);
  Verdict v;
  v.reason = PTRUST_REASON_INTERNAL_ERROR;
  v.x509_error = X509_V_ERR_OUT_OF_MEM;
  return v;
}

// SSL_CTX_set_cert_verify_callback: the whole verification of a handshake.
int verify_callback(X509_STORE_CTX* outer, void* arg) {
  auto* a = static_cast<Attachment*>(arg);
  try {
    PurposeState& st = *a->state;
    std::shared_ptr<const HookView> view = st.current();
    auto* ssl = static_cast<SSL*>(X509_STORE_CTX_get_ex_data(outer, SSL_get_ex_data_X509_STORE_CTX_idx()));
    // The purpose and trust OpenSSL applies come from this SSL_CTX and the role (no getter):
    // cached verdicts are kept apart per attachment and role.
    CacheScope scope{a->serial, ssl && SSL_is_server(ssl) ? 2 : 1};
    Verdict v = verdict(view.get(), X509_STORE_CTX_get0_cert(outer), X509_STORE_CTX_get0_untrusted(outer),
                        X509_STORE_CTX_get0_param(outer), ssl ? &scope : nullptr);
    st.count(v.reason);
    PTRUST_RESULT r = make_result(st, view.get(), v);
    if (ssl) record(ssl, r, view ? view->state().material : Digest{});
    if (r.verified) {
      X509_STORE_CTX_set0_verified_chain(outer, v.chain.release());
      X509_STORE_CTX_set_error(outer, X509_V_OK);
      return 1;
    }
    X509_STORE_CTX_set_error(outer, v.x509_error);
    X509_STORE_CTX_set_error_depth(outer, v.depth < 0 ? 0 : v.depth);
    return r.enforced ? 0 : 1;  // report-only: the failure is reported, the handshake goes on
  } catch (...) {
    X509_STORE_CTX_set_error(outer, X509_V_ERR_UNSPECIFIED);
    return 0;
  }
}

// A server resumes a session only when the session's id context equals the SSL's (otherwise
// it is a cache miss and the client is verified again). Keying the id context to purpose +
// snapshot makes every session from an older store generation a miss.
void key_server_sessions(SSL* ssl, const Attachment& a) {
  std::shared_ptr<const HookView> view = a.state->current();
  unsigned char sid_ctx[SSL_MAX_SID_CTX_LENGTH];
  static_assert(sizeof(Digest) <= SSL_MAX_SID_CTX_LENGTH);
  if (view && view->failure != PTRUST_REASON_INTERNAL_ERROR) {
    // The material digest means the same in every process (pre-forked workers sharing a
    // session cache or ticket keys): a per-process serial would not.
    std::memcpy(sid_ctx, view->state().material.data(), view->state().material.size());
  } else {
    RAND_bytes(sid_ctx, sizeof(Digest));  // a context no session has: nothing resumes
  }
  SSL_set_session_id_context(ssl, sid_ctx, sizeof(Digest));
}

// At the start of a handshake: a client drops an offered session that was not verified
// under the purpose's current snapshot; a server keys the sessions it may resume to it.
// Either way a resumption never skips a trust change.
void info_callback(const SSL* ssl, int where, int ret) {
  Attachment* a = attachment_of(SSL_get_SSL_CTX(ssl));
  if (!a) return;
  if ((where & SSL_CB_HANDSHAKE_START) && SSL_is_server(ssl)) {
    try {
      key_server_sessions(const_cast<SSL*>(ssl), *a);
    } catch (...) {
      unsigned char none[SSL_MAX_SID_CTX_LENGTH];
      RAND_bytes(none, sizeof none);
      SSL_set_session_id_context(const_cast<SSL*>(ssl), none, sizeof none);
    }
  }
  if ((where & SSL_CB_HANDSHAKE_START) && !SSL_is_server(ssl)) {
    SSL_SESSION* sess = SSL_get_session(ssl);
    if (sess && SSL_SESSION_is_resumable(sess)) {
      auto* stamp = static_cast<Stamp*>(SSL_SESSION_get_ex_data(sess, indices().session));
      std::shared_ptr<const HookView> view = a->state->current();
      if (!stamp || !view || stamp->material != view->state().material ||
          std::strcmp(stamp->result.purpose, a->state->purpose().c_str()) != 0)
        SSL_set_session(const_cast<SSL*>(ssl), nullptr);
    }
  }
  if (a->prev_info_cb) a->prev_info_cb(ssl, where, ret);
}

void write_err(char* err, size_t len, const std::string& msg) {
  if (!err || len == 0) return;
  size_t n = std::min(msg.size(), len - 1);
  std::memcpy(err, msg.data(), n);
  err[n] = '\0';
}

// The purpose's shared state, created on first use of a purpose the configuration declares
// now. nullptr when it is unknown. A purpose removed from the configuration later keeps its
// state (and counters); its verifications then fail with UNKNOWN_PURPOSE.
std::shared_ptr<PurposeState> purpose_state(PTRUST_CTX* ctx, const char* purpose) {
  std::string_view name(purpose);
  std::lock_guard lk(ctx->mu);
  auto it = ctx->purposes.find(name);
  if (it != ctx->purposes.end()) return it->second;
  ctx->source->stamp();  // notices an edited configuration (at most once a second)
  std::shared_ptr<const TrustSource::Configured> c = ctx->source->configured();
  if (!c->ctx || (name != kGeneral && !c->ctx->config.declares(name))) return nullptr;
  // Host-wide counters when the daemon made the counters directory, else in-process; a slot
  // per PurposeState keeps ptrust_ctx_get_counters per context.
  std::uint64_t* shared = nullptr;
  if (ptrust::counters::Publisher* pub = ptrust::counters::publisher_for(c->ctx->root)) shared = pub->claim(name);
  auto st = std::make_shared<PurposeState>(ctx->source, std::string(name), shared);
  ctx->purposes.emplace(std::string(name), st);
  return st;
}

}  // namespace

std::shared_ptr<PurposeState> purpose_state_of(PTRUST_CTX* ctx, const char* purpose) noexcept {
  try {
    return ctx && purpose ? purpose_state(ctx, purpose) : nullptr;
  } catch (...) {
    return nullptr;
  }
}

}  // namespace ptrust::hook

using namespace ptrust::hook;

extern "C" {

PTRUST_CTX* ptrust_ctx_new(const char* root, const char* config_file, char* err, size_t err_len) {
  try {
    std::optional<std::string> r, c;
    if (root) r = root;
    if (config_file) c = config_file;
    auto source = std::make_shared<ptrust::TrustSource>(r, c);
    // A configuration that does not load is an error now, while the program starts; one that
    // breaks later fails verifications (CONFIG_INVALID) until it is fixed.
    if (auto cfg = source->configured(); !cfg->ctx) throw ptrust::Error(cfg->code, cfg->error);
    auto* ctx = new ptrust_ctx_st;
    ctx->source = std::move(source);
    write_err(err, err_len, "");
    return ctx;
  } catch (const ptrust::Error& e) {
    write_err(err, err_len, std::string(ptrust::code_name(e.code())) + ": " + e.what());
  } catch (const std::exception& e) {
    write_err(err, err_len, std::string("INTERNAL_ERROR: ") + e.what());
  }
  return nullptr;
}

int ptrust_ctx_up_ref(PTRUST_CTX* ctx) {
  if (!ctx) return 0;
  ctx->refs.fetch_add(1, std::memory_order_relaxed);
  return 1;
}

void ptrust_ctx_free(PTRUST_CTX* ctx) {
  if (ctx && ctx->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) delete ctx;
}

int ptrust_SSL_CTX_set1_purpose(SSL_CTX* ssl_ctx, PTRUST_CTX* ctx, const char* purpose) {
  if (!ssl_ctx || !ctx || !purpose) return 0;
  try {
    std::shared_ptr<PurposeState> st = purpose_state(ctx, purpose);
    if (!st) return 0;
    const Indices& idx = indices();
    if (idx.ssl_ctx < 0 || idx.ssl < 0 || idx.session < 0) return 0;
    Attachment* old = attachment_of(ssl_ctx);
    std::unique_ptr<Attachment> a(new Attachment{ctx, std::move(st), nullptr,
                                                 next_attachment_serial.fetch_add(1, std::memory_order_relaxed)});
    ptrust_ctx_up_ref(ctx);
    // Re-attaching keeps the application's info callback, not our own.
    a->prev_info_cb = old ? old->prev_info_cb : SSL_CTX_get_info_callback(ssl_ctx);
    if (!SSL_CTX_set_ex_data(ssl_ctx, idx.ssl_ctx, a.get())) return 0;  // `a` releases the reference
    delete old;
    Attachment* raw = a.release();
    SSL_CTX_set_cert_verify_callback(ssl_ctx, verify_callback, raw);
    SSL_CTX_set_info_callback(ssl_ctx, info_callback);
    // On a server, a client that sends no certificate must fail too (clients ignore the flag).
    SSL_CTX_set_verify(ssl_ctx, SSL_CTX_get_verify_mode(ssl_ctx) | SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       SSL_CTX_get_verify_callback(ssl_ctx));
    return 1;
  } catch (...) {
    return 0;
  }
}

int ptrust_SSL_get_result(const SSL* ssl, PTRUST_RESULT* out) {
  if (!ssl || !out) return 0;
  const Indices& idx = indices();
  if (SSL_session_reused(ssl)) {
    SSL_SESSION* sess = SSL_get_session(ssl);
    auto* stamp = sess ? static_cast<Stamp*>(SSL_SESSION_get_ex_data(sess, idx.session)) : nullptr;
    if (stamp) *out = stamp->result;
    else if (!sess || !SSL_is_server(ssl) || !verdict_from_ticket(sess, *out)) return 0;
    out->resumed = 1;
    return 1;
  }
  auto* r = static_cast<PTRUST_RESULT*>(SSL_get_ex_data(ssl, idx.ssl));
  if (!r) return 0;
  *out = *r;
  return 1;
}

int ptrust_verify_chain(PTRUST_CTX* ctx, const char* purpose, STACK_OF(X509) * chain,
                        const PTRUST_VERIFY_OPTIONS* opts, PTRUST_RESULT* out) {
  if (!ctx || !purpose || !chain || !out || sk_X509_num(chain) < 1) return 0;
  try {
    std::shared_ptr<PurposeState> st = purpose_state(ctx, purpose);
    if (!st) return 0;
    using Param = ptrust::ossl::Ptr<X509_VERIFY_PARAM, X509_VERIFY_PARAM_free>;
    Param param(X509_VERIFY_PARAM_new());
    if (!param) return 0;
    // The same parameters a TLS client's verification starts from.
    if (const X509_VERIFY_PARAM* tls = X509_VERIFY_PARAM_lookup("ssl_server")) X509_VERIFY_PARAM_set1(param.get(), tls);
    std::shared_ptr<const HookView> view = st->current();
    if (!view) return 0;
    ptrust::PurposePolicy policy = view->state().policy;
    if (opts) {
      // An empty name would clear the host check rather than demand a match: refuse it.
      if (opts->host && (opts->host[0] == '\0' || X509_VERIFY_PARAM_set1_host(param.get(), opts->host, 0) != 1))
        return 0;
      if (opts->ip && X509_VERIFY_PARAM_set1_ip_asc(param.get(), opts->ip) != 1) return 0;
      if (opts->at != 0) X509_VERIFY_PARAM_set_time(param.get(), static_cast<time_t>(opts->at));
      // A C caller may store any int in these enum fields (raw(): read as integers).
      switch (ptrust::hook::raw(opts->crl_policy)) {
        case PTRUST_CRL_POLICY_DEFAULT: break;
        case PTRUST_CRL_POLICY_OFF: policy.crl_policy = ptrust::CrlPolicy::kOff; break;
        case PTRUST_CRL_POLICY_IF_PRESENT: policy.crl_policy = ptrust::CrlPolicy::kIfPresent; break;
        case PTRUST_CRL_POLICY_REQUIRE: policy.crl_policy = ptrust::CrlPolicy::kRequire; break;
        default: return 0;
      }
      switch (ptrust::hook::raw(opts->crl_scope)) {
        case PTRUST_CRL_SCOPE_DEFAULT: break;
        case PTRUST_CRL_SCOPE_LEAF: policy.crl_scope = ptrust::CrlScope::kLeaf; break;
        case PTRUST_CRL_SCOPE_CHAIN: policy.crl_scope = ptrust::CrlScope::kChain; break;
        default: return 0;
      }
    }
    // An override is decided on the same trust read under the overriding policy (a purpose
    // with crl-policy off has no CRLs in its own state).
    // Only the purpose's own view caches verified chains (an override's view is made for this
    // call alone); offline verifications have their own scope.
    const CacheScope offline{0, 0};
    const CacheScope* scope = &offline;
    if (policy != view->state().policy) {
      view = st->with_policy(policy);
      scope = nullptr;
    }
    Verdict v = verdict(view.get(), sk_X509_value(chain, 0), chain, param.get(), scope);
    st->count(v.reason);
    *out = make_result(*st, view.get(), v);
    ERR_clear_error();
    return 1;
  } catch (...) {
    ERR_clear_error();
    return 0;
  }
}

int ptrust_ctx_get_counters(PTRUST_CTX* ctx, const char* purpose, uint64_t* out, size_t n) {
  if (!ctx || !purpose || !out) return 0;
  try {
    std::shared_ptr<PurposeState> st = purpose_state(ctx, purpose);
    if (!st) return 0;
    for (size_t i = 0; i < n && i < PTRUST_REASON_COUNT; ++i) out[i] = st->counter(static_cast<ptrust_reason>(i));
    return 1;
  } catch (...) {
    return 0;
  }
}

const char* ptrust_reason_string(ptrust_reason reason) {
  switch (ptrust::hook::raw(reason)) {
    case PTRUST_REASON_OK: return "OK";
    case PTRUST_REASON_PIN_MISMATCH: return "PIN_MISMATCH";
    case PTRUST_REASON_NO_TRUST_FOR_PURPOSE: return "NO_TRUST_FOR_PURPOSE";
    case PTRUST_REASON_STORE_UNREADABLE: return "STORE_UNREADABLE";
    case PTRUST_REASON_STORE_CORRUPT: return "STORE_CORRUPT";
    case PTRUST_REASON_CHAIN_UNTRUSTED: return "CHAIN_UNTRUSTED";
    case PTRUST_REASON_CHAIN_INVALID: return "CHAIN_INVALID";
    case PTRUST_REASON_HOSTNAME_MISMATCH: return "HOSTNAME_MISMATCH";
    case PTRUST_REASON_IP_MISMATCH: return "IP_MISMATCH";
    case PTRUST_REASON_CERT_EXPIRED: return "CERT_EXPIRED";
    case PTRUST_REASON_CERT_NOT_YET_VALID: return "CERT_NOT_YET_VALID";
    case PTRUST_REASON_CERT_REVOKED: return "CERT_REVOKED";
    case PTRUST_REASON_CRL_MISSING: return "CRL_MISSING";
    case PTRUST_REASON_CRL_EXPIRED: return "CRL_EXPIRED";
    case PTRUST_REASON_CRL_INVALID: return "CRL_INVALID";
    case PTRUST_REASON_NO_PEER_CERTIFICATE: return "NO_PEER_CERTIFICATE";
    case PTRUST_REASON_INTERNAL_ERROR: return "INTERNAL_ERROR";
    case PTRUST_REASON_CONFIG_INVALID: return "CONFIG_INVALID";
    case PTRUST_REASON_UNKNOWN_PURPOSE: return "UNKNOWN_PURPOSE";
    case PTRUST_REASON_SERIAL_BELOW_MINIMUM: return "SERIAL_BELOW_MINIMUM";
    case PTRUST_REASON_COUNT: break;
  }
  return "UNKNOWN";
}

const char* ptrust_mode_string(ptrust_mode mode) {
  switch (ptrust::hook::raw(mode)) {
    case PTRUST_MODE_NONE: return "none";
    case PTRUST_MODE_PINNED: return "pinned";
    case PTRUST_MODE_CA: return "ca";
    case PTRUST_MODE_GENERAL: return "general";
  }
  return "unknown";
}

}  // extern "C"
