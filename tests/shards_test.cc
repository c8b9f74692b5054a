// Tar shard input for the trainer, without LibTorch: converter round trip, epoch plans (disjoint
// ranks, reproducible per-epoch order, equal steps under uneven shards), exact mid-epoch resume of
// the stream, and clear errors on bad shards.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <set>

#include "common/atomic_file.h"
#include "tests/test_util.h"
#include "trainer/idx.h"
#include "common/png.h"
#include "trainer/image_codec.h"
#include "trainer/image_transform.h"
#include "trainer/shard_plan.h"
#include "trainer/shard_set.h"
#include "trainer/shard_stream.h"
#include "trainer/shard_writer.h"
#include "trainer/tar_shard.h"

namespace fs = std::filesystem;

namespace mrl {
namespace {

using ::mrl::test_util::TempDir;

// n synthetic 12x12 gray images with a bright square whose position encodes the sample.
ImageSet Synthetic(int64_t n) {
  ImageSet s;
  s.count = n;
  s.height = s.width = 12;
  s.channels = 1;
  s.pixels.resize(static_cast<size_t>(n * 144));
  for (int64_t i = 0; i < n; ++i) {
    for (int64_t p = 0; p < 144; ++p) {
      s.pixels[static_cast<size_t>(i * 144 + p)] = static_cast<uint8_t>((i * 37 + p * 11) % 256);
    }
    s.labels.push_back(i % 7);
  }
  return s;
}

ShardSet WriteAndOpen(const ImageSet& set, const std::string& dir, ShardWriteOptions o) {
  o.out_dir = dir;
  Status st = WriteImageShards(set, o);
  EXPECT_TRUE(st.ok()) << st.ToString();
  auto opened = OpenShardSet(dir);
  EXPECT_TRUE(opened.ok()) << opened.status().ToString();
  return opened.value();
}

StreamOptions ImageOptions(const ShardSet& set) {
  StreamOptions o;
  o.height = set.height;
  o.width = set.width;
  o.channels = set.channels;
  return o;
}

std::vector<StreamShard> RankShardList(const ShardSet& set, const RankShards& r) {
  std::vector<StreamShard> out;
  for (int s : r.shards) out.push_back({set.shards[static_cast<size_t>(s)].path, set.shards[static_cast<size_t>(s)].samples});
  return out;
}

std::vector<StreamShard> AllShards(const ShardSet& set) {
  std::vector<StreamShard> out;
  for (const ShardInfo& s : set.shards) out.push_back({s.path, s.samples});
  return out;
}

struct Drained {
  std::vector<std::string> keys;
  std::vector<int64_t> labels;
  std::vector<uint8_t> pixels;
  int64_t batches = 0;
};

Drained Drain(std::vector<StreamShard> shards, const StreamOptions& o) {
  ShardStream stream(std::move(shards), o);
  Drained d;
  SampleBatch b;
  for (;;) {
    auto more = stream.Next(&b);
    EXPECT_TRUE(more.ok()) << more.status().ToString();
    if (!more.ok() || !more.value()) break;
    ++d.batches;
    d.keys.insert(d.keys.end(), b.keys.begin(), b.keys.end());
    d.labels.insert(d.labels.end(), b.labels.begin(), b.labels.end());
    d.pixels.insert(d.pixels.end(), b.pixels.begin(), b.pixels.end());
  }
  return d;
}

TEST(TarShards, PngRoundTripReturnsIdenticalPixelsAndLabels) {
  const std::string dir = TempDir("shards_png");
  ImageSet src = Synthetic(250);
  ShardWriteOptions w;
  w.shards = 3;
  ShardSet set = WriteAndOpen(src, dir, w);
  ASSERT_EQ(set.shards.size(), 3u);
  EXPECT_EQ(set.total(), 250);
  EXPECT_EQ(set.num_classes, 7);
  EXPECT_EQ(set.height, 12);
  StreamOptions o = ImageOptions(set);
  o.batch = 64;
  o.shuffle_buffer = 0;  // file order
  o.train = false;
  o.decode_threads = 2;
  Drained d = Drain(AllShards(set), o);
  EXPECT_EQ(d.batches, 4);  // 64 + 64 + 64 + 58
  EXPECT_EQ(d.labels, src.labels);
  EXPECT_EQ(d.pixels, src.pixels);
  EXPECT_EQ(d.keys.front(), "000000000");
  EXPECT_EQ(d.keys.back(), "000000249");

  // Without the manifest the set is found by scanning tar headers, with the same counts.
  fs::remove(fs::path(dir) / kManifestName);
  auto scanned = OpenShardSet(dir);
  ASSERT_TRUE(scanned.ok()) << scanned.status().ToString();
  EXPECT_EQ(scanned->total(), 250);
  EXPECT_EQ(scanned->num_classes, 7);
  EXPECT_EQ(scanned->height, 12);
  EXPECT_EQ(scanned->channels, 1);
  EXPECT_EQ(scanned->format, "png");
  auto globbed = OpenShardSet(dir + "/shard-00000*.tar");
  ASSERT_TRUE(globbed.ok()) << globbed.status().ToString();
  EXPECT_EQ(globbed->shards.size(), 3u);
}

// common/png.h (zlib only, what `mrlctl ingest --images` stores) read back by libpng: the same
// pixels, gray and RGB; bad shapes are refused.
TEST(Png, EncodePng8DecodesToTheSamePixelsWithLibpng) {
  auto fm = LoadFashionMnist("/usr/share/datasets/fashion-mnist");
  ASSERT_TRUE(fm.ok()) << fm.status().ToString();
  for (int i : {0, 1, 59999}) {
    const uint8_t* img = &fm->train.pixels[static_cast<size_t>(i) * 784];
    auto png = EncodePng8(std::span<const uint8_t>(img, 784), 28, 28, 1);
    ASSERT_TRUE(png.ok()) << png.status().ToString();
    EXPECT_LT(png->size(), 1000u);  // a payload of well under max_payload_bytes once base64'd
    Image back;
    ASSERT_TRUE(DecodeImage(*png, "png", 1, &back).ok());
    EXPECT_EQ(back.height, 28);
    EXPECT_EQ(back.width, 28);
    EXPECT_EQ(back.pixels, std::vector<uint8_t>(img, img + 784));
  }
  std::vector<uint8_t> rgb(5 * 3 * 3);
  for (size_t j = 0; j < rgb.size(); ++j) rgb[j] = static_cast<uint8_t>(j * 17);
  auto png = EncodePng8(rgb, 5, 3, 3);
  ASSERT_TRUE(png.ok());
  Image back;
  ASSERT_TRUE(DecodeImage(*png, "png", 3, &back).ok());
  EXPECT_EQ(back.pixels, rgb);
  EXPECT_EQ(EncodePng8(rgb, 5, 3, 2).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodePng8(rgb, 5, 4, 3).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(EncodePng8({}, 0, 0, 1).status().code(), Status::Code::kInvalidArgument);
}

TEST(TarShards, RealFashionMnistJpegDecodesCloseToSource) {
  auto fm = LoadFashionMnist("/usr/share/datasets/fashion-mnist");
  if (!fm.ok()) GTEST_SKIP() << fm.status().ToString();
  const std::string dir = TempDir("shards_jpg");
  ShardWriteOptions w;
  w.samples_per_shard = 200;
  w.format = "jpg";
  w.quality = 95;
  w.limit = 500;
  ShardSet set = WriteAndOpen(fm->test, dir, w);
  EXPECT_EQ(set.shards.size(), 3u);  // 200 + 200 + 100
  StreamOptions o = ImageOptions(set);
  o.batch = 100;
  o.shuffle_buffer = 0;
  o.train = false;
  Drained d = Drain(AllShards(set), o);
  ASSERT_EQ(d.pixels.size(), static_cast<size_t>(500 * 784));
  double err = 0;
  for (size_t i = 0; i < d.pixels.size(); ++i) err += std::abs(int(d.pixels[i]) - int(fm->test.pixels[i]));
  err /= static_cast<double>(d.pixels.size());
  std::printf("JPEG q95 mean |pixel - source| = %.3f (of 255)\n", err);
  EXPECT_LT(err, 3.0);
  EXPECT_EQ(d.labels, std::vector<int64_t>(fm->test.labels.begin(), fm->test.labels.begin() + 500));
}

TEST(TarShards, NpyFeatureShardsRoundTrip) {
  const std::string dir = TempDir("shards_npy");
  std::vector<float> x(40 * 5);
  std::vector<int64_t> y(40);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i) * 0.25f;
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<int64_t>(i % 3);
  ShardWriteOptions w;
  w.out_dir = dir;
  w.shards = 2;
  ASSERT_TRUE(WriteFeatureShards(x.data(), 40, 5, y, w).ok());
  auto set = OpenShardSet(dir);
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->format, "npy");
  EXPECT_EQ(set->features, 5);
  StreamOptions o;
  o.images = false;
  o.features = 5;
  o.batch = 16;
  o.shuffle_buffer = 0;
  ShardStream stream(AllShards(set.value()), o);
  std::vector<float> got;
  std::vector<int64_t> labels;
  SampleBatch b;
  while (stream.Next(&b).value()) {
    got.insert(got.end(), b.dense.begin(), b.dense.end());
    labels.insert(labels.end(), b.labels.begin(), b.labels.end());
  }
  EXPECT_EQ(got, x);
  EXPECT_EQ(labels, y);
}

// Acceptance (a) at the plan level: for several world sizes and epochs, the ranks' shards are
// disjoint and cover every non-empty shard; all ranks get the same step count.
TEST(EpochPlan, RanksAreDisjointCoverTheEpochAndAgreeOnSteps) {
  const std::vector<int64_t> counts = {500, 120, 333, 0, 90, 410, 275, 60, 222};
  for (int ranks = 1; ranks <= 4; ++ranks) {
    for (int64_t epoch = 0; epoch < 4; ++epoch) {
      auto plan = PlanEpoch(counts, 7, epoch, ranks);
      ASSERT_EQ(plan.size(), static_cast<size_t>(ranks));
      std::multiset<int> seen;
      int64_t total = 0;
      for (const RankShards& r : plan) {
        seen.insert(r.shards.begin(), r.shards.end());
        int64_t sum = 0;
        for (int s : r.shards) sum += counts[static_cast<size_t>(s)];
        EXPECT_EQ(sum, r.samples);
        total += r.samples;
      }
      EXPECT_EQ(total, 2010);
      EXPECT_EQ(seen, (std::multiset<int>{0, 1, 2, 4, 5, 6, 7, 8}));  // disjoint, all non-empty
      // Greedy balance: ranks differ by at most the largest shard.
      int64_t lo = plan[0].samples, hi = plan[0].samples;
      for (const RankShards& r : plan) lo = std::min(lo, r.samples), hi = std::max(hi, r.samples);
      EXPECT_LE(hi - lo, 500);
    }
  }
  EXPECT_EQ(ShardStepsPerEpoch(counts, 7, 4, 1, 100), 20);
  const int64_t steps2 = ShardStepsPerEpoch(counts, 7, 4, 2, 100);
  EXPECT_GE(steps2, 8);  // 2 ranks: ~1005 each, at most one shard off balance
  EXPECT_LE(steps2, 10);
  EXPECT_EQ(ShardStepsPerEpoch({100, 100}, 1, 1, 3, 10), 0);  // a rank with no shard
}

// Acceptance (a) on real streams: 3 ranks over 7 uneven shards. Per epoch the ranks' samples are
// disjoint and their union is the epoch; the order changes between epochs and is the same for the
// same seed.
TEST(ShardStream, RanksSeeDisjointSamplesWhoseUnionIsTheEpochInASeededOrder) {
  const std::string dir = TempDir("shards_epoch");
  ShardWriteOptions w;
  w.shard_sizes = {60, 25, 40, 80, 15, 50, 30};
  ShardSet set = WriteAndOpen(Synthetic(300), dir, w);
  auto epoch_order = [&](uint64_t seed, int64_t epoch, int ranks) {
    std::vector<std::vector<std::string>> per_rank;
    for (const RankShards& r : PlanEpoch(CountsBelow(set, set.total()), seed, epoch, ranks)) {
      StreamOptions o = ImageOptions(set);
      o.batch = 8;
      o.shuffle_buffer = 32;
      o.shuffle_seed = ShuffleSeed(seed, epoch, static_cast<int>(per_rank.size()));
      o.seed = seed;
      o.epoch = epoch;
      per_rank.push_back(Drain(RankShardList(set, r), o).keys);
    }
    return per_rank;
  };
  std::vector<std::string> previous;
  for (int64_t epoch = 0; epoch < 3; ++epoch) {
    auto ranks = epoch_order(11, epoch, 3);
    std::set<std::string> all;
    size_t n = 0;
    for (const auto& keys : ranks) {
      all.insert(keys.begin(), keys.end());
      n += keys.size();
    }
    EXPECT_EQ(n, 300u);          // no sample twice...
    EXPECT_EQ(all.size(), 300u);  // ...and every sample once
    std::vector<std::string> flat;
    for (const auto& keys : ranks) flat.insert(flat.end(), keys.begin(), keys.end());
    EXPECT_NE(flat, previous) << "epoch " << epoch << " repeats the previous order";
    EXPECT_EQ(ranks, epoch_order(11, epoch, 3)) << "not reproducible";
    previous = flat;
  }
  EXPECT_NE(epoch_order(11, 0, 3), epoch_order(12, 0, 3));
}

// Resume: a stream that skips k samples continues exactly (keys and augmented pixels) where the
// uninterrupted stream is after k samples, whatever the decode threads' timing.
TEST(ShardStream, SkippingKSamplesContinuesAtTheExactNextSample) {
  const std::string dir = TempDir("shards_resume");
  ShardWriteOptions w;
  w.shards = 4;
  ShardSet set = WriteAndOpen(Synthetic(400), dir, w);
  StreamOptions o = ImageOptions(set);
  o.batch = 10;
  o.shuffle_buffer = 64;
  o.shuffle_seed = ShuffleSeed(3, 1, 0);
  o.seed = 3;
  o.epoch = 1;
  o.transform.augment = true;  // random-resized-crop + flip: per (seed, epoch, key)
  o.decode_threads = 3;
  o.prefetch_batches = 2;
  Drained full = Drain(AllShards(set), o);
  ASSERT_EQ(full.keys.size(), 400u);
  for (int64_t k : {0, 10, 130, 390}) {
    StreamOptions r = o;
    r.skip = k;
    r.decode_threads = 1;
    Drained resumed = Drain(AllShards(set), r);
    EXPECT_EQ(resumed.keys, std::vector<std::string>(full.keys.begin() + k, full.keys.end()));
    EXPECT_TRUE(std::equal(resumed.pixels.begin(), resumed.pixels.end(), full.pixels.begin() + k * 144));
  }
  // take: exactly steps * batch samples, then the stream ends.
  StreamOptions t = o;
  t.take = 120;
  Drained taken = Drain(AllShards(set), t);
  EXPECT_EQ(taken.batches, 12);
  EXPECT_EQ(taken.keys, std::vector<std::string>(full.keys.begin(), full.keys.begin() + 120));
}

TEST(ImageTransform, RandomResizedCropIsAPureFunctionOfSeedEpochAndKey) {
  ImageSet src = Synthetic(1);
  Image in{12, 12, 1, src.pixels};
  TransformOptions o;
  o.augment = true;
  o.size = 10;
  Image a, b, c;
  TrainTransform(in, o, 5, 2, KeyHash("k"), &a);
  TrainTransform(in, o, 5, 2, KeyHash("k"), &b);
  EXPECT_EQ(a.pixels, b.pixels);
  EXPECT_EQ(a.height, 10);
  int differ = 0;
  for (int64_t e = 0; e < 8; ++e) {
    TrainTransform(in, o, 5, e, KeyHash("k"), &c);
    differ += c.pixels != a.pixels;
  }
  EXPECT_GE(differ, 6);
  // Eval at the native size is the identity; resize + centre crop otherwise.
  TransformOptions e;
  EvalTransform(in, e, &c);
  EXPECT_EQ(c.pixels, in.pixels);
  e.size = 6;
  e.eval_resize = 12.0 / 6;
  EvalTransform(in, e, &c);
  EXPECT_EQ(c.height, 6);
  EXPECT_EQ(c.pixels[0], in.pixels[3 * 12 + 3]);  // centre 6x6 of the unscaled image
}

// Bad input is named: the shard file and the sample key.
TEST(ShardErrors, TruncatedTarNamesShardAndSample) {
  const std::string dir = TempDir("shards_trunc");
  ShardWriteOptions w;
  w.shards = 1;
  ShardSet set = WriteAndOpen(Synthetic(50), dir, w);
  const std::string path = set.shards[0].path;
  fs::resize_file(path, fs::file_size(path) / 2 + 100);
  StreamOptions o = ImageOptions(set);
  o.batch = 8;
  ShardStream stream(AllShards(set), o);
  SampleBatch b;
  Result<bool> r = true;
  while (r.ok() && r.value()) r = stream.Next(&b);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(path), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("truncated"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("sample '0000000"), std::string::npos) << r.status().ToString();
}

TEST(ShardErrors, MissingLabelUndecodableImageAndWrongSizeAreNamed) {
  const std::string dir = TempDir("shards_bad");
  auto png = EncodePng(Image{12, 12, 1, std::vector<uint8_t>(144, 7)});
  auto big = EncodePng(Image{14, 14, 1, std::vector<uint8_t>(196, 7)});
  ASSERT_TRUE(png.ok() && big.ok());
  auto read_all = [&](const std::string& name, auto add) {
    const std::string path = dir + "/" + name + ".tar";
    {
      auto w = TarShardWriter::Create(path);
      EXPECT_TRUE(w.ok());
      add(*w.value());
      EXPECT_TRUE(w.value()->Finish().ok());
    }
    StreamOptions o;
    o.height = o.width = 12;
    o.batch = 4;
    ShardStream stream({{path, 3}}, o);
    SampleBatch b;
    Result<bool> r = true;
    while (r.ok() && r.value()) r = stream.Next(&b);
    EXPECT_FALSE(r.ok()) << name;
    return r.status().ToString();
  };
  // A sample without .cls (members written one by one).
  {
    const std::string path = dir + "/missing.tar";
    auto w = TarShardWriter::Create(path);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE(w.value()->Add("a", "png", png.value(), 1).ok());
    ASSERT_TRUE(w.value()->AddMember("b.png", png.value()).ok());
    ASSERT_TRUE(w.value()->Finish().ok());
    StreamOptions o;
    o.height = o.width = 12;
    o.batch = 4;
    ShardStream stream({{path, 2}}, o);
    SampleBatch b;
    auto r = stream.Next(&b);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("sample 'b' has no label (b.cls missing)"), std::string::npos)
        << r.status().ToString();
    EXPECT_NE(r.status().message().find(path), std::string::npos);
  }
  std::string e = read_all("undecodable", [&](TarShardWriter& w) {
    ASSERT_TRUE(w.Add("a", "png", png.value(), 1).ok());
    ASSERT_TRUE(w.Add("b", "png", "not a png at all", 2).ok());
    ASSERT_TRUE(w.Add("c", "png", png.value(), 1).ok());
  });
  EXPECT_NE(e.find("sample 'b': undecodable PNG"), std::string::npos) << e;
  e = read_all("wrongsize", [&](TarShardWriter& w) {
    ASSERT_TRUE(w.Add("a", "png", png.value(), 1).ok());
    ASSERT_TRUE(w.Add("b", "png", big.value(), 2).ok());
    ASSERT_TRUE(w.Add("c", "png", png.value(), 1).ok());
  });
  EXPECT_NE(e.find("sample 'b': image is 14x14"), std::string::npos) << e;
  EXPECT_NE(e.find("wrongsize.tar"), std::string::npos) << e;
}

}  // namespace
}  // namespace mrl
