// `serve --follow`: a host converging to its fleet's desired document in etcd. On the daemon's
// single-threaded io_context: read the document, apply it, report, then watch from the
// revision after the one read; on compaction, a cancelled or broken watch, or an unreachable
// etcd, read again (after a backoff when etcd failed: 0.2 s doubling to 5 s). The only timer is
// that backoff; everything else waits on sockets.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "helper/fleet_etcd.h"
#include "helper/fleet_http.h"
#include "helper/fleet_sign.h"

namespace ptrust::fleet {

// What `ptrust status` and the metrics show of the follower.
struct FollowState {
  std::string source;  // etcd://HOST:PORT/FLEET
  std::string fleet;
  std::string host;
  bool source_up = false;
  std::string source_error;  // why etcd is not reachable (when !source_up)
  std::int64_t applied_revision = 0, applied_at = 0, seen_revision = 0;
  std::uint64_t generation = 0;
  std::string health = "no-document";  // ok | rejected | no-document (HostStatus::health)
  std::string error;                   // the last refused document's CODE: message
  std::int64_t reconnects = 0;
  bool signature_required = false;
  std::int64_t signed_at = 0;  // with signature_required: signingTime of the document applied last
  std::string signer;          // and its signer's subject
};
boost::json::object to_json(const FollowState& s);
std::string text(const FollowState& s);     // one line for `ptrust status`
std::string metrics(const FollowState& s);  // ptrust_fleet_* in the Prometheus text format

// This host's UUID: `given` (--host-uuid), else INSTALLATION_UUID of <root>/etc/xensource-inventory
// (as `host-cert` reads it). HOST_UUID_INVALID when neither gives a UUID.
std::string host_uuid(const std::string& given, const std::string& root);

class Follower {
 public:
  struct Outcome {
    bool ok = false;
    std::string error;  // CODE: message
    std::uint64_t generation = 0;
  };
  // Applies a document (validated and written as one store change); never throws.
  using Apply = std::function<Outcome(const std::string& doc, std::int64_t revision)>;

  Follower(boost::asio::io_context& io, Endpoint ep, std::string fleet, std::string host_uuid, Apply apply,
           std::function<void()> changed);
  ~Follower();
  // Before start(): only documents with a valid detached signature (`verify`, which throws
  // FLEET_SIGNATURE_INVALID) signed no earlier than the last applied one are applied; the
  // signing time is kept in `root`'s state directory across restarts.
  using Verify = std::function<Signed(const std::string& doc, const std::string& sig)>;
  void require_signature(Verify verify, std::string root);
  // Before start(): run on each document before it is applied; an Error refuses it (reported
  // rejected with its code).
  void check_before_apply(std::function<void(const std::string& doc)> check) { check_ = std::move(check); }
  void start();
  const FollowState& state() const noexcept { return state_; }

 private:
  void read();
  void start_read(std::uint64_t epoch);
  void watch(std::int64_t from);
  void open_stream(std::uint64_t epoch, std::int64_t from);
  void on_message(std::string_view message);
  void lost(const std::string& why);
  void reached();
  void consider(const Kv& kv, const std::string* sig = nullptr);
  void missing(std::int64_t revision);
  void report();
  void send_report(std::uint64_t epoch, const HostStatus& s);

  boost::asio::io_context& io_;
  Endpoint ep_;
  std::string key_, sig_key_, host_key_;
  Verify verify_;
  std::function<void(const std::string&)> check_;
  std::string root_;
  Apply apply_;
  std::function<void()> changed_;
  FollowState state_;
  std::int64_t rejected_revision_ = 0;
  std::uint64_t epoch_ = 0;  // bumped when a read or stream is abandoned: its callbacks are ignored
  std::shared_ptr<Stream> stream_;
  boost::asio::steady_timer backoff_timer_;
  std::chrono::milliseconds backoff_{200};
  bool reporting_ = false, report_again_ = false;
};

}  // namespace ptrust::fleet
