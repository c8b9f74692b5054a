// The project's one definition of each retrieval metric. Every producer of a figure (the trainer's
// evaluation, the coordinator's calibration, mrlctl eval, bench programs) calls these, so a
// number labelled mAP@10 or recall@10 means the same thing on every page. Plain arrays in, no
// I/O, no LibTorch.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <vector>

namespace mrl {

// AP@k exactly as the MRL paper's code computes it: walk the first k retrieved labels; at each
// position i (1-based) holding `query_label`, add precision@i = hits so far / i; divide the sum by
// k (not by the number of hits). A list shorter than k counts its missing positions as misses.
// Dividing by k means a query with few relevant items in the top k scores low even when those
// few are ranked first; the paper's numbers (and ours) use this form.
// REQUIRES: k > 0.
double AveragePrecisionAtK(std::span<const int64_t> retrieved_labels, int64_t query_label,
                           size_t k);

// recall@k against a ground truth: |set(got[:k]) ∩ set(truth[:k])| / |set(truth[:k])|. Duplicates
// in either list count once. The denominator is k whenever the truth holds k distinct ids (every
// database of at least k points); a truth with none gives 1.
double RecallAtK(std::span<const uint64_t> got, std::span<const uint64_t> truth, size_t k);

// Means of the per-query metrics over a query set. Add one query at a time, in any order.
// Not thread-safe: one scorer per thread, or fill it after the timed loop.
class RetrievalScorer {
 public:
  explicit RetrievalScorer(size_t k) : k_(k) {}

  // Labels of the retrieved items, best first, and the query's label: mAP@k and 1-NN top-1.
  void AddLabels(std::span<const int64_t> retrieved_labels, int64_t query_label);
  // Retrieved ids, best first, and the ground truth's ids (best first): recall@k.
  void AddRecall(std::span<const uint64_t> got, std::span<const uint64_t> truth);

  size_t k() const { return k_; }
  size_t labelled_queries() const { return labelled_; }
  size_t recall_queries() const { return recalled_; }
  // Means in [0, 1]; 0 when nothing was added.
  double map_at_k() const { return labelled_ ? ap_sum_ / static_cast<double>(labelled_) : 0.0; }
  double top1() const { return labelled_ ? top1_sum_ / static_cast<double>(labelled_) : 0.0; }
  double recall_at_k() const {
    return recalled_ ? recall_sum_ / static_cast<double>(recalled_) : 0.0;
  }

 private:
  size_t k_;
  size_t labelled_ = 0, recalled_ = 0;
  double ap_sum_ = 0, top1_sum_ = 0, recall_sum_ = 0;
};

}  // namespace mrl
