#include "helper/fleet_follow.h"

#include <algorithm>
#include <ctime>

#include "core/db.h"
#include "core/error.h"
#include "core/fs.h"
#include "helper/serve_io.h"

namespace ptrust::fleet {

namespace json = boost::json;
using serve::log;

namespace {

constexpr std::chrono::milliseconds kFirstBackoff{200}, kMaxBackoff{5000};
constexpr std::chrono::seconds kRequestTimeout{10};

std::string one_line(const Error& e) { return std::string(code_name(e.code())) + ": " + e.what(); }

}  // namespace

json::object to_json(const FollowState& s) {
  return json::object{{"source", s.source},
                      {"fleet", s.fleet},
                      {"host", s.host},
                      {"source_up", s.source_up},
                      {"source_error", s.source_up ? json::value(nullptr) : json::value(s.source_error)},
                      {"applied_revision", s.applied_revision},
                      {"applied_at", s.applied_at},
                      {"seen_revision", s.seen_revision},
                      {"generation", s.generation},
                      {"health", s.health},
                      {"error", s.error.empty() ? json::value(nullptr) : json::value(s.error)},
                      {"reconnects", s.reconnects},
                      {"signature_required", s.signature_required},
                      {"signed_at", s.signed_at},
                      {"signer", s.signer.empty() ? json::value(nullptr) : json::value(s.signer)}};
}

std::string text(const FollowState& s) {
  std::string t = "fleet " + s.fleet + " (" + s.source + "): ";
  t += s.applied_revision ? "applied revision " + std::to_string(s.applied_revision) : std::string("nothing applied yet");
  t += ", " + s.health;
  if (!s.error.empty()) t += " (" + s.error + ")";
  t += s.source_up ? ", etcd reachable" : ", etcd NOT reachable, serving the last good state (" + s.source_error + ")";
  return t + "\n";
}

std::string metrics(const FollowState& s) {
  std::string l = "{fleet=\"" + s.fleet + "\"}";  // fleet names are [a-z0-9._-]: nothing to escape
  return "# HELP ptrust_fleet_source_up Whether etcd, the source of the fleet's desired trust, is reachable.\n"
         "# TYPE ptrust_fleet_source_up gauge\n"
         "ptrust_fleet_source_up" + l + " " + (s.source_up ? "1" : "0") + "\n" +
         "# HELP ptrust_fleet_applied_revision The etcd revision of the desired document this host applied (0: none).\n"
         "# TYPE ptrust_fleet_applied_revision gauge\n"
         "ptrust_fleet_applied_revision" + l + " " + std::to_string(s.applied_revision) + "\n" +
         "# HELP ptrust_fleet_seen_revision The latest etcd revision of the desired document this host has read.\n"
         "# TYPE ptrust_fleet_seen_revision gauge\n"
         "ptrust_fleet_seen_revision" + l + " " + std::to_string(s.seen_revision) + "\n" +
         "# HELP ptrust_fleet_document_rejected Whether the latest desired document was refused (last good state kept).\n"
         "# TYPE ptrust_fleet_document_rejected gauge\n"
         "ptrust_fleet_document_rejected" + l + " " + (s.health == "rejected" ? "1" : "0") + "\n";
}

std::string host_uuid(const std::string& given, const std::string& root) {
  std::string v = given;
  if (v.empty()) {
    fs::Fd r = fs::open_root(root);
    fs::Fd etc = fs::open_dir(r.get(), "etc", false);
    auto inv = etc ? fs::read_at(etc.get(), "xensource-inventory", 1u << 16) : std::nullopt;
    constexpr std::string_view kKey = "INSTALLATION_UUID=";
    for (size_t at = 0; inv && at < inv->size();) {
      size_t nl = inv->find('\n', at);
      std::string line = inv->substr(at, nl == std::string::npos ? std::string::npos : nl - at);
      at = nl == std::string::npos ? inv->size() : nl + 1;
      if (line.rfind(kKey, 0) != 0) continue;
      v = line.substr(kKey.size());
      std::erase(v, '\'');
      std::erase(v, '"');
      break;
    }
  }
  if (!valid_uuid(v))
    throw Error(Code::kHostUuidInvalid, v.empty() ? "this host's UUID is not known: give --host-uuid (or INSTALLATION_UUID "
                                                    "in etc/xensource-inventory)"
                                                  : "'" + printable(v) + "' is not a UUID");
  return v;
}

Follower::Follower(boost::asio::io_context& io, Endpoint ep, std::string fleet, std::string host, Apply apply,
                   std::function<void()> changed)
    : io_(io),
      ep_(std::move(ep)),
      key_(desired_key(fleet)),
      sig_key_(signature_key(fleet)),
      host_key_(host_key(fleet, host)),
      apply_(std::move(apply)),
      changed_(std::move(changed)),
      backoff_timer_(io) {
  state_.fleet = fleet;
  state_.host = host;
  state_.source = std::string(ep_.tls ? "etcds://" : "etcd://") +
                  (ep_.host.find(':') != std::string::npos ? "[" + ep_.host + "]" : ep_.host) + ":" +
                  std::to_string(ep_.port) + "/" + fleet;
  state_.source_error = "not contacted yet";
}

Follower::~Follower() {
  ++epoch_;
  if (stream_) stream_->close();
}

void Follower::require_signature(Verify verify, std::string root) {
  verify_ = std::move(verify);
  root_ = std::move(root);
  state_.signature_required = true;
  state_.signed_at = last_signed_at(root_, state_.fleet);
}

void Follower::start() { read(); }

void Follower::read() {
  std::uint64_t e = ++epoch_;
  if (stream_) stream_->close();
  stream_.reset();
  // Setting up a request can fail (TLS: the purpose's trust unreadable now): that is etcd
  // being unreachable too, never an exception out of the event loop.
  try {
    start_read(e);
  } catch (const Error& x) {
    lost(one_line(x));
  } catch (const std::exception& x) {
    lost(std::string("INTERNAL_ERROR: ") + x.what());
  }
}

void Follower::start_read(std::uint64_t e) {
  // With signatures: the document and desired.sig read in one range (one revision of the
  // store), so a document is never checked against another document's signature.
  std::string req = verify_ ? range_request(key_, sig_key_ + '\0') : range_request(key_);
  async_post(io_, ep_, "/v3/kv/range", std::move(req), kRequestTimeout, [this, e](std::string body, std::string err) {
    if (e != epoch_) return;
    if (!err.empty()) return lost(err);
    RangeResult r;
    const Kv *doc = nullptr, *sig = nullptr;
    try {
      r = verify_ ? parse_range(body, key_, true, 16) : parse_range(body, key_, false, 1);
      for (const Kv& kv : r.kvs) {
        if (kv.key == key_) doc = &kv;
        else if (kv.key == sig_key_) sig = &kv;
      }
    } catch (const Error& x) {
      return lost(one_line(x));
    }
    reached();
    if (!doc) missing(r.revision);
    else consider(*doc, sig ? &sig->value : nullptr);
    report();
    watch(r.revision + 1);
  });
}

void Follower::watch(std::int64_t from) {
  std::uint64_t e = epoch_;
  try {
    open_stream(e, from);
  } catch (const Error& x) {
    lost(one_line(x));
  } catch (const std::exception& x) {
    lost(std::string("INTERNAL_ERROR: ") + x.what());
  }
}

void Follower::open_stream(std::uint64_t e, std::int64_t from) {
  stream_ = Stream::open(
      io_, ep_, "/v3/watch", watch_request(key_, from),
      [this, e](std::string_view m) {
        if (e == epoch_) on_message(m);
      },
      [this, e](std::string err) {
        if (e == epoch_) lost(err);
      });
}

void Follower::on_message(std::string_view message) {
  WatchMessage w;
  try {
    w = parse_watch(message, key_);
  } catch (const Error& x) {
    return lost(one_line(x));
  }
  if (w.compact_revision || w.canceled) {
    // The revision to start from was compacted away (or etcd cancelled the watch): the
    // current document is read again and watched from there.
    log(LOG_NOTICE, "fleet " + state_.fleet + ": watch " + (w.compact_revision ? "compacted at revision " + std::to_string(w.compact_revision) : "cancelled (" + w.cancel_reason + ")") + "; reading the document again",
        {{"PTRUST_FLEET", state_.fleet}});
    return read();
  }
  if (w.events.empty()) return;
  // With signatures, the document and its signature are read again together.
  if (verify_) return read();
  // Only the newest event matters: the document is replaced whole.
  const WatchEvent& last = w.events.back();
  if (last.deleted) missing(last.kv.mod_revision);
  else consider(last.kv);
  report();
}

void Follower::lost(const std::string& why) {
  std::uint64_t e = ++epoch_;
  if (stream_) stream_->close();
  stream_.reset();
  bool was_up = state_.source_up;
  state_.source_up = false;
  state_.source_error = why;
  ++state_.reconnects;
  if (was_up || state_.reconnects == 1)
    log(LOG_WARNING, "fleet " + state_.fleet + ": etcd lost (" + why + "); serving the last good state (revision " +
                         std::to_string(state_.applied_revision) + "), retrying",
        {{"PTRUST_FLEET", state_.fleet}, {"PTRUST_FLEET_SOURCE", "down"}});
  if (was_up) changed_();
  backoff_timer_.expires_after(backoff_);
  backoff_ = std::min(backoff_ * 2, kMaxBackoff);
  backoff_timer_.async_wait([this, e](boost::system::error_code ec) {
    if (!ec && e == epoch_) read();
  });
}

void Follower::reached() {
  backoff_ = kFirstBackoff;
  if (state_.source_up) return;
  state_.source_up = true;
  state_.source_error.clear();
  log(LOG_INFO, "fleet " + state_.fleet + ": following " + state_.source, {{"PTRUST_FLEET", state_.fleet}, {"PTRUST_FLEET_SOURCE", "up"}});
  changed_();
}

void Follower::consider(const Kv& kv, const std::string* sig) {
  state_.seen_revision = std::max(state_.seen_revision, kv.mod_revision);
  if (kv.mod_revision == state_.applied_revision && state_.health == "ok") return;
  if (kv.mod_revision == rejected_revision_) return;
  Outcome o;
  Signed signed_by;
  try {
    if (verify_) {
      // Checked before anything of the document is parsed.
      signed_by = verify_(kv.value, sig ? *sig : std::string());
      if (signed_by.signed_at < state_.signed_at)
        throw Error(Code::kFleetSignatureStale,
                    "the desired document was signed at " + std::to_string(signed_by.signed_at) +
                        ", before the signed document this host applied last (" + std::to_string(state_.signed_at) +
                        "): an older document published again is not applied");
    }
    if (check_) check_(kv.value);
    o = apply_(kv.value, kv.mod_revision);
  } catch (const Error& x) {
    o.error = one_line(x);
  } catch (const std::exception& x) {
    o.error = std::string("INTERNAL_ERROR: ") + x.what();
  }
  if (o.ok && verify_) {
    state_.signed_at = signed_by.signed_at;
    state_.signer = signed_by.signer;
    try {
      record_signed_at(root_, state_.fleet, signed_by.signed_at);
    } catch (const Error& x) {
      log(LOG_WARNING, "fleet " + state_.fleet + ": the signing time was not recorded: " + one_line(x), {{"PTRUST_FLEET", state_.fleet}});
    }
  }
  if (o.ok) {
    state_.applied_revision = kv.mod_revision;
    state_.applied_at = std::time(nullptr);
    state_.generation = o.generation;
    state_.health = "ok";
    state_.error.clear();
    rejected_revision_ = 0;
  } else {
    state_.health = "rejected";
    state_.error = o.error;
    rejected_revision_ = kv.mod_revision;
    log(LOG_ERR, "fleet " + state_.fleet + ": desired revision " + std::to_string(kv.mod_revision) + " not applied: " +
                     o.error + "; keeping revision " + std::to_string(state_.applied_revision),
        {{"PTRUST_FLEET", state_.fleet}, {"PTRUST_FLEET_REVISION", std::to_string(kv.mod_revision)}});
  }
  changed_();
}

void Follower::missing(std::int64_t revision) {
  state_.seen_revision = std::max(state_.seen_revision, revision);
  if (state_.health == "no-document") return;
  // Nothing is removed: an empty or deleted key is far more likely a mistake than a wish to
  // trust nothing (publish a document without objects for that).
  state_.health = "no-document";
  state_.error = "FLEET_DOCUMENT_MISSING: fleet " + state_.fleet + " has no desired document";
  log(LOG_WARNING, "fleet " + state_.fleet + ": no desired document; keeping revision " + std::to_string(state_.applied_revision),
      {{"PTRUST_FLEET", state_.fleet}});
  changed_();
}

void Follower::report() {
  if (reporting_) {
    report_again_ = true;
    return;
  }
  reporting_ = true;
  HostStatus s;
  s.host = state_.host;
  s.applied_revision = state_.applied_revision;
  s.applied_at = state_.applied_at;
  s.seen_revision = state_.seen_revision;
  s.generation = state_.generation;
  s.health = state_.health;
  s.error = state_.error;
  s.updated_at = std::time(nullptr);
  std::uint64_t e = epoch_;
  try {
    send_report(e, s);
  } catch (const std::exception& x) {
    reporting_ = false;
    const auto* pe = dynamic_cast<const Error*>(&x);
    log(LOG_WARNING, "fleet " + state_.fleet + ": report not written: " + (pe ? one_line(*pe) : std::string(x.what())),
        {{"PTRUST_FLEET", state_.fleet}});
  }
}

void Follower::send_report(std::uint64_t e, const HostStatus& s) {
  async_post(io_, ep_, "/v3/kv/put", put_request(host_key_, host_status_json(s)), kRequestTimeout,
             [this, e](std::string body, std::string err) {
               reporting_ = false;
               if (err.empty()) {
                 try {
                   parse_put(body);
                 } catch (const Error& x) {
                   err = one_line(x);
                 }
               }
               if (!err.empty()) {
                 log(LOG_WARNING, "fleet " + state_.fleet + ": report not written: " + err, {{"PTRUST_FLEET", state_.fleet}});
                 if (e == epoch_ && state_.source_up) lost(err);  // read, apply and report again once etcd is back
                 return;
               }
               if (report_again_) {
                 report_again_ = false;
                 report();
               }
             });
}

}  // namespace ptrust::fleet
