// The in-sync set of each replica group (issue 20; docs/failures.md): which members a write
// must reach before it is acknowledged, when one leaves the set, and when it may come back.
// Plain decisions over a ShardMap and what the coordinator believes about each shard's health;
// the leader's InSyncKeeper (in_sync_keeper.h) and the write path act on them.
//
// The rules, as Elasticsearch keeps its in-sync allocation ids:
// - a write is acknowledged once every in-sync member (ReplicaGroup::shards) and every member
//   being filled has it;
// - a member that fails a write (its connection fails or the call times out), or stays down
//   past out_after_ms, is taken out of the set by the leader, in one fenced map change, before
//   any write is acknowledged without it; the group's last in-sync member is never taken out
//   (writes wait for it instead);
// - while out it gets no writes, reads or queries;
// - it returns by catching up: once it answers again it becomes a filling member (every write
//   reaches it) and the fill copies every entry of its group's buckets written since it may have
//   missed writes (CatchUp::from_version), verifies each bucket against a serving member (count
//   and checksum of (id, version)), copies a bucket whole where that was not enough, and
//   promotes it;
// - with fewer in-sync members than min_in_sync a group refuses writes (Unavailable: HTTP 503).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {

struct InSyncOptions {
  // A serving or filling member down this long (failed calls or missed probes) leaves the set.
  uint32_t out_after_ms = 2000;
  // Writes to a group with fewer in-sync members are refused (503 naming the group).
  int min_in_sync = 1;
  // A catch-up copies the entries written since this long before the member left the set:
  // versions are microseconds of the writing coordinator's clock, so the margin covers writes
  // still in flight when it left (their deadline) and the skew between coordinators' clocks.
  uint32_t catch_up_margin_ms = 60000;
  uint32_t poll_ms = 100;  // how often the leader looks at the members' health
};

// Ok when `group` may take writes; else Unavailable naming the group, its in-sync members and
// the minimum.
Status CheckInSyncSize(uint32_t group_index, const ReplicaGroup& group, int min_in_sync);

// The version from which a member taken out at `now_unix_us` catches up.
uint64_t CatchUpFromVersion(uint64_t now_unix_us, const InSyncOptions& options);

struct InSyncAction {
  enum class Kind { kTakeOut, kStartCatchUp };
  Kind kind = Kind::kTakeOut;
  uint32_t group = 0;
  std::string shard;
  std::string why;
};

// What the leader should change now. `down_for_ms(shard)`: how long the shard has been down
// (nullopt when it is not down); `answering(shard)`: it answered its last probe. A serving
// member down for out_after_ms or longer is taken out unless it is the group's last serving
// member; a filling member too (its fill cannot go on and writes would fail on it); a member out
// of sync that answers starts its catch-up.
std::vector<InSyncAction> PlanInSyncActions(
    const ShardMap& map, const std::function<std::optional<double>(const std::string&)>& down_for_ms,
    const std::function<bool(const std::string&)>& answering, const InSyncOptions& options);

// True for the failures that mean "this member did not get the write" (its connection failed
// or the call timed out), as opposed to an answer refusing it (bad request, disk full), which
// every member would give alike.
bool IsMemberFailure(const Status& status);

}  // namespace mrl::coord
