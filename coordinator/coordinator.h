// The coordinator: cluster state (shard map + collection specs, persisted atomically in
// data_dir), the write path (route by bucket to every replica, acknowledge once the required
// replicas have), the query path (QueryEngine), and the HTTP/JSON API over them.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/collection_spec.h"
#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/http_server.h"
#include "coordinator/query_engine.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

struct CoordinatorOptions {
  std::string data_dir;          // shard_map.json and collections.json live here
  std::string read_token;        // non-empty: GET and search need "Authorization: Bearer <read or admin>"
  std::string admin_token;       // non-empty: writes and /v1/cluster need "Bearer <admin>"
  std::string shard_secret;      // shared secret presented to the shards
  uint32_t default_deadline_ms = 2000;
  int32_t max_k = 1000;
  int32_t max_queries = 256;     // query vectors per search request
  int32_t max_points = 10000;    // points per upsert / ids per delete or get
  int write_quorum = 0;          // replicas that must acknowledge a write; 0 = all
  // Follow another coordinator's cluster state in data_dir (shared files) instead of owning it:
  // cluster and collection changes are refused; the state is reloaded whenever a shard reports
  // a newer map epoch or a collection is unknown.
  bool follow = false;
  int shard_connections = 2;             // pipelined connections per shard (round-robin)
  uint32_t shard_max_in_flight = 256;    // per connection; beyond: ResourceExhausted at once
};

struct PointIn {
  uint64_t id = 0;
  std::vector<float> vector;
  std::string payload;
};

class Coordinator {
 public:
  static Result<std::unique_ptr<Coordinator>> Open(CoordinatorOptions options);
  ~Coordinator();

  // Cluster administration.
  Status AddGroup(const std::vector<ShardInfo>& shards);
  Status CreateCollection(const CollectionSpec& spec);
  Result<CollectionSpec> Describe(const std::string& collection) const;
  ShardMap MapSnapshot() const;

  // Writes: acknowledged once write_quorum replicas of every touched bucket have the points.
  Status Upsert(const std::string& collection, const std::vector<PointIn>& points,
                uint32_t deadline_ms);
  Status Delete(const std::string& collection, const std::vector<uint64_t>& ids, uint32_t deadline_ms);
  // The stored point of each id (nullopt when unknown).
  Result<std::vector<std::optional<PointIn>>> Get(const std::string& collection,
                                                  const std::vector<uint64_t>& ids,
                                                  bool with_vector, uint32_t deadline_ms);

  Result<SearchOutcome> Search(const SearchSpec& spec);
  // Measures the candidate plans on `sample` points of the collection used as queries (recall
  // against exact at `k`) and stores the named budgets (fast / balanced / exact).
  Result<std::vector<CalibrationPoint>> Calibrate(const std::string& collection, int32_t sample,
                                                  int32_t k);
  Result<QueryPlan> BudgetPlan(const std::string& collection, const std::string& budget) const;

  // The HTTP API (docs/api.md).
  HttpResponse Handle(const HttpRequest& request);
  std::string PrometheusMetrics() const;

 private:
  explicit Coordinator(CoordinatorOptions options);
  Status Persist() const;  // REQUIRES: mu_ held
  Status FollowerRefusal() const;

  // Multi-coordinator consistency: every request to a shard is stamped with the map's epoch; a
  // shard that has seen a newer one answers Aborted. Then the state is reloaded from data_dir
  // (where the owning coordinator persists it) and the call is run once more.
  struct State {
    ShardMap map;
    std::map<std::string, std::unique_ptr<CollectionSpec>> specs;
  };
  static Result<State> LoadState(const std::string& data_dir);
  Status RefreshMap(uint64_t seen_epoch);
  template <typename Fn>
  auto WithFreshMap(const std::string& collection, Fn&& fn) -> decltype(fn());

  Status UpsertOnce(const std::string& collection, const std::vector<PointIn>& points, uint32_t deadline_ms);
  Status DeleteOnce(const std::string& collection, const std::vector<uint64_t>& ids, uint32_t deadline_ms);
  Result<std::vector<std::optional<PointIn>>> GetOnce(const std::string& collection,
                                                      const std::vector<uint64_t>& ids, bool with_vector,
                                                      uint32_t deadline_ms);
  Result<SearchOutcome> SearchOnce(const SearchSpec& spec);
  Result<CollectionSpec> SpecLocked(const std::string& collection) const;

  CoordinatorOptions opt_;
  mutable std::mutex mu_;
  ShardMap map_;
  std::map<std::string, std::unique_ptr<CollectionSpec>> specs_;
  std::map<std::string, std::map<std::string, QueryPlan>> budgets_;
  std::unique_ptr<ShardPool> pool_;
  std::unique_ptr<QueryEngine> engine_;

  struct Metrics;
  std::unique_ptr<Metrics> metrics_;
};

}  // namespace mrl::coord
