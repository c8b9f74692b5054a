// Training / evaluation data held in RAM (Fashion-MNIST is 47 MB; streaming sharded input is
// the distributed-training issue's job) and the deterministic batch order built on it.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <vector>

#include "trainer/config.h"
#include "trainer/sampler.h"

namespace mrl {

// One split. Images are uint8 [N, H, W, C]; dense features are float32 [N, F].
struct Split {
  bool is_image = true;
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  int64_t features = 0;
  std::vector<float> dense;
  std::vector<int64_t> labels;
  int64_t size() const { return static_cast<int64_t>(labels.size()); }
};

struct DataSplits {
  Split train;    // what the database of retrieval evaluation is made of (all training samples)
  Split test;     // queries
  int64_t train_used = 0;  // the first train_used samples are trained on; the rest are held out
  int64_t num_classes = 0;
};

// Loads and checks the data named by config (Fashion-MNIST IDX or .npy features).
Result<DataSplits> LoadData(const DataConfig& config);

// Turns samples [begin, end) of `indices` into a normalized float batch. Augmentation (random
// horizontal flip + shift) is a pure function of (seed, epoch, sample id), so a resumed run sees
// exactly the same pixels as the uninterrupted one.
struct Batch {
  torch::Tensor x;  // [B, C, H, W] float or [B, F]
  torch::Tensor y;  // [B] int64
};
Batch MakeBatch(const Split& split, const int64_t* indices, int64_t count, bool augment,
                int64_t max_shift, uint64_t seed, int64_t epoch);


}  // namespace mrl
