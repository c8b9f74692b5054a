#include "coordinator/calibration.h"

#include <chrono>

#include "common/retrieval_metrics.h"

namespace mrl::coord {

Result<std::vector<CalibrationPoint>> Calibrator::Measure(int32_t queries,
                                                          const PlanSearch& search) const {
  if (queries < 1) return Status::InvalidArgument("calibration needs at least one sample query");
  using Clock = std::chrono::steady_clock;
  const size_t n = static_cast<size_t>(queries);
  auto run = [&](const QueryPlan& plan,
                 double* us_per_query) -> Result<std::vector<std::vector<ScoredId>>> {
    const auto t0 = Clock::now();
    auto hits = search(plan);
    *us_per_query = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / queries;
    if (!hits.ok()) return hits.status();
    if (hits->size() != n) {
      return Status::Internal("the search answered " + std::to_string(hits->size()) + " of " +
                              std::to_string(n) + " calibration queries");
    }
    return hits;
  };
  // Every plan runs with k + 1 so that k hits remain once the query's own point is dropped.
  double exact_us = 0;
  auto exact = run(ExactPlan(spec_.dim, k_ + 1), &exact_us);
  if (!exact.ok()) return exact.status();
  auto without_self = [&](const std::vector<ScoredId>& hits, size_t i) {
    // The exact list's best hit for a stored point is the point itself (score = max).
    const uint64_t self = exact.value()[i].empty() ? ~0ull : exact.value()[i].front().id;
    std::vector<uint64_t> ids;
    for (const ScoredId& h : hits) {
      if (h.id != self && ids.size() < static_cast<size_t>(k_)) ids.push_back(h.id);
    }
    return ids;
  };
  std::vector<int32_t> index_dims;
  for (const auto& i : spec_.indexes) index_dims.push_back(i.dims);
  std::vector<CalibrationPoint> points;
  for (const QueryPlan& candidate : CalibrationCandidates(index_dims, spec_.nesting, k_ + 1)) {
    CalibrationPoint p;
    p.plan = candidate;
    // The exact candidate is the truth pass itself: its answers and latency are those already
    // measured (a second exact pass costs as much as the first: ~7 min for 200 samples at 1M x
    // 2048 on 2 cores).
    const bool is_truth_plan = candidate.exact && candidate.stages.size() == 1 &&
                               candidate.stages[0].dims == spec_.dim &&
                               candidate.stages[0].k == k_ + 1;
    p.latency_us = exact_us;
    auto hits = is_truth_plan ? exact : run(candidate, &p.latency_us);
    if (!hits.ok()) return hits.status();
    double recall = 0;
    for (size_t i = 0; i < n; ++i) {
      recall += RecallAtK(without_self(hits.value()[i], i), without_self(exact.value()[i], i),
                          static_cast<size_t>(k_));
    }
    p.recall = recall / static_cast<double>(n);
    p.plan.stages.back().k = k_;  // calibrated with k + 1 for the self match; serves k
    points.push_back(std::move(p));
  }
  return points;
}

}  // namespace mrl::coord
