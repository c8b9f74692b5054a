// Evaluation per nesting dim (MRL paper Tables 1-2 shape): linear top-1 from the trained heads,
// 1-NN top-1 and mAP@10 with database = train set and queries = test set (cosine on the
// normalized prefix), the SVD baseline, and adaptive classification through the nested heads.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "trainer/data.h"
#include "trainer/metrics.h"
#include "trainer/model.h"

namespace mrl {

struct DimEval {
  int64_t dim = 0;
  double linear_top1 = -1;  // -1 where the model has no classifier at this dim
  double knn_top1 = 0;
  double map_at_10 = 0;
};

struct AdaptivePoint {
  double slack = 0;
  double accuracy = 0;
  double expected_dim = 0;
};

struct AdaptiveReport {
  std::vector<int64_t> dims;
  std::vector<float> thresholds;  // at slack 0
  double full_dim_accuracy = 0;   // test accuracy of the largest head
  std::vector<AdaptivePoint> curve;
  int64_t heldout = 0;
};

// Embeds samples [begin, end) of `split` in eval mode, [end-begin, d].
torch::Tensor EmbedSplit(MrlModel& model, const Split& split, int64_t begin, int64_t end);

// Labels of the k nearest database rows (cosine on the first m dims) of each query, [Q, k].
std::vector<int64_t> NearestLabels(const torch::Tensor& db, const torch::Tensor& queries, int64_t m,
                                   const std::vector<int64_t>& db_labels, int k);

// Accuracy of the model's classifier at dim m on embeddings z.
double LinearTop1(MrlModel& model, const torch::Tensor& z, int64_t m,
                  const std::vector<int64_t>& labels);

std::vector<DimEval> EvaluatePerDim(MrlModel& model, const torch::Tensor& db,
                                    const std::vector<int64_t>& db_labels, const torch::Tensor& q,
                                    const std::vector<int64_t>& q_labels,
                                    const std::vector<int64_t>& dims);

// A linear softmax probe's test top-1 on fixed features: trained on `fit` (SGD + momentum,
// cosine decay, 15 epochs, weight decay 1e-4) after one uniform scale of every coordinate, and
// early-stopped on `heldout` (the epoch of best held-out accuracy; the last epoch when heldout
// has no rows). `best_epoch` (may be null) gets the epoch kept, 1-based.
double ProbeTop1(const torch::Tensor& fit, const std::vector<int64_t>& fit_labels,
                 const torch::Tensor& heldout, const std::vector<int64_t>& heldout_labels,
                 const torch::Tensor& test, const std::vector<int64_t>& test_labels,
                 int64_t num_classes, uint64_t seed, int64_t* best_epoch);

// SVD baseline: the full embeddings projected onto their top-m principal directions (fit on
// `fit`), evaluated the same way; the linear top-1 comes from ProbeTop1 on the projected `fit`
// rows, early-stopped on the projected `heldout` rows.
std::vector<DimEval> EvaluateSvd(const torch::Tensor& fit, const std::vector<int64_t>& fit_labels,
                                 const torch::Tensor& heldout,
                                 const std::vector<int64_t>& heldout_labels,
                                 const torch::Tensor& db, const std::vector<int64_t>& db_labels,
                                 const torch::Tensor& q, const std::vector<int64_t>& q_labels,
                                 const std::vector<int64_t>& dims, int64_t num_classes,
                                 uint64_t seed);

// Learns cascade thresholds on the held-out embeddings and evaluates on the test embeddings.
AdaptiveReport EvaluateAdaptive(MrlModel& model, const torch::Tensor& heldout,
                                const std::vector<int64_t>& heldout_labels, const torch::Tensor& q,
                                const std::vector<int64_t>& q_labels);

}  // namespace mrl
