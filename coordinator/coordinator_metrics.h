// The coordinator's Prometheus metrics: requests per endpoint and status, searches, queries,
// shortlist candidates, shard errors and per-stage latency histograms (log2 microsecond
// buckets), rendered in the text exposition format (GET /metrics).
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/cluster_state.h"
#include "coordinator/query_engine.h"
#include "coordinator/shard_health.h"

namespace mrl::coord {

class CoordinatorMetrics {
 public:
  void CountRequest(const std::string& endpoint, int http_status);
  // One search (of many queries) that took `total_ms`; `outcome` null when it failed.
  void ObserveSearch(double total_ms, const SearchOutcome* outcome);
  // The exposition text; the map's epoch and reload count are the cluster state's.
  std::string Render(uint64_t map_epoch, uint64_t map_refreshes) const;

 private:
  void Observe(const std::string& stage, double ms);  // REQUIRES: mu_

  mutable std::mutex mu_;
  std::map<std::string, uint64_t> requests_;  // "endpoint status" -> count
  std::map<std::string, std::vector<uint64_t>> latency_;
  std::map<std::string, uint64_t> shard_errors_;
  uint64_t candidates_ = 0, searches_ = 0, queries_ = 0;
};

// The metadata store as this coordinator sees it: mrl_meta_leader (1 while it leads),
// mrl_meta_store_reachable, mrl_meta_revision, mrl_meta_watch_restarts_total,
// mrl_meta_lease_losses_total, mrl_meta_fenced_writes_total.
std::string MetaMetrics(const MetaState& m);

// Each shard's health as the coordinator sees it (issue 20): mrl_coordinator_shard_state{state}
// (1 for its state: up, slow or down), mrl_coordinator_shard_probe_seconds,
// mrl_coordinator_shard_probes_missed, mrl_coordinator_shard_latency_seconds{quantile},
// mrl_coordinator_shard_hedge_delay_seconds, mrl_coordinator_shard_in_flight,
// mrl_coordinator_shard_hedges_total; and mrl_coordinator_hedges_total over
// mrl_coordinator_hedgeable_calls_total.
std::string ShardHealthMetrics(const std::vector<ShardHealthReport>& shards, uint64_t hedges,
                               uint64_t hedgeable_calls);

}  // namespace mrl::coord
