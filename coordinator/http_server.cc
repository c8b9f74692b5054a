#include "coordinator/http_server.h"

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <thread>

namespace mrl::coord {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class HttpServer::Impl {
 public:
  Impl(HttpServerOptions o, Handler h) : opt_(std::move(o)), handler_(std::move(h)), acceptor_(io_) {}

  // Stream: beast::tcp_stream (HTTP) or beast::ssl_stream<beast::tcp_stream> (HTTPS).
  template <typename Stream>
  class Session : public std::enable_shared_from_this<Session<Stream>> {
   public:
    Session(tcp::socket s, Impl* server) : stream_(std::move(s)), server_(server) {}
    Session(tcp::socket s, asio::ssl::context& ctx, Impl* server) : stream_(std::move(s), ctx), server_(server) {}
    void Start() {
      if constexpr (kTls) {
        beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(server_->opt_.idle_timeout_ms));
        stream_.async_handshake(asio::ssl::stream_base::server, [self = this->shared_from_this()](beast::error_code ec) {
          if (ec) return self->Close();  // not TLS, bad client cert, timeout: nothing to answer
          self->Read();
        });
      } else {
        Read();
      }
    }

   private:
    static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;
    void Read() {
      parser_.emplace();
      parser_->body_limit(server_->opt_.max_body_bytes);
      beast::get_lowest_layer(stream_).expires_after(std::chrono::milliseconds(server_->opt_.idle_timeout_ms));
      http::async_read(stream_, buffer_, *parser_,
                       [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
    }
    void OnRead(beast::error_code ec) {
      if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::operation_aborted || ec == asio::ssl::error::stream_truncated) {
        return Close();
      }
      if (ec) {
        // Oversized or malformed request: answer once, then close (the stream cannot resync).
        HttpResponse r;
        r.status = ec == http::error::body_limit ? 413 : 400;
        r.body = std::string("{\"error\":\"") +
                 (ec == http::error::body_limit ? "request body too large" : "malformed HTTP request") +
                 "\"}";
        return Write(std::move(r), false, 11);
      }
      auto req = parser_->release();
      HttpRequest in;
      in.method = std::string(req.method_string());
      std::string target(req.target());
      const size_t q = target.find('?');
      in.target = target.substr(0, q);
      if (q != std::string::npos) in.query = target.substr(q + 1);
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        in.headers[name] = std::string(f.value());
      }
      in.body = std::move(req.body());
      const bool keep_alive = req.keep_alive();
      const unsigned version = req.version();
      // The handler may block (fan-out to shards): run it on the pool, write on the strand.
      asio::post(*server_->pool_, [self = this->shared_from_this(), in = std::move(in), keep_alive, version] {
        HttpResponse r;
        try {
          r = self->server_->handler_(in);
        } catch (const std::exception& e) {
          r.status = 500;
          r.body = std::string("{\"error\":\"internal error\"}");
        }
        asio::post(self->stream_.get_executor(), [self, r = std::move(r), keep_alive, version]() mutable {
          self->Write(std::move(r), keep_alive, version);
        });
      });
    }
    void Write(HttpResponse r, bool keep_alive, unsigned version) {
      auto res = std::make_shared<http::response<http::string_body>>(
          static_cast<http::status>(r.status), version);
      res->set(http::field::server, "mrl-coordinator");
      res->set(http::field::content_type, r.content_type);
      for (const auto& [name, value] : r.headers) res->set(name, value);
      res->keep_alive(keep_alive);
      res->body() = std::move(r.body);
      res->prepare_payload();
      http::async_write(stream_, *res, [self = this->shared_from_this(), res, keep_alive](beast::error_code ec, size_t) {
        if (ec || !keep_alive) return self->Close();
        self->Read();
      });
    }
    void Close() {
      beast::error_code ec;
      auto& socket = beast::get_lowest_layer(stream_).socket();
      socket.shutdown(tcp::socket::shutdown_send, ec);
      socket.close(ec);
    }

    Stream stream_;
    beast::flat_buffer buffer_;
    std::optional<http::request_parser<http::string_body>> parser_;
    Impl* server_;  // outlives every session: Shutdown joins all threads first
  };

  Status Start() {
    if (opt_.tls_cert_file.empty() != opt_.tls_key_file.empty()) {
      return Status::InvalidArgument("TLS needs both a certificate file and a key file");
    }
    if (!opt_.tls_cert_file.empty()) {
      tls_.emplace(asio::ssl::context::tls_server);
      tls_->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                        asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
      boost::system::error_code tec;
      tls_->use_certificate_chain_file(opt_.tls_cert_file, tec);
      if (tec) return Status::InvalidArgument("TLS certificate '" + opt_.tls_cert_file + "': " + tec.message());
      tls_->use_private_key_file(opt_.tls_key_file, asio::ssl::context::pem, tec);
      if (tec) return Status::InvalidArgument("TLS key '" + opt_.tls_key_file + "': " + tec.message());
    }
    beast::error_code ec;
    const auto addr = asio::ip::make_address(opt_.host, ec);
    if (ec) return Status::InvalidArgument("bad listen address '" + opt_.host + "'");
    tcp::endpoint ep(addr, opt_.port);
    acceptor_.open(ep.protocol(), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) return Status::IoError("cannot listen on " + opt_.host + ":" + std::to_string(opt_.port) + ": " + ec.message());
    port_ = acceptor_.local_endpoint().port();
    const int threads = opt_.threads > 0 ? opt_.threads : static_cast<int>(std::max(2u, std::thread::hardware_concurrency()));
    pool_ = std::make_unique<asio::thread_pool>(threads);
    Accept();
    io_thread_ = std::thread([this] { io_.run(); });
    return Status::Ok();
  }
  void Accept() {
    acceptor_.async_accept(asio::make_strand(io_), [this](beast::error_code ec, tcp::socket s) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (!ec) {
        // Answers go out as soon as they are written, not held back by Nagle's algorithm until
        // the client acknowledges the previous segment.
        beast::error_code nodelay_ec;
        s.set_option(tcp::no_delay(true), nodelay_ec);
        if (tls_) {
          std::make_shared<Session<beast::ssl_stream<beast::tcp_stream>>>(std::move(s), *tls_, this)->Start();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(std::move(s), this)->Start();
        }
      }
      Accept();
    });
  }
  void Shutdown() {
    if (stopped_.exchange(true)) return;
    asio::post(io_, [this] {
      beast::error_code ec;
      acceptor_.close(ec);
    });
    if (pool_) pool_->join();  // handlers in flight finish
    io_.stop();
    if (io_thread_.joinable()) io_thread_.join();
  }

  HttpServerOptions opt_;
  Handler handler_;
  std::optional<asio::ssl::context> tls_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::thread io_thread_;
  uint16_t port_ = 0;
  std::atomic<bool> stopped_{false};
};

HttpServer::HttpServer(HttpServerOptions options, Handler handler)
    : impl_(std::make_shared<Impl>(std::move(options), std::move(handler))) {}
HttpServer::~HttpServer() { Shutdown(); }
Status HttpServer::Start() { return impl_->Start(); }
uint16_t HttpServer::port() const { return impl_->port_; }
bool HttpServer::tls() const { return impl_->tls_.has_value(); }
void HttpServer::Shutdown() { impl_->Shutdown(); }

}  // namespace mrl::coord
