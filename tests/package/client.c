/* A tiny C client of the installed libptrust (scripts/package.sh builds it with
 * `pkg-config --cflags --libs ptrust`, and tests/package/cmake-consumer with find_package).
 *
 *   client HOST PORT PURPOSE PEER_NAME
 *
 * Opens the default root and configuration (what a program on the host gets: root /,
 * /etc/ptrust/ptrust.yaml), verifies the server at HOST:PORT under PURPOSE with the peer
 * named PEER_NAME, and prints "verified=1 reason=OK mode=general". Exit 0 only if verified. */
#include <netdb.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <ptrust/ptrust.h>

static int tcp_connect(const char *host, const char *port) {
  struct addrinfo hints, *res = NULL, *a;
  int fd = -1;
  memset(&hints, 0, sizeof hints);
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  for (a = res; a != NULL && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

int main(int argc, char **argv) {
  char err[256];
  PTRUST_CTX *pt;
  SSL_CTX *ctx = NULL;
  SSL *ssl = NULL;
  PTRUST_RESULT r;
  int fd = -1, rc = 1;
  if (argc != 5) {
    fprintf(stderr, "usage: client HOST PORT PURPOSE PEER_NAME\n");
    return 2;
  }
  pt = ptrust_ctx_new(NULL, NULL, err, sizeof err);
  if (pt == NULL) {
    fprintf(stderr, "client: %s\n", err);
    return 1;
  }
  ctx = SSL_CTX_new(TLS_client_method());
  if (ctx == NULL || !ptrust_SSL_CTX_set1_purpose(ctx, pt, argv[3])) {
    fprintf(stderr, "client: cannot attach purpose %s\n", argv[3]);
    goto done;
  }
  fd = tcp_connect(argv[1], argv[2]);
  if (fd < 0) {
    fprintf(stderr, "client: cannot connect to %s:%s\n", argv[1], argv[2]);
    goto done;
  }
  ssl = SSL_new(ctx);
  if (ssl == NULL || !SSL_set_fd(ssl, fd) || !SSL_set1_host(ssl, argv[4])) goto done;
  SSL_set_tlsext_host_name(ssl, argv[4]);
  if (SSL_connect(ssl) == 1) SSL_shutdown(ssl);
  if (!ptrust_SSL_get_result(ssl, &r)) {
    fprintf(stderr, "client: no ptrust verdict\n");
    goto done;
  }
  printf("verified=%d reason=%s mode=%s purpose=%s\n", r.verified, ptrust_reason_string(r.reason),
         ptrust_mode_string(r.mode), r.purpose);
  rc = r.verified ? 0 : 1;
done:
  SSL_free(ssl);
  if (fd >= 0) close(fd);
  SSL_CTX_free(ctx);
  ptrust_ctx_free(pt);
  return rc;
}
