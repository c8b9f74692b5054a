// The leader's side of the in-sync sets (in_sync.h has the rules): a thread that takes members
// down past the timeout out of their group's set and starts the catch-up of those that answer
// again, and TakeOut, which the write path calls when a write failed on a member. Each change is
// one fenced map change (ClusterState::ChangeMap), so only the leader makes it and a deposed
// leader's change fails.
//
// Thread safety: every public method may be called concurrently.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "coordinator/cluster_state.h"
#include "coordinator/in_sync.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

class InSyncKeeper {
 public:
  // `on_catch_up` is called after a member started catching up (wakes the replica filler).
  InSyncKeeper(ClusterState& state, ShardPool& pool, InSyncOptions options,
               std::function<void()> on_catch_up);
  ~InSyncKeeper();  // stops the thread
  void Start();
  const InSyncOptions& options() const { return opt_; }

  // Takes `shard` of `group` out of the in-sync set now, `why` in the log. Ok when it is out
  // (now, or already by another write); FailedPrecondition on a non-leader (naming the leader)
  // or for the group's last in-sync member; Unavailable when the store did not confirm.
  Status TakeOut(uint32_t group, const std::string& shard, const std::string& why);

  uint64_t taken_out() const { return taken_out_.load(); }
  uint64_t catch_ups_started() const { return catch_ups_.load(); }

 private:
  void Loop();
  void RunOnce();

  ClusterState& state_;
  ShardPool& pool_;
  const InSyncOptions opt_;
  const std::function<void()> on_catch_up_;
  std::atomic<uint64_t> taken_out_{0}, catch_ups_{0};
  std::mutex mu_;  // guards stop_
  std::condition_variable cv_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace mrl::coord
