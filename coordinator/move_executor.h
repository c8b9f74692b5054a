// Runs the move journal: the leader's one thread that takes every active move record
// (coordinator/move.h) one step at a time -- map changes, epoch waits, the copy, the verify, the
// cleanup -- and records each step in the journal (ClusterState::RecordMoveWith) before the
// next. A step that changes the map is one transaction with the record's new phase, so the two
// never disagree; every other step is re-run safely after a crash (copies apply newer versions
// only, drops are idempotent), so a coordinator that takes over the lead resumes every move from
// its record.
//
// Scheduling: a move request (Submit; rebalance and drain submit many) is recorded PLANNED at
// once; a PLANNED move starts only while fewer than `max_moves_per_group` started moves touch
// its source or target group, so a plan of hundreds of buckets runs a few at a time per group.
// The copy is throttled to `max_bytes_per_s` (0: unthrottled) over all moves.
//
// Steps talk to the shards over the pool: Stats (the epoch a shard has seen: the pool stamps
// every request with the newest map's epoch), ScanBucket on a healthy source replica, versioned
// Upsert/Delete to every target replica, BucketChecksum on both sides, DropBucket.
//
// Thread safety: every public method may be called concurrently.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"
#include "coordinator/cluster_state.h"
#include "coordinator/move.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

struct MoveExecutorOptions {
  uint32_t max_moves_per_group = 2;  // started (not PLANNED) moves touching one group
  uint32_t max_queued_per_group = 65536;  // PLANNED + started; beyond: ResourceExhausted
  uint32_t max_verify_attempts = 3;
  int32_t copy_batch = 1000;     // ids per ScanBucket page (one journal write per page)
  uint64_t max_bytes_per_s = 0;  // copy throttle over all moves; 0 = unthrottled
  uint32_t rpc_deadline_ms = 10000;
  int idle_poll_ms = 200;  // how often an idle executor re-reads the journal
  // Finished records (DONE, settled ABORTED) beyond the newest keep_finished are deleted from
  // the journal once finished for prune_after_s (so a long `--wait` never loses its moves).
  uint32_t keep_finished = 1000;
  uint32_t prune_after_s = 86400;
};

// A move as the admin API shows it.
struct MoveView {
  MoveRecord record;
  int64_t revision = 0;     // the journal entry's mod revision
  double percent = 0;       // by phase; COPY by points copied of the bucket's points
  double points_per_s = 0;  // copy rate of the current attempt (0 when not copying)
  std::optional<double> eta_s;
  uint64_t bucket_points = 0;  // the source's count when the copy began (0: unknown)
  std::string waiting_on;      // why the last step could not finish (empty: none)
};

class MoveExecutor {
 public:
  MoveExecutor(ClusterState& state, ShardPool& pool, MoveExecutorOptions options);
  ~MoveExecutor();  // stops the thread after its current step

  void Start();
  // Runs the journal now (a new move, a new leadership) instead of at the next poll.
  void Wake();

  // Plans (PlanMove's refusals) and records the move PLANNED; the executor starts it when the
  // per-group limit allows. The leader only (FailedPrecondition naming the leader otherwise).
  Result<MoveRecord> Submit(MoveRequest request);
  // Aborts `id` (move.h's Abort): before FLIP the target's copy is discarded; in FLIP a reverse
  // move is recorded first, then the abort (a crash between the two is finished on resume).
  Result<AbortResult> AbortMove(const std::string& id, const std::string& reason);
  std::vector<MoveView> List() const;

  // Points per bucket of `collection` (BucketChecksum counts on one healthy replica of each
  // bucket's owner): the planner's weights.
  Result<std::vector<uint64_t>> BucketWeights(const ShardMap& map, const std::string& collection);

 private:
  struct Progress {  // in memory only: rate and ETA of the current copy
    uint64_t bucket_points = 0;
    uint64_t copied_at_start = 0;
    std::chrono::steady_clock::time_point started{};
    std::string waiting_on;
  };

  void Loop();
  // One pass over the journal: each active record one step. True when anything moved.
  bool RunOnce();
  // Deletes finished records beyond keep_finished (the oldest first).
  void Prune(const ClusterSnapshot& snap);
  // One step of `record`; Ok when it advanced or has to wait (waiting_on set).
  Status Step(const MoveRecord& record, int64_t revision);
  Status MapStep(const MoveRecord& record, int64_t revision, bool advance);
  // Ok when every reachable shard of `groups` has seen `epoch` (unreachable ones are skipped:
  // they see the new epoch on their first request after they return).
  Result<bool> ShardsSawEpoch(const ShardMap& map, const std::vector<uint32_t>& groups,
                              uint64_t epoch);
  Status CopyPage(const ShardMap& map, const MoveRecord& record, int64_t revision);
  Result<VerifyFigures> Figures(const std::string& shard, const MoveRecord& record);
  Status Verify(const ShardMap& map, const MoveRecord& record, int64_t revision);
  // CreateCollection (idempotent) on every member of `group`.
  Status EnsureCollection(const ShardMap& map, uint32_t group, const CollectionSpec& spec);
  // DropBucket on every member of `group`; Unavailable naming a member that did not answer.
  Status DropOn(const ShardMap& map, uint32_t group, const MoveRecord& record);
  Result<int64_t> Record(const MoveRecord& next, int64_t revision);
  std::optional<std::string> HealthySource(const ShardMap& map, uint32_t group);
  void SetWaiting(const std::string& id, const std::string& why);
  void Throttle(uint64_t bytes);

  ClusterState& state_;
  ShardPool& pool_;
  const MoveExecutorOptions opt_;

  mutable std::mutex mu_;  // guards progress_, wake_, stop_, throttle state
  std::condition_variable cv_;
  std::map<std::string, Progress> progress_;
  bool wake_ = false;
  bool stop_ = false;
  std::chrono::steady_clock::time_point throttle_start_{};
  uint64_t throttle_bytes_ = 0;
  std::thread thread_;
};

}  // namespace mrl::coord
