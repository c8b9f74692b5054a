#include "trainer/shard_plan.h"

#include <algorithm>
#include <limits>

#include "trainer/sampler.h"

namespace mrl {

std::vector<RankShards> PlanEpoch(const std::vector<int64_t>& counts, uint64_t seed,
                                  int64_t epoch, int ranks) {
  const int64_t n = static_cast<int64_t>(counts.size());
  // Shard order of this epoch; a seed distinct from the in-RAM path's sample permutation.
  const std::vector<int64_t> order = EpochPermutation(n, seed ^ 0x5ba7d5a1e0c3f00dULL, epoch);
  std::vector<int64_t> rank_in_order(static_cast<size_t>(n));  // shard -> position in `order`
  for (int64_t i = 0; i < n; ++i) rank_in_order[static_cast<size_t>(order[static_cast<size_t>(i)])] = i;
  std::vector<int64_t> by_size = order;
  std::stable_sort(by_size.begin(), by_size.end(), [&](int64_t a, int64_t b) {
    return counts[static_cast<size_t>(a)] > counts[static_cast<size_t>(b)];
  });
  std::vector<RankShards> plan(static_cast<size_t>(ranks));
  for (int64_t s : by_size) {
    if (counts[static_cast<size_t>(s)] == 0) continue;
    size_t best = 0;
    for (size_t r = 1; r < plan.size(); ++r) {
      if (plan[r].samples < plan[best].samples) best = r;
    }
    plan[best].shards.push_back(static_cast<int>(s));
    plan[best].samples += counts[static_cast<size_t>(s)];
  }
  for (RankShards& r : plan) {
    std::sort(r.shards.begin(), r.shards.end(), [&](int a, int b) {
      return rank_in_order[static_cast<size_t>(a)] < rank_in_order[static_cast<size_t>(b)];
    });
  }
  return plan;
}

int64_t ShardStepsPerEpoch(const std::vector<int64_t>& counts, uint64_t seed, int64_t epochs,
                           int ranks, int64_t samples_per_step) {
  int64_t steps = std::numeric_limits<int64_t>::max();
  for (int64_t e = 0; e < epochs; ++e) {
    for (const RankShards& r : PlanEpoch(counts, seed, e, ranks)) {
      steps = std::min(steps, r.samples / samples_per_step);
    }
  }
  return steps == std::numeric_limits<int64_t>::max() ? 0 : steps;
}

uint64_t ShuffleSeed(uint64_t seed, int64_t epoch, int rank) {
  return SplitMix64(SplitMix64(seed * 0x632be59bd9b4e019ULL + 0x51ed27) ^
                    SplitMix64(static_cast<uint64_t>(epoch) * 1000003ULL + static_cast<uint64_t>(rank)));
}

}  // namespace mrl
