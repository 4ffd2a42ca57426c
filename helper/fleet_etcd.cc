#include "helper/fleet_etcd.h"

#include <boost/asio/ip/address.hpp>
#include <boost/json.hpp>
#include <charconv>

#include "core/db.h"
#include "core/error.h"
#include "helper/serve_io.h"

namespace ptrust::fleet {

namespace json = boost::json;

namespace {

[[noreturn]] void invalid(const std::string& what) { throw Error(Code::kFleetSourceInvalid, "etcd's answer: " + what); }

// host:port after the scheme; the host an IP literal ([v6]) or localhost.
Endpoint parse_authority(std::string_view a, bool tls, std::string_view whole) {
  auto bad = [&](const std::string& why) -> Endpoint {
    throw Error(Code::kUsage, "etcd endpoint '" + printable(whole) + "': " + why);
  };
  std::string why;
  serve::HostPort hp = serve::split_host_port(a, why);
  if (!why.empty()) return bad(why);
  std::string_view host = hp.host;
  Endpoint ep;
  ep.tls = tls;
  ep.port = hp.port;
  if (host == "localhost") host = "127.0.0.1";  // never resolved: a name could be pointed elsewhere
  boost::system::error_code err;
  auto addr = boost::asio::ip::make_address(std::string(host), err);
  if (err || addr.is_unspecified()) return bad("the host must be an IP address (names are not resolved)");
  if (!tls && !addr.is_loopback())
    return bad("plain http is allowed to loopback only; use https:// (etcds://) for another host");
  ep.host = addr.to_string();
  return ep;
}

std::int64_t revision_of(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  if (!v) return 0;  // proto3 JSON leaves out zero values
  std::int64_t r = 0;
  if (v->is_string()) {
    std::string_view s = v->as_string();
    if (s.empty() || s.size() > 18) invalid(std::string(k) + " is not a revision");
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), r);
    if (ec != std::errc() || end != s.data() + s.size()) invalid(std::string(k) + " is not a revision");
  } else if (v->is_int64()) {
    r = v->as_int64();
  } else if (v->is_uint64() && v->as_uint64() < (1ull << 62)) {
    r = static_cast<std::int64_t>(v->as_uint64());
  } else {
    invalid(std::string(k) + " is not a revision");
  }
  if (r < 0) invalid(std::string(k) + " is negative");
  return r;
}

bool bool_of(const json::object& o, std::string_view k) {
  const json::value* v = o.if_contains(k);
  if (!v) return false;
  if (!v->is_bool()) invalid(std::string(k) + " is not a boolean");
  return v->as_bool();
}

const json::object& object_of(const json::value& v, std::string_view what) {
  if (!v.is_object()) invalid(std::string(what) + " is not an object");
  return v.as_object();
}

// The parsed body; an error reply ({"error", "code", "message"}) is FLEET_SOURCE_UNAVAILABLE.
json::object parse_body(std::string_view body) {
  if (body.size() > kMaxResponse) invalid("larger than " + std::to_string(kMaxResponse >> 20) + " MiB");
  boost::system::error_code ec;
  json::parse_options opt;
  opt.max_depth = 16;
  json::value v = json::parse(body, ec, {}, opt);
  if (ec) invalid("not JSON (" + ec.message() + ")");
  json::object o = object_of(v, "the body");
  if (o.contains("error") && !o.contains("result") && !o.contains("header")) {
    const json::value* m = o.if_contains("message");
    if (!m || !m->is_string()) m = o.if_contains("error");
    std::string msg = m && m->is_string() ? std::string(m->as_string()) : std::string("an error without a message");
    throw Error(Code::kFleetSourceUnavailable, "etcd refused: " + printable(msg));
  }
  return o;
}

std::int64_t header_revision(const json::object& o) {
  const json::value* h = o.if_contains("header");
  if (!h) invalid("no header");
  return revision_of(object_of(*h, "header"), "revision");
}

std::string bytes_of(const json::object& o, std::string_view k, size_t max) {
  const json::value* v = o.if_contains(k);
  if (!v) return {};
  if (!v->is_string()) invalid(std::string(k) + " is not a string");
  auto d = base64_decode(v->as_string(), max);
  if (!d) invalid(std::string(k) + " is not base64 of at most " + std::to_string(max) + " bytes");
  return *d;
}

Kv kv_of(const json::value& v, std::string_view key, bool prefix) {
  const json::object& o = object_of(v, "a kv");
  Kv kv;
  kv.key = bytes_of(o, "key", 4096);
  if (prefix ? kv.key.rfind(key, 0) != 0 : kv.key != key) invalid("a key that was not asked for");
  kv.value = bytes_of(o, "value", kMaxDocument);
  kv.create_revision = revision_of(o, "create_revision");
  kv.mod_revision = revision_of(o, "mod_revision");
  kv.version = revision_of(o, "version");
  if (kv.mod_revision == 0 || kv.create_revision == 0 || kv.create_revision > kv.mod_revision)
    invalid("a kv with impossible revisions");
  return kv;
}

json::string b64(std::string_view s) { return json::string(base64_encode(s)); }

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

}  // namespace

Endpoint parse_etcd_url(std::string_view url) {
  for (auto [scheme, tls] : {std::pair<std::string_view, bool>{"http://", false}, {"https://", true}}) {
    if (url.rfind(scheme, 0) != 0) continue;
    std::string_view rest = url.substr(scheme.size());
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.find('/') != std::string_view::npos) break;
    return parse_authority(rest, tls, url);
  }
  throw Error(Code::kUsage, "--etcd '" + printable(url) + "': expected http://HOST:PORT or https://HOST:PORT");
}

Endpoint parse_follow_spec(std::string_view spec, std::string& fleet) {
  for (auto [scheme, tls] : {std::pair<std::string_view, bool>{"etcd://", false}, {"etcds://", true}}) {
    if (spec.rfind(scheme, 0) != 0) continue;
    std::string_view rest = spec.substr(scheme.size());
    auto slash = rest.find('/');
    if (slash == std::string_view::npos) break;
    fleet = std::string(rest.substr(slash + 1));
    if (!valid_fleet_name(fleet)) throw Error(Code::kUsage, "--follow: bad fleet name '" + printable(fleet) + "'");
    return parse_authority(rest.substr(0, slash), tls, spec);
  }
  throw Error(Code::kUsage, "--follow '" + printable(spec) + "': expected etcd://HOST:PORT/FLEET or etcds://HOST:PORT/FLEET");
}

bool valid_fleet_name(std::string_view n) noexcept {
  if (n.empty() || n.size() > 63) return false;
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!alnum(n[0])) return false;
  for (char c : n)
    if (!alnum(c) && c != '.' && c != '_' && c != '-') return false;
  return true;
}

std::string fleet_prefix(std::string_view fleet) { return "/ptrust/fleets/" + std::string(fleet) + "/"; }
std::string desired_key(std::string_view fleet) { return fleet_prefix(fleet) + "desired"; }
std::string signature_key(std::string_view fleet) { return fleet_prefix(fleet) + "desired.sig"; }
std::string hosts_prefix(std::string_view fleet) { return fleet_prefix(fleet) + "hosts/"; }
std::string host_key(std::string_view fleet, std::string_view uuid) { return hosts_prefix(fleet) + std::string(uuid); }

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(end.back() + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t n = (uint8_t(in[i]) << 16) | (uint8_t(in[i + 1]) << 8) | uint8_t(in[i + 2]);
    for (int s : {18, 12, 6, 0}) out += kAlphabet[(n >> s) & 63];
  }
  if (size_t left = in.size() - i) {
    uint32_t n = uint8_t(in[i]) << 16;
    if (left == 2) n |= uint8_t(in[i + 1]) << 8;
    out += kAlphabet[(n >> 18) & 63];
    out += kAlphabet[(n >> 12) & 63];
    out += left == 2 ? kAlphabet[(n >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

std::optional<std::string> base64_decode(std::string_view in, size_t max) {
  if (in.size() % 4 != 0 || in.size() / 4 * 3 > max + 2) return std::nullopt;
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (size_t i = 0; i < in.size(); i += 4) {
    bool last = i + 4 == in.size();
    int pad = last ? (in[i + 3] == '=') + (in[i + 2] == '=') : 0;
    if (pad == 1 && in[i + 2] == '=') return std::nullopt;  // "x=y=" is not padding
    uint32_t n = 0;
    for (int j = 0; j < 4 - pad; ++j) {
      int v = value(in[i + j]);
      if (v < 0) return std::nullopt;
      n |= static_cast<uint32_t>(v) << (18 - 6 * j);
    }
    if ((pad == 2 && (n & 0xffff)) || (pad == 1 && (n & 0xff))) return std::nullopt;  // one encoding per value
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  if (out.size() > max) return std::nullopt;
  return out;
}

std::string range_request(std::string_view key, std::string_view range_end) {
  json::object o{{"key", b64(key)}};
  if (!range_end.empty()) o["range_end"] = b64(range_end);
  return json::serialize(o);
}

std::string cas_put_request(std::string_view key, std::string_view value, std::int64_t mod_revision,
                            std::string_view sig_key, const std::string* sig) {
  json::object cmp = mod_revision == 0
                         ? json::object{{"target", "CREATE"}, {"result", "EQUAL"}, {"key", b64(key)}, {"create_revision", "0"}}
                         : json::object{{"target", "MOD"},
                                        {"result", "EQUAL"},
                                        {"key", b64(key)},
                                        {"mod_revision", std::to_string(mod_revision)}};
  json::array ops{json::object{{"request_put", json::object{{"key", b64(key)}, {"value", b64(value)}}}}};
  if (!sig_key.empty())
    ops.emplace_back(sig ? json::object{{"request_put", json::object{{"key", b64(sig_key)}, {"value", b64(*sig)}}}}
                         : json::object{{"request_delete_range", json::object{{"key", b64(sig_key)}}}});
  return json::serialize(json::object{{"compare", json::array{std::move(cmp)}}, {"success", std::move(ops)}});
}

std::string put_request(std::string_view key, std::string_view value) {
  return json::serialize(json::object{{"key", b64(key)}, {"value", b64(value)}});
}

std::string watch_request(std::string_view key, std::int64_t start_revision) {
  return json::serialize(json::object{
      {"create_request", json::object{{"key", b64(key)}, {"start_revision", std::to_string(start_revision)}}}});
}

RangeResult parse_range(std::string_view body, std::string_view key, bool prefix, size_t max_kvs) {
  json::object o = parse_body(body);
  RangeResult r;
  r.revision = header_revision(o);
  if (const json::value* kvs = o.if_contains("kvs")) {
    if (!kvs->is_array()) invalid("kvs is not an array");
    if (kvs->as_array().size() > max_kvs) invalid("more than " + std::to_string(max_kvs) + " keys");
    for (const auto& v : kvs->as_array()) {
      r.kvs.push_back(kv_of(v, key, prefix));
      if (r.kvs.back().mod_revision > r.revision) invalid("a kv newer than the store");
    }
  }
  if (!prefix && r.kvs.size() > 1) invalid("several kvs for one key");
  return r;
}

TxnResult parse_txn(std::string_view body) {
  json::object o = parse_body(body);
  TxnResult t;
  t.revision = header_revision(o);
  t.succeeded = bool_of(o, "succeeded");
  return t;
}

std::int64_t parse_put(std::string_view body) { return header_revision(parse_body(body)); }

WatchMessage parse_watch(std::string_view message, std::string_view key) {
  json::object o = parse_body(message);
  const json::value* res = o.if_contains("result");
  if (!res) {
    if (const json::value* e = o.if_contains("error")) {
      const json::object& eo = object_of(*e, "error");
      const json::value* m = eo.if_contains("message");
      throw Error(Code::kFleetSourceUnavailable,
                  "etcd ended the watch: " + (m && m->is_string() ? printable(m->as_string()) : std::string("no reason")));
    }
    invalid("a watch message without a result");
  }
  const json::object& r = object_of(*res, "result");
  WatchMessage w;
  w.revision = header_revision(r);
  w.created = bool_of(r, "created");
  w.canceled = bool_of(r, "canceled");
  w.compact_revision = revision_of(r, "compact_revision");
  if (const json::value* c = r.if_contains("cancel_reason")) {
    if (!c->is_string()) invalid("cancel_reason is not a string");
    w.cancel_reason = printable(c->as_string());
  }
  if (const json::value* evs = r.if_contains("events")) {
    if (!evs->is_array()) invalid("events is not an array");
    if (evs->as_array().size() > 10000) invalid("too many events");
    for (const auto& ev : evs->as_array()) {
      const json::object& e = object_of(ev, "an event");
      WatchEvent out;
      if (const json::value* t = e.if_contains("type")) {
        if (!t->is_string() || (t->as_string() != "PUT" && t->as_string() != "DELETE")) invalid("an event of unknown type");
        out.deleted = t->as_string() == "DELETE";
      }
      const json::value* kv = e.if_contains("kv");
      if (!kv) invalid("an event without a kv");
      if (out.deleted) {  // a deletion's kv has the key and the revision of the deletion only
        const json::object& ko = object_of(*kv, "a kv");
        out.kv.key = bytes_of(ko, "key", 4096);
        if (out.kv.key != key) invalid("an event for a key that was not watched");
        out.kv.mod_revision = revision_of(ko, "mod_revision");
      } else {
        out.kv = kv_of(*kv, key, false);
      }
      w.events.push_back(std::move(out));
    }
  }
  return w;
}

json::object host_status_object(const HostStatus& s) {
  return json::object{{"host", s.host},
                      {"applied_revision", s.applied_revision},
                      {"applied_at", s.applied_at},
                      {"seen_revision", s.seen_revision},
                      {"generation", s.generation},
                      {"health", s.health},
                      {"error", s.error.empty() ? json::value(nullptr) : json::value(s.error)},
                      {"updated_at", s.updated_at}};
}

std::string host_status_json(const HostStatus& s) { return json::serialize(host_status_object(s)); }

HostStatus parse_host_status(std::string_view value) {
  auto bad = [](const std::string& why) -> HostStatus { throw Error(Code::kFleetSourceInvalid, "host report: " + why); };
  if (value.size() > kMaxHostStatus) return bad("too large");
  boost::system::error_code ec;
  json::value v = json::parse(value, ec);
  if (ec || !v.is_object()) return bad("not a JSON object");
  const json::object& o = v.as_object();
  HostStatus s;
  auto str = [&](std::string_view k, size_t max) {
    const json::value* x = o.if_contains(k);
    if (!x || x->is_null()) return std::string();
    if (!x->is_string() || x->as_string().size() > max) bad(std::string(k) + " is not a short string");
    return printable(x->as_string());
  };
  auto num = [&](std::string_view k) {
    const json::value* x = o.if_contains(k);
    if (!x || !x->is_number()) bad(std::string(k) + " is not a number");
    boost::system::error_code e;
    auto n = x->to_number<std::int64_t>(e);
    if (e || n < 0) bad(std::string(k) + " is out of range");
    return n;
  };
  s.host = str("host", 64);
  if (!valid_uuid(s.host)) return bad("host is not a UUID");
  s.applied_revision = num("applied_revision");
  s.applied_at = num("applied_at");
  s.seen_revision = num("seen_revision");
  s.generation = static_cast<std::uint64_t>(num("generation"));
  s.updated_at = num("updated_at");
  s.health = str("health", 32);
  if (s.health != "ok" && s.health != "rejected" && s.health != "no-document") return bad("unknown health");
  s.error = str("error", 1024);
  return s;
}

std::string printable(std::string_view s) {
  std::string out;
  for (unsigned char c : s.substr(0, 300)) {
    if (c >= 0x20 && c < 0x7f) {
      out += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  if (s.size() > 300) out += "...";
  return out;
}

}  // namespace ptrust::fleet
