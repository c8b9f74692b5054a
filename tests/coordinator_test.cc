// The coordinator's decisions, driven directly: shard map placement, routing around dead shards,
// persistence, candidate merging, plan validation and budget picking.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>

#include "common/atomic_file.h"
#include "common/bucket.h"
#include "coordinator/calibration.h"
#include "coordinator/cluster_keys.h"
#include "coordinator/cluster_state.h"
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
  auto uncalibrated = [&](const std::string& b) -> Result<QueryPlan> {
    return Status::FailedPrecondition("budget '" + b + "' is not calibrated");
  };
  // No plan named: the calibrated balanced budget (issue 13 item 5), with the request's k.
  PlanRequest r;
  r.k = 30;
  auto p = ResolvePlan(r, spec, budgets);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->name, "balanced");
  EXPECT_EQ(p->stages[0].k, 110);
  EXPECT_EQ(p->stages.back().k, 30);
  EXPECT_EQ(lookups, 1);
  lookups = 0;
  // Before a calibration, the adaptive defaults: the first low-d index's dims, max(200, 10 k), d.
  p = ResolvePlan(r, spec, uncalibrated);
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

// A plain ANN collection (its only index at full d, embeddings not MRL-trained) used to answer a
// default search with "Ds must be smaller than Dr"; its shortlist is already at Dr: one stage.
TEST(QueryPlan, ADefaultSearchOfAFullDimIndexIsOneStage) {
  CollectionSpec spec;
  spec.name = "b";
  spec.dim = 768;
  spec.nesting = {768};
  spec.indexes = {IndexSpec{768}};
  auto none = [](const std::string&) -> Result<QueryPlan> { return Status::NotFound("none"); };
  PlanRequest r;
  r.k = 10;
  auto p = ResolvePlan(r, spec, none);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->stages.size(), 1u);
  EXPECT_EQ(p->stages[0].dims, 768);
  EXPECT_EQ(p->stages[0].k, 10);
  EXPECT_FALSE(p->exact);
  EXPECT_NE(p->name.find("one-stage"), std::string::npos) << p->name;
  // The same where an MRL collection's request names Ds == Dr.
  CollectionSpec mrl = spec;
  mrl.dim = 2048;
  mrl.nesting = {8, 16, 32, 64, 128, 256, 512, 1024, 2048};
  mrl.indexes = {IndexSpec{16}, IndexSpec{512}};
  r.shortlist_dims = 512;
  r.rerank_dims = 512;
  p = ResolvePlan(r, mrl, none);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->stages.size(), 1u);
  EXPECT_EQ(p->stages[0].dims, 512);
  // Ds > Dr is still an error; so is a one-stage dim outside the nesting.
  r.shortlist_dims = 1024;
  EXPECT_EQ(ResolvePlan(r, mrl, none).status().code(), Status::Code::kInvalidArgument);
  r.shortlist_dims = r.rerank_dims = 100;
  EXPECT_EQ(ResolvePlan(r, mrl, none).status().code(), Status::Code::kInvalidArgument);
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
  // Each budget keeps what calibration measured for its plan (the console shows it), and the
  // stored form round-trips it.
  EXPECT_DOUBLE_EQ(b->at("fast").calibrated_recall, 0.93);
  EXPECT_DOUBLE_EQ(b->at("fast").calibrated_latency_us, 120);
  auto stored = BudgetsFromJson(BudgetsToJson(b.value()));
  ASSERT_TRUE(stored.ok());
  EXPECT_DOUBLE_EQ(stored->at("balanced").calibrated_recall, 0.995);
  EXPECT_DOUBLE_EQ(stored->at("balanced").calibrated_latency_us, 300);
  EXPECT_EQ(stored->at("balanced").name, b->at("balanced").name);
  // Budgets stored before the figures were kept read back as "not measured".
  auto old = BudgetsFromJson(
      R"({"fast":{"name":"fast","stages":[[16,10]],"ef":0,"exact":false}})");
  ASSERT_TRUE(old.ok());
  EXPECT_LT(old->at("fast").calibrated_recall, 0);
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

TEST(WriteRouting, GroupsIdsByTheReplicaSetOwningTheirBucketInInputOrder) {
  ShardMap m = ThreeGroupsOfTwo();
  const CollectionPlacement* placement = m.Placement("fmnist").value();
  std::vector<uint64_t> ids;
  for (uint64_t i = 0; i < 300; ++i) ids.push_back(i * 7919 + 3);
  const auto by_group = GroupByReplicaSet(*placement, ids);
  EXPECT_EQ(by_group.size(), 3u);  // 300 ids reach all three groups
  std::vector<int> seen(ids.size(), 0);
  for (const auto& [g, positions] : by_group) {
    ASSERT_LT(g, m.groups().size());
    EXPECT_TRUE(std::is_sorted(positions.begin(), positions.end()));
    for (size_t i : positions) {
      ++seen[i];
      // The group's replicas are the ones the map names for the id's bucket.
      auto replicas = m.ReplicasOfBucket("fmnist", BucketOfId(ids[i], 4096));
      ASSERT_TRUE(replicas.ok());
      EXPECT_EQ(replicas.value(), m.groups()[g].shards) << "id " << ids[i];
    }
  }
  EXPECT_TRUE(std::all_of(seen.begin(), seen.end(), [](int n) { return n == 1; }));
  EXPECT_TRUE(GroupByReplicaSet(*placement, {}).empty());
}

// Plans run in memory: stage 0 scores every point on its first `dims` dims (cosine), later stages
// rescore the survivors; the answer of each stage is its top K (ties: smaller id).
class InMemoryPlans {
 public:
  InMemoryPlans(int32_t n, int32_t dim, uint32_t seed) : n_(n), dim_(dim) {
    std::mt19937 rng(seed);
    std::normal_distribution<float> g;
    data_.resize(static_cast<size_t>(n) * dim);
    for (float& x : data_) x = g(rng);
  }
  const float* Row(int32_t i) const { return data_.data() + static_cast<size_t>(i) * dim_; }
  float Cosine(const float* a, const float* b, int32_t dims) const {
    double ab = 0, aa = 0, bb = 0;
    for (int32_t j = 0; j < dims; ++j) {
      ab += a[j] * b[j];
      aa += a[j] * a[j];
      bb += b[j] * b[j];
    }
    return static_cast<float>(ab / std::sqrt(aa * bb));
  }
  std::vector<ScoredId> Run(const QueryPlan& plan, const float* q) const {
    std::vector<int32_t> pool(static_cast<size_t>(n_));
    for (int32_t i = 0; i < n_; ++i) pool[static_cast<size_t>(i)] = i;
    std::vector<ScoredId> kept;
    for (const Stage& st : plan.stages) {
      kept.clear();
      for (int32_t i : pool) kept.push_back({static_cast<uint64_t>(i), Cosine(q, Row(i), st.dims)});
      std::sort(kept.begin(), kept.end(), [](const ScoredId& a, const ScoredId& b) {
        return a.score != b.score ? a.score > b.score : a.id < b.id;
      });
      if (kept.size() > static_cast<size_t>(st.k)) kept.resize(static_cast<size_t>(st.k));
      pool.clear();
      for (const ScoredId& h : kept) pool.push_back(static_cast<int32_t>(h.id));
    }
    return kept;
  }

 private:
  int32_t n_, dim_;
  std::vector<float> data_;
};

CollectionSpec SixteenDims() {
  CollectionSpec spec;
  spec.name = "c";
  spec.dim = 16;
  spec.nesting = {4, 8, 16};
  IndexSpec idx;
  idx.dims = 4;
  spec.indexes = {idx};
  return spec;
}

TEST(Calibrator, MeasuresRecallAgainstExactWithTheQueryLeftOutAndPicksBudgets) {
  const InMemoryPlans db(400, 16, 7);
  const int32_t queries = 40;  // the first 40 stored points
  std::vector<std::string> plans_run;
  auto search = [&](const QueryPlan& plan) -> Result<std::vector<std::vector<ScoredId>>> {
    plans_run.push_back(plan.name);
    std::vector<std::vector<ScoredId>> out;
    for (int32_t i = 0; i < queries; ++i) out.push_back(db.Run(plan, db.Row(i)));
    return out;
  };
  const int32_t k = 1;
  auto points = Calibrator(SixteenDims(), k).Measure(queries, search);
  ASSERT_TRUE(points.ok()) << points.status().ToString();
  ASSERT_EQ(points->size(), CalibrationCandidates({4}, {4, 8, 16}, k + 1).size());
  // The exact reference run once: the exact candidate reuses it instead of scanning again.
  EXPECT_EQ(plans_run.size(), points->size());
  EXPECT_EQ(std::count(plans_run.begin(), plans_run.end(), std::string("exact")), 1);
  double worst = 1, best_adaptive = 0;
  for (const CalibrationPoint& p : points.value()) {
    EXPECT_EQ(p.plan.stages.back().k, k) << p.plan.name;  // run with k + 1, serves k
    EXPECT_GE(p.recall, 0.0);
    EXPECT_LE(p.recall, 1.0);
    EXPECT_GE(p.latency_us, 0.0);
    if (p.plan.exact) EXPECT_DOUBLE_EQ(p.recall, 1.0);
    worst = std::min(worst, p.recall);
    if (!p.plan.exact && p.plan.stages.size() == 2) best_adaptive = std::max(best_adaptive, p.recall);
  }
  // Every plan finds the query itself first; only with it left out does a 4-dim shortlist of 4
  // points miss the true nearest neighbour. The largest shortlist (200 of 400) finds it.
  EXPECT_LT(worst, 0.8);
  EXPECT_GT(best_adaptive, 0.9);
  auto budgets = PickBudgets(points.value(), DefaultBudgets());
  ASSERT_TRUE(budgets.ok()) << budgets.status().ToString();
  EXPECT_TRUE(budgets->at("exact").exact);
  for (const CalibrationPoint& p : points.value()) {
    if (p.plan.name == budgets->at("balanced").name) EXPECT_GE(p.recall, 0.99);
    if (p.plan.name == budgets->at("fast").name) EXPECT_GE(p.recall, 0.90);
  }
}

TEST(Calibrator, PassesTheSearchErrorOnAndRefusesAnEmptySample) {
  auto failing = [](const QueryPlan&) -> Result<std::vector<std::vector<ScoredId>>> {
    return Status::Unavailable("no shard answered");
  };
  auto r = Calibrator(SixteenDims(), 10).Measure(5, failing);
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable);
  EXPECT_EQ(r.status().message(), "no shard answered");
  auto short_answer = [](const QueryPlan&) -> Result<std::vector<std::vector<ScoredId>>> {
    return std::vector<std::vector<ScoredId>>(2);
  };
  EXPECT_EQ(Calibrator(SixteenDims(), 10).Measure(5, short_answer).status().code(), Status::Code::kInternal);
  EXPECT_EQ(Calibrator(SixteenDims(), 10).Measure(0, failing).status().code(), Status::Code::kInvalidArgument);
}

TEST(ClusterState, AHeldSnapshotStaysWholeWhileChangesPublishNewOnes) {
  const std::string dir = TempDir("cluster_state_snapshot");
  std::vector<uint64_t> published;
  auto state = ClusterState::Open(dir, false, [&](const ShardMap& m) { published.push_back(m.epoch()); });
  ASSERT_TRUE(state.ok()) << state.status().ToString();
  ClusterState& cs = *state.value();
  cs.StartSession("");
  ASSERT_TRUE(cs.AddGroup({{"s1", "127.0.0.1:1"}}).ok());
  const auto before = cs.Snapshot();
  CollectionSpec spec = SixteenDims();
  spec.num_buckets = 64;
  ASSERT_TRUE(cs.AddCollection(spec).ok());
  ASSERT_TRUE(cs.SetBudgets("c", {{"exact", ExactPlan(16, 10)}}).ok());
  const auto after = cs.Snapshot();
  // The old snapshot: no collection, no placement, no budget, the old epoch.
  EXPECT_TRUE(before->specs.empty());
  EXPECT_EQ(before->map.Placement("c").status().code(), Status::Code::kNotFound);
  EXPECT_EQ(before->Budget("c", "exact").status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(before->Spec("c").status().message(), "unknown collection 'c'");
  // The new one holds all three, at the epoch the listener saw last.
  ASSERT_TRUE(after->Spec("c").ok());
  EXPECT_EQ(*after->Spec("c").value(), spec);
  EXPECT_TRUE(after->map.Placement("c").ok());
  EXPECT_TRUE(after->Budget("c", "exact").ok());
  EXPECT_GT(after->map.epoch(), before->map.epoch());
  ASSERT_FALSE(published.empty());
  EXPECT_TRUE(std::is_sorted(published.begin(), published.end()));
  EXPECT_EQ(published.back(), after->map.epoch());
  // Creating it again changes nothing. A second group joins a running cluster owning nothing
  // (buckets reach it by moves).
  ASSERT_TRUE(cs.AddCollection(spec).ok());
  EXPECT_EQ(cs.Snapshot()->map.epoch(), after->map.epoch());
  ASSERT_TRUE(cs.AddGroup({{"s2", "127.0.0.1:2"}}).ok());
  for (uint32_t g : cs.Snapshot()->map.Placement("c").value()->group_of_bucket) EXPECT_EQ(g, 0u);
}

TEST(ClusterState, PersistsForAFollowerThatRefusesChangesAndReloadsOnANewerEpoch) {
  const std::string dir = TempDir("cluster_state_follower");
  auto owner = ClusterState::Open(dir, false, nullptr);
  ASSERT_TRUE(owner.ok());
  owner.value()->StartSession("");
  ASSERT_TRUE(owner.value()->AddGroup({{"s1", "127.0.0.1:1"}}).ok());
  auto follower = ClusterState::Open(dir, true, nullptr);
  ASSERT_TRUE(follower.ok());
  const uint64_t seen = follower.value()->Snapshot()->map.epoch();
  EXPECT_EQ(seen, owner.value()->Snapshot()->map.epoch());
  EXPECT_EQ(follower.value()->AddGroup({{"s2", "127.0.0.1:2"}}).code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(follower.value()->AddCollection(SixteenDims()).code(), Status::Code::kFailedPrecondition);
  // Nothing newer on disk: Aborted. After the owner's change: the follower sees it.
  EXPECT_EQ(follower.value()->Refresh(seen).code(), Status::Code::kAborted);
  CollectionSpec spec = SixteenDims();
  spec.num_buckets = 64;
  ASSERT_TRUE(owner.value()->AddCollection(spec).ok());
  ASSERT_TRUE(follower.value()->Refresh(seen).ok());
  EXPECT_EQ(follower.value()->refreshes(), 1u);
  const auto snap = follower.value()->Snapshot();
  EXPECT_EQ(snap->map.epoch(), owner.value()->Snapshot()->map.epoch());
  ASSERT_TRUE(snap->Spec("c").ok());
  EXPECT_EQ(*snap->Spec("c").value(), spec);
  // A refresh that another call already did is Ok without a reload.
  EXPECT_TRUE(follower.value()->Refresh(seen).ok());
  EXPECT_EQ(follower.value()->refreshes(), 1u);
}

TEST(ClusterState, RefusesToOpenOnACorruptCollectionsFile) {
  const std::string dir = TempDir("cluster_state_corrupt");
  ASSERT_TRUE(WriteFileAtomic(dir + "/collections.json", "{\"c\": {\"dim\": -3}}").ok());
  auto state = ClusterState::Open(dir, false, nullptr);
  ASSERT_EQ(state.status().code(), Status::Code::kCorruption);
  EXPECT_NE(state.status().message().find("collections.json"), std::string::npos) << state.status().message();
  ASSERT_TRUE(WriteFileAtomic(dir + "/collections.json", "{not json").ok());
  EXPECT_EQ(ClusterState::Open(dir, false, nullptr).status().code(), Status::Code::kCorruption);
}

}  // namespace
}  // namespace mrl::coord
