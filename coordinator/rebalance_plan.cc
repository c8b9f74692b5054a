#include "coordinator/rebalance_plan.h"

#include <algorithm>
#include <optional>
#include <set>

namespace mrl::coord {

namespace {

// Per group: the load a plan starts from. A moving bucket counts on the group it moves to.
Result<std::vector<uint64_t>> StartingLoads(const ShardMap& map, const CollectionPlacement& p,
                                            const std::vector<uint64_t>& weights) {
  if (weights.size() != p.num_buckets) {
    return Status::InvalidArgument("bucket weights: " + std::to_string(weights.size()) +
                                   " given for " + std::to_string(p.num_buckets) + " buckets");
  }
  std::vector<uint64_t> load(map.groups().size(), 0);
  for (uint32_t b = 0; b < p.num_buckets; ++b) {
    auto it = p.moving.find(b);
    load[it == p.moving.end() ? p.group_of_bucket[b] : it->second.target_group] += weights[b];
  }
  return load;
}

// Records that `bucket` now goes to `to`, folding repeated moves of one bucket into one.
void Retarget(std::vector<PlannedMove>* plan, uint32_t bucket, uint32_t from, uint32_t to) {
  for (auto it = plan->begin(); it != plan->end(); ++it) {
    if (it->bucket != bucket) continue;
    if (it->from_group == to) {
      plan->erase(it);
    } else {
      it->to_group = to;
    }
    return;
  }
  plan->push_back({bucket, from, to});
}

}  // namespace

Result<std::vector<PlannedMove>> PlanRebalance(const ShardMap& map, const std::string& collection,
                                               const std::vector<uint64_t>& bucket_weights,
                                               const std::vector<uint32_t>& groups) {
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  const CollectionPlacement& p = *placement.value();
  auto load = StartingLoads(map, p, bucket_weights);
  if (!load.ok()) return load.status();
  std::set<uint32_t> in_play;
  for (uint32_t g : groups) {
    if (g >= map.groups().size()) {
      return Status::InvalidArgument("group " + std::to_string(g) + " is not in the map");
    }
    in_play.insert(g);
  }
  if (groups.empty()) {
    for (uint32_t g : map.LiveGroups()) in_play.insert(g);
  }
  std::vector<PlannedMove> plan;
  if (in_play.size() < 2) return plan;
  std::vector<uint32_t> owner = p.group_of_bucket;
  // Each move lowers the sum of squared loads by 2w(gap - w) >= 2, so this ends; the bound is
  // a guard, never reached in practice.
  for (uint64_t round = 0; round < 4ULL * p.num_buckets + 16; ++round) {
    uint32_t hi = *in_play.begin(), lo = hi;
    for (uint32_t g : in_play) {
      if (load.value()[g] > load.value()[hi]) hi = g;
      if (load.value()[g] < load.value()[lo]) lo = g;
    }
    const uint64_t gap = load.value()[hi] - load.value()[lo];
    std::optional<uint32_t> best;
    unsigned __int128 best_gain = 0;
    for (uint32_t b = 0; b < p.num_buckets; ++b) {
      const uint64_t w = bucket_weights[b];
      if (owner[b] != hi || p.moving.count(b) || w == 0 || w >= gap) continue;
      const unsigned __int128 gain = static_cast<unsigned __int128>(w) * (gap - w);
      if (!best || gain > best_gain || (gain == best_gain && w > bucket_weights[*best])) {
        best = b;
        best_gain = gain;
      }
    }
    if (!best) break;
    load.value()[hi] -= bucket_weights[*best];
    load.value()[lo] += bucket_weights[*best];
    owner[*best] = lo;
    Retarget(&plan, *best, p.group_of_bucket[*best], lo);
  }
  return plan;
}

Result<std::vector<PlannedMove>> PlanDrain(const ShardMap& map, const std::string& collection,
                                           uint32_t group,
                                           const std::vector<uint64_t>& bucket_weights) {
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  const CollectionPlacement& p = *placement.value();
  if (group >= map.groups().size()) {
    return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  }
  const std::vector<uint32_t> live = map.LiveGroups();
  if (std::find(live.begin(), live.end(), group) == live.end()) {
    return Status::NotFound("group " + std::to_string(group) + " is retired");
  }
  if (live.size() < 2) {
    return Status::FailedPrecondition("group " + std::to_string(group) +
                                      " is the last group: nowhere to drain it to");
  }
  for (const auto& [b, m] : p.moving) {
    if (m.source_group == group || m.target_group == group) {
      return Status::FailedPrecondition("bucket " + std::to_string(b) + " of '" + collection +
                                        "' is moving to or from group " + std::to_string(group) +
                                        ": let it finish or abort it first");
    }
  }
  const std::vector<uint64_t> weights =
      bucket_weights.empty() ? std::vector<uint64_t>(p.num_buckets, 1) : bucket_weights;
  auto load = StartingLoads(map, p, weights);
  if (!load.ok()) return load.status();
  std::vector<uint32_t> leaving;
  for (uint32_t b = 0; b < p.num_buckets; ++b) {
    if (p.group_of_bucket[b] == group) leaving.push_back(b);
  }
  // Heaviest first, each onto the least-loaded remaining group (LPT): close to even loads.
  std::stable_sort(leaving.begin(), leaving.end(),
                   [&](uint32_t a, uint32_t b) { return weights[a] > weights[b]; });
  std::vector<PlannedMove> plan;
  for (uint32_t b : leaving) {
    std::optional<uint32_t> to;
    for (uint32_t g : live) {
      if (g != group && (!to || load.value()[g] < load.value()[*to])) to = g;
    }
    load.value()[*to] += weights[b];
    plan.push_back({b, group, *to});
  }
  return plan;
}

}  // namespace mrl::coord
