// The I/O layer of `ptrust serve`: one single-threaded event loop (boost::asio) with
//  - a JSON-lines server on a Unix socket (a path, or a socket passed by systemd),
//  - a loopback-only HTTP endpoint for Prometheus metrics,
//  - debounced inotify watches, an absolute-time timer, SIGHUP/SIGTERM/SIGINT handling,
// plus journald/stderr logging and sd_notify. It knows nothing about trust stores: the
// daemon's logic plugs in through callbacks. Everything is event driven: idle, it sleeps in
// epoll_wait and uses no CPU.
#pragma once

#include <sys/types.h>
#include <syslog.h>  // LOG_ERR, LOG_WARNING, LOG_INFO, ... for log()

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ptrust::serve {

// Limits. Every peer is hostile: each limit bounds what one client can make the daemon hold.
struct Limits {
  size_t max_line = 1 << 20;           // one request line (bytes, without '\n'); longer: error + close
  size_t max_connections = 128;        // per listener; more are accepted, told LIMIT_EXCEEDED, closed
  size_t max_output = 4 << 20;         // replies queued for one connection; more: close it
  std::chrono::milliseconds idle{30000};  // no complete request (or no write progress) for this long: close
  size_t max_http_request = 8192;      // the metrics endpoint's request line + headers; no body allowed
  std::chrono::milliseconds debounce_quiet{200};  // a change burst ends after this much quiet...
  std::chrono::milliseconds debounce_max{1000};   // ...or this long after its first event
};

// The other end of a Unix socket connection (SO_PEERCRED, read at accept).
struct Peer {
  uid_t uid = static_cast<uid_t>(-1);
  gid_t gid = static_cast<gid_t>(-1);
  pid_t pid = 0;
};

// A request handler: returns the "result"; throwing ptrust::Error gives an error reply with
// its code name, any other exception an error with code INTERNAL_ERROR. Runs on the loop:
// keep it short (it holds up every other client while it runs).
using Handler = std::function<boost::json::value(std::string_view method, const boost::json::object& params,
                                                 const Peer& peer)>;
// One request line (without its '\n') to its reply line (with '\n'): parses the JSON request
// {"id": ..., "method": "...", "params": {...}}, calls `handler`, and writes the result or an
// error {"code", "message"} (USAGE for a malformed request). The only parser of what a client
// sends; fuzz/serve_fuzz.cc feeds it hostile lines.
std::string reply_line(std::string_view line, const Handler& handler, const Peer& peer);
using SimpleHandler = std::function<boost::json::value(std::string_view method, const boost::json::object& params)>;
// The metrics page (Prometheus text format 0.0.4). Throwing gives a 500.
using MetricsFn = std::function<std::string()>;

// HOST:PORT as users write it (`--metrics`, etcd endpoints): `[IPV6]:PORT` or `HOST:PORT`
// where HOST has no colon (an unbracketed IPv6 address is refused: in `::1:2379` the port
// cannot be told from the address), PORT a decimal 1..65535. On success `host` is HOST
// without brackets (not checked further: callers decide what a host may be) and `why` empty;
// else `why` says what is wrong.
struct HostPort {
  std::string_view host;
  uint16_t port = 0;
};
HostPort split_host_port(std::string_view spec, std::string& why);

struct Endpoint {
  boost::asio::ip::address address;
  uint16_t port = 0;
};
// Parses `--metrics HOST:PORT` and refuses (Error USAGE) anything not on loopback. HOST is an
// IPv4 address in 127.0.0.0/8 (dotted quad), `[::1]`, or `localhost`, which means 127.0.0.1
// without asking any resolver (a name is never looked up: /etc/hosts or DNS could point it
// elsewhere). PORT is 1..65535. Refused: 0.0.0.0, [::], any other address or name.
Endpoint parse_loopback_endpoint(std::string_view spec);

// A log line: to journald (sd_journal_send, with `fields` as structured KEY=value fields) when
// stderr is connected to the journal (JOURNAL_STREAM), else one line to stderr
// ("ptrust: message KEY=value ..." with control characters escaped). Keys: [A-Z0-9_]+.
void log(int priority, std::string_view message,
         const std::vector<std::pair<std::string, std::string>>& fields = {});

// sd_notify: READY=1 (Type=notify), STOPPING=1; no-ops outside systemd.
void notify_ready();
void notify_stopping();

class EventLoop {
 public:
  explicit EventLoop(Limits limits = {});
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  // The JSON-lines server on `path`: creates the parent directory (0755) if missing, refuses
  // a path that exists and is not a socket, or a socket another process still listens on,
  // replaces a stale socket, binds it as 0600 (umask) and checks that. The file is unlinked
  // at stop() if it is still the one created here. Errors: IO_ERROR.
  void listen_unix(const std::string& path, Handler handler);
  void listen_unix(const std::string& path, SimpleHandler handler);
  // The same on an already listening AF_UNIX SOCK_STREAM socket (taken over; never unlinked).
  void listen_unix_fd(int fd, Handler handler);
  // Socket activation: false when systemd passed no socket; Error USAGE when it passed more
  // than one, or one that is not a listening AF_UNIX stream socket. Unsets LISTEN_* env.
  bool listen_systemd(Handler handler);
  bool listen_systemd(SimpleHandler handler);

  // The metrics endpoint (GET /metrics). Refuses a non-loopback address (USAGE). Returns the
  // bound endpoint (port 0 binds a free port: tests).
  Endpoint listen_metrics(const Endpoint& at, MetricsFn metrics);

  // Watches these directories (replacing the previous set) and calls `on_change` once per
  // burst of changes in them (see Limits::debounce_*), also on inotify queue overflow. A
  // directory that is deleted, replaced or moved away is watched again by path; one that
  // does not exist yet is waited for (its nearest existing ancestor is watched for it).
  // To follow a file (the config), watch its parent directory.
  void watch(std::vector<std::string> dirs, std::function<void()> on_change);
  // Ends the debounce now: reads the events inotify has queued and, when a change burst is
  // pending, calls on_change before returning (true). For a request that must see every
  // change the kernel reported before it was read. Call from a handler on the loop.
  bool flush_changes();

  // Calls `fn` once at `when` (system clock: re-armed if the clock is set). Replaces any
  // earlier timer; a time in the past fires at once.
  void at(std::chrono::system_clock::time_point when, std::function<void()> fn);
  void cancel_timer();

  // SIGHUP calls `on_hup`; SIGTERM and SIGINT stop the loop. Blocks nothing else.
  void handle_signals(std::function<void()> on_hup);

  // Runs until stop() (or SIGTERM/SIGINT with handle_signals).
  void run();
  // Closes listeners and connections, unlinks the socket file created here, makes run()
  // return. Safe from any thread.
  void stop();

  boost::asio::io_context& context();
  size_t connections() const;  // open JSON-lines connections (tests)

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ptrust::serve
