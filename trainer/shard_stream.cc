#include "trainer/shard_stream.h"

#include <algorithm>

#include "common/npy.h"
#include "trainer/sampler.h"

namespace mrl {

ShardStream::ShardStream(std::vector<StreamShard> shards, StreamOptions options)
    : shards_(std::move(shards)), options_(std::move(options)) {
  reader_ = std::thread([this] { ReadLoop(); });
  for (int i = 0; i < std::max(1, options_.decode_threads); ++i) {
    decoders_.emplace_back([this] { DecodeLoop(); });
  }
}

ShardStream::~ShardStream() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  work_cv_.notify_all();
  done_cv_.notify_all();
  space_cv_.notify_all();
  reader_.join();
  for (auto& t : decoders_) t.join();
}

bool ShardStream::PushRaw(RawBatch batch) {
  std::unique_lock<std::mutex> lock(mu_);
  // Bounded: at most prefetch_batches raw batches waiting for a decoder.
  space_cv_.wait(lock, [&] {
    return stop_ || static_cast<int64_t>(work_.size()) < std::max<int64_t>(1, options_.prefetch_batches);
  });
  if (stop_) return false;
  work_.push_back(std::move(batch));
  work_cv_.notify_one();
  return true;
}

void ShardStream::ReadLoop() {
  const int64_t take = options_.take > 0 ? options_.take : -1;
  const size_t buffer_cap = static_cast<size_t>(std::max<int64_t>(1, options_.shuffle_buffer));
  uint64_t rng = options_.shuffle_seed;
  std::vector<Item> buffer;
  buffer.reserve(buffer_cap);
  int64_t emitted = 0, delivered = 0, seq = 0;
  RawBatch current;
  bool done = false;
  auto finish = [&](Status error) {
    if (!error.ok() || !current.items.empty()) {
      current.seq = seq++;
      current.error = error;
      if (!PushRaw(std::move(current))) return;
    }
    std::lock_guard<std::mutex> lock(mu_);
    total_batches_ = seq;
    done_cv_.notify_all();
    work_cv_.notify_all();
  };
  // Passes one shuffled-out sample on: dropped while skipping, else batched.
  auto emit = [&](Item&& item) -> bool {
    if (emitted++ < options_.skip) return true;
    current.items.push_back(std::move(item));
    ++delivered;
    if (static_cast<int64_t>(current.items.size()) == options_.batch) {
      current.seq = seq++;
      if (!PushRaw(std::move(current))) return false;
      current = RawBatch();
    }
    if (take >= 0 && delivered >= take) done = true;
    return true;
  };
  auto draw = [&](size_t n) {
    rng = SplitMix64(rng);
    return static_cast<size_t>(rng % n);
  };
  for (size_t s = 0; s < shards_.size() && !done; ++s) {
    auto reader = TarShardReader::Open(shards_[s].path);
    if (!reader.ok()) return finish(reader.status());
    for (int64_t i = 0; i < shards_[s].usable && !done; ++i) {
      Item item;
      item.shard = static_cast<int>(s);
      // Skipped samples still pass through the shuffle buffer (their order decides what follows)
      // but are never decoded.
      auto more = reader.value()->Next(&item.sample);
      if (!more.ok()) return finish(more.status());
      if (!more.value()) {
        return finish(Status::Corruption("shard '" + shards_[s].path +
                                         "': truncated: it ends after " + std::to_string(i) +
                                         " samples, the manifest counts at least " +
                                         std::to_string(shards_[s].usable)));
      }
      if (buffer_cap <= 1) {
        if (!emit(std::move(item))) return;
        continue;
      }
      if (buffer.size() < buffer_cap) {
        buffer.push_back(std::move(item));
        continue;
      }
      const size_t j = draw(buffer_cap);
      Item out = std::move(buffer[j]);
      buffer[j] = std::move(item);
      if (!emit(std::move(out))) return;
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return;
    }
  }
  while (!buffer.empty() && !done) {  // drain
    const size_t j = draw(buffer.size());
    Item out = std::move(buffer[j]);
    buffer[j] = std::move(buffer.back());
    buffer.pop_back();
    if (!emit(std::move(out))) return;
  }
  finish(Status::Ok());
}

Status ShardStream::Decode(const RawBatch& raw, SampleBatch* out) const {
  const StreamOptions& o = options_;
  const int64_t n = static_cast<int64_t>(raw.items.size());
  out->count = n;
  out->labels.resize(static_cast<size_t>(n));
  out->keys.resize(static_cast<size_t>(n));
  Image img, tr;
  for (int64_t i = 0; i < n; ++i) {
    const Item& it = raw.items[static_cast<size_t>(i)];
    const RawSample& s = it.sample;
    const std::string where = "shard '" + shards_[static_cast<size_t>(it.shard)].path +
                              "': sample '" + s.key + "': ";
    out->labels[static_cast<size_t>(i)] = s.label;
    out->keys[static_cast<size_t>(i)] = s.key;
    if (!o.images) {
      if (s.ext != "npy") return Status::Corruption(where + "expected a .npy feature vector, found ." + s.ext);
      auto a = ParseNpy(s.payload, s.key + ".npy");
      if (!a.ok()) return Status::Corruption(where + a.status().message());
      if (a->dtype != NpyDtype::kFloat32 || a->numel() != o.features) {
        return Status::Corruption(where + "expected " + std::to_string(o.features) +
                                  " float32 features");
      }
      if (i == 0) {
        out->features = o.features;
        out->dense.resize(static_cast<size_t>(n * o.features));
      }
      std::copy_n(a->as<float>(), o.features, out->dense.data() + i * o.features);
      continue;
    }
    if (s.ext == "npy") return Status::Corruption(where + "expected an image, found .npy");
    Status st = DecodeImage(s.payload, s.ext, o.channels, &img);
    if (!st.ok()) return Status::Corruption(where + st.message());
    if ((o.height > 0 && img.height != o.height) || (o.width > 0 && img.width != o.width)) {
      if (o.transform.size == 0) {
        return Status::Corruption(where + "image is " + std::to_string(img.height) + "x" +
                                  std::to_string(img.width) + ", the shard set's images are " +
                                  std::to_string(o.height) + "x" + std::to_string(o.width) +
                                  " (set data.image_size to resize)");
      }
    }
    if (o.transform.size == 0 && img.height != img.width) {
      return Status::Corruption(where + "image is not square; set data.image_size");
    }
    if (o.train) {
      TrainTransform(img, o.transform, o.seed, o.epoch, KeyHash(s.key), &tr);
    } else {
      EvalTransform(img, o.transform, &tr);
    }
    if (i == 0) {
      out->height = tr.height;
      out->width = tr.width;
      out->channels = tr.channels;
      out->pixels.resize(static_cast<size_t>(n) * tr.pixels.size());
    }
    std::copy(tr.pixels.begin(), tr.pixels.end(), out->pixels.begin() + i * static_cast<int64_t>(tr.pixels.size()));
  }
  return Status::Ok();
}

void ShardStream::DecodeLoop() {
  for (;;) {
    RawBatch raw;
    {
      std::unique_lock<std::mutex> lock(mu_);
      work_cv_.wait(lock, [&] { return stop_ || !work_.empty() || total_batches_ >= 0; });
      if (stop_ || work_.empty()) return;
      raw = std::move(work_.front());
      work_.pop_front();
      space_cv_.notify_all();
    }
    SampleBatch batch;
    Status st = raw.error.ok() ? Decode(raw, &batch) : raw.error;
    std::unique_lock<std::mutex> lock(mu_);
    // Hold at most prefetch_batches decoded batches ahead of the consumer.
    space_cv_.wait(lock, [&] {
      return stop_ || raw.seq < next_ + std::max<int64_t>(1, options_.prefetch_batches);
    });
    if (stop_) return;
    done_.emplace(raw.seq, std::make_pair(std::move(st), std::move(batch)));
    done_cv_.notify_all();
  }
}

Result<bool> ShardStream::Next(SampleBatch* out) {
  std::unique_lock<std::mutex> lock(mu_);
  if (failed_) return false;
  done_cv_.wait(lock, [&] {
    return done_.count(next_) > 0 || (total_batches_ >= 0 && next_ >= total_batches_);
  });
  auto it = done_.find(next_);
  if (it == done_.end()) return false;
  Status st = std::move(it->second.first);
  *out = std::move(it->second.second);
  done_.erase(it);
  ++next_;
  space_cv_.notify_all();
  if (!st.ok()) {
    failed_ = true;
    return st;
  }
  return true;
}

}  // namespace mrl
