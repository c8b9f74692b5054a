// Retrieval and adaptive-classification arithmetic on plain arrays (no tensors, no I/O), so the
// definitions the benchmark reports can be tested directly.
#pragma once

#include <cstdint>
#include <vector>

namespace mrl {

struct RetrievalScore {
  double top1 = 0;    // 1-NN accuracy
  double map_at_10 = 0;
  int64_t queries = 0;
};

// `neighbor_labels` is [queries, k] (k >= 10), best first. mAP@10 and top-1 are
// common/retrieval_metrics.h's (the MRL paper's AP@k: precisions at the hits summed, over k).
RetrievalScore ScoreRetrieval(const std::vector<int64_t>& neighbor_labels, int k,
                              const std::vector<int64_t>& query_labels);

// Adaptive classification (MRL paper section 4.2): nested classifiers are tried from the smallest
// dim up; the cascade stops at the first dim whose max-softmax reaches that dim's threshold.
struct CascadeInputs {
  std::vector<int64_t> dims;                    // nesting dims, increasing
  std::vector<std::vector<float>> confidence;   // [dims][samples] max softmax probability
  std::vector<std::vector<uint8_t>> correct;    // [dims][samples] 1 if argmax == label
};

struct CascadeResult {
  double accuracy = 0;
  double expected_dim = 0;  // mean dim at which samples stopped
};

// Learns one threshold per dim (the last dim always accepts) on held-out data: for each dim, the
// smallest threshold such that the samples it accepts are classified at least as accurately by
// this dim as by the full-dim classifier, minus `slack` (0 = never lose accuracy on held-out).
std::vector<float> LearnCascadeThresholds(const CascadeInputs& heldout, double slack);

CascadeResult RunCascade(const CascadeInputs& data, const std::vector<float>& thresholds);

}  // namespace mrl
