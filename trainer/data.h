// Training / evaluation data: held in RAM (Fashion-MNIST IDX, .npy) with the deterministic batch
// order built on it, or streamed from tar shards (data.kind = "shards").
#pragma once

#include <torch/torch.h>

#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "trainer/config.h"
#include "trainer/sampler.h"
#include "trainer/shard_set.h"
#include "trainer/shard_stream.h"

namespace mrl {

// data.kind == "fmnist3": 1000 classes from Fashion-MNIST's 10. Composite i is three items side
// by side (28 x 84, one channel); its label is 100*c1 + 10*c2 + c3 for the items' classes left to
// right. The class of composite i is fixed ((i - part begin) mod 1000, so every 1000 consecutive
// composites hold each class once); which items of those classes it shows is a pure function of
// (seed, epoch, i), so a training epoch sees fresh items, runs are deterministic and a resumed run
// sees the same pixels. Items come from the pool of the composite's part only: training
// composites from the training items, held-out composites from the held-out items, test
// composites from Fashion-MNIST's test split.
struct Composites {
  static constexpr int kItems = 3;
  static constexpr int64_t kClasses = 1000;
  int64_t item_h = 28, item_w = 28;
  std::vector<uint8_t> items;  // the source split's images [n, item_h, item_w]
  std::vector<int64_t> item_labels;
  struct Part {
    int64_t begin = 0;                             // first composite index of the part
    std::vector<std::vector<int64_t>> by_class;    // item indices per item class (10)
  };
  std::vector<Part> parts;  // ascending begin; the first begins at 0
  uint64_t seed = 0;

  static int64_t ClassOf(int64_t index_in_part) { return index_in_part % kClasses; }
  const Part& PartOf(int64_t index) const;
  // The source items of composite `index` in `epoch`, left to right.
  std::array<int64_t, kItems> Items(int64_t index, int64_t epoch) const;
  // Writes its pixels ([item_h, kItems * item_w]) to `out`.
  void Compose(int64_t index, int64_t epoch, uint8_t* out) const;
};

// One split. Images are uint8 [N, H, W, C]; dense features are float32 [N, F]. A composite split
// (fmnist3) holds no pixels: MakeBatch composes sample i for the epoch it is given.
struct Split {
  bool is_image = true;
  int64_t height = 0, width = 0, channels = 0;
  std::vector<uint8_t> pixels;
  int64_t features = 0;
  std::vector<float> dense;
  std::vector<int64_t> labels;
  std::shared_ptr<const Composites> composites;
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
// exactly the same pixels as the uninterrupted one. A composite split is composed for `epoch`
// (evaluation passes epoch 0: its database is the first epoch's training composites).
struct Batch {
  torch::Tensor x;  // [B, C, H, W] float or [B, F]
  torch::Tensor y;  // [B] int64
};
Batch MakeBatch(const Split& split, const int64_t* indices, int64_t count, bool augment,
                int64_t max_shift, uint64_t seed, int64_t epoch);
// A streamed batch, normalised like MakeBatch.
Batch BatchFromSamples(const SampleBatch& samples);


}  // namespace mrl
