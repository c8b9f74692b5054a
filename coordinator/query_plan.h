// Adaptive-retrieval plans and the decisions around them, with no sockets: merging shards'
// candidate lists, building and checking plans (explicit {Ds, K, Dr}, funnels), and picking the
// named budgets (fast / balanced / exact) from a calibration run.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"

namespace mrl::coord {

struct ScoredId {
  uint64_t id = 0;
  float score = 0;  // higher is closer
};

// Global top-k of per-shard lists (each best first; lists may share ids when replicas answer):
// unique ids, best score kept, ties broken by the smaller id so the answer is deterministic.
std::vector<ScoredId> MergeTopK(const std::vector<std::vector<ScoredId>>& lists, size_t k);

// Stage 0 shortlists `k` candidates with the low-d index over `dims`; every later stage rescores
// the survivors of the previous stage on the first `dims` dims and keeps `k`.
struct Stage {
  int32_t dims = 0;
  int32_t k = 0;
};

struct QueryPlan {
  std::string name;  // "adaptive Ds=16 K=200 Dr=2048", "funnel ...", a budget name
  std::vector<Stage> stages;
  int32_t ef = 0;      // HNSW search breadth for stage 0 (0 = the index default)
  bool exact = false;  // stage 0 by exact scan instead of the index
  // Every shard runs all the stages on its own points (one Search call per group) and the
  // coordinator merges once, instead of merging the shortlist and sending reranks back.
  bool one_trip = false;
  // A calibrated budget's plan: the recall@k and mean latency calibration measured for it on
  // its sample (< 0: not measured, e.g. a plan a request named).
  double calibrated_recall = -1;
  double calibrated_latency_us = -1;
};

// {Ds, K, Dr} returning top-k: stages [(Ds, K), (Dr, k)]. Checks Ds < Dr, both nesting dims,
// k <= K.
Result<QueryPlan> AdaptivePlan(int32_t ds, int32_t shortlist_k, int32_t dr, int32_t k,
                               const std::vector<int32_t>& nesting);
// Funnel [(d1, K1), (d2, K2), ...]: dims strictly increasing nesting dims, K non-increasing,
// final K = k (appended as (d_last, k) if the last K is larger).
Result<QueryPlan> FunnelPlan(const std::vector<Stage>& stages, int32_t k,
                             const std::vector<int32_t>& nesting);
// One stage: the index over `dims` answers top-k itself (a shortlist at Dr needs no rerank).
Result<QueryPlan> OneStagePlan(int32_t dims, int32_t k, const std::vector<int32_t>& nesting);
// Exact search at full dimension d.
QueryPlan ExactPlan(int32_t d, int32_t k);
// The paper's funnel shape: dims doubling from `first_dims` to d, K halving from `first_k`.
QueryPlan PaperFunnel(int32_t first_dims, int32_t first_k, int32_t k,
                      const std::vector<int32_t>& nesting);

// A search request's choice of plan, as the HTTP and the binary API both state it.
struct PlanRequest {
  int32_t k = 0;                 // the answer size
  std::string budget;            // non-empty: a calibrated budget (fast / balanced / exact)
  bool exact = false;            // the exact plan
  std::vector<Stage> funnel;     // non-empty: these stages (stage 0 shortlists)
  // The adaptive plan {Ds, K, Dr}; 0 = the default: the first index's dims (the first nesting
  // dim without an index), max(200, 10 k), and d. Ds == Dr (e.g. a plain ANN collection whose
  // only index is at full d) is the one-stage plan.
  int32_t shortlist_dims = 0, shortlist_k = 0, rerank_dims = 0;
  int32_t ef = 0;                // non-zero: overrides the plan's HNSW breadth
};
// The one plan resolution of both APIs: a budget, else exact, else the funnel, else, when the
// request names no plan at all, the collection's calibrated "balanced" budget, else the adaptive
// (or, at Ds == Dr, the one-stage) plan; then k is the last stage's K and a non-zero ef replaces the plan's. `budget_plan` looks
// a budget up (FailedPrecondition when it is not calibrated).
Result<QueryPlan> ResolvePlan(const PlanRequest& request, const CollectionSpec& spec,
                              const std::function<Result<QueryPlan>(const std::string&)>& budget_plan);

// Multiply-adds per query to score the candidates of every rerank stage (stage 0's index cost
// is measured, not modelled).
double RerankCost(const QueryPlan& plan);

struct CalibrationPoint {
  QueryPlan plan;
  double recall = 0;      // mean recall@k against exact on the calibration queries
  double latency_us = 0;  // mean measured latency per query
};

struct Budget {
  std::string name;
  double target_recall = 0;
  // Served only by an exact plan: an approximate plan that reached recall 1.0 on a calibration
  // sample has not shown that it is exact on other queries.
  bool exact_only = false;
};
// The default budgets: fast (recall >= 0.90 on the calibration sample), balanced (>= 0.99),
// exact (the exact plan: a full-d scan, whatever the sample says).
std::vector<Budget> DefaultBudgets();

// For each budget, the measured-fastest plan whose recall reaches its target (exact plans reach
// every target). NotFound names a budget no candidate reaches.
Result<std::map<std::string, QueryPlan>> PickBudgets(const std::vector<CalibrationPoint>& points,
                                                     const std::vector<Budget>& budgets);

// The candidate plans a calibration measures: adaptive plans over the low-d index dims x a
// range of shortlist sizes, the paper's funnel, each both ways (coordinator-side rerank and one
// trip), and exact.
std::vector<QueryPlan> CalibrationCandidates(const std::vector<int32_t>& index_dims,
                                             const std::vector<int32_t>& nesting, int32_t k);

}  // namespace mrl::coord
