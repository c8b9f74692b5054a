// Training / evaluation data: held in RAM (Fashion-MNIST IDX, .npy) with the deterministic batch
// order built on it, or streamed from tar shards (data.kind = "shards").
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "trainer/config.h"
#include "trainer/sampler.h"
#include "trainer/shard_set.h"
#include "trainer/shard_stream.h"

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

// data.kind == "shards": the shard sets. Training streams `train`; positions [0, train_size) are
// the run's training split (data.train_limit), of which the first train_used are trained on.
struct ShardInput {
  ShardSet train, test;
  int64_t train_size = 0, test_size = 0;
  std::vector<int64_t> train_counts;  // per shard: samples at positions < train_used
};

struct DataSplits {
  // In-RAM kinds: all samples. Shards: only the shape fields until LoadShardEvalSplits().
  Split train;    // what the database of retrieval evaluation is made of (all training samples)
  Split test;     // queries
  int64_t train_used = 0;  // the first train_used samples are trained on; the rest are held out
  int64_t num_classes = 0;
  std::shared_ptr<const ShardInput> shards;  // set for data.kind == "shards"
  int64_t train_size() const { return shards ? shards->train_size : train.size(); }
};

// Loads and checks the data named by config (Fashion-MNIST IDX or .npy features). For shards:
// resolves the shard sets (manifest or header scan) and checks shapes; no sample is loaded.
Result<DataSplits> LoadData(const DataConfig& config);

// Shards: reads the training split (database) and the test split (queries) with the eval
// transform into data->train / data->test, for evaluation and export. Fashion-MNIST fits in RAM;
// evaluating a web-scale set would stream the embedding pass instead (not built).
Status LoadShardEvalSplits(const DataConfig& config, DataSplits* data);

// The stream of `rank`'s training samples in `epoch`: its shards of PlanEpoch through the
// (seed, epoch, rank) shuffle buffer, skipping the first `skip` samples (resume) and ending after
// `take` more. REQUIRES: data.shards.
std::unique_ptr<ShardStream> OpenTrainStream(const TrainConfig& config, const DataSplits& data,
                                             int64_t epoch, int rank, int ranks, int64_t skip,
                                             int64_t take);

// Turns samples [begin, end) of `indices` into a normalized float batch. Augmentation (random
// horizontal flip + shift) is a pure function of (seed, epoch, sample id), so a resumed run sees
// exactly the same pixels as the uninterrupted one.
struct Batch {
  torch::Tensor x;  // [B, C, H, W] float or [B, F]
  torch::Tensor y;  // [B] int64
};
Batch MakeBatch(const Split& split, const int64_t* indices, int64_t count, bool augment,
                int64_t max_shift, uint64_t seed, int64_t epoch);
// A streamed batch, normalised like MakeBatch.
Batch BatchFromSamples(const SampleBatch& samples);


}  // namespace mrl
