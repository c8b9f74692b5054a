// The write path and point reads: a request's ids are grouped by the replica group that owns
// their bucket; every replica of a group gets the group's batch; an upsert is acknowledged once
// the required replicas of every touched group have it (write quorum). A Get asks one healthy
// replica per group and moves to the next on failure.
//
// The grouping and the quorum rule are plain functions in shard_map.h (tested without sockets);
// WriteRouter sends the batches over the pool.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/cluster_state.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

struct PointIn {
  uint64_t id = 0;
  std::vector<float> vector;
  std::string payload;
};

struct WriteRouterOptions {
  int write_quorum = 0;        // 0 = every replica
  int32_t max_points = 10000;  // points per upsert, ids per delete or get
};

class WriteRouter {
 public:
  WriteRouter(ShardPool& pool, WriteRouterOptions options) : pool_(pool), opt_(options) {}

  // InvalidArgument for a point of the wrong dimension or too many points; the first replica's
  // error (shard-prefixed) or Unavailable when a group fell short of its quorum.
  Status Upsert(const ClusterSnapshot& snap, const std::string& collection,
                const std::vector<PointIn>& points, uint32_t deadline_ms);
  // Every replica must acknowledge a delete.
  Status Delete(const ClusterSnapshot& snap, const std::string& collection,
                const std::vector<uint64_t>& ids, uint32_t deadline_ms);
  // The stored point of each id (nullopt when unknown).
  Result<std::vector<std::optional<PointIn>>> Get(const ClusterSnapshot& snap,
                                                  const std::string& collection,
                                                  const std::vector<uint64_t>& ids,
                                                  bool with_vector, uint32_t deadline_ms);

 private:
  Status CheckCount(size_t n, const char* what) const;

  ShardPool& pool_;
  const WriteRouterOptions opt_;
};

}  // namespace mrl::coord
