// Which shards each rank reads in an epoch, as a pure function of (seed, epoch, ranks, per-shard
// sample counts): every rank computes the same plan with no communication, so ranks agree on the
// number of steps and none can run out of data before the others.
#pragma once

#include <cstdint>
#include <vector>

namespace mrl {

struct RankShards {
  std::vector<int> shards;  // indices into the shard list, in the order this rank streams them
  int64_t samples = 0;      // their usable samples
};

// Epoch e: the shards are put in a (seed, e)-shuffled order; then, largest first (ties in that
// order), each shard goes to the rank with the fewest samples so far (lowest rank on ties), which
// balances uneven shards to within one shard's size. A rank streams its shards in the shuffled
// order. Shards with 0 usable samples are not assigned. Disjoint, and every usable sample is
// assigned to exactly one rank. REQUIRES: ranks >= 1.
std::vector<RankShards> PlanEpoch(const std::vector<int64_t>& counts, uint64_t seed,
                                  int64_t epoch, int ranks);

// Steps per epoch that every rank can run in every epoch of the run:
// min over epochs e < `epochs` and ranks r of floor(samples(e, r) / samples_per_step).
// Each rank drops the rest of its epoch's samples (at most one shard's worth plus a batch when
// shards are uneven; less than a step when they are equal). 0 when some rank has fewer samples
// than one step (e.g. fewer non-empty shards than ranks).
int64_t ShardStepsPerEpoch(const std::vector<int64_t>& counts, uint64_t seed, int64_t epochs,
                           int ranks, int64_t samples_per_step);

// Seed of the shuffle buffer of (seed, epoch, rank).
uint64_t ShuffleSeed(uint64_t seed, int64_t epoch, int rank);

}  // namespace mrl
