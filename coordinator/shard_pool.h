// A few rpc::RpcClient connections per shard of the map, and what the coordinator believes
// about each shard's health (coordinator/shard_health.h): every call's outcome and latency, and
// a Ping every probe_interval_ms on each shard's own probe connection. A shard is down after a
// call to it failed with Unavailable or DeadlineExceeded, or after it missed its probes; its next
// answered probe (or call) brings it back, so a restarted or resumed shard rejoins within a probe
// interval without an operator.
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <condition_variable>
#include <thread>

#include "coordinator/fan_out.h"
#include "coordinator/shard_health.h"
#include "coordinator/shard_map.h"
#include "rpc/client.h"

namespace mrl::coord {

struct PoolOptions {
  std::string auth_secret;
  uint32_t connect_timeout_ms = 1000;
  // How long a disk-full refusal is remembered; failure detection, replica choice and hedging
  // (with probe_interval_ms = 0, a down shard is retried after health.retry_after_ms).
  uint32_t retry_after_ms = 2000;
  ShardHealthOptions health;
  // Pipelined connections per shard, used round-robin: one connection is one TCP stream and one
  // reader on each side, so a few spread a busy coordinator's load over the shard's workers.
  int connections_per_shard = 2;
  // Requests awaiting an answer per connection; beyond it a call fails at once with
  // ResourceExhausted, which the query path treats like a busy replica (try another member).
  uint32_t max_in_flight_per_connection = 256;
};

class ShardPool : public ShardChannels {
 public:
  // Starts the prober (when options.health.probe_interval_ms > 0).
  explicit ShardPool(PoolOptions options);
  // Stops the prober and closes every connection; calls still in flight complete with
  // Unavailable, and their callbacks may still Report (ignored from here on).
  ~ShardPool() override;

  // Creates clients for shards of `map` not yet known (addresses are fixed per shard id) and
  // stamps every client's later requests with the map's epoch.
  void Sync(const ShardMap& map);
  // Creates clients for `shard` before any map names it (a replica about to join gets its
  // collections first). A shard already known keeps its clients.
  void Ensure(const ShardInfo& shard);
  // REQUIRES: Sync saw `shard`. The next of the shard's connections (round-robin); it outlives
  // the pool's use of it.
  rpc::RpcClient* Client(const std::string& shard);
  bool Healthy(const std::string& shard) override;
  // Records the outcome of a call: failures that mean "the shard is gone" mark it down; an
  // InsufficientStorage answer (its disk is above the watermark) marks it as refusing writes.
  void Report(const std::string& shard, const Status& status) override;
  // On the next of the shard's connections; Unavailable at once for a shard Sync never saw.
  void Call(const std::string& shard, wire::MessageType type, std::vector<uint8_t> body,
            uint32_t deadline_ms, rpc::RpcClient::Callback done) override;
  // The shard's last InsufficientStorage answer while it is recent (retry_after_ms): a write
  // touching it is refused before anything of the batch is sent. Ok otherwise.
  Status WriteRefusal(const std::string& shard);

  double RouteCost(const std::string& shard) override;
  std::chrono::microseconds HedgeDelay(const std::string& shard, wire::MessageType type) override;
  bool TakeHedge(const std::string& shard) override;
  // Each known shard's state, probe, latency and hedge figures (for /metrics, /v1/cluster/health).
  std::vector<ShardHealthReport> HealthReports();
  bool HealthProbing() const { return options_.health.probe_interval_ms > 0; }
  uint64_t hedges() const { return health_.hedges(); }
  uint64_t hedgeable_calls() const { return health_.hedgeable_calls(); }

 private:
  struct Entry {
    std::vector<std::unique_ptr<rpc::RpcClient>> clients;
    std::unique_ptr<rpc::RpcClient> probe;  // its own connection: never queued behind queries
    bool probe_out = false;                 // a probe awaits its answer
    size_t next = 0;
    Status write_refusal;  // the last InsufficientStorage answer
    std::chrono::steady_clock::time_point refused_at;
  };
  void AddLocked(const ShardInfo& shard);  // REQUIRES: mu_
  void ProbeLoop();
  PoolOptions options_;
  ShardHealth health_;
  std::mutex mu_;
  std::map<std::string, Entry> entries_;
  bool closing_ = false;  // guarded by mu_: set by the destructor
  std::mutex probe_mu_;
  std::condition_variable probe_cv_;
  bool stop_probes_ = false;  // guarded by probe_mu_
  std::thread prober_;
};

}  // namespace mrl::coord
