#include "rpc/client.h"

#include <array>
#include <atomic>
#include <deque>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>

namespace mrl::rpc {

namespace asio = boost::asio;
using asio::ip::tcp;

// Everything below runs on the one I/O thread; public entry points post to it, so no locks.
class RpcClient::Impl {
 public:
  explicit Impl(ClientOptions o)
      : opt_(std::move(o)),
        work_(asio::make_work_guard(io_)),
        socket_(io_),
        resolver_(io_),
        connect_timer_(io_),
        decoder_(opt_.max_frame_bytes) {
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Impl() {
    asio::post(io_, [this] {
      Fail(Status::Unavailable("client closed"));
      io_.stop();
    });
    thread_.join();
  }

  // A connection attempt in progress is abandoned and a new one started at once; the calls
  // queued for it stay queued. (A SYN sent into a cut link is retried by the kernel only after 1,
  // then 3 s; once the peer is known to answer again, a fresh attempt connects at once.)
  void Kick() {
    asio::post(io_, [this] {
      if (state_ != State::kConnecting) return;
      ++generation_;
      boost::system::error_code ignored;
      socket_.close(ignored);
      resolver_.cancel();
      connect_timer_.cancel();
      StartConnect();
    });
  }

  void Call(wire::MessageType type, std::vector<uint8_t> body, uint32_t deadline_ms,
            Callback done) {
    asio::post(io_,
               [this, type, body = std::move(body), deadline_ms, done = std::move(done)]() mutable {
                 const uint32_t dl = deadline_ms ? deadline_ms : opt_.default_deadline_ms;
                 if (opt_.max_in_flight > 0 && pending_.size() >= opt_.max_in_flight) {
                   // Back-pressure: fail fast instead of queueing without bound behind a slow peer.
                   done(Status::ResourceExhausted(std::to_string(pending_.size()) +
                                                  " requests in flight to " + opt_.host + ":" +
                                                  std::to_string(opt_.port) + " (max_in_flight " +
                                                  std::to_string(opt_.max_in_flight) + ")"));
                   return;
                 }
                 const uint64_t id = next_id_++;
                 wire::FrameHeader h;
                 h.type = static_cast<uint16_t>(type);
                 h.request_id = id;
                 h.deadline_ms = dl;
                 h.epoch = epoch_.load(std::memory_order_relaxed);
                 Pending& p = pending_[id];
                 p.expect = wire::ResponseTypeOf(type);
                 p.done = std::move(done);
                 p.timer = std::make_unique<asio::steady_timer>(io_, std::chrono::milliseconds(dl));
                 p.sent = Clock::now();
                 p.timer->async_wait([this, id](boost::system::error_code ec) {
                   if (ec) return;
                   OnDeadline(id);
                 });
                 auto frame = wire::EncodeFrame(h, body);
                 if (state_ == State::kConnected) {
                   Write(std::move(frame));
                 } else {
                   queued_.push_back(std::move(frame));
                   if (state_ == State::kIdle) StartConnect();
                 }
               });
  }

 private:
  using Clock = std::chrono::steady_clock;
  enum class State { kIdle, kConnecting, kConnected };
  struct Pending {
    wire::MessageType expect = wire::MessageType::Invalid;
    Callback done;
    std::unique_ptr<asio::steady_timer> timer;
    bool is_auth = false;
    bool is_liveness = false;  // SendLivenessPing's
    Clock::time_point sent{};
  };

  // A call's deadline passed. If not one byte came in on its connection since the call was
  // sent, the connection may be dead (a cut link, a vanished host): TCP would notice only minutes
  // later, and after such a silence its retransmission timer has backed off, so a link that comes
  // back would carry new calls on this connection only at the next retransmission, seconds
  // later. Or the server is just busy with long requests ahead of this one. A liveness Ping on
  // the same connection tells the two apart (the server answers pings on its I/O thread, not
  // behind its workers): any bytes within liveness_timeout_ms keep the connection; none drop it
  // (the calls still on it fail with Unavailable) and the next call connects afresh.
  void OnDeadline(uint64_t id) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    // A call still pending while connected went out on this connection (calls in flight on an
    // earlier one failed with it), at its send or, if queued, when the connection opened.
    const bool silent = opt_.liveness_timeout_ms > 0 && state_ == State::kConnected &&
                        last_rx_ < std::max(it->second.sent, connected_at_);
    if (it->second.is_liveness) {
      Complete(id, Status::DeadlineExceeded("liveness ping"));
      if (silent) {
        Fail(Status::Unavailable("connection to " + Where() + " dropped: a call's deadline " +
                                 "passed in silence and a ping got no answer in " +
                                 std::to_string(opt_.liveness_timeout_ms) + " ms"));
      }
      return;
    }
    Complete(id, Status::DeadlineExceeded("no reply within the deadline"));
    if (silent && !checking_liveness_) SendLivenessPing();
  }

  void SendLivenessPing() {
    checking_liveness_ = true;
    const uint64_t id = next_id_++;
    Pending& p = pending_[id];
    p.expect = wire::MessageType::PingResponse;
    p.is_liveness = true;
    p.sent = Clock::now();
    p.done = [this](Result<RawReply>) { checking_liveness_ = false; };
    p.timer = std::make_unique<asio::steady_timer>(
        io_, std::chrono::milliseconds(opt_.liveness_timeout_ms));
    p.timer->async_wait([this, id](boost::system::error_code ec) {
      if (!ec) OnDeadline(id);
    });
    Write(wire::PackFrame(wire::PingRequestT{}, id, opt_.liveness_timeout_ms));
  }

  void StartConnect() {
    state_ = State::kConnecting;
    const uint64_t gen = generation_;
    connect_timer_.expires_after(std::chrono::milliseconds(opt_.connect_timeout_ms));
    connect_timer_.async_wait([this, gen](boost::system::error_code ec) {
      if (ec || gen != generation_ || state_ != State::kConnecting) return;
      Fail(Status::Unavailable("connect to " + Where() + " timed out"));
    });
    resolver_.async_resolve(
        opt_.host, std::to_string(opt_.port),
        [this, gen](boost::system::error_code ec, tcp::resolver::results_type results) {
          if (gen != generation_) return;
          if (ec) return Fail(Status::Unavailable("resolve " + Where() + ": " + ec.message()));
          asio::async_connect(
              socket_, results, [this, gen](boost::system::error_code ec, const tcp::endpoint&) {
                if (gen != generation_) return;
                if (ec) {
                  return Fail(Status::Unavailable("connect " + Where() + ": " + ec.message()));
                }
                OnConnected();
              });
        });
  }

  void OnConnected() {
    connect_timer_.cancel();
    state_ = State::kConnected;
    connected_at_ = Clock::now();
    last_rx_ = Clock::time_point{};
    boost::system::error_code ignored;
    socket_.set_option(tcp::no_delay(true), ignored);
    decoder_ = wire::FrameDecoder(opt_.max_frame_bytes);
    if (!opt_.auth_secret.empty()) {
      // First frame on the connection; the server judges it before reading anything else.
      const uint64_t id = next_id_++;
      Pending& p = pending_[id];
      p.expect = wire::MessageType::AuthResponse;
      p.is_auth = true;
      wire::AuthRequestT auth;
      auth.secret = opt_.auth_secret;
      Write(wire::PackFrame(auth, id, opt_.connect_timeout_ms));
    }
    for (auto& f : queued_) Write(std::move(f));
    queued_.clear();
    StartRead();
  }

  void StartRead() {
    const uint64_t gen = generation_;
    socket_.async_read_some(
        asio::buffer(read_buf_), [this, gen](boost::system::error_code ec, size_t n) {
          if (gen != generation_) return;
          if (ec)
            return Fail(Status::Unavailable("connection to " + Where() + ": " + ec.message()));
          last_rx_ = Clock::now();
          decoder_.Append(std::span<const uint8_t>(read_buf_.data(), n));
          while (auto frame = decoder_.Next()) {
            OnFrame(std::move(*frame));
            if (gen != generation_) return;
          }
          if (decoder_.error() != wire::DecodeError::kNone) {
            return Fail(Status::Unavailable(std::string("bad frame from ") + Where() + ": " +
                                            wire::DecodeErrorName(decoder_.error())));
          }
          StartRead();
        });
  }

  void OnFrame(wire::Frame frame) {
    const uint64_t id = frame.header.request_id;
    auto it = pending_.find(id);
    if (it == pending_.end()) return;  // its deadline passed; the late answer is dropped
    std::string why;
    const wire::ErrorCode code = wire::CheckFrame(frame.header, frame.body, &why);
    if (code != wire::ErrorCode::Ok) {
      return Complete(id, wire::ToStatus(code, "from server: " + why));
    }
    const auto type = static_cast<wire::MessageType>(frame.header.type);
    if (type == wire::MessageType::Error) {
      const auto* err = wire::RootAs<wire::Error>(frame.body);
      Status st = wire::ToStatus(err->code(), err->message() ? err->message()->str() : "");
      if (st.ok()) st = Status::Internal("server sent an Error with code Ok");
      if (it->second.is_auth) return Fail(st);  // the server closes; fail everything with it
      return Complete(id, std::move(st));
    }
    if (type != it->second.expect) {
      return Complete(id, Status::Internal(std::string("unexpected response type ") +
                                           wire::EnumNameMessageType(type)));
    }
    Complete(id, RawReply{type, std::move(frame.body)});
  }

  void Complete(uint64_t id, Result<RawReply> r) {
    auto it = pending_.find(id);
    if (it == pending_.end()) return;
    Pending p = std::move(it->second);
    pending_.erase(it);
    if (p.timer) p.timer->cancel();
    if (p.done) p.done(std::move(r));
  }

  void Write(std::vector<uint8_t> frame) {
    write_q_.push_back(std::move(frame));
    if (!writing_) WriteNext();
  }

  void WriteNext() {
    if (write_q_.empty()) {
      writing_ = false;
      return;
    }
    writing_ = true;
    const uint64_t gen = generation_;
    asio::async_write(
        socket_, asio::buffer(write_q_.front()), [this, gen](boost::system::error_code ec, size_t) {
          if (gen != generation_) return;
          if (ec) {
            return Fail(Status::Unavailable("write to " + Where() + ": " + ec.message()));
          }
          write_q_.pop_front();
          WriteNext();
        });
  }

  // Drops the connection; every call in flight or queued completes with `st`. The next call
  // reconnects.
  void Fail(const Status& st) {
    ++generation_;
    boost::system::error_code ignored;
    socket_.close(ignored);
    resolver_.cancel();
    connect_timer_.cancel();
    state_ = State::kIdle;
    write_q_.clear();
    writing_ = false;
    queued_.clear();
    auto pending = std::move(pending_);
    pending_.clear();
    for (auto& [id, p] : pending) {
      if (p.timer) p.timer->cancel();
      if (p.done) p.done(st);
    }
  }

  std::string Where() const { return opt_.host + ":" + std::to_string(opt_.port); }

  ClientOptions opt_;

 public:
  std::atomic<uint32_t> epoch_{0};

 private:
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  tcp::socket socket_;
  tcp::resolver resolver_;
  asio::steady_timer connect_timer_;
  std::thread thread_;
  State state_ = State::kIdle;
  uint64_t generation_ = 0;
  Clock::time_point connected_at_{};
  Clock::time_point last_rx_{};  // the last bytes received on the current connection
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Pending> pending_;
  std::vector<std::vector<uint8_t>> queued_;
  std::deque<std::vector<uint8_t>> write_q_;
  bool writing_ = false;
  bool checking_liveness_ = false;
  wire::FrameDecoder decoder_;
  std::array<uint8_t, 1 << 16> read_buf_;
};

RpcClient::RpcClient(ClientOptions options) : impl_(std::make_shared<Impl>(std::move(options))) {}

RpcClient::~RpcClient() = default;

void RpcClient::CallAsync(wire::MessageType type, std::vector<uint8_t> body, uint32_t deadline_ms,
                          Callback done) {
  impl_->Call(type, std::move(body), deadline_ms, std::move(done));
}

void RpcClient::Kick() { impl_->Kick(); }

void RpcClient::set_epoch(uint32_t epoch) { impl_->epoch_.store(epoch, std::memory_order_relaxed); }
uint32_t RpcClient::epoch() const { return impl_->epoch_.load(std::memory_order_relaxed); }

Status RpcClient::Connect() { return Call(wire::PingRequestT{}).status(); }

}  // namespace mrl::rpc
