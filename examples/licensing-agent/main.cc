// licensing-agent: checks in with a license server over TLS under purpose `licensing` at an
// interval and logs each verdict. It keeps one SSL_CTX for its whole life: trust changes
// (CA removed, pinned certificate installed, CRL added) apply on the next check-in, without
// a restart.
//
//   licensing-agent HOST PORT INTERVAL_MS COUNT [ROOT [CONFIG]]
//
// Exit 0 when the last check-in verified.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include <chrono>
#include <cstdlib>
#include <ctime>
#include <iomanip>
#include <iostream>
#include <memory>
#include <thread>

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

// One check-in; returns whether the license server verified.
static bool check_in(SSL_CTX* ctx, const char* host, const char* port, int n) {
  std::cout << "check-in " << n << ": ";
  int fd = tcp_connect(host, port);
  if (fd < 0) {
    std::cout << "server unreachable\n";
    return false;
  }
  SSL* ssl = SSL_new(ctx);
  if (!ssl) {
    close(fd);
    std::cout << "FAILED reason=INTERNAL_ERROR (cannot create an SSL)\n";
    return false;
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
  bool connected = SSL_connect(ssl) == 1;
  auto v = ptrust::verdict(ssl);
  if (v) {
    std::cout << (v->ok() ? "verified" : "FAILED") << " reason=" << v->reason_name() << " mode=" << v->mode_name()
              << " generation=.." << std::setfill('0') << std::setw(4)
              << v->generation % 10000;
  } else {
    std::cout << "FAILED reason=HANDSHAKE_FAILED";
  }
  std::cout << (connected ? " (license renewed)" : " (not connected)") << "\n" << std::flush;
  if (connected) SSL_shutdown(ssl);
  SSL_free(ssl);
  close(fd);
  return connected && v && v->ok();
}

int main(int argc, char** argv) {
  if (argc < 5 || argc > 7) {
    std::cerr << "usage: licensing-agent HOST PORT INTERVAL_MS COUNT [ROOT [CONFIG]]\n";
    return 2;
  }
  int interval = std::atoi(argv[3]), count = std::atoi(argv[4]);
  if (interval < 0 || count < 1 || count > 1000000) {
    std::cerr << "licensing-agent: bad INTERVAL_MS or COUNT\n";
    return 2;
  }
  std::string error;
  auto trust = ptrust::Trust::open(argc > 5 ? argv[5] : nullptr, argc > 6 ? argv[6] : nullptr, &error);
  if (!trust) {
    std::cerr << "licensing-agent: " << error << "\n";
    return 1;
  }
  // Owned by a unique_ptr: every return below frees it (copy this pattern, not a bare pointer).
  std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> owner(SSL_CTX_new(TLS_client_method()), SSL_CTX_free);
  SSL_CTX* ctx = owner.get();
  if (!ctx) {
    std::cerr << "licensing-agent: cannot create an SSL_CTX\n";
    return 1;
  }
  if (!trust->attach(ctx, "licensing")) {
    std::cerr << "licensing-agent: purpose 'licensing' is not declared\n";
    return 1;
  }
  bool ok = false;
  for (int n = 1; n <= count; ++n) {
    if (n > 1) std::this_thread::sleep_for(std::chrono::milliseconds(interval));
    ok = check_in(ctx, argv[1], argv[2], n);
  }
  return ok ? 0 : 1;
}
