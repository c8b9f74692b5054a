// Who may move and where buckets should go: the refusals of a move request (PlanMove) and the
// rebalance and drain planners, on hand-computed weights.
#include <gtest/gtest.h>

#include <algorithm>
#include <functional>
#include <map>
#include <random>
#include <set>

#include "common/bucket.h"
#include "coordinator/move.h"
#include "coordinator/rebalance_plan.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {
namespace {

using Code = Status::Code;

// Groups 0 = {a1, a2}, 1 = {b1, b2}, 2 = {c1, c2}; "docs" has 8 buckets, bucket b on group b % 3:
// group 0 holds 0, 3, 6; group 1 holds 1, 4, 7; group 2 holds 2, 5.
ShardMap ThreeGroups() {
  ShardMap m;
  EXPECT_TRUE(m.AddGroup({{"a1", "127.0.0.1:1"}, {"a2", "127.0.0.1:2"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"b1", "127.0.0.1:3"}, {"b2", "127.0.0.1:4"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"c1", "127.0.0.1:5"}, {"c2", "127.0.0.1:6"}}).ok());
  EXPECT_TRUE(m.PlaceCollection("docs", 8).ok());
  return m;
}

std::function<bool(const std::string&)> AllBut(std::set<std::string> down) {
  return [down](const std::string& s) { return !down.count(s); };
}

Status Plan(const ShardMap& m, const std::vector<MoveRecord>& active, uint32_t bucket,
            uint32_t target, std::set<std::string> down = {}, std::string coll = "docs",
            std::string id = "new") {
  return PlanMove(m, active, {id, coll, bucket, target, 1}, AllBut(down)).status();
}

MoveRecord Active(std::string id, uint32_t bucket, uint32_t from, uint32_t to) {
  MoveRecord r;
  r.id = id;
  r.collection = "docs";
  r.bucket = bucket;
  r.source_group = from;
  r.target_group = to;
  r.phase = MovePhase::kCopy;
  return r;
}

TEST(PlanMove, PlansAMoveFromTheBucketsOwnerWhenNothingStandsInTheWay) {
  ShardMap m = ThreeGroups();
  auto r = PlanMove(m, {}, {"m1", "docs", 4, 0, 1234}, AllBut({"b1", "a2"}));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->phase, MovePhase::kPlanned);
  EXPECT_EQ(r->source_group, 1u);
  EXPECT_EQ(r->target_group, 0u);
  EXPECT_EQ(r->created_unix_ms, 1234);
  EXPECT_TRUE(IsActive(r.value()));
}

TEST(PlanMove, RefusesAnUnknownCollectionBucketOrGroupAndABadId) {
  ShardMap m = ThreeGroups();
  EXPECT_EQ(Plan(m, {}, 0, 1, {}, "nope").code(), Code::kNotFound);
  EXPECT_EQ(Plan(m, {}, 8, 1).code(), Code::kOutOfRange);
  EXPECT_EQ(Plan(m, {}, 0, 3).code(), Code::kNotFound);
  EXPECT_EQ(Plan(m, {}, 0, 1, {}, "docs", "bad id/").code(), Code::kInvalidArgument);
}

TEST(PlanMove, RefusesAMoveToTheGroupTheBucketAlreadyLivesOn) {
  ShardMap m = ThreeGroups();
  Status s = Plan(m, {}, 4, 1);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("already lives on group 1"), std::string::npos) << s.message();
}

TEST(PlanMove, RefusesABucketAlreadyMovingInTheRecordsOrInTheMapAndATakenId) {
  ShardMap m = ThreeGroups();
  Status s = Plan(m, {Active("old", 4, 1, 2)}, 4, 0);
  EXPECT_EQ(s.code(), Code::kFailedPrecondition);
  EXPECT_NE(s.message().find("already moving"), std::string::npos) << s.message();
  // A finished move of the same bucket does not hold it.
  MoveRecord done = Active("old", 4, 1, 2);
  done.phase = MovePhase::kDone;
  EXPECT_TRUE(Plan(m, {done}, 4, 0).ok());
  EXPECT_EQ(Plan(m, {done}, 4, 0, {}, "docs", "old").code(), Code::kFailedPrecondition);
  ASSERT_TRUE(m.BeginDualWrite("docs", 5, 0).ok());
  EXPECT_EQ(Plan(m, {}, 5, 1).code(), Code::kFailedPrecondition);
}

TEST(PlanMove, RefusesADeadTargetGroupOrEverySourceReplicaDown) {
  ShardMap m = ThreeGroups();
  Status dead_target = Plan(m, {}, 0, 1, {"b1", "b2"});
  EXPECT_EQ(dead_target.code(), Code::kUnavailable);
  EXPECT_NE(dead_target.message().find("target group 1"), std::string::npos);
  Status dead_source = Plan(m, {}, 0, 1, {"a1", "a2"});
  EXPECT_EQ(dead_source.code(), Code::kUnavailable);
  EXPECT_NE(dead_source.message().find("source group 0"), std::string::npos);
  EXPECT_TRUE(Plan(m, {}, 0, 1, {"a1", "b2"}).ok());  // one replica of each is enough
}

TEST(PlanMove, RefusesMoreThanTheLimitOfActiveMovesTouchingAGroup) {
  ShardMap m = ThreeGroups();
  // Group 2 is the target of one move and the source of another: at the limit of 2.
  const std::vector<MoveRecord> active{Active("x", 0, 0, 2), Active("y", 5, 2, 1)};
  Status s = Plan(m, active, 3, 2);
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_NE(s.message().find("group 2"), std::string::npos) << s.message();
  EXPECT_EQ(Plan(m, active, 2, 0).code(), Code::kResourceExhausted);  // from group 2
  MoveLimits roomy;
  roomy.max_moves_per_group = 3;
  EXPECT_TRUE(PlanMove(m, active, {"z", "docs", 3, 2, 1}, AllBut({}), roomy).ok());
  // Group 1 has one: a move 0 -> 1 is fine; an aborted move with its target discarded is over.
  EXPECT_TRUE(Plan(m, active, 3, 1).ok());
  MoveRecord discarded = Active("y", 5, 2, 1);
  discarded.phase = MovePhase::kAborted;
  discarded.target_discarded = true;
  EXPECT_TRUE(Plan(m, {active[0], discarded}, 3, 2).ok());
}

TEST(PlanRebalance, EvensOutByWeightWhereBucketCountsLookBalanced) {
  ShardMap m = ThreeGroups();
  // Counts 3, 3, 2 look even; loads are 120, 30, 20. By hand: move 0 (50) 0 -> 2 (70, 30, 70),
  // then 6 (20) 0 -> 1 (50, 50, 70), then 2 (10) 2 -> 0 (60, 50, 60); no bucket fits the last
  // gap of 10.
  const std::vector<uint64_t> w{50, 10, 10, 50, 10, 10, 20, 10};
  auto plan = PlanRebalance(m, "docs", w);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan.value(), (std::vector<PlannedMove>{{0, 0, 2}, {6, 0, 1}, {2, 2, 0}}));
  // Over groups 1 and 2 only (group 0's buckets stay and do not count): 60 vs 10, gap 50;
  // buckets 1 (40) and 4 (10) lower the squares equally (40 * 10 = 10 * 40), the heavier wins
  // (20, 50); then 2 (10) fits the gap of 30 (30, 40); nothing fits 10.
  auto two = PlanRebalance(m, "docs", {0, 40, 10, 0, 10, 0, 0, 10}, {1, 2});
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two.value(), (std::vector<PlannedMove>{{1, 1, 2}, {2, 2, 1}}));
}

TEST(PlanRebalance, ABucketTheGreedyMovesTwiceIsPlannedOnceStraightToItsLastGroup) {
  ShardMap m = ThreeGroups();
  // Loads 42, 36, 19. The greedy: 3 (16) 0 -> 2 (26, 36, 35); 1 (3) 1 -> 0 (29, 33, 35);
  // 2 (5) 2 -> 0 (34, 33, 30); 1 (3) 0 -> 2 (31, 33, 33). Bucket 1 goes 1 -> 2 in one move.
  auto plan = PlanRebalance(m, "docs", {7, 3, 5, 16, 19, 14, 19, 14});
  ASSERT_TRUE(plan.ok());
  EXPECT_EQ(plan.value(), (std::vector<PlannedMove>{{3, 0, 2}, {1, 1, 2}, {2, 2, 0}}));
}

TEST(PlanRebalance, MakesNoMoveWhenLoadsAreEvenOrNoBucketFitsTheGap) {
  ShardMap m = ThreeGroups();
  // Counts 3, 3, 2 but loads 30, 30, 30.
  EXPECT_TRUE(PlanRebalance(m, "docs", {10, 10, 15, 10, 10, 15, 10, 10}).value().empty());
  // One huge bucket: moving it would only move the imbalance.
  EXPECT_TRUE(PlanRebalance(m, "docs", {1000, 1, 1, 0, 0, 0, 0, 0}).value().empty());
  EXPECT_EQ(PlanRebalance(m, "docs", {1, 2}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(PlanRebalance(m, "docs", std::vector<uint64_t>(8, 1), {7}).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(PlanRebalance(m, "nope", {}).status().code(), Code::kNotFound);
}

TEST(PlanRebalance, OnRandomWeightsEachBucketMovesAtMostOnceAndTheSpreadShrinks) {
  std::mt19937_64 rng(7);
  for (int trial = 0; trial < 50; ++trial) {
    ShardMap m = ThreeGroups();
    std::vector<uint64_t> w(8);
    for (auto& x : w) x = rng() % 1000;
    auto plan = PlanRebalance(m, "docs", w);
    ASSERT_TRUE(plan.ok());
    std::vector<uint64_t> before(3, 0), after(3, 0);
    std::vector<uint32_t> owner = m.Placement("docs").value()->group_of_bucket;
    for (uint32_t b = 0; b < 8; ++b) before[owner[b]] += w[b];
    std::set<uint32_t> moved;
    for (const PlannedMove& mv : plan.value()) {
      EXPECT_TRUE(moved.insert(mv.bucket).second) << "bucket " << mv.bucket << " moved twice";
      EXPECT_EQ(mv.from_group, owner[mv.bucket]);
      EXPECT_NE(mv.from_group, mv.to_group);
      owner[mv.bucket] = mv.to_group;
    }
    for (uint32_t b = 0; b < 8; ++b) after[owner[b]] += w[b];
    const auto spread = [](const std::vector<uint64_t>& l) {
      return *std::max_element(l.begin(), l.end()) - *std::min_element(l.begin(), l.end());
    };
    EXPECT_LE(spread(after), spread(before));
  }
}

TEST(PlanDrain, SpreadsEveryBucketOfTheGroupOverTheOthersEvenly) {
  ShardMap m = ThreeGroups();
  // By count: groups 1 and 2 hold 3 and 2; 0 -> 2 (3, 3), 3 -> 1 (4, 3), 6 -> 2 (4, 4).
  auto plan = PlanDrain(m, "docs", 0);
  ASSERT_TRUE(plan.ok()) << plan.status().ToString();
  EXPECT_EQ(plan.value(), (std::vector<PlannedMove>{{0, 0, 2}, {3, 0, 1}, {6, 0, 2}}));
  // By weight, heaviest first: group 1 = 30, group 2 = 20; 3 (50) -> 2 (30, 70),
  // 0 (20) -> 1 (50, 70), 6 (5) -> 1 (55, 70).
  auto weighted = PlanDrain(m, "docs", 0, {20, 10, 10, 50, 10, 10, 5, 10});
  ASSERT_TRUE(weighted.ok());
  EXPECT_EQ(weighted.value(), (std::vector<PlannedMove>{{3, 0, 2}, {0, 0, 1}, {6, 0, 1}}));
}

TEST(PlanDrain, RefusesTheLastGroupAnUnknownGroupAndABucketInMotion) {
  ShardMap one;
  ASSERT_TRUE(one.AddGroup({{"a1", "127.0.0.1:1"}}).ok());
  ASSERT_TRUE(one.PlaceCollection("docs", 4).ok());
  Status last = PlanDrain(one, "docs", 0).status();
  EXPECT_EQ(last.code(), Code::kFailedPrecondition);
  EXPECT_NE(last.message().find("last group"), std::string::npos) << last.message();
  ShardMap m = ThreeGroups();
  EXPECT_EQ(PlanDrain(m, "docs", 3).status().code(), Code::kNotFound);
  EXPECT_EQ(PlanDrain(m, "nope", 0).status().code(), Code::kNotFound);
  ASSERT_TRUE(m.BeginDualWrite("docs", 1, 0).ok());
  EXPECT_EQ(PlanDrain(m, "docs", 0).status().code(), Code::kFailedPrecondition);
  EXPECT_TRUE(PlanDrain(m, "docs", 2).ok());
}

TEST(RetireGroup, RefusesAGroupThatOwnsOrMovesABucketThenRetiresItOnceDrained) {
  ShardMap m = ThreeGroups();
  Status owns = m.RetireGroup(0);
  EXPECT_EQ(owns.code(), Code::kFailedPrecondition);
  EXPECT_NE(owns.message().find("bucket"), std::string::npos) << owns.message();
  EXPECT_EQ(m.RetireGroup(7).code(), Code::kNotFound);
  // Drain group 0 by hand; while bucket 0 is moving to group 2, group 2 cannot be retired
  // (it is the move's target) and neither can group 0.
  for (uint32_t b : {3u, 6u}) {
    ASSERT_TRUE(m.BeginDualWrite("docs", b, 1).ok());
    ASSERT_TRUE(m.Flip("docs", b).ok());
    ASSERT_TRUE(m.FinishMove("docs", b).ok());
  }
  ASSERT_TRUE(m.BeginDualWrite("docs", 0, 2).ok());
  ASSERT_TRUE(m.Flip("docs", 0).ok());
  EXPECT_EQ(m.RetireGroup(0).code(), Code::kFailedPrecondition);  // the move's source
  ASSERT_TRUE(m.FinishMove("docs", 0).ok());
  const uint64_t epoch = m.epoch();
  ASSERT_TRUE(m.RetireGroup(0).ok());
  EXPECT_EQ(m.epoch(), epoch + 1);
  EXPECT_TRUE(m.groups()[0].shards.empty());  // the index stays: records name groups by index
  EXPECT_EQ(m.LiveGroups(), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(m.RetireGroup(0).code(), Code::kNotFound);  // already retired
  // A new collection is dealt over the live groups only; a drain skips the retired group and
  // refuses to name it.
  ASSERT_TRUE(m.PlaceCollection("more", 4).ok());
  const auto& p = *m.Placement("more").value();
  EXPECT_EQ(p.group_of_bucket, (std::vector<uint32_t>{1, 2, 1, 2}));
  EXPECT_EQ(PlanDrain(m, "docs", 0).status().code(), Code::kNotFound);
  auto drain = PlanDrain(m, "docs", 1);
  ASSERT_TRUE(drain.ok()) << drain.status().ToString();
  for (const PlannedMove& pm : drain.value()) EXPECT_EQ(pm.to_group, 2u);
  // The last live group of a cluster with collections stays.
  ShardMap one;
  ASSERT_TRUE(one.AddGroup({{"a1", "127.0.0.1:1"}}).ok());
  ASSERT_TRUE(one.AddGroup({{"b1", "127.0.0.1:2"}}).ok());
  ASSERT_TRUE(one.PlaceCollection("docs", 2).ok());
  ASSERT_TRUE(one.BeginDualWrite("docs", 0, 1).ok());
  ASSERT_TRUE(one.Flip("docs", 0).ok());
  ASSERT_TRUE(one.FinishMove("docs", 0).ok());
  ASSERT_TRUE(one.RetireGroup(0).ok());
  EXPECT_EQ(one.RetireGroup(1).code(), Code::kFailedPrecondition);
}

TEST(GroupByWriteSet, AMovingBucketsIdsGoToBothGroupsBeforeAndAfterTheFlip) {
  ShardMap m = ThreeGroups();
  std::vector<uint64_t> ids;
  for (uint64_t id = 0; id < 200; ++id) ids.push_back(id);
  auto positions_in = [&](const std::map<uint32_t, std::vector<size_t>>& by, uint32_t g) {
    std::set<uint64_t> out;
    if (auto it = by.find(g); it != by.end()) {
      for (size_t i : it->second) out.insert(ids[i]);
    }
    return out;
  };
  const auto& at_rest = *m.Placement("docs").value();
  EXPECT_EQ(GroupByWriteSet(at_rest, ids), GroupByReplicaSet(at_rest, ids));
  ASSERT_TRUE(m.BeginDualWrite("docs", 4, 0).ok());  // bucket 4: group 1 -> group 0
  for (int flipped = 0; flipped < 2; ++flipped) {
    if (flipped) ASSERT_TRUE(m.Flip("docs", 4).ok());
    const auto& p = *m.Placement("docs").value();
    const auto by = GroupByWriteSet(p, ids);
    for (uint64_t id : ids) {
      const uint32_t b = BucketOfId(id, 8);
      const bool in0 = positions_in(by, 0).count(id), in1 = positions_in(by, 1).count(id),
                 in2 = positions_in(by, 2).count(id);
      if (b == 4) {
        EXPECT_TRUE(in0 && in1 && !in2) << "id " << id << " flipped " << flipped;
      } else {
        EXPECT_EQ(in0 + in1 + in2, 1) << "id " << id;
        EXPECT_TRUE(positions_in(by, b % 3).count(id)) << "id " << id;
      }
    }
  }
}

}  // namespace
}  // namespace mrl::coord
