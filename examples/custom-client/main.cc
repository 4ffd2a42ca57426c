// custom-client: a TLS client that adopts ptrust in a few lines (marked "ptrust:").
//
//   custom-client HOST PORT PURPOSE [ROOT [CONFIG]]
//
// Connects, verifies the server under PURPOSE, sends an HTTP/1.0 request and prints the
// verdict and the first response line. Exit 0 when the server verified.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <iomanip>
#include <iostream>
#include <memory>
#include <string>

#include "ptrust/ptrust.hpp"

static int tcp_connect(const char* host, const char* port) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, port, &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

int main(int argc, char** argv) {
  if (argc < 4 || argc > 6) {
    std::cerr << "usage: custom-client HOST PORT PURPOSE [ROOT [CONFIG]]\n";
    return 2;
  }
  const char* host = argv[1];
  std::string error;
  auto trust = ptrust::Trust::open(argc > 4 ? argv[4] : nullptr, argc > 5 ? argv[5] : nullptr, &error);  // ptrust:
  if (!trust) {
    std::cerr << "custom-client: " << error << "\n";
    return 1;
  }
  // Owned by a unique_ptr: every return below frees it (copy this pattern, not a bare pointer).
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> owner(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX* ctx = owner.get();
  if (!ctx) {
    std::cerr << "custom-client: cannot create an SSL_CTX\n";
    return 1;
  }
  if (!trust->attach(ctx, argv[3])) {  // ptrust: verify peers under PURPOSE
    std::cerr << "custom-client: unknown purpose " << argv[3] << "\n";
    return 1;
  }
  int fd = tcp_connect(host, argv[2]);
  if (fd < 0) {
    std::cerr << "custom-client: cannot connect to " << host << ":" << argv[2] << "\n";
    return 1;
  }
  SSL* ssl = SSL_new(ctx);
  if (!ssl) {
    close(fd);
    std::cerr << "custom-client: cannot create an SSL\n";
    return 1;
  }
  SSL_set_fd(ssl, fd);
  // Name the peer: a DNS name is sent as SNI and checked; an IP literal is checked as an IP
  // (RFC 6066 forbids an IP address in SNI).
  unsigned char ip[16];
  if (inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1) {
    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host);
  } else {
    SSL_set_tlsext_host_name(ssl, host);
    SSL_set1_host(ssl, host);
  }
  int rc = SSL_connect(ssl);
  auto v = ptrust::verdict(ssl);  // ptrust: the typed verdict
  if (v) {
    std::cout << "verdict: " << (v->ok() ? "verified" : "FAILED") << " reason=" << v->reason_name()
              << " mode=" << v->mode_name() << " generation=.." << std::setfill('0') << std::setw(4)
              << v->generation % 10000 << "\n";
  }
  if (rc == 1) {
    std::string req = std::string("GET / HTTP/1.0\r\nHost: ") + host + "\r\n\r\n";
    SSL_write(ssl, req.data(), static_cast<int>(req.size()));
    char buf[256];
    int n = SSL_read(ssl, buf, sizeof buf - 1);
    if (n > 0) {
      std::string resp(buf, static_cast<size_t>(n));
      std::cout << "response: " << resp.substr(0, resp.find('\r')) << "\n";
    }
    SSL_shutdown(ssl);
  } else {
    std::cout << "handshake refused\n";
  }
  SSL_free(ssl);
  close(fd);
  return v && v->ok() ? 0 : 1;
}
