#include "meta/etcd_http.h"

#include <sys/socket.h>

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it (Boost 1.74, C++20)

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <map>
#include <optional>
#include <vector>

#include "meta/etcd_tls.h"

namespace mrl::meta::etcd_http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::pair<std::string, std::string> HostPort(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  return {endpoint.substr(0, colon), endpoint.substr(colon + 1)};
}

void StreamCancel::Cancel() {
  std::lock_guard<std::mutex> lock(mu_);
  cancelled_ = true;
  if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // unblocks the read
}

bool StreamCancel::cancelled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return cancelled_;
}

bool StreamCancel::Attach(int fd) {
  std::lock_guard<std::mutex> lock(mu_);
  if (cancelled_) return false;
  fd_ = fd;
  return true;
}

void StreamCancel::Detach() {
  std::lock_guard<std::mutex> lock(mu_);
  fd_ = -1;
}

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One HTTP/1.1 connection with its own io_context, so every step has a deadline (run_for).
struct Conn {
  asio::io_context io;
  std::optional<beast::tcp_stream> plain;
  std::optional<TlsStream> tls;
  bool connected = false;

  beast::tcp_stream& lowest() { return tls ? beast::get_lowest_layer(*tls) : *plain; }
  // A fresh stream for a new connection (a TLS stream is not reused after its connection).
  void Reset(asio::ssl::context* ctx) {
    connected = false;
    tls.reset();
    plain.reset();
    if (ctx != nullptr) {
      tls.emplace(io, *ctx);
    } else {
      plain.emplace(io);
    }
  }
};

// Runs `start(done)` on c's io_context for at most timeout_ms; false on timeout (the socket is
// closed and the operation cancelled).
template <typename Start>
bool RunFor(Conn& c, int timeout_ms, Start&& start) {
  bool finished = false;
  c.io.restart();
  start([&finished] { finished = true; });
  c.io.run_for(std::chrono::milliseconds(timeout_ms));
  if (finished) return true;
  beast::error_code ignored;
  c.lowest().socket().close(ignored);
  c.io.restart();
  c.io.run();  // the cancelled handler runs (and sets `finished`): still a timeout
  c.connected = false;
  return false;
}

http::request<http::string_body> MakeRequest(const std::string& host, const Request& r) {
  http::request<http::string_body> req{http::verb::post, r.path, 11};
  req.set(http::field::host, host);
  req.set(http::field::content_type, "application/json");
  if (!r.authorization.empty()) req.set(http::field::authorization, r.authorization);
  req.body() = r.body;
  req.prepare_payload();
  return req;
}

Result<std::string> PostOn(Conn& c, asio::ssl::context* ctx, const std::string& endpoint,
                           const Request& r, int timeout_ms, int* http_status) {
  const auto [host, port] = HostPort(endpoint);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left = [&] {
    return std::max<int>(1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - Clock::now())
                                                 .count()));
  };
  beast::error_code ec;
  if (!c.connected) {
    c.Reset(ctx);
    tcp::resolver resolver(c.io);
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return Status::Unavailable("resolve " + endpoint + ": " + ec.message());
    if (!RunFor(c, left(), [&](auto done) {
          c.lowest().async_connect(endpoints, [&, done](beast::error_code e, const tcp::endpoint&) {
            ec = e;
            done();
          });
        })) {
      return Status::Unavailable("connect " + endpoint + ": timed out");
    }
    if (ec) return Status::Unavailable("connect " + endpoint + ": " + ec.message());
    if (c.tls) {
      MRL_RETURN_IF_ERROR(etcd_tls::PrepareConnection(c.tls->native_handle(), host));
      if (!RunFor(c, left(), [&](auto done) {
            c.tls->async_handshake(asio::ssl::stream_base::client, [&, done](beast::error_code e) {
              ec = e;
              done();
            });
          })) {
        return Status::Unavailable("etcd " + endpoint + ": TLS handshake: no answer in " +
                                   std::to_string(timeout_ms) + " ms");
      }
      if (ec) {
        return Status::Unavailable("etcd " + endpoint + ": " +
                                   etcd_tls::HandshakeError(ec, c.tls->native_handle()));
      }
    }
    c.connected = true;
  }
  auto req = MakeRequest(host, r);
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  auto exchange = [&](auto& stream) {
    return RunFor(c, left(), [&](auto done) {
      http::async_write(stream, req, [&, done](beast::error_code e, size_t) {
        if (e) {
          ec = e;
          return done();
        }
        http::async_read(stream, buf, parser, [&, done](beast::error_code e2, size_t) {
          ec = e2;
          done();
        });
      });
    });
  };
  const bool ok = c.tls ? exchange(*c.tls) : exchange(*c.plain);
  if (!ok)
    return Status::Unavailable(endpoint + r.path + ": no answer in " + std::to_string(timeout_ms) +
                               " ms");
  if (ec) {
    c.connected = false;
    beast::error_code ignored;
    c.lowest().socket().close(ignored);
    if (c.tls)
      return Status::Unavailable("etcd " + endpoint + r.path + ": " + etcd_tls::StreamError(ec));
    return Status::Unavailable(endpoint + r.path + ": " + ec.message());
  }
  auto res = parser.release();
  if (!res.keep_alive()) {
    c.connected = false;
    beast::error_code ignored;
    c.lowest().socket().close(ignored);
  }
  *http_status = static_cast<int>(res.result_int());
  return std::move(res.body());
}

// Connections kept alive per endpoint.
class Pool {
 public:
  std::unique_ptr<Conn> Take(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[endpoint];
    if (idle.empty()) return std::make_unique<Conn>();
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }
  void Give(const std::string& endpoint, std::unique_ptr<Conn> c) {
    if (!c->connected) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[endpoint];
    if (idle.size() < 8) idle.push_back(std::move(c));
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;
};

// Sends the request on a connected stream and hands the answer's lines to on_line.
template <typename Stream>
Status StreamLines(Stream& s, const std::string& endpoint, const Request& r,
                   const std::function<Status(const std::string&)>& on_line) {
  beast::error_code ec;
  http::write(s, MakeRequest(HostPort(endpoint).first, r), ec);
  if (ec) {
    return Status::Unavailable(r.path + " request to " + endpoint + ": " +
                               etcd_tls::StreamError(ec));
  }
  beast::flat_buffer buf;
  http::response_parser<http::buffer_body> parser;
  parser.body_limit(boost::none);
  http::read_header(s, buf, parser, ec);
  if (ec) {
    return Status::Unavailable(r.path + " answer from " + endpoint + ": " +
                               etcd_tls::StreamError(ec));
  }
  if (parser.get().result_int() != 200) {
    return Status::Unavailable(r.path + " on " + endpoint + ": HTTP " +
                               std::to_string(parser.get().result_int()));
  }
  std::string pending;
  char chunk[16384];
  while (!parser.is_done()) {
    parser.get().body().data = chunk;
    parser.get().body().size = sizeof(chunk);
    http::read_some(s, buf, parser, ec);
    if (ec == http::error::need_buffer) ec = {};
    if (ec) return Status::Unavailable(r.path + " stream from " + endpoint + ": " + ec.message());
    pending.append(chunk, sizeof(chunk) - parser.get().body().size);
    for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
      const std::string line = pending.substr(0, nl);
      pending.erase(0, nl + 1);
      if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
      MRL_RETURN_IF_ERROR(on_line(line));
    }
  }
  return Status::Unavailable(r.path + " stream from " + endpoint + " ended");
}

}  // namespace

struct Client::Impl {
  std::shared_ptr<asio::ssl::context> tls;  // null: plain HTTP
  Pool pool;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

std::shared_ptr<Client> Client::Plain() {
  // Never destroyed: stores may outlive static destruction order.
  static auto* plain = new std::shared_ptr<Client>(new Client(std::make_unique<Impl>()));
  return *plain;
}

Result<std::shared_ptr<Client>> Client::Tls(const etcd_tls::TlsFiles& files) {
  auto ctx = etcd_tls::MakeClientContext(files);
  if (!ctx.ok()) return ctx.status();
  auto impl = std::make_unique<Impl>();
  impl->tls = std::move(ctx).value();
  return std::shared_ptr<Client>(new Client(std::move(impl)));
}

bool Client::tls() const { return impl_->tls != nullptr; }

Result<std::string> Client::Post(const std::string& endpoint, const Request& request,
                                 int timeout_ms, int* http_status) {
  auto conn = impl_->pool.Take(endpoint);
  auto text = PostOn(*conn, impl_->tls.get(), endpoint, request, timeout_ms, http_status);
  impl_->pool.Give(endpoint, std::move(conn));  // kept only while still connected
  return text;
}

Status Client::PostStream(const std::string& endpoint, const Request& request, int timeout_ms,
                          StreamCancel* cancel,
                          const std::function<Status(const std::string&)>& on_line) {
  const auto host_port = HostPort(endpoint);  // not a structured binding: a lambda uses host
  const std::string& host = host_port.first;
  const std::string& port = host_port.second;
  Conn c;
  c.Reset(impl_->tls.get());
  beast::error_code ec;
  tcp::resolver resolver(c.io);
  auto endpoints = resolver.resolve(host, port, ec);
  if (ec) return Status::Unavailable("resolve " + endpoint + ": " + ec.message());
  // Connect and handshake with a deadline (async); then the stream is read with blocking calls
  // that only `cancel` (shutting the socket down) or the server ends.
  bool handshaking = false;
  Status prepared;
  if (!RunFor(c, timeout_ms, [&](auto done) {
        c.lowest().async_connect(endpoints, [&, done](beast::error_code e, const tcp::endpoint&) {
          ec = e;
          if (e || !c.tls) return done();
          prepared = etcd_tls::PrepareConnection(c.tls->native_handle(), host);
          if (!prepared.ok()) return done();
          handshaking = true;
          c.tls->async_handshake(asio::ssl::stream_base::client, [&, done](beast::error_code e2) {
            ec = e2;
            done();
          });
        });
      })) {
    return Status::Unavailable("etcd " + endpoint +
                               (handshaking ? ": TLS handshake" : ": connect") + ": no answer in " +
                               std::to_string(timeout_ms) + " ms");
  }
  MRL_RETURN_IF_ERROR(prepared);
  if (ec && handshaking) {
    return Status::Unavailable("etcd " + endpoint + ": " +
                               etcd_tls::HandshakeError(ec, c.tls->native_handle()));
  }
  if (ec) return Status::Unavailable("connect " + endpoint + ": " + ec.message());
  if (!cancel->Attach(c.lowest().socket().native_handle())) return Status::Ok();
  struct DetachAtExit {
    StreamCancel* cancel;
    ~DetachAtExit() { cancel->Detach(); }
  } detach{cancel};
  // tcp_stream's own timeouts are off (no expires_after): the blocking reads below wait.
  const Status st = c.tls ? StreamLines(*c.tls, endpoint, request, on_line)
                          : StreamLines(*c.plain, endpoint, request, on_line);
  return cancel->cancelled() ? Status::Ok() : st;
}

}  // namespace mrl::meta::etcd_http
