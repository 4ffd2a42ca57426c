#include "helper/fleet_http.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <optional>

#include "core/error.h"

namespace ptrust::fleet {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

tcp::endpoint endpoint_of(const Endpoint& ep) {
  if (ep.tls)  // fail closed: never send what was meant for TLS in the clear
    throw Error(Code::kUsage, "TLS to etcd (https://, etcds://) is not supported by this build");
  return {asio::ip::make_address(ep.host), ep.port};
}

std::string where(const Endpoint& ep) {
  return (ep.host.find(':') != std::string::npos ? "[" + ep.host + "]" : ep.host) + ":" + std::to_string(ep.port);
}

http::request<http::string_body> request_of(const Endpoint& ep, std::string_view path, std::string body) {
  http::request<http::string_body> req{http::verb::post, std::string(path), 11};
  req.set(http::field::host, where(ep));
  req.set(http::field::content_type, "application/json");
  req.set(http::field::user_agent, "ptrust");
  req.body() = std::move(body);
  req.prepare_payload();
  return req;
}

// What a non-200 answer says: etcd's own message when its body carries one.
std::string refusal(unsigned status, std::string_view body) {
  std::string out = "etcd answered HTTP " + std::to_string(status);
  try {
    parse_put(body);
  } catch (const Error& e) {
    if (e.code() == Code::kFleetSourceUnavailable) return out + ": " + e.what();
  }
  return out;
}

void keepalive(tcp::socket& s) {
  // A watch can stay silent for hours: notice a vanished peer within about a minute.
  boost::system::error_code ec;
  s.set_option(asio::socket_base::keep_alive(true), ec);
  int idle = 30, intvl = 10, cnt = 3;
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  ::setsockopt(s.native_handle(), IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
}

struct PostOp : std::enable_shared_from_this<PostOp> {
  PostOp(asio::io_context& io, const Endpoint& e, std::string path, std::string body, std::chrono::milliseconds t,
         PostDone d)
      : stream(io), at(where(e)), req(request_of(e, path, std::move(body))), timeout(t), done(std::move(d)) {
    parser.body_limit(kMaxResponse);
    parser.header_limit(16 << 10);
  }
  void start(const tcp::endpoint& ep) {
    stream.expires_after(timeout);
    stream.async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish({}, "cannot connect to etcd at " + self->at + ": " + ec.message());
      http::async_write(self->stream, self->req, [self](beast::error_code ec, size_t) {
        if (ec) return self->finish({}, "etcd at " + self->at + ": " + ec.message());
        http::async_read(self->stream, self->buf, self->parser, [self](beast::error_code ec, size_t) {
          if (ec) return self->finish({}, "etcd at " + self->at + ": " + ec.message());
          auto& res = self->parser.get();
          if (res.result_int() != 200) return self->finish({}, refusal(res.result_int(), res.body()));
          self->finish(std::move(res.body()), {});
        });
      });
    });
  }
  void finish(std::string body, std::string error) {
    beast::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream.close();
    PostDone d = std::move(done);
    if (d) d(std::move(body), std::move(error));
  }
  beast::tcp_stream stream;
  std::string at;
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  http::response_parser<http::string_body> parser;
  std::chrono::milliseconds timeout;
  PostDone done;
};

class StreamImpl : public Stream, public std::enable_shared_from_this<StreamImpl> {
 public:
  StreamImpl(asio::io_context& io, const Endpoint& e, std::string path, std::string body, OnMessage m, OnEnd end)
      : stream_(io), at_(where(e)), req_(request_of(e, path, std::move(body))), on_message_(std::move(m)), on_end_(std::move(end)) {
    parser_.body_limit(boost::none);  // endless by design; each message is bounded below
    parser_.header_limit(16 << 10);
    chunk_ = [this](std::uint64_t, std::string_view data, beast::error_code& ec) -> size_t {
      if (closed_) return data.size();
      for (char c : data) {
        if (c != '\n') {
          line_ += c;
          continue;
        }
        if (line_.find_first_not_of(" \r\t") != std::string::npos) {
          std::string message = std::move(line_);
          on_message_(message);
          if (closed_) return data.size();
        }
        line_.clear();
      }
      if (line_.size() > kMaxResponse) ec = http::error::body_limit;
      return data.size();
    };
    parser_.on_chunk_body(chunk_);
  }
  void start(const tcp::endpoint& ep) {
    stream_.expires_after(std::chrono::seconds(10));
    stream_.async_connect(ep, [self = shared_from_this()](beast::error_code ec) {
      if (ec) return self->end("cannot connect to etcd at " + self->at_ + ": " + ec.message());
      keepalive(self->stream_.socket());
      http::async_write(self->stream_, self->req_, [self](beast::error_code ec, size_t) {
        if (ec) return self->end("etcd at " + self->at_ + ": " + ec.message());
        http::async_read_header(self->stream_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
          if (ec) return self->end("etcd at " + self->at_ + ": " + ec.message());
          if (self->parser_.get().result_int() != 200)
            return self->end("etcd answered the watch with HTTP " + std::to_string(self->parser_.get().result_int()));
          if (!self->parser_.chunked()) return self->end("etcd's watch answer is not a stream");
          self->stream_.expires_never();
          http::async_read(self->stream_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
            self->end(ec ? "the watch stream from " + self->at_ + " broke: " + ec.message()
                         : "etcd at " + self->at_ + " ended the watch stream");
          });
        });
      });
    });
  }
  void close() override {
    closed_ = true;
    beast::error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

 private:
  void end(std::string error) {
    if (closed_) return;
    close();
    on_end_(std::move(error));
  }
  beast::tcp_stream stream_;
  std::string at_;
  beast::flat_buffer buf_;
  http::request<http::string_body> req_;
  http::response_parser<http::string_body> parser_;
  std::function<size_t(std::uint64_t, std::string_view, beast::error_code&)> chunk_;
  std::string line_;
  OnMessage on_message_;
  OnEnd on_end_;
  bool closed_ = false;
};

}  // namespace

void async_post(asio::io_context& io, const Endpoint& ep, std::string path, std::string body,
                std::chrono::milliseconds timeout, PostDone done) {
  auto op = std::make_shared<PostOp>(io, ep, std::move(path), std::move(body), timeout, std::move(done));
  op->start(endpoint_of(ep));
}

std::string post(const Endpoint& ep, std::string_view path, const std::string& body, std::chrono::milliseconds timeout) {
  asio::io_context io;
  std::string out, error;
  async_post(io, ep, std::string(path), body, timeout, [&](std::string b, std::string e) {
    out = std::move(b);
    error = std::move(e);
  });
  io.run();
  if (!error.empty()) throw Error(Code::kFleetSourceUnavailable, error);
  return out;
}

std::shared_ptr<Stream> Stream::open(asio::io_context& io, const Endpoint& ep, std::string path, std::string body,
                                     OnMessage on_message, OnEnd on_end) {
  auto s = std::make_shared<StreamImpl>(io, ep, std::move(path), std::move(body), std::move(on_message), std::move(on_end));
  s->start(endpoint_of(ep));
  return s;
}

}  // namespace ptrust::fleet
