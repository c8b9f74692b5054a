// Server: the framed-RPC network layer of every daemon (mrl-shard, the coordinator's binary API).
// Accepts TCP connections, decodes frames, checks version, authentication, deadlines and limits,
// verifies every body, runs the request on a worker pool through a FrameHandler (a shard's
// ShardService, the coordinator's BinaryApi), and writes the answers back on the connection,
// in completion order (requests are matched by id, so many can be in flight per connection).
// It counts connections and per-type requests (ServerMetrics) for the handler's Stats answer.
//
// Threads: one I/O thread runs every socket (each connection's handlers are serialised on its
// strand); `threads` workers run verification and handler calls, so no handler blocks the I/O.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/frame.h"
#include "common/status.h"
#include "rpc/frame_handler.h"
#include "rpc/server_metrics.h"

namespace mrl::rpc {

struct ServerOptions {
  // The owner's name, prefixed to every line the server logs ("mrl-shard", "mrl-coordinator").
  std::string name = "mrl-rpc";
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: the OS picks one; see Server::port()
  int threads = 0;    // worker pool; 0 = hardware concurrency
  uint32_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  // Back-pressure: a connection with this many requests running stops being read until one
  // finishes.
  uint32_t max_in_flight_per_connection = 64;
  // Requests queued or running across all connections beyond which new ones get Overloaded.
  uint32_t max_queued_requests = 4096;
  uint32_t max_connections = 1024;
  // Non-empty: every connection must send AuthRequest{secret} first.
  std::string auth_secret;
  uint32_t drain_timeout_ms = 30000;  // graceful shutdown's bound on in-flight work
};

class Server {
 public:
  // `handler` must outlive the server.
  Server(ServerOptions options, FrameHandler& handler);
  ~Server();  // Shutdown() if still running
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens, then starts the I/O thread and the worker pool.
  Status Start();
  // The bound port (after Start).
  uint16_t port() const;

  // Graceful stop: closes the listener, stops reading new requests, lets the ones in flight
  // finish and their answers be written (up to drain_timeout_ms), closes every connection and
  // joins the threads. Idempotent; blocks.
  void Shutdown();

  // Connection and request counters since construction (also handed to the handler with every
  // request, RequestContext::server).
  const ServerMetrics& metrics() const;

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mrl::rpc
