// ShardService: the wire protocol's requests applied to an Engine. It turns a verified request
// body into engine calls and the answer into a response body; no sockets, no threads of its own,
// so tests can drive it directly. mrl-shard's Server (server.h) owns the connections and calls
// Handle() from its worker pool.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "shard/engine.h"

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

struct ServiceLimits {
  int32_t max_queries = 1024;  // queries per Shortlist/Rerank/Search request
};

class ShardService {
 public:
  ShardService(Engine& engine, ServiceLimits limits = {});

  // REQUIRES: wire::CheckFrame accepted `body` as a request of `type`.
  // Returns the body of ResponseTypeOf(type), or the error to answer with.
  Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body);

  RequestMetrics& metrics() { return metrics_; }
  // Server-level figures reported by Stats next to the engine's.
  std::atomic<uint64_t> connections_open{0};
  std::atomic<uint64_t> connections_total{0};

 private:
  Result<std::vector<uint8_t>> CreateCollection(const wire::CreateCollectionRequest& req);
  Result<std::vector<uint8_t>> DescribeCollection(const wire::DescribeCollectionRequest& req);
  Result<std::vector<uint8_t>> DropCollection(const wire::DropCollectionRequest& req);
  Result<std::vector<uint8_t>> Upsert(const wire::UpsertRequest& req);
  Result<std::vector<uint8_t>> Delete(const wire::DeleteRequest& req);
  Result<std::vector<uint8_t>> Get(const wire::GetRequest& req);
  Result<std::vector<uint8_t>> Shortlist(const wire::ShortlistRequest& req);
  Result<std::vector<uint8_t>> Rerank(const wire::RerankRequest& req);
  Result<std::vector<uint8_t>> Search(const wire::SearchRequest& req);
  Result<std::vector<uint8_t>> Stats();
  Result<std::vector<uint8_t>> ScanBucket(const wire::ScanBucketRequest& req);
  Result<std::vector<uint8_t>> DropBucket(const wire::DropBucketRequest& req);

  Engine& engine_;
  ServiceLimits limits_;
  RequestMetrics metrics_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

// Conversions between the wire's collection spec and the engine's.
CollectionSpec FromWire(const wire::CollectionSpec& spec);
wire::CollectionSpecT ToWire(const CollectionSpec& spec);

}  // namespace mrl::shard
