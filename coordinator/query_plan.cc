#include "coordinator/query_plan.h"

#include <algorithm>
#include <limits>
#include <unordered_map>
#include <unordered_set>

namespace mrl::coord {
namespace {

bool InNesting(int32_t d, const std::vector<int32_t>& nesting) {
  return std::find(nesting.begin(), nesting.end(), d) != nesting.end();
}

bool Better(const ScoredId& a, const ScoredId& b) {
  return a.score != b.score ? a.score > b.score : a.id < b.id;
}

std::string StagesName(const std::vector<Stage>& stages) {
  std::string s;
  for (const Stage& st : stages) {
    s += (s.empty() ? "" : " -> ") + std::to_string(st.dims) + "d/" + std::to_string(st.k);
  }
  return s;
}

}  // namespace

std::vector<ScoredId> MergeTopK(const std::vector<std::vector<ScoredId>>& lists, size_t k) {
  std::unordered_map<uint64_t, float> best;
  for (const auto& list : lists) {
    for (const ScoredId& c : list) {
      auto [it, inserted] = best.emplace(c.id, c.score);
      if (!inserted && c.score > it->second) it->second = c.score;
    }
  }
  std::vector<ScoredId> all;
  all.reserve(best.size());
  for (const auto& [id, score] : best) all.push_back({id, score});
  const size_t n = std::min(k, all.size());
  std::partial_sort(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n), all.end(), Better);
  all.resize(n);
  return all;
}

Result<QueryPlan> AdaptivePlan(int32_t ds, int32_t shortlist_k, int32_t dr, int32_t k,
                               const std::vector<int32_t>& nesting) {
  if (!InNesting(ds, nesting) || !InNesting(dr, nesting)) {
    return Status::InvalidArgument("Ds and Dr must be nesting dims of the collection");
  }
  if (ds >= dr) return Status::InvalidArgument("Ds must be smaller than Dr");
  if (k < 1 || shortlist_k < k) return Status::InvalidArgument("need 1 <= k <= K");
  QueryPlan p;
  p.stages = {{ds, shortlist_k}, {dr, k}};
  p.name = "adaptive Ds=" + std::to_string(ds) + " K=" + std::to_string(shortlist_k) +
           " Dr=" + std::to_string(dr);
  return p;
}

Result<QueryPlan> FunnelPlan(const std::vector<Stage>& stages, int32_t k,
                             const std::vector<int32_t>& nesting) {
  if (stages.empty()) return Status::InvalidArgument("a funnel needs at least one stage");
  if (k < 1) return Status::InvalidArgument("k must be >= 1");
  for (size_t i = 0; i < stages.size(); ++i) {
    if (!InNesting(stages[i].dims, nesting)) {
      return Status::InvalidArgument("funnel dims " + std::to_string(stages[i].dims) +
                                     " is not a nesting dim");
    }
    if (stages[i].k < k) return Status::InvalidArgument("every funnel K must be >= k");
    if (i > 0 && stages[i].dims <= stages[i - 1].dims) {
      return Status::InvalidArgument("funnel dims must increase");
    }
    if (i > 0 && stages[i].k > stages[i - 1].k) {
      return Status::InvalidArgument("funnel K must not increase");
    }
  }
  QueryPlan p;
  p.stages = stages;
  if (p.stages.back().k > k) p.stages.push_back({p.stages.back().dims, k});
  p.name = "funnel " + StagesName(stages);
  return p;
}

Result<QueryPlan> OneStagePlan(int32_t dims, int32_t k, const std::vector<int32_t>& nesting) {
  if (!InNesting(dims, nesting)) {
    return Status::InvalidArgument("shortlist dims " + std::to_string(dims) +
                                   " is not a nesting dim of the collection");
  }
  if (k < 1) return Status::InvalidArgument("k must be >= 1");
  QueryPlan p;
  p.stages = {{dims, k}};
  p.name = "one-stage Ds=" + std::to_string(dims) + " (the shortlist is at Dr: no rerank)";
  return p;
}

QueryPlan ExactPlan(int32_t d, int32_t k) {
  QueryPlan p;
  p.name = "exact";
  p.stages = {{d, k}};
  p.exact = true;
  return p;
}

QueryPlan PaperFunnel(int32_t first_dims, int32_t first_k, int32_t k,
                      const std::vector<int32_t>& nesting) {
  QueryPlan p;
  int32_t kk = first_k;
  for (int32_t d : nesting) {
    if (d < first_dims) continue;
    p.stages.push_back({d, std::max(kk, k)});
    kk /= 2;
  }
  if (p.stages.empty()) p.stages.push_back({nesting.back(), k});
  // The last stage (full d) returns k.
  p.stages.back().k = k;
  p.name = "funnel " + StagesName(p.stages);
  return p;
}

double RerankCost(const QueryPlan& plan) {
  double cost = 0;
  for (size_t i = 1; i < plan.stages.size(); ++i) {
    cost += static_cast<double>(plan.stages[i - 1].k) * plan.stages[i].dims;
  }
  return cost;
}

std::vector<Budget> DefaultBudgets() {
  return {{"fast", 0.90, false}, {"balanced", 0.99, false}, {"exact", 1.0, true}};
}

Result<std::map<std::string, QueryPlan>> PickBudgets(const std::vector<CalibrationPoint>& points,
                                                     const std::vector<Budget>& budgets) {
  std::map<std::string, QueryPlan> out;
  for (const Budget& b : budgets) {
    const CalibrationPoint* best = nullptr;
    for (const CalibrationPoint& p : points) {
      if (b.exact_only && !p.plan.exact) continue;
      const bool reaches = p.plan.exact || p.recall >= b.target_recall;
      if (!reaches) continue;
      if (best == nullptr || p.latency_us < best->latency_us) best = &p;
    }
    if (best == nullptr) {
      return Status::NotFound("no calibrated plan reaches budget '" + b.name + "' (recall " +
                              std::to_string(b.target_recall) + ")");
    }
    QueryPlan plan = best->plan;
    plan.name = b.name + ": " + best->plan.name;
    plan.calibrated_recall = best->recall;
    plan.calibrated_latency_us = best->latency_us;
    out[b.name] = plan;
  }
  return out;
}

Result<QueryPlan> ResolvePlan(const PlanRequest& r, const CollectionSpec& spec,
                              const std::function<Result<QueryPlan>(const std::string&)>& budget_plan) {
  Result<QueryPlan> plan = Status::Internal("unset");
  if (!r.budget.empty()) {
    plan = budget_plan(r.budget);
  } else if (r.exact) {
    plan = ExactPlan(spec.dim, r.k);
  } else if (!r.funnel.empty()) {
    plan = FunnelPlan(r.funnel, r.k, spec.nesting);
  } else if (r.shortlist_dims == 0 && r.shortlist_k == 0 && r.rerank_dims == 0 &&
             (plan = budget_plan("balanced")).ok()) {
    // No plan named: the calibrated balanced budget.
  } else {
    const int32_t default_ds = spec.indexes.empty() ? spec.nesting.front() : spec.indexes.front().dims;
    const int32_t ds = r.shortlist_dims ? r.shortlist_dims : default_ds;
    const int32_t dr = r.rerank_dims ? r.rerank_dims : spec.dim;
    plan = ds == dr ? OneStagePlan(ds, r.k, spec.nesting)
                    : AdaptivePlan(ds, r.shortlist_k ? r.shortlist_k : std::max(200, 10 * r.k), dr,
                                   r.k, spec.nesting);
  }
  if (!plan.ok()) return plan;
  plan->stages.back().k = r.k;
  if (r.ef != 0) plan->ef = r.ef;
  return plan;
}

std::vector<QueryPlan> CalibrationCandidates(const std::vector<int32_t>& index_dims,
                                             const std::vector<int32_t>& nesting, int32_t k) {
  std::vector<QueryPlan> out;
  const int32_t d = nesting.back();
  for (int32_t ds : index_dims) {
    if (ds >= d) continue;
    for (int32_t mult : {2, 5, 10, 20, 50, 100}) {
      auto p = AdaptivePlan(ds, k * mult, d, k, nesting);
      if (p.ok()) out.push_back(p.value());
    }
  }
  if (!index_dims.empty()) out.push_back(PaperFunnel(index_dims.front(), 20 * k, k, nesting));
  const size_t two_trip = out.size();
  for (size_t i = 0; i < two_trip; ++i) {
    QueryPlan p = out[i];
    p.one_trip = true;
    p.name += " (one trip)";
    out.push_back(std::move(p));
  }
  out.push_back(ExactPlan(d, k));
  return out;
}

}  // namespace mrl::coord
