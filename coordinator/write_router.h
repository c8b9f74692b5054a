// The write path and point reads: a request's ids are grouped by the replica group that owns
// their bucket (and, for a bucket in motion, the move's other group too: GroupByWriteSet);
// every replica of a group gets the group's batch; an upsert is acknowledged once
// the required replicas of every touched group have it (write quorum). A Get asks one healthy
// replica per group and moves to the next on failure.
//
// The grouping and the quorum rule are plain functions in shard_map.h (tested without sockets);
// WriteRouter sends the batches over the pool.
//
// Versions: every point of an upsert and every id of a delete carries a version, so that a
// bucket copied while it is written ends with the newest event of each id (shard/engine.h:
// newest wins; deletes leave tombstones). A version is a hybrid clock: microseconds since the
// Unix epoch, strictly increasing within this coordinator (the i-th id of a request gets
// first + i). Between coordinators the later wall clock wins: a write through a coordinator
// whose clock runs behind another's by more than the gap between two writes of one id loses to
// the earlier write (keep clocks in sync with NTP; the gap is normally seconds).
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
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
  // The first of n consecutive versions reserved for one request.
  uint64_t NextVersions(size_t n);

  ShardPool& pool_;
  const WriteRouterOptions opt_;
  std::atomic<uint64_t> last_version_{0};
};

}  // namespace mrl::coord
