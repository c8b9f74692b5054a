// ShardService: the wire protocol's requests applied to an Engine. It turns a verified request
// body into engine calls and the answer into a response body; no sockets, no threads of its own,
// so tests can drive it directly. mrl-shard's rpc::Server (rpc/server.h) owns the connections
// and calls Handle() from its worker pool.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "rpc/frame_handler.h"
#include "shard/engine.h"

namespace mrl::shard {

struct ServiceLimits {
  int32_t max_queries = 1024;  // queries per Shortlist/Rerank/Search request
  // Where the newest shard-map epoch seen is kept across restarts (empty: in memory only).
  std::string epoch_file;
  // StatsResponse.version: what this binary was built from (VersionSummary, common/build_info.h).
  std::string version;
};

class ShardService : public rpc::FrameHandler {
 public:
  // Loads limits.epoch_file when it exists; Open fails on an unreadable or corrupt one.
  static Result<std::unique_ptr<ShardService>> Open(Engine& engine, ServiceLimits limits = {});
  ShardService(Engine& engine, ServiceLimits limits = {});

  // REQUIRES: wire::CheckFrame accepted `body` as a request of `type`.
  // Returns the body of ResponseTypeOf(type), or the error to answer with. `context.epoch` is
  // the frame header's shard-map epoch: 0 (not stamped) is always accepted; an epoch older than
  // the newest seen is refused with Aborted (wire StaleEpoch) before anything runs; a newer one
  // becomes the newest seen (persisted to epoch_file first). A stamped write (Upsert, Delete) is
  // counted in flight from that check until it has been applied, so drained_epoch() (what a
  // Stats answer reports as map_epoch) never claims an epoch while a write routed by an older
  // map can still land. A Stats answer also carries `context.server`'s connection and request
  // figures (none when it is null).
  Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body,
                                      const rpc::RequestContext& context) override;
  Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body) {
    return Handle(type, body, rpc::RequestContext{});
  }
  // The newest shard-map epoch seen.
  uint32_t map_epoch() const { return epoch_.load(std::memory_order_acquire); }
  // The newest epoch E such that every write this shard admitted, routed by an epoch older than
  // E, has been applied: map_epoch(), or the oldest epoch of a stamped write still in flight. Once
  // it reaches E, no write routed by an older map can change this shard's data any more (the
  // move executor drops a bucket, and copies one, only then).
  uint32_t drained_epoch() const;


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
  Result<std::vector<uint8_t>> Stats(const rpc::ServerMetrics* server);
  Result<std::vector<uint8_t>> ScanBucket(const wire::ScanBucketRequest& req);
  Result<std::vector<uint8_t>> DropBucket(const wire::DropBucketRequest& req);
  Result<std::vector<uint8_t>> BucketChecksum(const wire::BucketChecksumRequest& req);
  Result<std::vector<uint8_t>> PurgeTombstones(const wire::PurgeTombstonesRequest& req);

  // Admits a request routed by `epoch` (see Handle). With `write`, the request is counted in
  // flight under the same lock as the check; EndWrite(epoch) uncounts it.
  Status CheckEpoch(uint32_t epoch, bool write);
  Status CheckEpochLocked(uint32_t epoch);  // REQUIRES: epoch_mu_ held
  void EndWrite(uint32_t epoch);

  Engine& engine_;
  ServiceLimits limits_;
  std::atomic<uint32_t> epoch_{0};
  // Serialises raising epoch_ and writing epoch_file, and guards writes_in_flight_.
  mutable std::mutex epoch_mu_;
  std::map<uint32_t, uint32_t> writes_in_flight_;  // epoch -> stamped writes admitted, not done
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace mrl::shard
