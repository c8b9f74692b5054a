// FrameHandler: what Server (server.h) runs a verified request through. A shard's ShardService
// (its engine behind the wire protocol) and the coordinator's binary API (BinaryApi) both
// implement it, so one network layer (framing, verification, deadlines, authentication,
// back-pressure, graceful shutdown) serves both.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "rpc/server_metrics.h"

namespace mrl::rpc {

// What the server knows about a request besides its type and body.
struct RequestContext {
  uint32_t epoch = 0;  // the frame header's shard-map epoch (0 = not stamped)
  // The figures of the server running the handler, for a Stats answer; null when the handler is
  // driven directly (a test, no server).
  const ServerMetrics* server = nullptr;
};

class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // REQUIRES: wire::CheckFrame accepted `body` as a request of `type`. Called on a worker
  // thread, concurrently. Returns the body of ResponseTypeOf(type), or the error to answer with.
  virtual Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body,
                                              const RequestContext& context) = 0;
};

}  // namespace mrl::rpc
