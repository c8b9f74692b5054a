// Writes a split into WebDataset-style tar shards plus manifest.json (the converter behind
// mrl-make-shards). Plain code, no LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "trainer/idx.h"

namespace mrl {

struct ShardWriteOptions {
  std::string out_dir;
  int64_t shards = 0;              // split into this many shards of (nearly) equal size, or
  int64_t samples_per_shard = 0;   // shards of this size (the last one smaller), or
  std::vector<int64_t> shard_sizes;  // exactly these sizes (must sum to the sample count)
  std::string format = "png";      // png | jpg (images; features are always .npy)
  int quality = 95;                // jpg
  int64_t limit = 0;               // only the first `limit` samples (0 = all)
};

// Sample i is stored as KEY.png|jpg + KEY.cls with KEY = i zero-padded to 9 digits, in shard
// DIR/shard-NNNNNN.tar; shards and the manifest are written atomically, the manifest last.
Status WriteImageShards(const ImageSet& images, const ShardWriteOptions& options);
// Features: KEY.npy holds one float32 [F] vector. REQUIRES: x has n * f values, labels n.
Status WriteFeatureShards(const float* x, int64_t n, int64_t f, const std::vector<int64_t>& labels,
                          const ShardWriteOptions& options);

// The sample counts of each shard for n samples under `options` (validated).
Result<std::vector<int64_t>> ShardSizes(int64_t n, const ShardWriteOptions& options);

}  // namespace mrl
