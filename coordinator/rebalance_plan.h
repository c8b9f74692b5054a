// Rebalance and drain plans: which buckets to move where, as decisions only (no sockets, no
// files). A plan is shown to the operator before it runs; each entry becomes a MoveRequest
// (coordinator/move.h) executed by the move state machine.
//
// Thread safety: pure functions over a ShardMap the caller holds.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {

struct PlannedMove {
  uint32_t bucket = 0;
  uint32_t from_group = 0;
  uint32_t to_group = 0;
  bool operator==(const PlannedMove& o) const {
    return bucket == o.bucket && from_group == o.from_group && to_group == o.to_group;
  }
};

// Evens out the load (sum of `bucket_weights`, e.g. vectors or bytes per bucket) over `groups`
// (empty: every live group) with few moves. Greedy: while it lowers the sum of squared loads, move
// from the most- to the least-loaded group the bucket whose weight is nearest half their gap
// (ties: heavier, then lower bucket) -- the move that removes the most imbalance; a bucket
// heavier than the gap would only swap the roles and is never moved. Buckets on groups outside
// `groups` and buckets already moving stay where they are and are not counted.
// InvalidArgument: weights not one per bucket, or an unknown group. NotFound: unknown collection.
Result<std::vector<PlannedMove>> PlanRebalance(const ShardMap& map, const std::string& collection,
                                               const std::vector<uint64_t>& bucket_weights,
                                               const std::vector<uint32_t>& groups = {});

// Moves every bucket of `collection` off `group` onto the other live groups, heaviest first, each
// to the then least-loaded group (by `bucket_weights`; empty: every bucket weighs 1).
// FailedPrecondition: `group` is the last group, or one of its buckets is moving.
// NotFound: unknown collection or group. InvalidArgument: weights not one per bucket.
Result<std::vector<PlannedMove>> PlanDrain(const ShardMap& map, const std::string& collection,
                                           uint32_t group,
                                           const std::vector<uint64_t>& bucket_weights = {});

}  // namespace mrl::coord
