// ServerMetrics: what a Server (server.h) counts about the traffic it serves, whatever handler
// runs behind it: connections (open now, accepted in total) and, per request type, the count,
// the errors and a log2 latency histogram. The server owns them; a handler reads them through
// RequestContext::server to answer a Stats request (frame_handler.h).
//
// Thread safety: every method may be called concurrently (relaxed atomics; a reader sees each
// figure as of some recent moment, not one consistent snapshot).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>

#include "common/protocol.h"

namespace mrl::rpc {

class ServerMetrics {
 public:
  static constexpr int kTypes = static_cast<int>(wire::MessageType::MAX) + 1;
  static constexpr int kBuckets = 32;  // bucket i: [2^i, 2^(i+1)) microseconds

  // One request of `type` answered after `micros` (from receipt), `ok` or with an error.
  // Types >= kTypes are not counted.
  void RecordRequest(wire::MessageType type, uint64_t micros, bool ok);
  void ConnectionOpened();
  void ConnectionClosed();

  uint64_t connections_open() const { return connections_open_.load(std::memory_order_relaxed); }
  uint64_t connections_total() const { return connections_total_.load(std::memory_order_relaxed); }

  // Writes the connection counters and one RequestStats per type seen into a Stats answer.
  void FillStats(wire::StatsResponseT* out) const;

 private:
  struct PerType {
    std::atomic<uint64_t> count{0}, errors{0}, total_us{0};
    std::array<std::atomic<uint64_t>, kBuckets> buckets{};
  };
  std::array<PerType, kTypes> per_type_{};
  std::atomic<uint64_t> connections_open_{0};
  std::atomic<uint64_t> connections_total_{0};
};

}  // namespace mrl::rpc
