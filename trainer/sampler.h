// Which training samples each rank uses, as pure functions of (seed, epoch, step): the data
// position of a run is its global step, so resume needs no saved sampler state.
#pragma once

#include <cstdint>
#include <vector>

namespace mrl {

uint64_t SplitMix64(uint64_t x);

// Batch order of one epoch: a permutation of [0, n) that depends only on (seed, epoch).
std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch);

struct DataLayout {
  int64_t batch = 1;       // per-rank micro-batch
  int64_t ranks = 1;
  int64_t grad_accum = 1;
  int64_t steps_per_epoch = 1;
  int64_t global_batch() const { return batch * ranks * grad_accum; }
};

// Start, in the epoch's permutation, of the `batch` samples that `rank` uses for micro-batch
// `micro` of global step `step`: [pos*G + (micro*ranks + rank)*batch, +batch), pos = step mod
// steps_per_epoch. N ranks x batch B therefore see exactly the samples of 1 rank x batch N*B,
// the ranks' samples are disjoint, and a step's samples do not depend on where a run started.
int64_t SampleOffset(const DataLayout& layout, int64_t step, int64_t micro, int64_t rank);

}  // namespace mrl
