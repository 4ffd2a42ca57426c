/* ptrust.h compiles as C and libptrust.so links from C: a smoke run of the C ABI. */
#include <stdio.h>
#include <string.h>

#include "ptrust/ptrust.h"

int main(int argc, char **argv) {
  char err[256];
  PTRUST_CTX *ctx;
  SSL_CTX *ssl_ctx;
  int ok;
  if (argc != 3) return 2;
  if (ptrust_ctx_new(argv[1], "/nonexistent/ptrust.yaml", err, sizeof err) != NULL || strstr(err, "CONFIG_INVALID") == NULL) {
    fprintf(stderr, "a missing config must fail: %s\n", err);
    return 1;
  }
  ctx = ptrust_ctx_new(argv[1], argv[2], err, sizeof err);
  if (ctx == NULL) {
    fprintf(stderr, "ptrust_ctx_new: %s\n", err);
    return 1;
  }
  ssl_ctx = SSL_CTX_new(TLS_client_method());
  ok = ptrust_SSL_CTX_set1_purpose(ssl_ctx, ctx, "licensing") == 1 &&
       ptrust_SSL_CTX_set1_purpose(ssl_ctx, ctx, "nope") == 0 &&
       ptrust_SSL_CTX_set1_purpose(NULL, ctx, "licensing") == 0 &&
       strcmp(ptrust_reason_string(PTRUST_REASON_CRL_MISSING), "CRL_MISSING") == 0 &&
       /* C allows any int in an enum: the library must read one no enumerator has without
          undefined behaviour (UBSan under scripts/asan.sh once stopped here). */
       strcmp(ptrust_reason_string((ptrust_reason)-1), "UNKNOWN") == 0 &&
       strcmp(ptrust_reason_string((ptrust_reason)99), "UNKNOWN") == 0 &&
       strcmp(ptrust_mode_string((ptrust_mode)42), "unknown") == 0;
  SSL_CTX_free(ssl_ctx);
  ptrust_ctx_free(ctx);
  printf("%s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}
