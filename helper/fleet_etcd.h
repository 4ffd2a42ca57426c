// Fleet: the desired trust of a group of hosts in etcd (v3 API through its JSON gateway),
// and what each host reports back. This file is the codec only (no I/O): URLs and key names,
// the JSON of the requests, and strict parsers of etcd's answers. Every answer is hostile
// input: each field is checked for type and range, sizes are bounded, and anything else is
// FLEET_SOURCE_INVALID (an error reply from etcd: FLEET_SOURCE_UNAVAILABLE).
//
// Key layout under /ptrust/fleets/<fleet>/:
//   desired              the export document (core/exchange.h) every host converges to
//   desired.sig          its detached CMS signature (helper/fleet_sign.h), written in the same
//                        transaction as desired (absent: the document is unsigned)
//   hosts/<host-uuid>    one host's report (HostStatus as JSON), written by `serve --follow`
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>

namespace ptrust::fleet {

// Bounds on what is read from etcd or the user.
inline constexpr size_t kMaxDocument = 32u << 20;   // a desired document (10,000 certificates fit)
inline constexpr size_t kMaxResponse = 48u << 20;   // one HTTP body / watch message (base64 of a document)
inline constexpr size_t kMaxHostStatus = 16u << 10; // one host's report
inline constexpr size_t kMaxHosts = 100000;         // host reports listed by `fleet status`

// Where etcd is: a host given as an IP literal (or `localhost` = 127.0.0.1: never resolved),
// and a port. Plain http only to loopback; https with the trust of a ptrust purpose.
struct Endpoint {
  std::string host;  // IP literal
  uint16_t port = 0;
  bool tls = false;
  // With tls: etcd's certificate is verified by libptrust under `purpose` of the ptrust root
  // `root` with configuration `config` (the chain, and the IP address for ca/general modes),
  // and `client_cert` / `client_key` (PEM files; optional) authenticate this host.
  std::string purpose, root, config, client_cert, client_key;
};
// `http://HOST:PORT` / `https://HOST:PORT` (no path). USAGE otherwise.
Endpoint parse_etcd_url(std::string_view url);
// `etcd://HOST:PORT/FLEET` (plain, loopback) or `etcds://HOST:PORT/FLEET` (TLS). USAGE otherwise.
Endpoint parse_follow_spec(std::string_view spec, std::string& fleet);

// [a-z0-9][a-z0-9._-]{0,62}
bool valid_fleet_name(std::string_view name) noexcept;
std::string fleet_prefix(std::string_view fleet);  // /ptrust/fleets/<fleet>/
std::string desired_key(std::string_view fleet);
std::string signature_key(std::string_view fleet);  // desired.sig
std::string hosts_prefix(std::string_view fleet);
std::string host_key(std::string_view fleet, std::string_view host_uuid);
// The range_end that makes a range over every key starting with `prefix`.
std::string prefix_end(std::string_view prefix);

std::string base64_encode(std::string_view in);
// Strict (standard alphabet, padded, no whitespace); nullopt when malformed or longer than `max`.
std::optional<std::string> base64_decode(std::string_view in, size_t max);

struct Kv {
  std::string key, value;
  std::int64_t create_revision = 0, mod_revision = 0, version = 0;
};

struct RangeResult {
  std::int64_t revision = 0;  // the store's revision when it answered
  std::vector<Kv> kvs;
};
struct TxnResult {
  std::int64_t revision = 0;
  bool succeeded = false;
};
struct WatchEvent {
  bool deleted = false;
  Kv kv;
};
struct WatchMessage {
  std::int64_t revision = 0;
  bool created = false, canceled = false;
  std::int64_t compact_revision = 0;  // set when the start revision was compacted away
  std::string cancel_reason;
  std::vector<WatchEvent> events;
};

// Request bodies (JSON) for /v3/kv/range, /v3/kv/txn, /v3/kv/put, /v3/watch.
std::string range_request(std::string_view key, std::string_view range_end = {});
// Put `value` at `key` if the key's mod_revision is still `mod_revision` (0: the key must not exist).
// With `sig_key`: in the same transaction, `*sig` is put at sig_key, or (sig null) sig_key is
// deleted, so that a document and its signature are only ever written together.
std::string cas_put_request(std::string_view key, std::string_view value, std::int64_t mod_revision,
                            std::string_view sig_key = {}, const std::string* sig = nullptr);
std::string put_request(std::string_view key, std::string_view value);
std::string watch_request(std::string_view key, std::int64_t start_revision);

// Answers. `key`/`prefix`: every kv returned must be that key / start with that prefix.
RangeResult parse_range(std::string_view body, std::string_view key, bool prefix, size_t max_kvs);
TxnResult parse_txn(std::string_view body);
std::int64_t parse_put(std::string_view body);  // the revision it created
// One message of the watch stream (a JSON object; the gateway sends one per line).
WatchMessage parse_watch(std::string_view message, std::string_view key);

// One host's report under hosts/<uuid>.
struct HostStatus {
  std::string host;                   // the host's UUID
  std::int64_t applied_revision = 0;  // the desired document's mod_revision last applied (0: none yet)
  std::int64_t applied_at = 0;        // when (Unix time)
  std::int64_t seen_revision = 0;     // the latest desired revision it has read
  std::uint64_t generation = 0;       // the store generation after applying
  std::string health;                 // ok | rejected | no-document
  std::string error;                  // CODE: message of the last refusal ("" when healthy)
  std::int64_t updated_at = 0;
};
boost::json::object host_status_object(const HostStatus& s);
std::string host_status_json(const HostStatus& s);
// FLEET_SOURCE_INVALID when malformed.
HostStatus parse_host_status(std::string_view value);

// A message from etcd made safe for one log or status line: at most 300 bytes, control
// characters and non-ASCII bytes escaped.
std::string printable(std::string_view s);

}  // namespace ptrust::fleet
