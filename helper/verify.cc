// verify / probe: the verify hook's decision, offline on a chain file or live against a
// TLS peer. Both print the same per-attempt line (or JSON object) and share exit codes:
// 0 when every attempt verified, 1 otherwise, 2 for usage errors.
#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <iostream>
#include <thread>

#include "core/config.h"
#include "core/error.h"
#include "core/fs.h"
#include "core/ossl.h"
#include "helper/cli.h"
#include "ptrust/ptrust.h"

namespace ptrust::cli {

namespace json = boost::json;

std::int64_t parse_time(const std::string& s) {
  std::string digits = s.starts_with('@') ? s.substr(1) : s;
  if (!digits.empty() && digits.size() <= 18 && digits.find_first_not_of("0123456789") == std::string::npos)
    return std::stoll(digits);  // 18 digits always fit in int64
  // Relative to now: +30d, -2h, +15m, +10s.
  if (s.size() >= 3 && (s[0] == '+' || s[0] == '-') && s.size() <= 12 &&
      s.find_first_not_of("0123456789", 1) == s.size() - 1) {
    long unit = s.back() == 'd' ? 86400 : s.back() == 'h' ? 3600 : s.back() == 'm' ? 60 : s.back() == 's' ? 1 : 0;
    if (unit) {
      long n = std::stol(s.substr(1, s.size() - 2)) * unit;
      return static_cast<std::int64_t>(std::time(nullptr)) + (s[0] == '+' ? n : -n);
    }
  }
  // RFC 3339 (T or t or a space; fractional seconds ignored; Z, z, +HH:MM or -HH:MM; no zone:
  // UTC), or a date.
  for (const char* fmt : {"%Y-%m-%dT%H:%M:%S", "%Y-%m-%dt%H:%M:%S", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d"}) {
    std::tm tm{};
    const char* end = strptime(s.c_str(), fmt, &tm);
    if (!end) continue;
    const bool has_time = std::string_view(fmt).size() > 8;
    if (*end == '.' && has_time) {
      ++end;
      if (!std::isdigit(static_cast<unsigned char>(*end))) continue;
      while (std::isdigit(static_cast<unsigned char>(*end))) ++end;
    }
    long offset = 0;
    if ((*end == '+' || *end == '-') && has_time) {
      int hh = 0, mm = 0, n = 0;
      if (!std::isdigit(static_cast<unsigned char>(end[1])) || std::sscanf(end + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 ||
          n != 5 || hh > 23 || mm > 59)
        continue;
      offset = (*end == '+' ? 1 : -1) * (hh * 3600L + mm * 60L);
      end += 6;
    } else if ((*end == 'Z' || *end == 'z') && has_time) {
      ++end;
    }
    if (*end == '\0') return timegm(&tm) - offset;
  }
  throw Error(Code::kUsage, "--at: '" + s + "' is not a time (use YYYY-MM-DD, RFC 3339 YYYY-MM-DDTHH:MM:SS[.frac]"
                                             "[Z|+HH:MM|-HH:MM] (no zone: UTC), @EPOCH, or +30d / -2h / +15m / +10s "
                                             "from now)");
}

namespace {

constexpr size_t kMaxChainFile = 4u << 20;

// Move-only: a copy would free the context twice.
using CtxHandle = std::unique_ptr<PTRUST_CTX, ossl::Deleter<ptrust_ctx_free>>;

CtxHandle open_ptrust(const Common& c, const std::string& purpose) {
  Context ctx = c.context();  // the same resolution as every command; errors name a code
  if (purpose != kGeneral && !ctx.config.declares(purpose))
    throw unknown_purpose(ctx.config, purpose, ctx.root);
  char err[512];
  PTRUST_CTX* p = ptrust_ctx_new(ctx.root.c_str(), ctx.config.source == "<built-in>" ? nullptr : ctx.config.source.c_str(),
                                 err, sizeof err);
  if (!p) throw Error(Code::kConfigInvalid, err);
  return CtxHandle(p);
}

// An attempt that produced no verdict (no connection, or the handshake failed elsewhere).
struct NoVerdict {
  const char* reason;  // CONNECT_FAILED | HANDSHAKE_FAILED
  std::string detail;
};

// The generation for people: its last four digits ("..8054"), enough to see whether two lines
// were decided under the same store (each change moves the counter by 2); --json has it whole.
std::string short_generation(std::uint64_t g) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "..%04u", static_cast<unsigned>(g % 10000));
  return buf;
}

void print_attempt(const Common& c, int n, int total, const PTRUST_RESULT* r, const NoVerdict* nv) {
  if (c.json) {
    json::object o{{"attempt", n}, {"verified", r && r->verified}};
    if (r) {
      o["reason"] = ptrust_reason_string(r->reason);
      o["purpose"] = r->purpose;
      o["mode"] = ptrust_mode_string(r->mode);
      o["generation"] = r->generation;
      o["x509_error"] = r->x509_error;
      o["x509_error_string"] = X509_verify_cert_error_string(r->x509_error);
      o["error_depth"] = r->error_depth;
      o["enforced"] = r->enforced != 0;
    } else {
      o["reason"] = nv->reason;
      o["detail"] = nv->detail;
    }
    print_json(o);
    return;
  }
  std::cout << "attempt " << n << "/" << total << ": ";
  if (!r) {
    std::cout << "FAILED reason=" << nv->reason << " (" << nv->detail << ")\n";
    return;
  }
  std::cout << (r->verified ? "verified" : "FAILED") << " reason=" << ptrust_reason_string(r->reason)
            << " purpose=" << r->purpose << " mode=" << ptrust_mode_string(r->mode) << " generation=" << short_generation(r->generation);
  if (!r->verified) {
    std::cout << " openssl=\"" << X509_verify_cert_error_string(r->x509_error) << "\" depth=" << r->error_depth;
    if (!r->enforced) std::cout << " (report-only: handshake allowed)";
  }
  std::cout << "\n";
}

ossl::X509StackPtr read_chain(const std::string& path) {
  std::string pem = fs::read_input(path, kMaxChainFile);
  ossl::BioPtr bio(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
  ossl::X509StackPtr chain(sk_X509_new_null());
  while (X509* x = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) sk_X509_push(chain.get(), x);
  ERR_clear_error();
  if (sk_X509_num(chain.get()) == 0) {  // DER: one certificate, the leaf, and nothing after it
    const unsigned char* p = reinterpret_cast<const unsigned char*>(pem.data());
    X509* x = d2i_X509(nullptr, &p, static_cast<long>(pem.size()));
    ERR_clear_error();
    if (x && p == reinterpret_cast<const unsigned char*>(pem.data()) + pem.size()) sk_X509_push(chain.get(), x);
    else X509_free(x);
  }
  if (sk_X509_num(chain.get()) == 0)
    throw Error(Code::kInputUnreadable,
                path + " holds no certificate: PEM (the leaf first, then intermediates) or one DER certificate");
  return chain;
}

bool is_ip(const std::string& s);

// --host / --ip / --at / --crl-policy / --crl-scope into `opts`; `host` and `ip` own the strings.
void read_verify_options(const po::variables_map& vm, PTRUST_VERIFY_OPTIONS& opts, std::string& host, std::string& ip) {
  if (vm.count("host") && vm.count("ip")) throw Error(Code::kUsage, "give at most one of --host and --ip");
  if (vm.count("host")) opts.host = (host = vm["host"].as<std::string>()).c_str();
  if (vm.count("ip")) opts.ip = (ip = vm["ip"].as<std::string>()).c_str();
  // An empty name would clear OpenSSL's host check instead of failing it.
  if (vm.count("host") && host.empty()) throw Error(Code::kUsage, "--host must not be empty");
  if (vm.count("host") && is_ip(host)) throw Error(Code::kUsage, "--host '" + host + "' is an IP address: use --ip");
  if (vm.count("ip") && !is_ip(ip)) throw Error(Code::kUsage, "--ip '" + ip + "' is not an IP address");
  if (vm.count("at")) opts.at = parse_time(vm["at"].as<std::string>());
  if (vm.count("crl-policy")) {
    auto p = crl_policy_from(vm["crl-policy"].as<std::string>());
    if (!p) throw Error(Code::kUsage, "--crl-policy must be off, if-present or require");
    switch (*p) {
      case CrlPolicy::kOff: opts.crl_policy = PTRUST_CRL_POLICY_OFF; break;
      case CrlPolicy::kIfPresent: opts.crl_policy = PTRUST_CRL_POLICY_IF_PRESENT; break;
      case CrlPolicy::kRequire: opts.crl_policy = PTRUST_CRL_POLICY_REQUIRE; break;
    }
  }
  if (vm.count("crl-scope")) {
    auto s = crl_scope_from(vm["crl-scope"].as<std::string>());
    if (!s) throw Error(Code::kUsage, "--crl-scope must be leaf or chain");
    switch (*s) {
      case CrlScope::kLeaf: opts.crl_scope = PTRUST_CRL_SCOPE_LEAF; break;
      case CrlScope::kChain: opts.crl_scope = PTRUST_CRL_SCOPE_CHAIN; break;
    }
  }
}

int verify_cmd(const Common& c, const po::variables_map& vm) {
  std::string purpose = vm["purpose"].as<std::string>();
  PTRUST_VERIFY_OPTIONS opts{};
  std::string host, ip;
  read_verify_options(vm, opts, host, ip);
  ossl::X509StackPtr chain = read_chain(vm["chain"].as<std::string>());
  CtxHandle pt = open_ptrust(c, purpose);
  PTRUST_RESULT r{};
  if (ptrust_verify_chain(pt.get(), purpose.c_str(), chain.get(), &opts, &r) != 1)
    throw Error(Code::kIoError, "the verification could not be run (out of memory?)");
  print_attempt(c, 1, 1, &r, nullptr);
  return r.verified ? 0 : 1;
}

struct Target {
  std::string host, port;
};

Target parse_target(const std::string& s) {
  size_t colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw Error(Code::kUsage, "expected HOST:PORT, got '" + s + "'");
  std::string host = s.substr(0, colon);
  if (host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  return {host, s.substr(colon + 1)};
}

bool is_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A connected TCP socket (5 s timeouts), or -1 with `err` set.
int tcp_connect(const Target& t, std::string& err) {
  addrinfo hints{}, *res = nullptr;
  hints.ai_socktype = SOCK_STREAM;
  if (int rc = getaddrinfo(t.host.c_str(), t.port.c_str(), &hints, &res); rc != 0) {
    err = gai_strerror(rc);
    return -1;
  }
  int fd = -1;
  for (addrinfo* a = res; a && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) continue;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      err = std::strerror(errno);
      ::close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  return fd;
}

int probe_cmd(const Common& c, const po::variables_map& vm) {
  Target t = parse_target(vm["target"].as<std::string>());
  std::string purpose = vm["purpose"].as<std::string>();
  int count = vm["count"].as<int>(), interval = vm["interval"].as<int>();
  if (count < 1 || count > 100000) throw Error(Code::kUsage, "--count must be 1..100000");
  if (interval < 0 || interval > 3600000) throw Error(Code::kUsage, "--interval must be 0..3600000 ms");
  PTRUST_VERIFY_OPTIONS opts{};
  std::string host, ip;
  read_verify_options(vm, opts, host, ip);
  std::string sni;
  if (vm.count("servername")) {
    sni = vm["servername"].as<std::string>();
    // An empty name would clear OpenSSL's host check instead of failing it.
    if (sni.empty()) throw Error(Code::kUsage, "--servername must not be empty");
    if (is_ip(sni)) throw Error(Code::kUsage, "--servername '" + sni + "' is an IP address (RFC 6066 forbids one in SNI): use --ip");
  }
  // What is checked: --host / --ip, else the name sent, else the target's host (a name, or an
  // IP literal checked as an IP address). An IP is never sent as SNI.
  if (!opts.host && !opts.ip) {
    if (!sni.empty()) opts.host = (host = sni).c_str();
    else if (is_ip(t.host)) opts.ip = (ip = t.host).c_str();
    else opts.host = (host = t.host).c_str();
  }
  if (sni.empty() && opts.host) sni = host;
  // The purpose's own policy is what an attached SSL_CTX verifies with; an override is
  // applied by verifying the chain the peer presented with the same decision (offline).
  const bool override_policy = opts.crl_policy != PTRUST_CRL_POLICY_DEFAULT || opts.crl_scope != PTRUST_CRL_SCOPE_DEFAULT;
  CtxHandle pt = open_ptrust(c, purpose);

  // One SSL_CTX for every attempt: trust changes must show up without a new one.
  ossl::SslCtxPtr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) throw Error(Code::kIoError, "cannot set up TLS");
  if (override_policy) SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  else if (ptrust_SSL_CTX_set1_purpose(ctx.get(), pt.get(), purpose.c_str()) != 1)
    throw Error(Code::kIoError, "cannot set up TLS");
  int failures = 0;
  for (int n = 1; n <= count; ++n) {
    if (n > 1) std::this_thread::sleep_for(std::chrono::milliseconds(interval));
    NoVerdict nv{"CONNECT_FAILED", ""};
    PTRUST_RESULT r{};
    bool have = false;
    int fd = tcp_connect(t, nv.detail);
    if (fd >= 0) {
      ossl::SslPtr ssl(SSL_new(ctx.get()));
      SSL_set_fd(ssl.get(), fd);
      if (!sni.empty()) SSL_set_tlsext_host_name(ssl.get(), sni.c_str());
      if (opts.host) SSL_set1_host(ssl.get(), opts.host);
      if (opts.ip) X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl.get()), opts.ip);
      int rc = SSL_connect(ssl.get());
      if (override_policy) {
        STACK_OF(X509)* presented = rc == 1 ? SSL_get_peer_cert_chain(ssl.get()) : nullptr;  // leaf first
        have = presented && sk_X509_num(presented) > 0 &&
               ptrust_verify_chain(pt.get(), purpose.c_str(), presented, &opts, &r) == 1;
      } else {
        have = ptrust_SSL_get_result(ssl.get(), &r) == 1;
      }
      if (rc == 1) SSL_shutdown(ssl.get());
      if (!have) {
        nv.reason = "HANDSHAKE_FAILED";
        unsigned long e = ERR_peek_last_error();
        nv.detail = e ? ERR_reason_error_string(e) ? ERR_reason_error_string(e) : "TLS error" : "connection closed";
      }
      ERR_clear_error();
      ::close(fd);
    }
    print_attempt(c, n, count, have ? &r : nullptr, &nv);
    std::cout.flush();
    if (!have || !r.verified) ++failures;
  }
  return failures == 0 ? 0 : 1;
}

}  // namespace

void add_verify_commands(std::vector<Command>& out) {
  out.push_back({"verify", "--purpose P CHAIN_FILE [--host NAME | --ip IP] [--at TIME] [--crl-policy ...] [--crl-scope ...]",
                 "verify a leaf-first PEM chain (or one DER certificate) as the verify hook would (offline)", true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("purpose", po::value<std::string>()->required(), "purpose, or general")(
                       "chain", po::value<std::string>()->required(), "PEM file: the leaf first, then intermediates")(
                       "host", po::value<std::string>(), "check the leaf against this DNS name")(
                       "ip", po::value<std::string>(), "check the leaf against this IP address")(
                       "at", po::value<std::string>(), "verify as of TIME (YYYY-MM-DD[THH:MM:SS[Z]], @EPOCH, +30d, -2h)")(
                       "crl-policy", po::value<std::string>(), "off | if-present | require (overrides the purpose's)")(
                       "crl-scope", po::value<std::string>(), "leaf | chain (overrides the purpose's)");
                   p.add("chain", 1);
                 },
                 verify_cmd});
  out.push_back({"probe",
                 "HOST:PORT --purpose P [--servername NAME] [--host NAME | --ip IP] [--crl-policy ...] [--crl-scope ...] "
                 "[--count N --interval MS]",
                 "verify a live TLS peer with the verify hook (one SSL_CTX for all attempts)", true,
                 [](po::options_description& d, po::positional_options_description& p) {
                   d.add_options()("target", po::value<std::string>()->required(), "HOST:PORT ([v6]:PORT)")(
                       "purpose", po::value<std::string>()->required(), "purpose, or general")(
                       "servername", po::value<std::string>(),
                       "DNS name to send as SNI, and check unless --host/--ip (default: --host, or HOST when a name)")(
                       "host", po::value<std::string>(), "check the peer against this DNS name (default: HOST)")(
                       "ip", po::value<std::string>(), "check the peer against this IP address (default: HOST when an IP)")(
                       "crl-policy", po::value<std::string>(),
                       "off | if-present | require: verify the presented chain under this policy instead")(
                       "crl-scope", po::value<std::string>(), "leaf | chain: likewise")(
                       "count", po::value<int>()->default_value(1), "number of attempts")(
                       "interval", po::value<int>()->default_value(1000), "milliseconds between attempts");
                   p.add("target", 1);
                 },
                 probe_cmd});
}

}  // namespace ptrust::cli
