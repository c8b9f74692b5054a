// The coordinator's decisions, driven directly: shard map placement, routing around dead shards,
// persistence, candidate merging, plan validation and budget picking.
#include <gtest/gtest.h>

#include <set>

#include "common/atomic_file.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"
#include "tests/test_util.h"

namespace mrl::coord {
namespace {

using ::mrl::test_util::TempDir;

ShardMap ThreeGroupsOfTwo() {
  ShardMap m;
  EXPECT_TRUE(m.AddGroup({{"a1", "127.0.0.1:1"}, {"a2", "127.0.0.1:2"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"b1", "127.0.0.1:3"}, {"b2", "127.0.0.1:4"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"c1", "127.0.0.1:5"}, {"c2", "127.0.0.1:6"}}).ok());
  EXPECT_TRUE(m.PlaceCollection("fmnist", 4096).ok());
  return m;
}

TEST(ShardMap, EveryBucketHasExactlyOneGroupAndEpochGrowsOnEveryChange) {
  ShardMap m = ThreeGroupsOfTwo();
  EXPECT_EQ(m.epoch(), 4u);
  std::map<std::string, int> buckets_per_shard;
  for (uint32_t b = 0; b < 4096; ++b) {
    auto r = m.ReplicasOfBucket("fmnist", b);
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r.value().size(), 2u);
    for (const auto& s : r.value()) ++buckets_per_shard[s];
  }
  for (const auto& [s, n] : buckets_per_shard) EXPECT_NEAR(n, 4096 / 3, 1) << s;
  EXPECT_EQ(m.ReplicasOfBucket("fmnist", 4096).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(m.ReplicasOfBucket("nope", 0).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(m.AddGroup({{"a1", "127.0.0.1:9"}}).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(m.AddGroup({{"x", "no-port"}}).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(m.PlaceCollection("odd", 1000).code(), Status::Code::kInvalidArgument);
}

TEST(ShardMap, RoutesAroundDeadReplicasAndReportsCoverage) {
  ShardMap m = ThreeGroupsOfTwo();
  auto all = m.RouteQuery("fmnist", [](const std::string&) { return true; });
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(all->targets.size(), 3u);
  EXPECT_DOUBLE_EQ(all->coverage(), 1.0);
  // Rotation spreads load over replicas.
  std::set<std::string> used;
  for (uint64_t r = 0; r < 4; ++r) {
    auto route = m.RouteQuery("fmnist", [](const std::string&) { return true; }, r);
    ASSERT_TRUE(route.ok());
    for (const auto& t : route->targets) used.insert(t.shard);
  }
  EXPECT_EQ(used.size(), 6u);
  // One replica dead: still full coverage through its partner.
  auto one = m.RouteQuery("fmnist", [](const std::string& s) { return s != "b1"; });
  EXPECT_DOUBLE_EQ(one->coverage(), 1.0);
  for (const auto& t : one->targets) EXPECT_NE(t.shard, "b1");
  // A whole group dead: partial, and the answer says which fraction it covers.
  auto part = m.RouteQuery("fmnist", [](const std::string& s) { return s[0] != 'c'; });
  EXPECT_EQ(part->targets.size(), 2u);
  EXPECT_EQ(part->uncovered_groups, std::vector<uint32_t>{2});
  EXPECT_NEAR(part->coverage(), 2.0 / 3.0, 1e-3);
}

TEST(ShardMap, SavesAtomicallyAndLoadsTheSameMapAndRejectsCorruptFiles) {
  ShardMap m = ThreeGroupsOfTwo();
  const std::string path = TempDir("shardmap") + "/map.json";
  ASSERT_TRUE(m.Save(path).ok());
  auto loaded = ShardMap::Load(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->ToJson(), m.ToJson());
  EXPECT_EQ(loaded->epoch(), m.epoch());
  ASSERT_TRUE(WriteFileAtomic(path, "{\"epoch\": 1, \"shards\": [], \"groups\": [[\"ghost\"]], "
                                    "\"collections\": {}}").ok());
  EXPECT_EQ(ShardMap::Load(path).status().code(), Status::Code::kCorruption);
  ASSERT_TRUE(WriteFileAtomic(path, "{not json").ok());
  EXPECT_EQ(ShardMap::Load(path).status().code(), Status::Code::kCorruption);
}

TEST(MergeTopK, KeepsBestScorePerIdAcrossReplicasDeterministically) {
  std::vector<std::vector<ScoredId>> lists = {
      {{1, 0.9f}, {2, 0.8f}, {3, 0.1f}},
      {{2, 0.85f}, {4, 0.8f}, {5, 0.7f}},  // id 2 again (a replica), with a better score
  };
  auto top = MergeTopK(lists, 3);
  ASSERT_EQ(top.size(), 3u);
  EXPECT_EQ(top[0].id, 1u);
  EXPECT_EQ(top[1].id, 2u);
  EXPECT_FLOAT_EQ(top[1].score, 0.85f);
  EXPECT_EQ(top[2].id, 4u);  // 0.8 tie with nothing left: id 4
  EXPECT_EQ(MergeTopK(lists, 100).size(), 5u);
  EXPECT_TRUE(MergeTopK({}, 10).empty());
}

TEST(QueryPlan, ValidatesAdaptiveAndFunnelPlans) {
  const std::vector<int32_t> nesting = {8, 16, 32, 64, 128, 256, 512, 1024, 2048};
  auto a = AdaptivePlan(16, 200, 2048, 10, nesting);
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a->stages.size(), 2u);
  EXPECT_DOUBLE_EQ(RerankCost(a.value()), 200.0 * 2048);
  EXPECT_FALSE(AdaptivePlan(12, 200, 2048, 10, nesting).ok());   // not a nesting dim
  EXPECT_FALSE(AdaptivePlan(2048, 200, 16, 10, nesting).ok());   // Ds >= Dr
  EXPECT_FALSE(AdaptivePlan(16, 5, 2048, 10, nesting).ok());     // K < k
  auto f = FunnelPlan({{16, 200}, {32, 100}, {64, 50}, {128, 25}, {2048, 10}}, 10, nesting);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->stages.back().k, 10);
  EXPECT_FALSE(FunnelPlan({{32, 100}, {16, 50}}, 10, nesting).ok());   // dims must grow
  EXPECT_FALSE(FunnelPlan({{16, 50}, {32, 100}}, 10, nesting).ok());   // K must not grow
  QueryPlan paper = PaperFunnel(16, 200, 10, nesting);
  EXPECT_EQ(paper.stages.front().dims, 16);
  EXPECT_EQ(paper.stages.front().k, 200);
  EXPECT_EQ(paper.stages.back().dims, 2048);
  EXPECT_EQ(paper.stages.back().k, 10);
}

TEST(QueryPlan, ResolvePlanIsOneRuleForBothApis) {
  CollectionSpec spec;
  spec.name = "c";
  spec.dim = 2048;
  spec.nesting = {8, 16, 32, 64, 128, 256, 512, 1024, 2048};
  spec.indexes = {IndexSpec{32}};
  QueryPlan calibrated = AdaptivePlan(32, 110, 2048, 11, spec.nesting).value();
  calibrated.name = "balanced";
  calibrated.ef = 80;
  int lookups = 0;
  auto budgets = [&](const std::string& b) -> Result<QueryPlan> {
    ++lookups;
    if (b == "balanced") return calibrated;
    return Status::FailedPrecondition("budget '" + b + "' is not calibrated");
  };
  // Adaptive defaults: the first low-d index's dims, max(200, 10 k), d.
  PlanRequest r;
  r.k = 30;
  auto p = ResolvePlan(r, spec, budgets);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->stages.size(), 2u);
  EXPECT_EQ(p->stages[0].dims, 32);
  EXPECT_EQ(p->stages[0].k, 300);
  EXPECT_EQ(p->stages[1].dims, 2048);
  EXPECT_EQ(p->stages[1].k, 30);
  EXPECT_EQ(p->ef, 0);
  // Explicit adaptive fields and ef.
  r.shortlist_dims = 16;
  r.shortlist_k = 100;
  r.rerank_dims = 512;
  r.ef = 40;
  p = ResolvePlan(r, spec, budgets);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->stages[0].dims, 16);
  EXPECT_EQ(p->stages[0].k, 100);
  EXPECT_EQ(p->stages[1].dims, 512);
  EXPECT_EQ(p->ef, 40);
  // A budget: its stages, the request's k as the last K, its own ef unless the request gives one
  // (the binary API used to reset it to the request's 0).
  PlanRequest b;
  b.k = 10;
  b.budget = "balanced";
  b.funnel = {{16, 200}, {2048, 10}};  // the binary API always sends stages; the budget wins
  p = ResolvePlan(b, spec, budgets);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "balanced");
  EXPECT_EQ(p->stages[0].k, 110);
  EXPECT_EQ(p->stages.back().k, 10);
  EXPECT_EQ(p->ef, 80);
  b.ef = 20;
  EXPECT_EQ(ResolvePlan(b, spec, budgets)->ef, 20);
  b.budget = "fast";
  auto missing = ResolvePlan(b, spec, budgets);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(lookups, 3);
  // Exact beats a funnel; a funnel beats the adaptive plan.
  PlanRequest e;
  e.k = 5;
  e.exact = true;
  e.funnel = {{16, 100}, {2048, 5}};
  p = ResolvePlan(e, spec, budgets);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->exact);
  EXPECT_EQ(p->stages.back().k, 5);
  e.exact = false;
  p = ResolvePlan(e, spec, budgets);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_FALSE(p->exact);
  EXPECT_EQ(p->stages[0].dims, 16);
  EXPECT_EQ(p->stages[0].k, 100);
  // A bad request is the plan builders' error, unchanged.
  e.funnel = {{12, 100}, {2048, 5}};
  EXPECT_EQ(ResolvePlan(e, spec, budgets).status().code(), Status::Code::kInvalidArgument);
}

TEST(QueryPlan, BudgetsPickTheFastestPlanReachingTheirRecall) {
  std::vector<CalibrationPoint> pts = {
      {AdaptivePlan(16, 20, 2048, 10, {16, 2048}).value(), 0.80, 50},
      {AdaptivePlan(16, 100, 2048, 10, {16, 2048}).value(), 0.93, 120},
      {AdaptivePlan(16, 200, 2048, 10, {16, 2048}).value(), 0.995, 300},
      {ExactPlan(2048, 10), 1.0, 5000},
  };
  auto b = PickBudgets(pts, DefaultBudgets());
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->at("fast").stages[0].k, 100);
  EXPECT_EQ(b->at("balanced").stages[0].k, 200);
  EXPECT_TRUE(b->at("exact").exact);
  EXPECT_EQ(PickBudgets({pts[0]}, {{"strict", 0.99}}).status().code(), Status::Code::kNotFound);
}

TEST(QueryPlan, ExactBudgetIsTheExactPlanEvenWhenAnApproximatePlanScoredOne) {
  // A fast approximate plan that happened to reach recall 1.0 on the sample must not serve
  // "exact": only the exact plan does, however slow.
  std::vector<CalibrationPoint> pts = {
      {AdaptivePlan(16, 200, 2048, 10, {16, 2048}).value(), 1.0, 300},
      {ExactPlan(2048, 10), 1.0, 5000},
  };
  auto b = PickBudgets(pts, DefaultBudgets());
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE(b->at("exact").exact);
  EXPECT_FALSE(b->at("balanced").exact);  // the approximate plan is fine for 0.99
  // Without an exact candidate, the exact budget is not calibrated at all.
  EXPECT_EQ(PickBudgets({pts[0]}, DefaultBudgets()).status().code(), Status::Code::kNotFound);
  const auto budgets = DefaultBudgets();
  ASSERT_EQ(budgets.size(), 3u);
  EXPECT_EQ(budgets[2].name, "exact");
  EXPECT_TRUE(budgets[2].exact_only);
}

}  // namespace
}  // namespace mrl::coord
