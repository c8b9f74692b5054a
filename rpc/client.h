// RpcClient: the one client of the framed serving protocol, for a shard or the coordinator's
// binary API alike (used by the coordinator, mrlctl, tests).
//
// One TCP connection to host:port, many requests in flight on it (pipelined, matched by request
// id), a deadline per call (sent in the frame header and enforced locally by a timer), optional
// shared-secret authentication as the first frame, and a reconnect on the next call after the
// connection fails. Calls that were in flight when it failed complete with Unavailable; the
// client never resends a request by itself. A connection on which a call's whole deadline passed
// in silence, and then a ping too, is treated as failed (a cut link is otherwise only noticed by
// TCP minutes later, and a link that returns is used again only at TCP's next, backed-off
// retransmission).
//
// Thread safety: every method may be called from any thread. Callbacks run on the client's own
// I/O thread and must not block.
#pragma once

#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace mrl::rpc {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  std::string auth_secret;  // empty: do not authenticate
  uint32_t connect_timeout_ms = 3000;
  uint32_t default_deadline_ms = 30000;  // for calls that pass 0
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  // Requests awaiting an answer on this connection beyond which a call fails at once with
  // ResourceExhausted (back-pressure towards the caller); 0 = unbounded.
  uint32_t max_in_flight = 1024;
  // When a call's deadline passes with nothing received on its connection since it was sent, a
  // Ping goes out on that connection; with no bytes back within this many ms the connection is
  // dropped and the next call reconnects (OnDeadline in client.cc). 0 = never.
  uint32_t liveness_timeout_ms = 500;
};

// A verified response frame: `type` is the expected response type (errors become a Status).
struct RawReply {
  wire::MessageType type = wire::MessageType::Invalid;
  std::vector<uint8_t> body;
};

class RpcClient {
 public:
  explicit RpcClient(ClientOptions options);
  ~RpcClient();  // fails whatever is in flight with Unavailable, joins the I/O thread
  RpcClient(const RpcClient&) = delete;
  RpcClient& operator=(const RpcClient&) = delete;

  using Callback = std::function<void(Result<RawReply>)>;

  // Sends one request body of `type`; `done` gets the verified response body, or the error the
  // server answered with, DeadlineExceeded, or Unavailable.
  void CallAsync(wire::MessageType type, std::vector<uint8_t> body, uint32_t deadline_ms,
                 Callback done);

  // Typed calls: Call(UpsertRequestT{...}) -> Result<UpsertResponseT>.
  template <typename Req>
  std::future<Result<typename wire::ResponseOf<Req>::type>> CallFuture(const Req& req,
                                                                       uint32_t deadline_ms = 0);
  template <typename Req>
  Result<typename wire::ResponseOf<Req>::type> Call(const Req& req, uint32_t deadline_ms = 0) {
    return CallFuture(req, deadline_ms).get();
  }

  // Opens the connection now (otherwise the first call does); Unavailable if it cannot.
  Status Connect();

  // The peer was just heard from (e.g. on another connection): a connection attempt still in
  // progress is restarted now instead of waiting for the kernel's backed-off SYN retry. Queued
  // calls keep waiting for it; an open connection is left alone.
  void Kick();

  // Stamps every later request with this shard-map epoch (0: none). A shard that has seen a
  // newer epoch answers such requests with Aborted (wire StaleEpoch).
  void set_epoch(uint32_t epoch);
  uint32_t epoch() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

template <typename Req>
std::future<Result<typename wire::ResponseOf<Req>::type>> RpcClient::CallFuture(
    const Req& req, uint32_t deadline_ms) {
  using Resp = typename wire::ResponseOf<Req>::type;
  auto promise = std::make_shared<std::promise<Result<Resp>>>();
  auto future = promise->get_future();
  CallAsync(
      wire::MessageTraits<Req>::kType, wire::PackBody(req), deadline_ms,
      [promise](Result<RawReply> reply) {
        if (!reply.ok()) {
          promise->set_value(reply.status());
          return;
        }
        Resp out;
        wire::RootAs<typename wire::MessageTraits<Resp>::TableType>(reply->body)->UnPackTo(&out);
        promise->set_value(std::move(out));
      });
  return future;
}

}  // namespace mrl::rpc
