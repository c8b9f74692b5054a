#include "trainer/metrics.h"

#include <algorithm>
#include <numeric>

#include "common/retrieval_metrics.h"

namespace mrl {

RetrievalScore ScoreRetrieval(const std::vector<int64_t>& neighbor_labels, int k,
                              const std::vector<int64_t>& query_labels) {
  RetrievalScore s;
  s.queries = static_cast<int64_t>(query_labels.size());
  if (s.queries == 0) return s;
  RetrievalScorer scorer(10);
  for (int64_t q = 0; q < s.queries; ++q) {
    const std::span<const int64_t> row(neighbor_labels.data() + q * k, static_cast<size_t>(k));
    scorer.AddLabels(row, query_labels[static_cast<size_t>(q)]);
  }
  s.top1 = scorer.top1();
  s.map_at_10 = scorer.map_at_k();
  return s;
}

std::vector<float> LearnCascadeThresholds(const CascadeInputs& h, double slack) {
  const size_t nd = h.dims.size();
  std::vector<float> thresholds(nd, 0.0f);
  if (nd == 0) return thresholds;
  const size_t n = h.correct.back().size();
  const auto& full = h.correct.back();
  for (size_t d = 0; d + 1 < nd; ++d) {
    // Sort samples by confidence, descending; accept the longest prefix whose accuracy at this dim
    // is within `slack` of the full-dim accuracy on the same samples.
    std::vector<size_t> order(n);
    std::iota(order.begin(), order.end(), 0);
    std::sort(order.begin(), order.end(),
              [&](size_t a, size_t b) { return h.confidence[d][a] > h.confidence[d][b]; });
    double here = 0, at_full = 0;
    float best = 1.01f;  // accept nothing by default
    for (size_t i = 0; i < n; ++i) {
      here += h.correct[d][order[i]];
      at_full += full[order[i]];
      const bool tie_next = i + 1 < n && h.confidence[d][order[i + 1]] == h.confidence[d][order[i]];
      if (tie_next) continue;  // a threshold cannot split equal confidences
      if (here >= at_full - slack * static_cast<double>(i + 1)) best = h.confidence[d][order[i]];
    }
    thresholds[d] = best;
  }
  thresholds[nd - 1] = 0.0f;
  return thresholds;
}

CascadeResult RunCascade(const CascadeInputs& x, const std::vector<float>& thresholds) {
  CascadeResult r;
  const size_t nd = x.dims.size();
  if (nd == 0 || x.correct.back().empty()) return r;
  const size_t n = x.correct.back().size();
  double correct = 0, dims = 0;
  for (size_t i = 0; i < n; ++i) {
    size_t d = 0;
    while (d + 1 < nd && x.confidence[d][i] < thresholds[d]) ++d;
    correct += x.correct[d][i];
    dims += static_cast<double>(x.dims[d]);
  }
  r.accuracy = correct / static_cast<double>(n);
  r.expected_dim = dims / static_cast<double>(n);
  return r;
}

}  // namespace mrl
