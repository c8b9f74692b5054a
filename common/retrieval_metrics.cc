#include "common/retrieval_metrics.h"

#include <algorithm>
#include <unordered_set>

namespace mrl {

double AveragePrecisionAtK(std::span<const int64_t> retrieved, int64_t query_label, size_t k) {
  if (k == 0) return 0.0;
  double sum = 0;
  size_t hits = 0;
  const size_t n = std::min(k, retrieved.size());
  for (size_t i = 0; i < n; ++i) {
    if (retrieved[i] == query_label) {
      ++hits;
      sum += static_cast<double>(hits) / static_cast<double>(i + 1);
    }
  }
  return sum / static_cast<double>(k);
}

double RecallAtK(std::span<const uint64_t> got, std::span<const uint64_t> truth, size_t k) {
  const std::unordered_set<uint64_t> want(truth.begin(), truth.begin() + std::min(k, truth.size()));
  if (want.empty()) return 1.0;
  std::unordered_set<uint64_t> found;
  for (size_t i = 0; i < std::min(k, got.size()); ++i) {
    if (want.count(got[i])) found.insert(got[i]);
  }
  return static_cast<double>(found.size()) / static_cast<double>(want.size());
}

void RetrievalScorer::AddLabels(std::span<const int64_t> retrieved_labels, int64_t query_label) {
  ap_sum_ += AveragePrecisionAtK(retrieved_labels, query_label, k_);
  top1_sum_ += !retrieved_labels.empty() && retrieved_labels[0] == query_label ? 1.0 : 0.0;
  ++labelled_;
}

void RetrievalScorer::AddRecall(std::span<const uint64_t> got, std::span<const uint64_t> truth) {
  recall_sum_ += RecallAtK(got, truth, k_);
  ++recalled_;
}

}  // namespace mrl
