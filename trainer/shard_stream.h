// One rank's sample stream for one epoch over its tar shards: a reader thread reads the shards in
// order, passes the samples through a seeded shuffle buffer and groups them into batches; a pool
// of decoder threads decodes and transforms batches; the consumer receives batches strictly in
// sequence order. The order (and the pixels) depend only on the shard list and the options, never
// on thread timing, so a stream is reproducible and a resumed run can skip to its exact position.
// Plain code, no LibTorch.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <deque>
#include <vector>

#include "common/status.h"
#include "trainer/image_transform.h"
#include "trainer/tar_shard.h"

namespace mrl {

struct StreamShard {
  std::string path;
  int64_t usable = 0;  // read only the first `usable` samples of this shard
};

struct StreamOptions {
  int64_t batch = 1;             // samples per delivered batch (the last one may be smaller)
  int64_t skip = 0;              // samples of the (shuffled) stream dropped undecoded (resume)
  int64_t take = 0;              // samples delivered after `skip`; 0 = all
  int64_t shuffle_buffer = 2048; // <= 1: file order
  uint64_t shuffle_seed = 0;     // see ShuffleSeed()
  // Augmentation stream: (seed, epoch, key).
  uint64_t seed = 0;
  int64_t epoch = 0;
  bool train = true;             // TrainTransform, else EvalTransform
  TransformOptions transform;
  // Expected samples: images decoded to `channels` and checked to be height x width (before the
  // transform); npy payloads must hold `features` float32 values.
  bool images = true;
  int64_t height = 0, width = 0, channels = 1;
  int64_t features = 0;
  int decode_threads = 1;
  int64_t prefetch_batches = 4;  // decoded batches held ready ahead of the consumer
};

// A batch ready to become tensors. Images: uint8 [count, size, size, channels]; features:
// float32 [count, features].
struct SampleBatch {
  int64_t count = 0;
  int64_t height = 0, width = 0, channels = 0, features = 0;
  std::vector<uint8_t> pixels;
  std::vector<float> dense;
  std::vector<int64_t> labels;
  std::vector<std::string> keys;  // sample keys, for tests and error messages
};

class ShardStream {
 public:
  // Starts the threads. REQUIRES: options.batch >= 1, decode_threads >= 1.
  ShardStream(std::vector<StreamShard> shards, StreamOptions options);
  ~ShardStream();  // stops and joins the threads
  ShardStream(const ShardStream&) = delete;
  ShardStream& operator=(const ShardStream&) = delete;

  // Blocks until the next batch is ready. Returns false at the end of the stream. Errors
  // (Corruption naming the shard and the sample key): unreadable/truncated tar, missing label,
  // undecodable image, wrong image size. After an error the stream is finished.
  Result<bool> Next(SampleBatch* out);

 private:
  struct Item {
    RawSample sample;
    int shard = 0;
  };
  struct RawBatch {
    int64_t seq = 0;
    std::vector<Item> items;
    Status error;  // set: this batch position is an error
  };

  void ReadLoop();
  void DecodeLoop();
  Status Decode(const RawBatch& raw, SampleBatch* out) const;
  bool PushRaw(RawBatch batch);  // false when stopping

  const std::vector<StreamShard> shards_;
  const StreamOptions options_;

  std::mutex mu_;
  std::condition_variable work_cv_, done_cv_, space_cv_;
  std::deque<RawBatch> work_;
  std::map<int64_t, std::pair<Status, SampleBatch>> done_;
  int64_t next_ = 0;           // seq the consumer takes next
  int64_t total_batches_ = -1; // known once the reader finished
  bool stop_ = false;
  bool failed_ = false;

  std::thread reader_;
  std::vector<std::thread> decoders_;
};

}  // namespace mrl
