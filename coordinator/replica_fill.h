// Fills the replicas a group gained (replicate, replace-shard) and catches up members that
// return to the in-sync set (in_sync.h): the leader's one thread that
// finds a filling replica in the map (ReplicaGroup::filling), copies every bucket its group
// stores from a healthy serving replica to it, verifies each bucket (count and checksum of
// (id, version) equal on both sides), then promotes it to serving in one map change.
//
// Why this is safe under writes: the map change that added the replica moved the epoch, and the
// fill starts only once every reachable member of the group has seen that epoch, so every write
// the source has not yet applied reaches the new replica too (the write router sends writes to
// filling replicas and requires their ack). The copy is versioned (bucket_copy.h): a page that
// lands after a newer write changes nothing, and tombstones are copied, so nothing deleted comes
// back. Progress lives in memory: a coordinator that takes over the lead (or restarts) fills the
// replica again from the start, which is re-running idempotent pages.
//
// A catch-up (the map has a CatchUp for the member) copies only the entries of its from_version
// or newer (ScanBucket's min_version); when a bucket then still differs from the source (the
// member holds a write the group never acknowledged, or the window missed something) the bucket
// is dropped on the member and copied whole.
//
// Thread safety: every public method may be called concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "coordinator/cluster_state.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

struct ReplicaFillOptions {
  int32_t copy_batch = 1000;  // ids per ScanBucket page
  uint32_t rpc_deadline_ms = 10000;
  int idle_poll_ms = 200;
  uint32_t max_verify_attempts = 3;  // copies of one bucket before the fill reports it stuck
  double max_bytes_per_s = 0;        // copy throttle (0 = none): --move-max-bytes-per-s
};

// A fill as the admin API shows it.
struct FillView {
  uint32_t group = 0;
  std::string shard;
  uint32_t buckets_done = 0;
  uint32_t buckets_total = 0;
  uint64_t points_copied = 0;
  double seconds = 0;
  std::string waiting_on;  // why the last step could not finish (empty: none)
  bool catch_up = false;   // a returning member: only what changed since from_version
  uint64_t from_version = 0;
  uint32_t buckets_copied_whole = 0;  // catch-up buckets that needed the whole copy
};

class ReplicaFiller {
 public:
  ReplicaFiller(ClusterState& state, ShardPool& pool, ReplicaFillOptions options);
  ~ReplicaFiller();  // stops the thread after its current step
  void Start();
  void Wake();
  // The fill in progress on this coordinator (none when not leading or nothing fills).
  std::optional<FillView> Current() const;

 private:
  struct Fill {
    uint32_t group = 0;
    std::string shard;
    uint64_t joined_epoch = 0;  // the map epoch the fill saw first; members must have seen it
    bool epoch_seen = false;
    std::vector<std::pair<std::string, uint32_t>> todo;  // (collection, bucket)
    size_t next = 0;
    std::optional<uint64_t> cursor;
    uint32_t attempts = 0;  // copies of todo[next]
    bool whole = false;     // todo[next] is being copied whole (after a failed catch-up copy)
    bool catch_up = false;
    uint64_t from_version = 0;
    uint32_t copied_whole = 0;
    uint64_t points = 0;
    uint64_t bytes = 0;  // copied so far (the throttle's measure)
    std::chrono::steady_clock::time_point started;
    std::string waiting_on;
  };
  void Loop();
  bool RunOnce();  // one step of the fill; true when it made progress
  Status Step(const ClusterSnapshot& snap, Fill& fill);

  ClusterState& state_;
  ShardPool& pool_;
  const ReplicaFillOptions opt_;
  mutable std::mutex mu_;  // guards fill_, wake_, stop_
  std::condition_variable cv_;
  std::optional<Fill> fill_;  // touched by the thread; copied out under mu_
  bool wake_ = false;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mrl::coord
