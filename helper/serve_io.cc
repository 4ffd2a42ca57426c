#include "helper/serve_io.h"

#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <filesystem>
#include <map>
#include <optional>
#include <set>

#include "core/error.h"

namespace ptrust::serve {

namespace asio = boost::asio;
namespace http = boost::beast::http;
namespace json = boost::json;
using local = asio::local::stream_protocol;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {

// Outside text in an error or log line: control characters escaped, at most `max` bytes.
std::string printable(std::string_view s, size_t max = 200) {
  std::string out;
  for (unsigned char c : s.substr(0, max)) {
    if (c < 0x20 || c == 0x7f || c == '\\') {
      char b[5];
      std::snprintf(b, sizeof b, "\\x%02x", c);
      out += b;
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > max) out += "...";
  return out;
}

// A user callback must not take the loop down: its exception is logged and the loop goes on.
template <class F>
void guarded(const char* what, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    log(LOG_ERR, std::string(what) + " failed: " + e.what());
  }
}

std::string error_line(const json::value& id, std::string_view code, std::string_view message) {
  json::object err{{"code", code}, {"message", message}};
  return json::serialize(json::object{{"id", id}, {"error", std::move(err)}}) + "\n";
}

}  // namespace

// ---------------------------------------------------------------------------------------
// JSON-lines server.

std::string reply_line(std::string_view line, const Handler& handler, const Peer& peer) {
  json::value id = nullptr;
  try {
    error_code ec;
    json::parse_options opt;
    opt.max_depth = 32;  // nesting costs stack in the parser and the handler
    json::value v = json::parse(line, ec, {}, opt);
    if (ec) throw Error(Code::kUsage, "request is not valid JSON: " + ec.message());
    if (!v.is_object()) throw Error(Code::kUsage, "request is not a JSON object");
    const json::object& o = v.as_object();
    if (const json::value* i = o.if_contains("id")) id = *i;
    const json::value* m = o.if_contains("method");
    if (m == nullptr || !m->is_string()) throw Error(Code::kUsage, "request lacks a string \"method\"");
    static const json::object kNoParams;
    const json::object* params = &kNoParams;
    if (const json::value* p = o.if_contains("params")) {
      if (p->is_object()) params = &p->as_object();
      else if (!p->is_null()) throw Error(Code::kUsage, "\"params\" is not a JSON object");
    }
    json::value result = handler(m->as_string(), *params, peer);
    return json::serialize(json::object{{"id", id}, {"result", std::move(result)}}) + "\n";
  } catch (const Error& e) {
    return error_line(id, code_name(e.code()), e.what());
  } catch (const std::exception& e) {
    return error_line(id, "INTERNAL_ERROR", e.what());
  } catch (...) {
    return error_line(id, "INTERNAL_ERROR", "unknown exception");
  }
}

namespace {

struct UnixServer {
  UnixServer(asio::io_context& ioc, const Limits& l, Handler h) : acceptor(ioc), retry(ioc), limits(l), handler(std::move(h)) {}
  local::acceptor acceptor;
  asio::steady_timer retry;  // accept failed (EMFILE...): try again later, never spin
  const Limits& limits;
  Handler handler;
  std::set<struct Conn*> conns;
  std::string created;  // the socket file made here (unlinked at stop), with its identity
  dev_t dev = 0;
  ino_t ino = 0;
};

// One client. At most one operation is outstanding: it reads only when no reply is waiting to
// be written, so a client that sends but does not read stops being read (its kernel buffers
// fill, it blocks), and what the daemon holds for it stays bounded.
struct Conn : std::enable_shared_from_this<Conn> {
  Conn(local::socket s, std::shared_ptr<UnixServer> srv) : sock(std::move(s)), timer(sock.get_executor()), srv(std::move(srv)) {}
  local::socket sock;
  asio::steady_timer timer;
  std::shared_ptr<UnixServer> srv;
  Peer peer;
  std::string in;       // bytes of the line being received (never more than max_line + a chunk)
  size_t scanned = 0;   // bytes of `in` already searched for '\n'
  std::array<char, 16384> chunk;
  std::deque<std::string> out;
  size_t out_bytes = 0;
  bool close_after_write = false;
  bool closed = false;

  void start() {
    srv->conns.insert(this);
    ucred cred{};
    socklen_t len = sizeof cred;
    if (getsockopt(sock.native_handle(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0)
      peer = Peer{cred.uid, cred.gid, cred.pid};
    arm_timer();
    read();
  }

  // The idle deadline: pushed back by each complete request and each finished write.
  void arm_timer() {
    timer.expires_after(srv->limits.idle);
    timer.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->close();
    });
  }

  void read() {
    sock.async_read_some(asio::buffer(chunk), [self = shared_from_this()](error_code ec, size_t n) { self->on_read(ec, n); });
  }

  void on_read(error_code ec, size_t n) {
    if (closed) return;
    if (ec) return close();  // EOF or error: nothing to answer
    in.append(chunk.data(), n);
    size_t start = 0, nl;
    bool got = false;
    while ((nl = in.find('\n', std::max(start, scanned))) != std::string::npos) {
      if (nl - start > srv->limits.max_line) return too_long();
      answer(std::string_view(in).substr(start, nl - start));
      got = true;
      start = nl + 1;
      if (closed) return;
    }
    in.erase(0, start);
    scanned = in.size();
    if (in.size() > srv->limits.max_line) return too_long();
    if (got) arm_timer();
    if (out.empty()) read(); else write();
  }

  void too_long() {
    in.clear();
    in.shrink_to_fit();
    queue(error_line(nullptr, code_name(Code::kLimitExceeded),
                     "request line longer than " + std::to_string(srv->limits.max_line) + " bytes; closing"));
    close_after_write = true;
    write();
  }

  void answer(std::string_view line) {
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.find_first_not_of(" \t") == std::string_view::npos) return;  // blank line: nothing asked
    queue(reply(line));
  }

  std::string reply(std::string_view line) { return reply_line(line, srv->handler, peer); }

  void queue(std::string s) {
    out_bytes += s.size();
    out.push_back(std::move(s));
    if (out_bytes > srv->limits.max_output) close();  // a client that asks more than it reads
  }

  void write() {
    if (closed || out.empty()) return;
    asio::async_write(sock, asio::buffer(out.front()), [self = shared_from_this()](error_code ec, size_t) {
      if (self->closed) return;
      if (ec) return self->close();
      self->out_bytes -= self->out.front().size();
      self->out.pop_front();
      self->arm_timer();
      if (!self->out.empty()) self->write();
      else if (self->close_after_write) self->close();
      else self->read();
    });
  }

  void close() {
    if (closed) return;
    closed = true;
    srv->conns.erase(this);
    error_code ec;
    sock.shutdown(local::socket::shutdown_both, ec);
    sock.close(ec);
    timer.cancel();
    out.clear();
  }
};

// Over the cap: one error line, best effort and never blocking, then close.
template <class Socket>
void refuse(Socket& s, std::string_view text) {
  error_code ec;
  s.non_blocking(true, ec);
  s.write_some(asio::buffer(text.data(), text.size()), ec);
  s.shutdown(Socket::shutdown_both, ec);
  s.close(ec);
}

void accept_unix(const std::shared_ptr<UnixServer>& srv) {
  srv->acceptor.async_accept([srv](error_code ec, local::socket s) {
    if (ec == asio::error::operation_aborted || !srv->acceptor.is_open()) return;
    if (ec) {
      log(LOG_WARNING, "accept on the control socket failed: " + ec.message());
      srv->retry.expires_after(std::chrono::milliseconds(100));
      srv->retry.async_wait([srv](error_code e) { if (!e) accept_unix(srv); });
      return;
    }
    if (srv->conns.size() >= srv->limits.max_connections) {
      refuse(s, error_line(nullptr, code_name(Code::kLimitExceeded),
                           "too many connections (" + std::to_string(srv->limits.max_connections) + "); try again later"));
    } else {
      std::make_shared<Conn>(std::move(s), srv)->start();
    }
    accept_unix(srv);
  });
}

void make_parents(const std::filesystem::path& dir) {
  if (dir.empty() || std::filesystem::exists(dir)) return;
  make_parents(dir.parent_path());
  if (mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) throw_errno(Code::kIoError, "cannot create " + dir.string());
  chmod(dir.c_str(), 0755);  // 0755 whatever the umask: clients of the socket need to reach it
}

sockaddr_un unix_address(const std::string& path) {
  sockaddr_un a{};
  a.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof a.sun_path)
    throw Error(Code::kUsage, "socket path '" + printable(path) + "' is empty or longer than " +
                                  std::to_string(sizeof a.sun_path - 1) + " bytes");
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

// A socket file nobody listens on is left over from a daemon that died: replace it. One that
// answers belongs to a running daemon: never steal it.
bool socket_in_use(const sockaddr_un& a, const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw_errno(Code::kIoError, "socket");
  int r = connect(fd, reinterpret_cast<const sockaddr*>(&a), sizeof a);
  int e = errno;
  close(fd);
  if (r == 0 || e == EAGAIN) return true;
  if (e == ECONNREFUSED) return false;
  errno = e;
  throw_errno(Code::kIoError, "cannot check the existing socket " + path);
}

}  // namespace

// ---------------------------------------------------------------------------------------
// Metrics endpoint.

namespace {

struct MetricsServer {
  MetricsServer(asio::io_context& ioc, const Limits& l, MetricsFn f) : acceptor(ioc), retry(ioc), limits(l), metrics(std::move(f)) {}
  tcp::acceptor acceptor;
  asio::steady_timer retry;
  const Limits& limits;
  MetricsFn metrics;
  std::set<struct HttpConn*> conns;
};

// One request per connection (Connection: close): a scraper reconnects every scrape anyway,
// and nothing is kept between requests.
struct HttpConn : std::enable_shared_from_this<HttpConn> {
  HttpConn(tcp::socket s, std::shared_ptr<MetricsServer> srv)
      : sock(std::move(s)), timer(sock.get_executor()), srv(std::move(srv)), buf(this->srv->limits.max_http_request) {}
  tcp::socket sock;
  asio::steady_timer timer;
  std::shared_ptr<MetricsServer> srv;
  boost::beast::flat_buffer buf;  // bounded: a longer request fails with buffer_overflow
  http::request_parser<http::empty_body> parser;  // empty_body: a request with a body is refused
  http::response<http::string_body> res;
  bool closed = false;

  void start() {
    srv->conns.insert(this);
    parser.header_limit(static_cast<std::uint32_t>(srv->limits.max_http_request));
    timer.expires_after(srv->limits.idle);  // the whole exchange, not per byte: slowloris ends here
    timer.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) self->close();
    });
    http::async_read(sock, buf, parser, [self = shared_from_this()](error_code ec, size_t) { self->on_read(ec); });
  }

  void on_read(error_code ec) {
    if (closed) return;
    if (ec == http::error::end_of_stream || ec == asio::error::eof || ec == asio::error::operation_aborted) return close();
    res.version(11);
    res.keep_alive(false);
    res.set(http::field::server, "ptrust");
    if (ec) {
      respond(http::status::bad_request, "bad request: " + ec.message() + "\n");
      return;
    }
    const auto& req = parser.get();
    if (req.method() != http::verb::get && req.method() != http::verb::head) {
      res.set(http::field::allow, "GET, HEAD");
      respond(http::status::method_not_allowed, "method not allowed\n");
    } else if (req.target() != "/metrics") {
      respond(http::status::not_found, "not found; the metrics are at /metrics\n");
    } else {
      std::string body;
      try {
        body = srv->metrics();
      } catch (const std::exception& e) {
        log(LOG_ERR, std::string("metrics failed: ") + e.what());
        respond(http::status::internal_server_error, "metrics unavailable\n");
        return;
      }
      res.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
      respond(http::status::ok, std::move(body), req.method() == http::verb::head);
    }
  }

  void respond(http::status status, std::string body, bool head = false) {
    res.result(status);
    if (res.find(http::field::content_type) == res.end()) res.set(http::field::content_type, "text/plain; charset=utf-8");
    res.body() = std::move(body);
    res.prepare_payload();
    if (head) res.body().clear();
    http::async_write(sock, res, [self = shared_from_this()](error_code, size_t) { self->close(); });
  }

  void close() {
    if (closed) return;
    closed = true;
    srv->conns.erase(this);
    error_code ec;
    sock.shutdown(tcp::socket::shutdown_both, ec);
    sock.close(ec);
    timer.cancel();
  }
};

void accept_http(const std::shared_ptr<MetricsServer>& srv) {
  srv->acceptor.async_accept([srv](error_code ec, tcp::socket s) {
    if (ec == asio::error::operation_aborted || !srv->acceptor.is_open()) return;
    if (ec) {
      log(LOG_WARNING, "accept on the metrics endpoint failed: " + ec.message());
      srv->retry.expires_after(std::chrono::milliseconds(100));
      srv->retry.async_wait([srv](error_code e) { if (!e) accept_http(srv); });
      return;
    }
    if (srv->conns.size() >= srv->limits.max_connections)
      refuse(s, std::string_view("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"));
    else
      std::make_shared<HttpConn>(std::move(s), srv)->start();
    accept_http(srv);
  });
}

}  // namespace

HostPort split_host_port(std::string_view spec, std::string& why) {
  why.clear();
  HostPort hp;
  std::string_view port;
  if (spec.starts_with('[')) {
    size_t close = spec.find(']');
    if (close == std::string_view::npos || close + 1 >= spec.size() || spec[close + 1] != ':') {
      why = "expected [IPV6]:PORT";
      return {};
    }
    hp.host = spec.substr(1, close - 1);
    port = spec.substr(close + 2);
  } else {
    size_t colon = spec.rfind(':');
    if (colon == std::string_view::npos) {
      why = "expected HOST:PORT";
      return {};
    }
    hp.host = spec.substr(0, colon);
    port = spec.substr(colon + 1);
    if (hp.host.find(':') != std::string_view::npos) {
      why = "an IPv6 address goes in brackets, as [::1]:PORT";
      return {};
    }
  }
  unsigned p = 0;
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos ||
      (p = static_cast<unsigned>(std::stoul(std::string(port)))) == 0 || p > 65535) {
    why = "the port must be a number from 1 to 65535";
    return {};
  }
  hp.port = static_cast<uint16_t>(p);
  return hp;
}

Endpoint parse_loopback_endpoint(std::string_view spec) {
  auto bad = [&](const std::string& why) -> Endpoint {
    throw Error(Code::kUsage, "--metrics '" + printable(spec, 100) + "': " + why);
  };
  std::string why;
  HostPort hp = split_host_port(spec, why);
  if (!why.empty()) return bad(why);
  std::string_view host = hp.host;
  Endpoint ep;
  ep.port = hp.port;
  if (host == "localhost") {
    ep.address = asio::ip::address_v4::loopback();  // no resolver: a name could be pointed elsewhere
    return ep;
  }
  error_code ec;
  ep.address = asio::ip::make_address(std::string(host), ec);
  if (ec) return bad("'" + printable(host, 100) + "' is not an IP address (names are not resolved; use 127.0.0.1, [::1] or localhost)");
  if (ep.address.is_unspecified()) return bad("that is every interface; the metrics endpoint listens on loopback only");
  if (!ep.address.is_loopback() || (ep.address.is_v6() && ep.address.to_v6().scope_id() != 0))
    return bad("not a loopback address; allowed: 127.0.0.0/8, [::1], localhost");
  return ep;
}

// ---------------------------------------------------------------------------------------
// Watches, timer, loop.

namespace {

constexpr uint32_t kWatchMask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_CLOSE_WRITE | IN_ATTRIB |
                                IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR;

struct Watcher {
  explicit Watcher(asio::io_context& ioc) : sd(ioc), debounce(ioc) {}
  asio::posix::stream_descriptor sd;
  asio::steady_timer debounce;
  const Limits* limits = nullptr;
  std::function<void()> on_change;
  std::vector<std::string> wanted;
  struct Watch {
    std::string path;
    bool wanted = false;               // one of the watched directories
    std::set<std::string> awaited;     // names of missing wanted directories (or their ancestors) in it
  };
  std::map<int, Watch> watches;
  std::optional<std::chrono::steady_clock::time_point> burst;
  uint64_t seq = 0;  // the debounce wait that is current (a cancelled wait may still complete)
  alignas(inotify_event) std::array<char, 16384> buf;

  void reset(std::vector<std::string> dirs, std::function<void()> cb, const Limits& l) {
    close();
    limits = &l;
    on_change = std::move(cb);
    wanted.clear();
    for (auto& d : dirs) wanted.push_back(std::filesystem::absolute(d).lexically_normal().string());
    int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (fd < 0) throw_errno(Code::kIoError, "inotify_init1");
    sd.assign(fd);
    rearm();
    read();
  }

  void close() {
    error_code ec;
    sd.close(ec);  // drops every watch with the descriptor
    watches.clear();
    debounce.cancel();
    burst.reset();
    ++seq;
  }

  // (Re)adds a watch for each wanted directory; a missing one is awaited in its nearest
  // existing ancestor. inotify_add_watch on an inode already watched returns its wd.
  void rearm() {
    int fd = sd.native_handle();
    for (const std::string& dir : wanted)
      for (int attempt = 0; attempt < 16 && !arm(fd, dir); ++attempt) {
      }
  }

  // One wanted directory: watched, or awaited in its nearest existing ancestor. False when the
  // awaited child appeared between the failed watch and the ancestor's watch (its IN_CREATE
  // came before the ancestor was watched and will never arrive): the caller tries again.
  bool arm(int fd, const std::string& dir) {
    int wd = inotify_add_watch(fd, dir.c_str(), kWatchMask);
    if (wd >= 0) {
      watches[wd].path = dir;
      watches[wd].wanted = true;
      return true;
    }
    std::filesystem::path child(dir);
    for (std::filesystem::path p = child.parent_path();; child = p, p = p.parent_path()) {
      wd = inotify_add_watch(fd, p.c_str(), kWatchMask);
      if (wd >= 0) {
        watches[wd].path = p.string();
        watches[wd].awaited.insert(child.filename().string());
        struct stat st;
        return ::lstat(child.c_str(), &st) != 0;
      }
      if (p == p.parent_path()) return true;  // not even "/": nothing to wait in
    }
  }

  void read() {
    sd.async_read_some(asio::buffer(buf), [this](error_code ec, size_t n) {
      if (ec == asio::error::operation_aborted) return;
      if (ec) {
        log(LOG_ERR, "reading inotify events failed: " + ec.message());
        return;
      }
      process(buf.data(), n);
      read();
    });
  }

  // Reads what inotify queued without waiting (into its own buffer: the pending asynchronous
  // read owns `buf`); if a change burst is pending, ends it now and calls on_change.
  bool flush() {
    if (!sd.is_open()) return false;
    alignas(inotify_event) std::array<char, 16384> now_buf;
    for (;;) {
      ssize_t n = ::read(sd.native_handle(), now_buf.data(), now_buf.size());
      if (n <= 0) break;
      process(now_buf.data(), static_cast<size_t>(n));
    }
    if (!burst) return false;
    debounce.cancel();
    ++seq;
    burst.reset();
    std::function<void()> cb = on_change;  // on_change may re-watch (reset) and replace it
    if (cb) guarded("watch callback", cb);
    return true;
  }

  void process(const char* data, size_t n) {
      bool changed = false, again = false;
      for (size_t off = 0; off + sizeof(inotify_event) <= n;) {
        const auto* ev = reinterpret_cast<const inotify_event*>(data + off);
        off += sizeof(inotify_event) + ev->len;
        std::string_view name = ev->len ? std::string_view(ev->name) : std::string_view();
        if (ev->mask & IN_Q_OVERFLOW) {  // events were lost: assume everything changed
          changed = again = true;
          continue;
        }
        auto w = watches.find(ev->wd);
        if (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF)) {
          // The directory went away (or was replaced): watch whatever is at its path now.
          if (ev->mask & IN_MOVE_SELF) inotify_rm_watch(sd.native_handle(), ev->wd);
          if (w != watches.end()) watches.erase(w);
          changed = again = true;
          continue;
        }
        if (w == watches.end()) continue;
        if (w->second.wanted) changed = true;
        if (!name.empty() && w->second.awaited.count(std::string(name))) changed = again = true;
      }
      if (again) rearm();
      if (changed) kick();
  }

  // A change: the callback runs after `debounce_quiet` without changes, at most `debounce_max`
  // after the first change of the burst.
  void kick() {
    auto now = std::chrono::steady_clock::now();
    if (!burst) burst = now;
    debounce.expires_at(std::min(now + limits->debounce_quiet, *burst + limits->debounce_max));
    debounce.async_wait([this, s = ++seq](error_code ec) {
      if (ec || s != seq) return;
      burst.reset();
      if (on_change) guarded("watch callback", on_change);
    });
  }
};

// An absolute system-clock deadline: a timerfd on CLOCK_REALTIME with TFD_TIMER_CANCEL_ON_SET,
// so a clock change (NTP step, admin) wakes it to re-check instead of firing hours off.
struct Alarm {
  explicit Alarm(asio::io_context& ioc) : sd(ioc) {}
  asio::posix::stream_descriptor sd;
  std::function<void()> fn;
  std::chrono::system_clock::time_point when;
  bool armed = false, waiting = false;

  void set(std::chrono::system_clock::time_point t, std::function<void()> f) {
    if (!sd.is_open()) {
      int fd = timerfd_create(CLOCK_REALTIME, TFD_NONBLOCK | TFD_CLOEXEC);
      if (fd < 0) throw_errno(Code::kIoError, "timerfd_create");
      sd.assign(fd);
    }
    when = t;
    fn = std::move(f);
    armed = true;
    settime();
    wait();
  }

  void settime() {
    itimerspec its{};
    if (armed) {
      auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(when.time_since_epoch()).count();
      if (ns <= 0) ns = 1;  // 0 would disarm; any past time fires at once
      its.it_value.tv_sec = ns / 1000000000;
      its.it_value.tv_nsec = ns % 1000000000;
    }
    if (timerfd_settime(sd.native_handle(), TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET, &its, nullptr) != 0)
      throw_errno(Code::kIoError, "timerfd_settime");
  }

  void cancel() {
    armed = false;
    fn = nullptr;
    if (sd.is_open()) settime();
  }

  void wait() {
    if (waiting) return;
    waiting = true;
    sd.async_wait(asio::posix::stream_descriptor::wait_read, [this](error_code ec) {
      waiting = false;
      if (ec) return;
      uint64_t expirations = 0;
      ssize_t r = ::read(sd.native_handle(), &expirations, sizeof expirations);
      bool due = r == sizeof expirations || (r < 0 && errno == ECANCELED && std::chrono::system_clock::now() >= when);
      if (armed && due) {
        armed = false;
        auto f = std::move(fn);
        fn = nullptr;
        guarded("timer callback", f);  // may call set() again
      } else if (armed) {
        guarded("re-arming the timer", [&] { settime(); });  // clock was set, deadline still ahead
      }
      if (sd.is_open()) wait();
    });
  }
};

}  // namespace

struct EventLoop::Impl {
  explicit Impl(Limits l) : limits(l), watcher(ioc), alarm(ioc), signals(ioc) {}
  asio::io_context ioc;  // first: destroyed last, after everything that uses it
  // run() returns only at stop(): with nothing pending (no listener yet, timer cancelled) an
  // io_context would return at once and work posted later would never run.
  asio::executor_work_guard<asio::io_context::executor_type> keep_running{ioc.get_executor()};
  Limits limits;
  std::vector<std::shared_ptr<UnixServer>> unix_servers;
  std::vector<std::shared_ptr<MetricsServer>> metrics_servers;
  Watcher watcher;
  Alarm alarm;
  asio::signal_set signals;
  std::function<void()> on_hup;
  bool stopped = false;

  void add_unix(int fd, Handler h, const std::string& created, const struct stat* st) {
    auto srv = std::make_shared<UnixServer>(ioc, limits, std::move(h));
    error_code ec;
    srv->acceptor.assign(local(), fd, ec);
    if (ec) {
      ::close(fd);
      throw Error(Code::kIoError, "cannot use the listening socket: " + ec.message());
    }
    if (st != nullptr) {
      srv->created = created;
      srv->dev = st->st_dev;
      srv->ino = st->st_ino;
    }
    unix_servers.push_back(srv);
    accept_unix(srv);
  }

  void next_signal() {
    signals.async_wait([this](error_code ec, int sig) {
      if (ec) return;
      if (sig == SIGHUP) {
        log(LOG_INFO, "SIGHUP: reloading");
        if (on_hup) guarded("reload", on_hup);
        next_signal();
      } else {
        log(LOG_INFO, std::string("stopping on ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT"));
        shutdown();
      }
    });
  }

  void shutdown() {
    if (stopped) return;
    stopped = true;
    error_code ec;
    for (auto& s : unix_servers) {
      s->acceptor.close(ec);
      s->retry.cancel();
      for (Conn* c : std::set<Conn*>(s->conns)) c->close();
      struct stat st;
      // Unlink only the file made here: a newer daemon may have replaced it since.
      if (!s->created.empty() && lstat(s->created.c_str(), &st) == 0 && st.st_dev == s->dev && st.st_ino == s->ino)
        unlink(s->created.c_str());
    }
    for (auto& s : metrics_servers) {
      s->acceptor.close(ec);
      s->retry.cancel();
      for (HttpConn* c : std::set<HttpConn*>(s->conns)) c->close();
    }
    watcher.close();
    alarm.sd.close(ec);
    signals.cancel(ec);
    keep_running.reset();
    ioc.stop();
  }
};

EventLoop::EventLoop(Limits limits) : impl_(std::make_unique<Impl>(limits)) {}

EventLoop::~EventLoop() {
  impl_->shutdown();
}

namespace {
Handler with_peer(SimpleHandler h) {
  return [h = std::move(h)](std::string_view m, const json::object& p, const Peer&) { return h(m, p); };
}
}  // namespace

void EventLoop::listen_unix(const std::string& path, SimpleHandler handler) { listen_unix(path, with_peer(std::move(handler))); }
bool EventLoop::listen_systemd(SimpleHandler handler) { return listen_systemd(with_peer(std::move(handler))); }

void EventLoop::listen_unix(const std::string& path, Handler handler) {
  sockaddr_un addr = unix_address(path);
  make_parents(std::filesystem::path(path).parent_path());
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) throw Error(Code::kIoError, path + " exists and is not a socket; refusing to replace it");
    if (socket_in_use(addr, path)) throw Error(Code::kIoError, "another process is listening on " + path);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) throw_errno(Code::kIoError, "cannot remove the stale socket " + path);
  } else if (errno != ENOENT) {
    throw_errno(Code::kIoError, "cannot inspect " + path);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw_errno(Code::kIoError, "socket");
  // The umask makes the file 0600 the moment it appears: no window in which others connect.
  mode_t old = umask(0177);
  int r = bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr);
  int e = errno;
  umask(old);
  if (r != 0) {
    ::close(fd);
    errno = e;
    throw_errno(Code::kIoError, "cannot bind " + path);
  }
  if (lstat(path.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode) || (st.st_mode & 07777) != 0600 || st.st_uid != geteuid()) {
    ::close(fd);
    unlink(path.c_str());
    throw Error(Code::kIoError, path + " did not come out as a socket of mode 0600 owned by this user");
  }
  if (listen(fd, SOMAXCONN) != 0) {
    e = errno;
    ::close(fd);
    unlink(path.c_str());
    errno = e;
    throw_errno(Code::kIoError, "cannot listen on " + path);
  }
  impl_->add_unix(fd, std::move(handler), path, &st);
}

void EventLoop::listen_unix_fd(int fd, Handler handler) {
  if (sd_is_socket_unix(fd, SOCK_STREAM, 1, nullptr, 0) <= 0)
    throw Error(Code::kUsage, "descriptor " + std::to_string(fd) + " is not a listening AF_UNIX stream socket");
  fcntl(fd, F_SETFD, FD_CLOEXEC);  // not inherited by what the daemon runs
  impl_->add_unix(fd, std::move(handler), "", nullptr);
}

bool EventLoop::listen_systemd(Handler handler) {
  int n = sd_listen_fds(1);
  if (n < 0) throw Error(Code::kUsage, std::string("socket activation: ") + std::strerror(-n));
  if (n == 0) return false;
  if (n != 1)
    throw Error(Code::kUsage, "socket activation passed " + std::to_string(n) + " sockets; ptrust.socket must pass exactly one");
  listen_unix_fd(SD_LISTEN_FDS_START, std::move(handler));
  return true;
}

Endpoint EventLoop::listen_metrics(const Endpoint& at, MetricsFn metrics) {
  if (!at.address.is_loopback())
    throw Error(Code::kUsage, "metrics endpoint " + at.address.to_string() + " is not a loopback address");
  auto srv = std::make_shared<MetricsServer>(impl_->ioc, impl_->limits, std::move(metrics));
  tcp::endpoint ep(at.address, at.port);
  std::string where = (at.address.is_v6() ? "[" + at.address.to_string() + "]" : at.address.to_string()) + ":" +
                      std::to_string(at.port);
  try {
    srv->acceptor.open(ep.protocol());
    srv->acceptor.set_option(tcp::acceptor::reuse_address(true));
    if (at.address.is_v6()) srv->acceptor.set_option(asio::ip::v6_only(true));
    srv->acceptor.bind(ep);
    srv->acceptor.listen();
  } catch (const boost::system::system_error& e) {
    throw Error(Code::kIoError, "cannot listen on " + where + ": " + e.code().message());
  }
  impl_->metrics_servers.push_back(srv);
  accept_http(srv);
  auto bound = srv->acceptor.local_endpoint();
  return Endpoint{bound.address(), bound.port()};
}

bool EventLoop::flush_changes() { return impl_->watcher.flush(); }

void EventLoop::watch(std::vector<std::string> dirs, std::function<void()> on_change) {
  impl_->watcher.reset(std::move(dirs), std::move(on_change), impl_->limits);
}

void EventLoop::at(std::chrono::system_clock::time_point when, std::function<void()> fn) {
  impl_->alarm.set(when, std::move(fn));
}

void EventLoop::cancel_timer() { impl_->alarm.cancel(); }

void EventLoop::handle_signals(std::function<void()> on_hup) {
  impl_->on_hup = std::move(on_hup);
  impl_->signals.add(SIGHUP);
  impl_->signals.add(SIGTERM);
  impl_->signals.add(SIGINT);
  impl_->next_signal();
}

void EventLoop::run() {
  impl_->ioc.run();
}

void EventLoop::stop() {
  asio::post(impl_->ioc, [this] { impl_->shutdown(); });
}

asio::io_context& EventLoop::context() { return impl_->ioc; }

size_t EventLoop::connections() const {
  size_t n = 0;
  for (auto& s : impl_->unix_servers) n += s->conns.size();
  return n;
}

// ---------------------------------------------------------------------------------------
// Logging and sd_notify.

namespace {

// stderr is the journal when systemd says so (JOURNAL_STREAM names stderr's device:inode).
bool stderr_is_journal() {
  static const bool yes = [] {
    const char* e = std::getenv("JOURNAL_STREAM");
    unsigned long long dev = 0, ino = 0;
    struct stat st;
    return e != nullptr && std::sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
           st.st_dev == dev && st.st_ino == ino;
  }();
  return yes;
}

}  // namespace

void log(int priority, std::string_view message, const std::vector<std::pair<std::string, std::string>>& fields) {
  if (stderr_is_journal()) {
    std::vector<std::string> kv{"MESSAGE=" + std::string(message), "PRIORITY=" + std::to_string(priority),
                                "SYSLOG_IDENTIFIER=ptrust"};
    for (const auto& [k, v] : fields) kv.push_back(k + "=" + v);
    std::vector<iovec> iov;
    for (auto& s : kv) iov.push_back({s.data(), s.size()});
    if (sd_journal_sendv(iov.data(), static_cast<int>(iov.size())) == 0) return;
  }
  std::string line = "ptrust: " + printable(message, 4096);
  for (const auto& [k, v] : fields) line += " " + k + "=" + printable(v, 4096);
  line += "\n";
  [[maybe_unused]] ssize_t r = ::write(STDERR_FILENO, line.data(), line.size());
}

void notify_ready() { sd_notify(0, "READY=1"); }
void notify_stopping() { sd_notify(0, "STOPPING=1"); }

}  // namespace ptrust::serve
