#include "trainer/data.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common/npy.h"
#include "trainer/idx.h"
#include "trainer/shard_plan.h"

namespace mrl {

namespace {

// Fashion-MNIST training-set pixel statistics.
constexpr float kMean = 0.2860f;
constexpr float kStd = 0.3530f;

Split FromImageSet(ImageSet&& s, int64_t limit) {
  Split out;
  out.is_image = true;
  out.height = s.height;
  out.width = s.width;
  out.channels = s.channels;
  const int64_t n = limit > 0 ? std::min(limit, s.count) : s.count;
  const size_t per = static_cast<size_t>(s.height * s.width * s.channels);
  s.pixels.resize(static_cast<size_t>(n) * per);
  s.labels.resize(static_cast<size_t>(n));
  out.pixels = std::move(s.pixels);
  out.labels = std::move(s.labels);
  return out;
}

Result<Split> LoadNpySplit(const std::string& features, const std::string& labels, int64_t limit) {
  if (features.empty() || labels.empty()) {
    return Status::InvalidArgument("data.kind=npy needs train/test features and labels paths");
  }
  auto f = ReadNpy(features);
  if (!f.ok()) return f.status();
  if (f->dtype != NpyDtype::kFloat32 || f->shape.size() != 2) {
    return Status::InvalidArgument("'" + features + "' must be a float32 [N, F] matrix");
  }
  auto l = ReadNpyLabels(labels);
  if (!l.ok()) return l.status();
  if (static_cast<int64_t>(l->size()) != f->shape[0]) {
    return Status::InvalidArgument("'" + labels + "' has " + std::to_string(l->size()) +
                                   " labels for " + std::to_string(f->shape[0]) + " rows of '" +
                                   features + "'");
  }
  Split out;
  out.is_image = false;
  out.features = f->shape[1];
  const int64_t n = limit > 0 ? std::min(limit, f->shape[0]) : f->shape[0];
  out.dense.assign(f->as<float>(), f->as<float>() + n * out.features);
  for (float v : out.dense) {
    if (!std::isfinite(v)) return Status::InvalidArgument("'" + features + "' contains NaN/Inf");
  }
  out.labels.assign(l->begin(), l->begin() + n);
  for (int64_t v : out.labels) {
    if (v < 0) return Status::InvalidArgument("'" + labels + "' has a negative label");
  }
  return out;
}

TransformOptions Transform(const DataConfig& c) {
  TransformOptions t;
  t.size = c.image_size;
  t.augment = c.augment;
  t.scale_min = c.crop_scale_min;
  t.scale_max = c.crop_scale_max;
  t.ratio_min = c.crop_ratio_min;
  t.ratio_max = c.crop_ratio_max;
  t.flip = c.flip;
  t.eval_resize = c.eval_resize;
  return t;
}

StreamOptions BaseStreamOptions(const DataConfig& c, const ShardSet& set) {
  StreamOptions o;
  o.transform = Transform(c);
  o.images = set.is_image();
  o.height = set.height;
  o.width = set.width;
  o.channels = set.channels;
  o.features = set.features;
  o.decode_threads = static_cast<int>(c.decode_threads);
  o.prefetch_batches = c.prefetch_batches;
  o.shuffle_buffer = c.shuffle_buffer;
  return o;
}

Result<DataSplits> LoadShards(const DataConfig& c) {
  auto input = std::make_shared<ShardInput>();
  auto train = OpenShardSet(c.train_shards);
  if (!train.ok()) return train.status();
  input->train = std::move(train.value());
  if (!c.test_shards.empty()) {
    auto test = OpenShardSet(c.test_shards);
    if (!test.ok()) return test.status();
    input->test = std::move(test.value());
    if (input->test.format == "npy" ? input->train.format != "npy" : input->train.format == "npy") {
      return Status::InvalidArgument("train shards hold " + input->train.format +
                                     " samples but test shards hold " + input->test.format);
    }
  }
  const ShardSet& tr = input->train;
  input->train_size = c.train_limit > 0 ? std::min(c.train_limit, tr.total()) : tr.total();
  input->test_size = c.test_limit > 0 ? std::min(c.test_limit, input->test.total()) : input->test.total();
  DataSplits d;
  d.train.is_image = d.test.is_image = tr.is_image();
  if (tr.is_image()) {
    if (c.image_size == 0 && tr.height != tr.width) {
      return Status::InvalidArgument("shards '" + c.train_shards + "' hold " +
                                     std::to_string(tr.height) + "x" + std::to_string(tr.width) +
                                     " images; set data.image_size");
    }
    d.train.height = d.train.width = c.image_size > 0 ? c.image_size : tr.height;
    d.train.channels = tr.channels;
  } else {
    d.train.features = tr.features;
  }
  d.num_classes = std::max(tr.num_classes, input->test.num_classes);
  if (c.holdout >= input->train_size) {
    return Status::InvalidArgument("data.holdout (" + std::to_string(c.holdout) +
                                   ") must be smaller than the training set (" +
                                   std::to_string(input->train_size) + ")");
  }
  d.train_used = input->train_size - c.holdout;
  input->train_counts = CountsBelow(tr, d.train_used);
  d.shards = std::move(input);
  return d;
}

Result<Split> ReadShardSplit(const DataConfig& c, const ShardSet& set, int64_t size,
                             const Split& shape) {
  StreamOptions o = BaseStreamOptions(c, set);
  o.train = false;
  o.shuffle_buffer = 0;  // file order: sample i of the split is row i
  o.batch = 1024;
  o.decode_threads = std::max(2, o.decode_threads);
  std::vector<StreamShard> shards;
  const std::vector<int64_t> counts = CountsBelow(set, size);
  for (size_t s = 0; s < set.shards.size(); ++s) {
    if (counts[s] > 0) shards.push_back({set.shards[s].path, counts[s]});
  }
  Split out = shape;
  out.pixels.clear();
  out.dense.clear();
  out.labels.clear();
  ShardStream stream(std::move(shards), o);
  SampleBatch b;
  for (;;) {
    auto more = stream.Next(&b);
    if (!more.ok()) return more.status();
    if (!more.value()) break;
    out.pixels.insert(out.pixels.end(), b.pixels.begin(), b.pixels.end());
    out.dense.insert(out.dense.end(), b.dense.begin(), b.dense.end());
    out.labels.insert(out.labels.end(), b.labels.begin(), b.labels.end());
  }
  return out;
}

}  // namespace

Status LoadShardEvalSplits(const DataConfig& c, DataSplits* d) {
  if (!d->shards) return Status::Ok();
  if (d->shards->test.shards.empty()) {
    return Status::InvalidArgument("evaluation needs data.test_shards (or --set evaluate=false "
                                   "--set export_embeddings=false)");
  }
  auto train = ReadShardSplit(c, d->shards->train, d->shards->train_size, d->train);
  if (!train.ok()) return train.status();
  auto test = ReadShardSplit(c, d->shards->test, d->shards->test_size, d->train);
  if (!test.ok()) return test.status();
  d->train = std::move(train.value());
  d->test = std::move(test.value());
  return Status::Ok();
}

std::unique_ptr<ShardStream> OpenTrainStream(const TrainConfig& config, const DataSplits& data,
                                             int64_t epoch, int rank, int ranks, int64_t skip,
                                             int64_t take) {
  const ShardInput& in = *data.shards;
  const RankShards mine = PlanEpoch(in.train_counts, config.seed, epoch, ranks)[static_cast<size_t>(rank)];
  std::vector<StreamShard> shards;
  for (int s : mine.shards) {
    shards.push_back({in.train.shards[static_cast<size_t>(s)].path, in.train_counts[static_cast<size_t>(s)]});
  }
  StreamOptions o = BaseStreamOptions(config.data, in.train);
  o.batch = config.batch_size;
  o.skip = skip;
  o.take = take;
  o.shuffle_seed = ShuffleSeed(config.seed, epoch, rank);
  o.seed = config.seed;
  o.epoch = epoch;
  o.train = true;
  return std::make_unique<ShardStream>(std::move(shards), o);
}

// fmnist3: composites of Fashion-MNIST items (see Composites in data.h).
Result<DataSplits> LoadFmnist3(const DataConfig& c) {
  auto fm = LoadFashionMnist(c.fmnist_dir);
  if (!fm.ok()) return fm.status();
  auto make = [&c](ImageSet&& set, std::vector<std::pair<int64_t, int64_t>> part_items,
                   std::vector<int64_t> part_sizes, const char* what) -> Result<Split> {
    if (set.channels != 1) return Status::InvalidArgument("fmnist3 needs one-channel items");
    auto comp = std::make_shared<Composites>();
    comp->item_h = set.height;
    comp->item_w = set.width;
    comp->seed = c.composite_seed;
    Split out;
    out.is_image = true;
    out.height = set.height;
    out.width = set.width * Composites::kItems;
    out.channels = 1;
    int64_t begin = 0;
    for (size_t p = 0; p < part_items.size(); ++p) {
      Composites::Part part;
      part.begin = begin;
      part.by_class.resize(10);
      for (int64_t i = part_items[p].first; i < part_items[p].second; ++i) {
        const int64_t label = set.labels[static_cast<size_t>(i)];
        if (label < 0 || label > 9) {
          return Status::InvalidArgument(std::string(what) + " item " + std::to_string(i) +
                                         " has label " + std::to_string(label) + ", not 0..9");
        }
        part.by_class[static_cast<size_t>(label)].push_back(i);
      }
      for (int k = 0; k < 10; ++k) {
        if (part.by_class[static_cast<size_t>(k)].empty()) {
          return Status::InvalidArgument(std::string(what) + " items [" +
                                         std::to_string(part_items[p].first) + ", " +
                                         std::to_string(part_items[p].second) +
                                         ") hold no item of class " + std::to_string(k));
        }
      }
      for (int64_t i = 0; i < part_sizes[p]; ++i) out.labels.push_back(Composites::ClassOf(i));
      begin += part_sizes[p];
      comp->parts.push_back(std::move(part));
    }
    comp->items = std::move(set.pixels);
    comp->item_labels = std::move(set.labels);
    out.composites = std::move(comp);
    return out;
  };
  const int64_t n_train_items = fm->train.count;
  if (c.holdout >= n_train_items) {
    return Status::InvalidArgument("data.holdout (" + std::to_string(c.holdout) +
                                   ") must be smaller than the training items (" +
                                   std::to_string(n_train_items) + ")");
  }
  const int64_t used_items = n_train_items - c.holdout;
  const int64_t n_test_items = fm->test.count;
  auto train = make(std::move(fm->train), {{0, used_items}, {used_items, n_train_items}},
                    {c.composites, c.holdout}, "training");
  if (!train.ok()) return train.status();
  auto test = make(std::move(fm->test), {{0, n_test_items}}, {c.test_composites}, "test");
  if (!test.ok()) return test.status();
  DataSplits d;
  d.train = std::move(train.value());
  d.test = std::move(test.value());
  d.train_used = c.composites;
  d.num_classes = Composites::kClasses;
  return d;
}

const Composites::Part& Composites::PartOf(int64_t index) const {
  size_t p = parts.size() - 1;
  while (p > 0 && parts[p].begin > index) --p;
  return parts[p];
}

std::array<int64_t, Composites::kItems> Composites::Items(int64_t index, int64_t epoch) const {
  const Part& part = PartOf(index);
  int64_t cls = ClassOf(index - part.begin);
  std::array<int64_t, kItems> out{};
  const uint64_t base = SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch) * 0x9E3779B97F4A7C15ULL +
                                                     static_cast<uint64_t>(index)));
  for (int k = kItems - 1; k >= 0; --k) {  // the last digit is the rightmost item
    const auto& pool = part.by_class[static_cast<size_t>(cls % 10)];
    const uint64_t r = SplitMix64(base + static_cast<uint64_t>(k) + 1);
    out[static_cast<size_t>(k)] = pool[static_cast<size_t>(r % pool.size())];
    cls /= 10;
  }
  return out;
}

void Composites::Compose(int64_t index, int64_t epoch, uint8_t* out) const {
  const auto picked = Items(index, epoch);
  const int64_t W = item_w * kItems, plane = item_h * item_w;
  for (int k = 0; k < kItems; ++k) {
    const uint8_t* src = items.data() + picked[static_cast<size_t>(k)] * plane;
    for (int64_t y = 0; y < item_h; ++y) {
      std::copy_n(src + y * item_w, item_w, out + y * W + k * item_w);
    }
  }
}

Result<DataSplits> LoadData(const DataConfig& c) {
  if (c.kind == "shards") return LoadShards(c);
  if (c.kind == "fmnist3") return LoadFmnist3(c);
  DataSplits d;
  if (c.kind == "fmnist") {
    auto fm = LoadFashionMnist(c.fmnist_dir);
    if (!fm.ok()) return fm.status();
    d.train = FromImageSet(std::move(fm->train), c.train_limit);
    d.test = FromImageSet(std::move(fm->test), c.test_limit);
  } else {
    auto tr = LoadNpySplit(c.train_features, c.train_labels, c.train_limit);
    if (!tr.ok()) return tr.status();
    auto te = LoadNpySplit(c.test_features, c.test_labels, c.test_limit);
    if (!te.ok()) return te.status();
    if (tr->features != te->features) {
      return Status::InvalidArgument("train features have " + std::to_string(tr->features) +
                                     " columns, test features " + std::to_string(te->features));
    }
    d.train = std::move(tr.value());
    d.test = std::move(te.value());
  }
  if (c.holdout >= d.train.size()) {
    return Status::InvalidArgument("data.holdout (" + std::to_string(c.holdout) +
                                   ") must be smaller than the training set (" +
                                   std::to_string(d.train.size()) + ")");
  }
  d.train_used = d.train.size() - c.holdout;
  int64_t max_label = 0;
  for (int64_t l : d.train.labels) max_label = std::max(max_label, l);
  for (int64_t l : d.test.labels) max_label = std::max(max_label, l);
  d.num_classes = max_label + 1;
  return d;
}

Batch MakeBatch(const Split& s, const int64_t* idx, int64_t count, bool augment,
                int64_t max_shift, uint64_t seed, int64_t epoch) {
  Batch b;
  b.y = torch::empty({count}, torch::kInt64);
  int64_t* y = b.y.data_ptr<int64_t>();
  if (!s.is_image) {
    b.x = torch::empty({count, s.features}, torch::kFloat32);
    float* x = b.x.data_ptr<float>();
    for (int64_t i = 0; i < count; ++i) {
      std::copy_n(s.dense.data() + idx[i] * s.features, s.features, x + i * s.features);
      y[i] = s.labels[static_cast<size_t>(idx[i])];
    }
    return b;
  }
  const int64_t H = s.height, W = s.width, C = s.channels, plane = H * W;
  b.x = torch::empty({count, C, H, W}, torch::kFloat32);
  float* x = b.x.data_ptr<float>();
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = (static_cast<float>(v) / 255.0f - kMean) / kStd;
  const float zero = lut[0];
  std::vector<uint8_t> composed(s.composites ? static_cast<size_t>(plane * C) : 0);
  for (int64_t i = 0; i < count; ++i) {
    const uint8_t* src = composed.data();
    if (s.composites) {
      s.composites->Compose(idx[i], epoch, composed.data());
    } else {
      src = s.pixels.data() + idx[i] * plane * C;
    }
    float* dst = x + i * C * plane;
    y[i] = s.labels[static_cast<size_t>(idx[i])];
    bool flip = false;
    int64_t dx = 0, dy = 0;
    if (augment) {
      uint64_t r = SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch) * 0x100000001b3ULL +
                                                static_cast<uint64_t>(idx[i])));
      flip = (r & 1) != 0;
      const uint64_t span = static_cast<uint64_t>(2 * max_shift + 1);
      dx = static_cast<int64_t>((r >> 8) % span) - max_shift;
      dy = static_cast<int64_t>((r >> 24) % span) - max_shift;
    }
    for (int64_t c = 0; c < C; ++c) {
      for (int64_t yy = 0; yy < H; ++yy) {
        const int64_t sy = yy - dy;
        float* row = dst + c * plane + yy * W;
        if (sy < 0 || sy >= H) {
          std::fill_n(row, W, zero);
          continue;
        }
        for (int64_t xx = 0; xx < W; ++xx) {
          int64_t sx = xx - dx;
          if (flip) sx = W - 1 - sx;
          row[xx] = (sx < 0 || sx >= W) ? zero : lut[src[(sy * W + sx) * C + c]];
        }
      }
    }
  }
  return b;
}

Batch BatchFromSamples(const SampleBatch& s) {
  Batch b;
  b.y = torch::from_blob(const_cast<int64_t*>(s.labels.data()), {s.count}, torch::kInt64).clone();
  if (s.features > 0) {
    b.x = torch::from_blob(const_cast<float*>(s.dense.data()), {s.count, s.features}, torch::kFloat32)
              .clone();
    return b;
  }
  const int64_t H = s.height, W = s.width, C = s.channels, plane = H * W;
  b.x = torch::empty({s.count, C, H, W}, torch::kFloat32);
  float* x = b.x.data_ptr<float>();
  float lut[256];
  for (int v = 0; v < 256; ++v) lut[v] = (static_cast<float>(v) / 255.0f - kMean) / kStd;
  for (int64_t i = 0; i < s.count; ++i) {
    const uint8_t* src = s.pixels.data() + i * plane * C;
    for (int64_t p = 0; p < plane; ++p) {
      for (int64_t c = 0; c < C; ++c) x[(i * C + c) * plane + p] = lut[src[p * C + c]];
    }
  }
  return b;
}

}  // namespace mrl
