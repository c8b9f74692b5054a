// FrameHandler: what Server (server.h) runs a verified request through. ShardService (a shard's
// engine behind the wire protocol) and the coordinator's binary API (coordinator/
// binary_service.h) both implement it, so one network layer (framing, verification, deadlines,
// authentication, back-pressure, graceful shutdown) serves both.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace mrl::shard {

// Request counts and log2 latency histograms per message type. Thread-safe (relaxed atomics).
class RequestMetrics {
 public:
  static constexpr int kTypes = 32;
  static constexpr int kBuckets = 32;  // bucket i: [2^i, 2^(i+1)) microseconds
  void Record(wire::MessageType type, uint64_t micros, bool ok);
  void FillStats(wire::StatsResponseT* out) const;

 private:
  struct PerType {
    std::atomic<uint64_t> count{0}, errors{0}, total_us{0};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
  };
  std::array<PerType, kTypes> per_type_{};
};

class FrameHandler {
 public:
  virtual ~FrameHandler() = default;
  // REQUIRES: wire::CheckFrame accepted `body` as a request of `type`. Called on a worker
  // thread, concurrently. Returns the body of ResponseTypeOf(type), or the error to answer with.
  // `epoch` is the frame header's shard-map epoch (0 = not stamped).
  virtual Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body,
                                              uint32_t epoch) = 0;

  RequestMetrics& metrics() { return metrics_; }
  // Server-level figures, kept by Server, reported by Stats.
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_total{0};

 protected:
  RequestMetrics metrics_;
};

}  // namespace mrl::shard
