// The write path and point reads: a request's ids are grouped by the replica group that owns
// their bucket (and, for a bucket in motion, the move's other group too: GroupByWriteSet);
// every in-sync and filling member of a group gets the group's batch; a write is acknowledged
// once every one of them has it (in_sync.h). A member that fails it (connection failed, timed
// out) is taken out of the in-sync set first (take_out: the leader's fenced map change), then
// the write is acknowledged without it; where that cannot be done (not the leader, the group's
// last in-sync member) the write fails and a retry is safe. A Get asks one healthy in-sync
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
#include <functional>
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
  int min_in_sync = 1;         // fewer in-sync members: the group refuses writes (503)
  int32_t max_points = 10000;  // points per upsert, ids per delete or get
  // Takes a member that failed a write out of its group's in-sync set (InSyncKeeper::TakeOut);
  // Ok when it is out. Null: a failed member fails the write.
  std::function<Status(uint32_t group, const std::string& shard, const std::string& why)> take_out;
};

class WriteRouter {
 public:
  WriteRouter(ShardPool& pool, WriteRouterOptions options) : pool_(pool), opt_(options) {}

  // InvalidArgument for a point of the wrong dimension or too many points; Unavailable naming
  // the group when it has fewer than min_in_sync in-sync members; else the first member's error
  // (shard-prefixed) when a member failed and could not be taken out of the in-sync set.
  Status Upsert(const ClusterSnapshot& snap, const std::string& collection,
                const std::vector<PointIn>& points, uint32_t deadline_ms);
  // Acknowledged like an upsert.
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
