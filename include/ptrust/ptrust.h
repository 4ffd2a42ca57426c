/* ptrust.h — per-purpose TLS peer verification for OpenSSL 3 programs (libptrust).
 *
 * Usage (client):
 *
 *   PTRUST_CTX *pt = ptrust_ctx_new(NULL, NULL, NULL, 0);   // root and config as `ptrust`
 *   SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
 *   ptrust_SSL_CTX_set1_purpose(ctx, pt, "licensing");      // installs the verify hook
 *   SSL *ssl = SSL_new(ctx);
 *   SSL_set1_host(ssl, "license.example.com");              // names the peer, as usual
 *   ... SSL_connect(ssl) ...
 *   PTRUST_RESULT r;
 *   if (ptrust_SSL_get_result(ssl, &r) && r.verified) ...   // typed verdict of this handshake
 *
 * The purpose's trust (pinned certificates, CA bundle + CRLs, or none) is chosen by the
 * ptrust selection rule from the on-disk stores and re-read on the first handshake after
 * the store generation changes: a long-lived SSL_CTX follows trust changes without a
 * restart, and a session established under an older generation is not resumed.
 *
 * Conventions (BoringSSL's): functions returning int return 1 on success and 0 on failure;
 * `get0` borrows, `set1` takes its own reference, `_free` releases one reference.
 * Every function accepts NULL arguments and fails cleanly on them. */
#ifndef PTRUST_PTRUST_H
#define PTRUST_PTRUST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ptrust_reason is why a verification failed (PTRUST_REASON_OK when it did not). The
 * names returned by ptrust_reason_string are stable: logs, `ptrust probe` and `ptrust
 * verify` print them and scripts match on them. New reasons are only ever appended. */
typedef enum ptrust_reason {
  PTRUST_REASON_OK = 0,
  PTRUST_REASON_PIN_MISMATCH,          /* pinned mode: the leaf is not a pinned certificate */
  PTRUST_REASON_NO_TRUST_FOR_PURPOSE,  /* mode none: no bundle serves the purpose */
  PTRUST_REASON_STORE_UNREADABLE,      /* the chosen bundle (or CRL dir) cannot be read */
  PTRUST_REASON_STORE_CORRUPT,         /* the chosen bundle or a CRL file does not parse */
  PTRUST_REASON_CHAIN_UNTRUSTED,       /* no chain to a CA of the chosen bundle */
  PTRUST_REASON_CHAIN_INVALID,         /* a chain exists but breaks a rule (purpose, constraints, ...) */
  PTRUST_REASON_HOSTNAME_MISMATCH,     /* the leaf does not match the name given with SSL_set1_host */
  PTRUST_REASON_IP_MISMATCH,           /* the leaf does not match the IP given with SSL_set1_ip_asc */
  PTRUST_REASON_CERT_EXPIRED,          /* a certificate (or the pinned certificate) has expired */
  PTRUST_REASON_CERT_NOT_YET_VALID,    /* a certificate (or the pinned certificate) is not valid yet */
  PTRUST_REASON_CERT_REVOKED,          /* a CRL revokes a certificate of the chain */
  PTRUST_REASON_CRL_MISSING,           /* crl-policy require: a checked certificate's issuer has no CRL */
  PTRUST_REASON_CRL_EXPIRED,           /* a CRL's nextUpdate is past (and allow-expired-crl is off) */
  PTRUST_REASON_CRL_INVALID,           /* a CRL is not valid yet, badly signed or malformed */
  PTRUST_REASON_NO_PEER_CERTIFICATE,   /* nothing to verify */
  PTRUST_REASON_INTERNAL_ERROR,        /* out of memory or an unexpected library failure */
  PTRUST_REASON_CONFIG_INVALID,        /* the configuration (ptrust.yaml) no longer parses */
  PTRUST_REASON_UNKNOWN_PURPOSE,       /* the purpose is no longer declared in the configuration */
  PTRUST_REASON_SERIAL_BELOW_MINIMUM,  /* the leaf was issued by the cluster CA with a serial below its minimum */
  PTRUST_REASON_COUNT                  /* number of reasons; not a reason */
} ptrust_reason;

/* ptrust_mode is the trust source the selection rule chose for a purpose. */
typedef enum ptrust_mode {
  PTRUST_MODE_NONE = 0,
  PTRUST_MODE_PINNED,
  PTRUST_MODE_CA,
  PTRUST_MODE_GENERAL
} ptrust_mode;

/* ptrust_crl_policy and ptrust_crl_scope mirror the configuration's crl-policy / crl-scope. */
typedef enum ptrust_crl_policy {
  PTRUST_CRL_POLICY_DEFAULT = 0, /* the purpose's configured policy */
  PTRUST_CRL_POLICY_OFF,
  PTRUST_CRL_POLICY_IF_PRESENT,
  PTRUST_CRL_POLICY_REQUIRE
} ptrust_crl_policy;

typedef enum ptrust_crl_scope {
  PTRUST_CRL_SCOPE_DEFAULT = 0,
  PTRUST_CRL_SCOPE_LEAF,
  PTRUST_CRL_SCOPE_CHAIN
} ptrust_crl_scope;

#define PTRUST_MAX_PURPOSE_LEN 32

/* PTRUST_RESULT is the typed verdict of one verification. */
typedef struct ptrust_result_st {
  int verified;          /* 1 when the peer verified under the purpose */
  int enforced;          /* 1 when a failure stops the handshake; 0 under report-only */
  int resumed;           /* 1 when the handshake resumed a session verified under this generation */
  ptrust_reason reason;  /* PTRUST_REASON_OK if and only if verified */
  int x509_error;        /* OpenSSL's X509_V_* code for the failure (X509_V_OK when verified) */
  int error_depth;       /* chain depth of the failure (0 = leaf), -1 when not applicable */
  ptrust_mode mode;      /* trust source used */
  uint64_t generation;   /* store generation the verdict was computed under */
  char purpose[PTRUST_MAX_PURPOSE_LEN + 1];
} PTRUST_RESULT;

/* PTRUST_CTX is a reference-counted handle on a ptrust root and configuration. It is
 * thread-safe; the SSL_CTXs a purpose is attached to hold references to it. */
typedef struct ptrust_ctx_st PTRUST_CTX;

/* ptrust_ctx_new opens `root` (NULL: $PTRUST_ROOT, the config's `root:`, else "/") with the
 * configuration `config_file` (NULL: $PTRUST_CONFIG, <root>/etc/ptrust/ptrust.yaml, else the
 * built-in purposes). Returns a new context, or NULL with a message naming an error code
 * written to `err` (when `err` is not NULL and `err_len` > 0). */
PTRUST_CTX *ptrust_ctx_new(const char *root, const char *config_file, char *err, size_t err_len);

/* ptrust_ctx_up_ref takes another reference on `ctx`. Returns 1, or 0 when `ctx` is NULL. */
int ptrust_ctx_up_ref(PTRUST_CTX *ctx);

/* ptrust_ctx_free releases one reference on `ctx`; NULL is ignored. */
void ptrust_ctx_free(PTRUST_CTX *ctx);

/* ptrust_SSL_CTX_set1_purpose makes every handshake of `ssl_ctx` verify the peer under
 * `purpose` of `ctx`: it sets SSL_VERIFY_PEER, installs ptrust's certificate verification
 * callback (replacing any SSL_CTX_set_cert_verify_callback; the SSL_CTX's own X509_STORE and
 * default paths are never consulted), chains an info callback that keeps sessions from an
 * older store generation from being resumed (set your own info callback before this call;
 * on a server it sets each SSL's session id context to a digest of purpose and material,
 * and SSL_VERIFY_FAIL_IF_NO_PEER_CERT so a client without a certificate is refused; an
 * info callback set on the SSL_CTX or an SSL after this call disables the check),
 * and takes a reference on `ctx`. Call it before creating SSL objects. Returns 1, or 0 when
 * an argument is NULL or `purpose` is not declared (nothing is changed then). */
int ptrust_SSL_CTX_set1_purpose(SSL_CTX *ssl_ctx, PTRUST_CTX *ctx, const char *purpose);

/* ptrust_SSL_get_result copies the verdict of `ssl`'s handshake into `*out`. Returns 1, or 0
 * when an argument is NULL or no ptrust verification took place on `ssl` (yet). */
int ptrust_SSL_get_result(const SSL *ssl, PTRUST_RESULT *out);

/* PTRUST_VERIFY_OPTIONS tunes an offline verification (ptrust_verify_chain). Zero it first. */
typedef struct ptrust_verify_options_st {
  const char *host;               /* check the leaf against this DNS name (NULL: no check) */
  const char *ip;                 /* check the leaf against this IP address (NULL: no check) */
  int64_t at;                     /* verify as of this time (seconds since the epoch); 0: now */
  ptrust_crl_policy crl_policy;   /* overrides the purpose's crl-policy unless DEFAULT */
  ptrust_crl_scope crl_scope;     /* overrides the purpose's crl-scope unless DEFAULT */
} PTRUST_VERIFY_OPTIONS;

/* ptrust_verify_chain runs the hook's decision offline on `chain` (the peer's leaf first,
 * then any intermediates; not modified) as a TLS server certificate for `purpose`, and writes
 * the verdict to `*out`. `opts` may be NULL. Returns 1 when a verdict was written (look at
 * out->verified), 0 when an argument is NULL or invalid (unknown purpose, empty chain). */
int ptrust_verify_chain(PTRUST_CTX *ctx, const char *purpose, STACK_OF(X509) *chain,
                        const PTRUST_VERIFY_OPTIONS *opts, PTRUST_RESULT *out);

/* ptrust_ctx_get_counters copies the number of verdicts per reason for `purpose` (indexed by
 * ptrust_reason; index PTRUST_REASON_OK counts successes) into `out[0..n)`. Counts cover
 * every SSL_CTX attached to `ctx` with that purpose, and ptrust_verify_chain calls (and, when
 * the counts are published host-wide, those of children forked after the purpose was first
 * used: they share its counters; see docs/hook.md "Host-wide counters"). Returns 1, or 0
 * when an argument is NULL or the purpose is unknown. */
int ptrust_ctx_get_counters(PTRUST_CTX *ctx, const char *purpose, uint64_t *out, size_t n);

/* ptrust_reason_string returns the stable name of `reason` (e.g. "PIN_MISMATCH"), or
 * "UNKNOWN" for a value out of range. Never NULL. */
const char *ptrust_reason_string(ptrust_reason reason);

/* ptrust_mode_string returns "none", "pinned", "ca" or "general" ("unknown" out of range). */
const char *ptrust_mode_string(ptrust_mode mode);

#ifdef __cplusplus
}  /* extern "C" */
#endif

#endif  /* PTRUST_PTRUST_H */
