#include "helper/fleet_http.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>

#include "core/error.h"
#include "ptrust/ptrust.h"

namespace ptrust::fleet {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

tcp::endpoint endpoint_of(const Endpoint& ep) { return {asio::ip::make_address(ep.host), ep.port}; }

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// The TLS client context of `ep`: TLS 1.2 or later, etcd's certificate verified by libptrust
// under the purpose (never OpenSSL's default paths), the client certificate when given.
std::shared_ptr<asio::ssl::context> tls_context(const Endpoint& ep) {
  if (ep.purpose.empty())
    throw Error(Code::kUsage, "TLS to etcd needs --etcd-purpose P: the ptrust purpose whose trust verifies etcd");
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  char err[256] = "";
  PTRUST_CTX* p = ptrust_ctx_new(ep.root.empty() ? nullptr : ep.root.c_str(), ep.config.empty() ? nullptr : ep.config.c_str(),
                                 err, sizeof err);
  if (!p) throw Error(Code::kConfigInvalid, std::string("TLS to etcd: ") + err);
  int ok = ptrust_SSL_CTX_set1_purpose(ctx->native_handle(), p, ep.purpose.c_str());
  ptrust_ctx_free(p);  // the SSL_CTX holds its own reference
  if (!ok) throw Error(Code::kUnknownPurpose, "--etcd-purpose " + ep.purpose + " is not a declared purpose");
  if (ep.client_cert.empty() != ep.client_key.empty())
    throw Error(Code::kUsage, "--etcd-cert and --etcd-key go together");
  if (!ep.client_cert.empty()) {
    boost::system::error_code ec;
    ctx->use_certificate_chain_file(ep.client_cert, ec);
    if (!ec) ctx->use_private_key_file(ep.client_key, asio::ssl::context::pem, ec);
    if (ec) throw Error(Code::kHostKeyInvalid, "the client certificate or key for etcd: " + ec.message());
  }
  return ctx;
}

// The transport's first step after connecting: nothing for TCP, the TLS handshake (with the
// IP address to check) otherwise.
template <class Then>
void secure(beast::tcp_stream&, const Endpoint&, Then then) {
  then(beast::error_code{});
}
template <class Then>
void secure(TlsStream& s, const Endpoint& ep, Then then) {
  X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s.native_handle()), ep.host.c_str());
  s.async_handshake(asio::ssl::stream_base::client, std::move(then));
}

tcp::socket& socket_of(beast::tcp_stream& s) { return s.socket(); }
tcp::socket& socket_of(TlsStream& s) { return s.next_layer().socket(); }

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

template <class S>
struct PostOp : std::enable_shared_from_this<PostOp<S>> {
  template <class... Transport>
  PostOp(const Endpoint& e, std::string path, std::string body, std::chrono::milliseconds t, PostDone d, Transport&&... tr)
      : stream(std::forward<Transport>(tr)...), ep(e), at(where(e)), req(request_of(e, path, std::move(body))), timeout(t), done(std::move(d)) {
    parser.body_limit(kMaxResponse);
    parser.header_limit(16 << 10);
  }
  void start(const tcp::endpoint& to) {
    beast::get_lowest_layer(stream).expires_after(timeout);
    beast::get_lowest_layer(stream).async_connect(to, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->finish({}, "cannot connect to etcd at " + self->at + ": " + ec.message());
      secure(self->stream, self->ep, [self](beast::error_code ec) {
        if (ec) return self->finish({}, "TLS with etcd at " + self->at + ": " + ec.message());
        self->exchange();
      });
    });
  }
  void exchange() {
    auto self = this->shared_from_this();
      http::async_write(self->stream, self->req, [self](beast::error_code ec, size_t) {
        if (ec) return self->finish({}, "etcd at " + self->at + ": " + ec.message());
        http::async_read(self->stream, self->buf, self->parser, [self](beast::error_code ec, size_t) {
          if (ec) return self->finish({}, "etcd at " + self->at + ": " + ec.message());
          auto& res = self->parser.get();
          if (res.result_int() != 200) return self->finish({}, refusal(res.result_int(), res.body()));
          self->finish(std::move(res.body()), {});
        });
      });
  }
  void finish(std::string body, std::string error) {
    beast::error_code ignored;
    socket_of(stream).shutdown(tcp::socket::shutdown_both, ignored);
    socket_of(stream).close(ignored);
    PostDone d = std::move(done);
    if (d) d(std::move(body), std::move(error));
  }
  S stream;
  Endpoint ep;
  std::string at;
  beast::flat_buffer buf;
  http::request<http::string_body> req;
  http::response_parser<http::string_body> parser;
  std::chrono::milliseconds timeout;
  PostDone done;
  std::shared_ptr<asio::ssl::context> tls;  // outlives the stream that uses it
};

template <class S>
class StreamImpl : public Stream, public std::enable_shared_from_this<StreamImpl<S>> {
 public:
  template <class... Transport>
  StreamImpl(const Endpoint& e, std::string path, std::string body, OnMessage m, OnEnd end, Transport&&... tr)
      : stream_(std::forward<Transport>(tr)...), ep_(e), at_(where(e)), req_(request_of(e, path, std::move(body))), on_message_(std::move(m)), on_end_(std::move(end)) {
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
  void start(const tcp::endpoint& to) {
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(10));
    beast::get_lowest_layer(stream_).async_connect(to, [self = this->shared_from_this()](beast::error_code ec) {
      if (ec) return self->end("cannot connect to etcd at " + self->at_ + ": " + ec.message());
      keepalive(socket_of(self->stream_));
      secure(self->stream_, self->ep_, [self](beast::error_code ec) {
        if (ec) return self->end("TLS with etcd at " + self->at_ + ": " + ec.message());
        self->exchange();
      });
    });
  }
  void exchange() {
    auto self = this->shared_from_this();
      http::async_write(self->stream_, self->req_, [self](beast::error_code ec, size_t) {
        if (ec) return self->end("etcd at " + self->at_ + ": " + ec.message());
        http::async_read_header(self->stream_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
          if (ec) return self->end("etcd at " + self->at_ + ": " + ec.message());
          if (self->parser_.get().result_int() != 200)
            return self->end("etcd answered the watch with HTTP " + std::to_string(self->parser_.get().result_int()));
          if (!self->parser_.chunked()) return self->end("etcd's watch answer is not a stream");
          beast::get_lowest_layer(self->stream_).expires_never();
          http::async_read(self->stream_, self->buf_, self->parser_, [self](beast::error_code ec, size_t) {
            self->end(ec ? "the watch stream from " + self->at_ + " broke: " + ec.message()
                         : "etcd at " + self->at_ + " ended the watch stream");
          });
        });
      });
  }
  std::shared_ptr<asio::ssl::context> tls;  // outlives the stream that uses it

  void close() override {
    closed_ = true;
    beast::error_code ignored;
    socket_of(stream_).shutdown(tcp::socket::shutdown_both, ignored);
    socket_of(stream_).close(ignored);
  }

 private:
  void end(std::string error) {
    if (closed_) return;
    close();
    on_end_(std::move(error));
  }
  S stream_;
  Endpoint ep_;
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
  if (ep.tls) {
    auto tls = tls_context(ep);
    auto op = std::make_shared<PostOp<TlsStream>>(ep, std::move(path), std::move(body), timeout, std::move(done), io, *tls);
    op->tls = tls;
    op->start(endpoint_of(ep));
    return;
  }
  auto op = std::make_shared<PostOp<beast::tcp_stream>>(ep, std::move(path), std::move(body), timeout, std::move(done), io);
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
  if (ep.tls) {
    auto tls = tls_context(ep);
    auto s = std::make_shared<StreamImpl<TlsStream>>(ep, std::move(path), std::move(body), std::move(on_message),
                                                     std::move(on_end), io, *tls);
    s->tls = tls;
    s->start(endpoint_of(ep));
    return s;
  }
  auto s = std::make_shared<StreamImpl<beast::tcp_stream>>(ep, std::move(path), std::move(body), std::move(on_message),
                                                           std::move(on_end), io);
  s->start(endpoint_of(ep));
  return s;
}

}  // namespace ptrust::fleet
