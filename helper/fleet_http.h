// HTTP/1.1 to etcd's JSON gateway (Boost.Beast): one POST per connection, blocking (the
// `fleet` commands) or on an io_context (`serve --follow`), and the watch stream, whose chunked
// body is handed over one JSON message (line) at a time. Bodies are bounded (kMaxResponse);
// every failure is one message, never an exception out of a callback.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "helper/fleet_etcd.h"

namespace ptrust::fleet {

// The body of a 200 answer to POST `path`. FLEET_SOURCE_UNAVAILABLE when etcd cannot be
// reached within `timeout` or answers otherwise (with etcd's message when it gives one).
std::string post(const Endpoint& ep, std::string_view path, const std::string& body,
                 std::chrono::milliseconds timeout = std::chrono::seconds(10));

// `done(body, error)`: error empty on a 200 answer. Called once, on the io_context.
using PostDone = std::function<void(std::string body, std::string error)>;
void async_post(boost::asio::io_context& io, const Endpoint& ep, std::string path, std::string body,
                std::chrono::milliseconds timeout, PostDone done);

// A long-lived POST whose answer is a stream of newline-separated JSON messages (/v3/watch).
// `on_message` is called for each (bounded by kMaxResponse); `on_end(error)` once when the
// stream ends (etcd gone, a malformed stream, or close()). After close() nothing is called.
class Stream {
 public:
  using OnMessage = std::function<void(std::string_view message)>;
  using OnEnd = std::function<void(std::string error)>;
  static std::shared_ptr<Stream> open(boost::asio::io_context& io, const Endpoint& ep, std::string path,
                                      std::string body, OnMessage on_message, OnEnd on_end);
  virtual ~Stream() = default;
  virtual void close() = 0;
};

}  // namespace ptrust::fleet
