#include "rpc/server.h"

#include <array>
#include <deque>
#include <iostream>
#include <mutex>
#include <thread>
#include <unordered_set>

#include <boost/asio.hpp>

#include "common/protocol.h"

namespace mrl::rpc {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

// Constant-time in the secret's content (the length of the longer string is not hidden).
bool SecretEquals(std::string_view a, std::string_view b) {
  const size_t n = std::max(a.size(), b.size());
  unsigned diff = a.size() != b.size() ? 1u : 0u;
  for (size_t i = 0; i < n; ++i) {
    const unsigned char x = i < a.size() ? a[i] : 0;
    const unsigned char y = i < b.size() ? b[i] : 0;
    diff |= x ^ y;
  }
  return diff == 0;
}

}  // namespace

class Server::Impl : public std::enable_shared_from_this<Server::Impl> {
 public:
  class Session;

  Impl(ServerOptions o, FrameHandler& handler)
      : opt_(std::move(o)), handler_(handler), acceptor_(io_) {}

  Status Start();
  void Shutdown();
  uint16_t port() const { return port_; }

  const ServerOptions& opt() const { return opt_; }
  FrameHandler& handler() { return handler_; }
  ServerMetrics& metrics() { return metrics_; }
  // The prefix of every log line: the owner's name.
  const std::string& name() const { return opt_.name; }
  asio::thread_pool& pool() { return *pool_; }
  bool draining() const { return draining_.load(); }
  std::atomic<int64_t> in_flight_total{0};  // requests on the pool + replies not yet written
  void Forget(const std::shared_ptr<Session>& s) {
    std::lock_guard<std::mutex> lock(mu_);
    sessions_.erase(s);
  }

 private:
  void Accept();

  ServerOptions opt_;
  FrameHandler& handler_;
  ServerMetrics metrics_;
  asio::io_context io_;
  tcp::acceptor acceptor_;
  std::unique_ptr<asio::thread_pool> pool_;
  std::thread io_thread_;
  uint16_t port_ = 0;
  std::atomic<bool> draining_{false};
  bool started_ = false;
  bool stopped_ = false;
  std::mutex mu_;
  std::unordered_set<std::shared_ptr<Session>> sessions_;
};

class Server::Impl::Session : public std::enable_shared_from_this<Session> {
 public:
  Session(Impl& server, tcp::socket socket)
      : server_(server),
        socket_(std::move(socket)),
        decoder_(server.opt().max_frame_bytes),
        authed_(server.opt().auth_secret.empty()) {
    boost::system::error_code ec;
    auto ep = socket_.remote_endpoint(ec);
    peer_ = ec ? "?" : ep.address().to_string() + ":" + std::to_string(ep.port());
  }

  void Start() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->MaybeRead(); });
  }

  // Shutdown: no new requests; the ones in flight finish and their answers are written.
  void BeginDrain() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] {
      self->draining_ = true;
      // Requests received but not started get a typed answer instead of silence.
      while (auto f = self->decoder_.Next()) {
        self->SendError(f->header.request_id, wire::ErrorCode::Unavailable, "shutting down");
      }
      self->MaybeClose();
    });
  }

  void ForceClose() {
    asio::post(socket_.get_executor(), [self = shared_from_this()] { self->Close(); });
  }

 private:
  size_t Busy() const { return in_flight_ + write_q_.size(); }

  void MaybeRead() {
    if (reading_ || closing_ || closed_ || draining_) return;
    if (Busy() >= server_.opt().max_in_flight_per_connection) return;  // back-pressure
    if (decoder_.pending_frames() > 0) return;
    reading_ = true;
    socket_.async_read_some(asio::buffer(buf_),
                            [self = shared_from_this()](boost::system::error_code ec, size_t n) {
                              self->OnRead(ec, n);
                            });
  }

  void OnRead(boost::system::error_code ec, size_t n) {
    reading_ = false;
    if (closed_) return;
    if (ec) {
      if (decoder_.mid_frame() && ec == asio::error::eof) {
        std::cerr << server_.name() << ": " << peer_
                  << " closed mid-frame (truncated frame dropped)\n";
      }
      peer_gone_ = true;
      closing_ = true;
      MaybeClose();
      return;
    }
    if (draining_) return;
    decoder_.Append(std::span<const uint8_t>(buf_.data(), n));
    Pump();
  }

  void Pump() {
    if (server_.draining()) draining_ = true;  // BeginDrain may not have run yet
    while (!closing_ && !draining_ && Busy() < server_.opt().max_in_flight_per_connection) {
      auto f = decoder_.Next();
      if (!f) break;
      OnFrame(std::move(*f));
    }
    if (closing_ || draining_) return MaybeClose();
    if (decoder_.pending_frames() == 0 && decoder_.error() != wire::DecodeError::kNone) {
      // Resynchronisation is impossible: answer, then close once the answer is written.
      const auto err = decoder_.error();
      std::cerr << server_.name() << ": " << peer_ << ": " << wire::DecodeErrorName(err)
                << ", closing the connection\n";
      if (err == wire::DecodeError::kTooLarge) {
        SendError(decoder_.error_header().request_id, wire::ErrorCode::FrameTooLarge,
                  "body of " + std::to_string(decoder_.error_header().body_length) +
                      " bytes exceeds the limit of " +
                      std::to_string(server_.opt().max_frame_bytes));
      } else {
        SendError(0, wire::ErrorCode::BadFrame, "bad magic: not an mrl frame");
      }
      closing_ = true;
      return MaybeClose();
    }
    MaybeRead();
  }

  void OnFrame(wire::Frame f) {
    const wire::FrameHeader& h = f.header;
    const Clock::time_point received = Clock::now();
    if (h.version != wire::kProtocolVersion) {
      return SendError(h.request_id, wire::ErrorCode::UnsupportedVersion,
                       "protocol version " + std::to_string(h.version) + " not supported (speaks " +
                           std::to_string(wire::kProtocolVersion) + ")");
    }
    if (!wire::IsRequestType(h.type)) {
      return SendError(h.request_id, wire::ErrorCode::UnknownMessageType,
                       "message type " + std::to_string(h.type) + " is not a request");
    }
    const auto type = static_cast<wire::MessageType>(h.type);
    if (type == wire::MessageType::AuthRequest) return OnAuth(f);
    if (!authed_) {
      closing_ = true;
      return SendError(h.request_id, wire::ErrorCode::Unauthenticated,
                       "this server requires AuthRequest as the first frame");
    }
    if (type == wire::MessageType::PingRequest) return OnPing(f);
    if (server_.in_flight_total.load() >= static_cast<int64_t>(server_.opt().max_queued_requests)) {
      return SendError(h.request_id, wire::ErrorCode::Overloaded, "too many requests queued");
    }
    ++in_flight_;
    ++server_.in_flight_total;
    Clock::time_point deadline = Clock::time_point::max();
    if (h.deadline_ms > 0) deadline = received + std::chrono::milliseconds(h.deadline_ms);
    asio::post(server_.pool(), [self = shared_from_this(), f = std::move(f), type, received,
                                deadline]() mutable {
      std::vector<uint8_t> reply = self->Execute(f, type, received, deadline);
      asio::post(self->socket_.get_executor(), [self, reply = std::move(reply)]() mutable {
        --self->in_flight_;
        --self->server_.in_flight_total;
        self->Send(std::move(reply));
        self->Pump();
      });
    });
  }

  // On a worker: verify, run, encode. Always returns a complete frame.
  std::vector<uint8_t> Execute(const wire::Frame& f, wire::MessageType type,
                               Clock::time_point received, Clock::time_point deadline) {
    const uint64_t id = f.header.request_id;
    auto finish = [&](bool ok) {
      const auto us =
          std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - received);
      server_.metrics().RecordRequest(type, static_cast<uint64_t>(us.count()), ok);
    };
    if (Clock::now() > deadline) {
      finish(false);
      return wire::ErrorFrame(id, wire::ErrorCode::DeadlineExceeded,
                              "deadline passed before the request ran");
    }
    std::string why;
    const wire::ErrorCode code = wire::CheckFrame(f.header, f.body, &why);
    if (code != wire::ErrorCode::Ok) {
      finish(false);
      return wire::ErrorFrame(id, code, why);
    }
    RequestContext context;
    context.epoch = f.header.epoch;
    context.server = &server_.metrics();
    Result<std::vector<uint8_t>> r = server_.handler().Handle(type, f.body, context);
    finish(r.ok());
    if (!r.ok()) {
      return wire::ErrorFrame(id, wire::ToErrorCode(r.status().code()), r.status().message());
    }
    wire::FrameHeader h;
    h.type = static_cast<uint16_t>(wire::ResponseTypeOf(type));
    h.request_id = id;
    return wire::EncodeFrame(h, r.value());
  }

  // Answered here on the I/O thread, not queued for a worker: a ping asks whether the process
  // and the way to it are alive (the coordinator's failure detector), and a shard whose workers
  // are busy with long requests is alive.
  void OnPing(const wire::Frame& f) {
    const Clock::time_point received = Clock::now();
    std::string why;
    const wire::ErrorCode code = wire::CheckFrame(f.header, f.body, &why);
    const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - received);
    server_.metrics().RecordRequest(wire::MessageType::PingRequest,
                                    static_cast<uint64_t>(us.count()), code == wire::ErrorCode::Ok);
    if (code != wire::ErrorCode::Ok) return SendError(f.header.request_id, code, why);
    wire::FrameHeader h;
    h.type = static_cast<uint16_t>(wire::MessageType::PingResponse);
    h.request_id = f.header.request_id;
    Send(wire::EncodeFrame(h, wire::PackBody(wire::PingResponseT{})));
  }

  void OnAuth(const wire::Frame& f) {
    std::string why;
    const wire::ErrorCode code = wire::CheckFrame(f.header, f.body, &why);
    if (code != wire::ErrorCode::Ok) {
      if (!authed_) closing_ = true;
      return SendError(f.header.request_id, code, why);
    }
    const auto* req = wire::RootAs<wire::AuthRequest>(f.body);
    const std::string_view secret =
        req->secret() ? std::string_view(req->secret()->data(), req->secret()->size()) : "";
    if (!server_.opt().auth_secret.empty() && !SecretEquals(secret, server_.opt().auth_secret)) {
      std::cerr << server_.name() << ": " << peer_ << ": authentication failed, closing\n";
      closing_ = true;
      return SendError(f.header.request_id, wire::ErrorCode::Unauthenticated, "wrong secret");
    }
    authed_ = true;
    wire::FrameHeader h;
    h.type = static_cast<uint16_t>(wire::MessageType::AuthResponse);
    h.request_id = f.header.request_id;
    Send(wire::EncodeFrame(h, wire::PackBody(wire::AuthResponseT{})));
  }

  void SendError(uint64_t id, wire::ErrorCode code, const std::string& message) {
    Send(wire::ErrorFrame(id, code, message));
  }

  void Send(std::vector<uint8_t> frame) {
    if (closed_) return;
    write_q_.push_back(std::move(frame));
    ++server_.in_flight_total;
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (write_q_.empty() || closed_) {
      writing_ = false;
      return MaybeClose();
    }
    writing_ = true;
    asio::async_write(socket_, asio::buffer(write_q_.front()),
                      [self = shared_from_this()](boost::system::error_code ec, size_t) {
                        self->write_q_.pop_front();
                        --self->server_.in_flight_total;
                        if (ec) {
                          self->peer_gone_ = true;
                          self->closing_ = true;
                          self->writing_ = false;
                          return self->MaybeClose();
                        }
                        self->WriteNext();
                        if (!self->closing_ && !self->draining_) self->Pump();
                      });
  }

  // Closes once nothing is running for this connection and every answer is written (or the
  // peer is gone, in which case the answers are dropped as they come).
  void MaybeClose() {
    if (closed_) return;
    if (!closing_ && !draining_) return;
    if (in_flight_ > 0) return;
    if (writing_ && !peer_gone_) return;
    if (draining_ && !closing_ && !write_q_.empty()) return;
    Close();
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    server_.in_flight_total -= static_cast<int64_t>(write_q_.size()) - (writing_ ? 1 : 0);
    if (!writing_) write_q_.clear();
    server_.metrics().ConnectionClosed();
    server_.Forget(shared_from_this());
  }

  Impl& server_;
  tcp::socket socket_;
  wire::FrameDecoder decoder_;
  std::string peer_;
  bool authed_;
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;   // stop reading; close once answers are out
  bool draining_ = false;  // server shutdown
  bool peer_gone_ = false;
  bool closed_ = false;
  size_t in_flight_ = 0;
  std::deque<std::vector<uint8_t>> write_q_;
  std::array<uint8_t, 1 << 16> buf_;
};

Status Server::Impl::Start() {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(opt_.host, ec);
  if (ec) return Status::InvalidArgument("bad host '" + opt_.host + "': " + ec.message());
  const tcp::endpoint ep(addr, opt_.port);
  acceptor_.open(ep.protocol(), ec);
  if (!ec) acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  if (!ec) acceptor_.bind(ep, ec);
  if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return Status::IoError("listen on " + opt_.host + ":" + std::to_string(opt_.port) + ": " +
                           ec.message());
  }
  port_ = acceptor_.local_endpoint().port();
  const int threads =
      opt_.threads > 0 ? opt_.threads : std::max(1u, std::thread::hardware_concurrency());
  pool_ = std::make_unique<asio::thread_pool>(threads);
  Accept();
  io_thread_ = std::thread([this] {
    auto guard = asio::make_work_guard(io_);
    io_.run();
  });
  started_ = true;
  return Status::Ok();
}

void Server::Impl::Accept() {
  acceptor_.async_accept(
      asio::make_strand(io_), [this](boost::system::error_code ec, tcp::socket socket) {
        if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
        if (!ec) {
          boost::system::error_code ignored;
          socket.set_option(tcp::no_delay(true), ignored);
          std::shared_ptr<Session> s;
          {
            std::lock_guard<std::mutex> lock(mu_);
            if (sessions_.size() < opt_.max_connections) {
              s = std::make_shared<Session>(*this, std::move(socket));
              sessions_.insert(s);
            }
          }
          if (s) {
            metrics_.ConnectionOpened();
            s->Start();
          } else {
            auto frame = std::make_shared<std::vector<uint8_t>>(
                wire::ErrorFrame(0, wire::ErrorCode::Overloaded, "too many connections"));
            auto sock = std::make_shared<tcp::socket>(std::move(socket));
            asio::async_write(*sock, asio::buffer(*frame),
                              [frame, sock](boost::system::error_code, size_t) {
                                boost::system::error_code ignored;
                                sock->close(ignored);
                              });
          }
        } else {
          std::cerr << opt_.name << ": accept: " << ec.message() << "\n";
        }
        Accept();
      });
}

void Server::Impl::Shutdown() {
  if (!started_ || stopped_) return;
  stopped_ = true;
  draining_ = true;
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : sessions_) s->BeginDrain();
  });
  const auto until = Clock::now() + std::chrono::milliseconds(opt_.drain_timeout_ms);
  // Let the posts above run, then wait for the work in flight and its answers.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  while (in_flight_total.load() > 0 && Clock::now() < until) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (in_flight_total.load() > 0) {
    std::cerr << opt_.name << ": drain timeout with " << in_flight_total.load()
              << " requests/answers outstanding\n";
  }
  pool_->join();  // no new work can arrive: every connection is draining
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& s : sessions_) s->ForceClose();
  }
  asio::post(io_, [this] { io_.stop(); });
  io_thread_.join();
}

Server::Server(ServerOptions options, FrameHandler& handler)
    : impl_(std::make_shared<Impl>(std::move(options), handler)) {}

Server::~Server() { Shutdown(); }

Status Server::Start() { return impl_->Start(); }
uint16_t Server::port() const { return impl_->port(); }
void Server::Shutdown() { impl_->Shutdown(); }
const ServerMetrics& Server::metrics() const { return impl_->metrics(); }

}  // namespace mrl::rpc
