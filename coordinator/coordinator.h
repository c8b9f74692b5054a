// The coordinator: composes the cluster state (ClusterState: map + specs + budgets, one
// snapshot per request), the connections to the shards (ShardPool), the write path
// (WriteRouter), the query path (QueryEngine), calibration (Calibrator) and the metrics. The
// APIs (http_api.h, binary_api.h) are thin adapters over it.
//
// A request takes one snapshot through WithSnapshot and passes it to every call it makes, so
// its spec, placement and budget come from one epoch. When a shard answers that the map is
// stale (another coordinator changed it), the state is reloaded and the request runs once more
// on the new snapshot.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/build_info.h"
#include "common/collection_spec.h"
#include "common/status.h"
#include "coordinator/cluster_state.h"
#include "coordinator/coordinator_metrics.h"
#include "coordinator/in_sync_keeper.h"
#include "coordinator/move_executor.h"
#include "coordinator/replica_fill.h"
#include "coordinator/query_engine.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"
#include "coordinator/shard_pool.h"
#include "coordinator/write_router.h"

namespace mrl::coord {

struct CoordinatorOptions {
  std::string data_dir;    // shard_map.json and collections.json live here
  std::string read_token;  // non-empty: GET and search need "Authorization: Bearer <read or admin>"
  std::string admin_token;   // non-empty: writes and /v1/cluster need "Bearer <admin>"
  std::string shard_secret;  // shared secret presented to the shards
  uint32_t default_deadline_ms = 2000;
  int32_t max_k = 1000;
  int32_t max_queries = 256;   // query vectors per search request
  int32_t max_points = 10000;  // points per upsert / ids per delete or get
  // In-sync sets (in_sync.h): when a member leaves its group's set, how it returns, and the
  // smallest set that takes writes.
  InSyncOptions in_sync;
  // Follow another coordinator's cluster state in data_dir (shared files) instead of owning it:
  // cluster and collection changes are refused; the state is reloaded whenever a shard reports
  // a newer map epoch or a collection is unknown.
  bool follow = false;
  // Where the cluster state lives: "" = the embedded store in data_dir; etcd://h:p,.../prefix.
  std::string meta_url;
  std::string coordinator_id;  // in the store's session and leader keys ("" = random)
  // A follower on another host: the owner coordinator's URL and a read token of it
  // (ClusterStateOptions::follow_url).
  std::string follow_url;
  std::string follow_token;
  int follow_poll_ms = 1000;
  int session_ttl_s = 10;      // docs/metadata.md: why 10
  int shard_connections = 2;           // pipelined connections per shard (round-robin)
  uint32_t shard_max_in_flight = 256;  // per connection; beyond: ResourceExhausted at once
  ShardHealthOptions shard_health;     // failure detection (probes), replica choice, hedging
  MoveExecutorOptions moves;  // limits and throttle of bucket moves
  // /metrics' mrl_build_info gauge: what the binary was built from (main fills it).
  BuildInfo build;
};

struct Calibration {
  std::vector<CalibrationPoint> candidates;  // every plan measured
  std::map<std::string, QueryPlan> budgets;  // the plan now serving each budget
};

class Coordinator {
 public:
  static Result<std::unique_ptr<Coordinator>> Open(CoordinatorOptions options);
  ~Coordinator();  // stops the move executor first (it uses the state and the pool)

  const CoordinatorOptions& options() const { return opt_; }
  std::shared_ptr<const ClusterSnapshot> Snapshot() const { return state_->Snapshot(); }
  ClusterState& state() { return *state_; }

  // fn(snapshot) -> Status or Result<T>; rerun once on a fresh snapshot when its answer says the
  // snapshot was stale (Aborted from a shard) or, on a follower, that `collection` is unknown.
  template <typename Fn>
  auto WithSnapshot(const std::string& collection, Fn&& fn)
      -> decltype(fn(std::declval<const ClusterSnapshot&>()));

  // Cluster administration (the leader only).
  // Adds a replica group (to an empty or a running cluster; buckets reach it by moves) and
  // creates every collection on its shards. The new group's index.
  Result<uint32_t> AddGroup(const std::vector<ShardInfo>& shards);
  // Removes a drained group's members from the map (ShardMap::RetireGroup's refusals).
  Status RetireGroup(uint32_t group);
  // Bucket moves, rebalance and drain run here (move_executor.h).
  MoveExecutor& moves() { return *moves_; }
  // Replicas (replica_fill.h fills new ones). AddReplica raises `group`'s replication factor:
  // `shard` gets every collection first (nothing changes if it does not answer), then joins as
  // a filling replica. RemoveReplica and ReplaceShard: ShardMap's, with its refusals.
  Status AddReplica(uint32_t group, const ShardInfo& shard);
  Status RemoveReplica(const std::string& shard, bool lower_factor);
  Status ReplaceShard(const std::string& dead, const ShardInfo& fresh);
  ReplicaFiller& fills() { return *fills_; }
  InSyncKeeper& in_sync() { return *in_sync_; }
  // On every shard first (idempotent there), then recorded in the cluster state.
  Status CreateCollection(const CollectionSpec& spec);
  // CheckDroppable's refusals first; then the collection is dropped on every shard in the map
  // (one that does not answer: Unavailable, and the cluster state still has it -- retry), then
  // its placement, spec and budgets leave the cluster state. The number of shards asked.
  Result<size_t> DropCollection(const std::string& name);

  // Writes are acknowledged once every in-sync and filling member of every touched group has
  // them; a member that failed is taken out of its group's in-sync set first (in_sync.h).
  Status Upsert(const ClusterSnapshot& snap, const std::string& collection,
                const std::vector<PointIn>& points, uint32_t deadline_ms);
  Status Delete(const ClusterSnapshot& snap, const std::string& collection,
                const std::vector<uint64_t>& ids, uint32_t deadline_ms);
  Result<std::vector<std::optional<PointIn>>> Get(const ClusterSnapshot& snap,
                                                  const std::string& collection,
                                                  const std::vector<uint64_t>& ids,
                                                  bool with_vector, uint32_t deadline_ms);
  Result<SearchOutcome> Search(const ClusterSnapshot& snap, const SearchSpec& spec);

  // Measures the candidate plans on `sample` stored points of the collection used as queries
  // (recall@k against exact, the query's own point left out) and stores the budgets they pick.
  Result<Calibration> Calibrate(const std::string& collection, int32_t sample, int32_t k);

  CoordinatorMetrics& metrics() { return metrics_; }
  // The coordinator's metrics, its build info, and each shard's disk and store state (asked of
  // the shards at scrape time: mrl_shard_fs_free_bytes, mrl_shard_refusing_writes,
  // mrl_shard_store_failed, ...).
  std::string PrometheusMetrics() const;
  // What the coordinator believes about each shard of the map: state (up / slow / down, and
  // why), probe round trip, latency quantiles, calls in flight, hedges (GET /v1/shards/health).
  std::vector<ShardHealthReport> ShardHealthReports() const;

 private:
  // A new shard joins the map by `edit` (AddReplica, ReplaceShard): the map's refusals first,
  // then every collection on the shard, then the map change; the filler is woken.
  Status JoinShard(const std::string& what, const ShardInfo& shard,
                   const std::function<Status(ShardMap*)>& edit);
  // CreateCollection of every collection on `shard` (idempotent there), before a map names it.
  Status CreateCollectionsOn(const ShardInfo& shard, const std::string& what);
  // Each shard's own Stats for one /metrics scrape: up, points, bytes, RAM, requests, disk.
  std::string ShardStatsMetrics(const ClusterSnapshot& snap) const;
  explicit Coordinator(CoordinatorOptions options);
  Result<std::vector<float>> SampleQueries(const ClusterSnapshot& snap, const CollectionSpec& spec,
                                           int32_t sample);

  static const Status& StatusOf(const Status& s) { return s; }
  template <typename T>
  static const Status& StatusOf(const Result<T>& r) {
    return r.status();
  }

  CoordinatorOptions opt_;
  std::unique_ptr<ShardPool> pool_;
  std::unique_ptr<ClusterState> state_;
  std::unique_ptr<QueryEngine> engine_;
  std::unique_ptr<WriteRouter> writes_;
  CoordinatorMetrics metrics_;
  std::unique_ptr<MoveExecutor> moves_;  // destroyed first (with fills_)
  std::unique_ptr<ReplicaFiller> fills_;
  std::unique_ptr<InSyncKeeper> in_sync_;  // destroyed first
};

template <typename Fn>
auto Coordinator::WithSnapshot(const std::string& collection, Fn&& fn)
    -> decltype(fn(std::declval<const ClusterSnapshot&>())) {
  const std::shared_ptr<const ClusterSnapshot> snap = state_->Snapshot();
  auto r = fn(*snap);
  const Status& st = StatusOf(r);
  const bool stale = st.code() == Status::Code::kAborted;
  // A follower learns of collections the owner created from the same files.
  const bool unknown =
      state_->follow() && st.code() == Status::Code::kNotFound && !snap->specs.count(collection);
  if (!stale && !unknown) return r;
  if (Status refreshed = state_->Refresh(snap->map.epoch()); !refreshed.ok()) {
    if (stale) return refreshed;
    return r;
  }
  return fn(*state_->Snapshot());
}

}  // namespace mrl::coord
