// The coordinator's truth about the cluster: the shard map, the collection specs and the
// calibrated budgets, published as one immutable snapshot. A request takes one snapshot and
// uses it for everything it decides (spec, placement, budget), so its parts never come from
// different epochs; a change publishes a new snapshot, and requests holding the old one finish
// with it.
//
// Persistence: the map (shard_map.json) and the specs (collections.json) live in data_dir,
// each written atomically, map last. Budgets are not persisted: they are measurements of the
// running cluster (POST .../calibrate). A follower never writes; it reloads data_dir when a
// shard reports a newer epoch (Refresh).
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {

struct ClusterSnapshot {
  ShardMap map;
  std::map<std::string, CollectionSpec> specs;
  std::map<std::string, std::map<std::string, QueryPlan>> budgets;  // collection -> name -> plan

  // NotFound "unknown collection '<name>'" when absent (the follower's cue to reload).
  Result<const CollectionSpec*> Spec(const std::string& collection) const;
  // FailedPrecondition naming the calibrate endpoint when the budget was not measured.
  Result<QueryPlan> Budget(const std::string& collection, const std::string& budget) const;
};

class ClusterState {
 public:
  // Called with every newly published map, under the state's lock (so calls arrive in epoch
  // order): the coordinator connects to new shards and stamps requests with the new epoch.
  using MapListener = std::function<void(const ShardMap&)>;

  // Loads data_dir (creating it when absent; an empty cluster when it holds no state).
  // Corruption names the file that does not parse.
  static Result<std::unique_ptr<ClusterState>> Open(const std::string& data_dir, bool follow,
                                                    MapListener on_map);

  std::shared_ptr<const ClusterSnapshot> Snapshot() const;
  bool follow() const { return follow_; }
  uint64_t refreshes() const { return refreshes_.load(); }

  // Changes (the owner only; a follower gets FailedPrecondition). Each persists, then publishes.
  Status AddGroup(const std::vector<ShardInfo>& shards);
  // Places the collection's buckets and records its spec; Ok without change when it exists.
  Status AddCollection(const CollectionSpec& spec);
  void SetBudgets(const std::string& collection, std::map<std::string, QueryPlan> budgets);

  // A shard has seen an epoch newer than `seen_epoch` (or a follower met an unknown collection):
  // reload data_dir. Ok when the reload (or a concurrent one) moved past `seen_epoch`; Aborted
  // when data_dir holds nothing newer.
  Status Refresh(uint64_t seen_epoch);

 private:
  ClusterState(std::string data_dir, bool follow, MapListener on_map)
      : data_dir_(std::move(data_dir)), follow_(follow), on_map_(std::move(on_map)) {}
  static Result<ClusterSnapshot> Load(const std::string& data_dir);
  Status FollowerRefusal() const;
  Status Persist(const ClusterSnapshot& next) const;
  void Publish(std::shared_ptr<const ClusterSnapshot> next, bool map_changed);  // REQUIRES: mu_

  const std::string data_dir_;
  const bool follow_;
  const MapListener on_map_;
  mutable std::mutex mu_;  // guards snap_; serialises changes
  std::shared_ptr<const ClusterSnapshot> snap_;
  std::atomic<uint64_t> refreshes_{0};
};

}  // namespace mrl::coord
