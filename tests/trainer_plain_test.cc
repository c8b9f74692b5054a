#include <gtest/gtest.h>

#include "tests/test_util.h"
#include <unistd.h>
#include <zlib.h>

#include <array>
#include <filesystem>

#include "common/atomic_file.h"
#include "trainer/config.h"
#include "trainer/idx.h"
#include "trainer/metrics.h"
#include "trainer/progress.h"
#include "trainer/sampler.h"
#include "trainer/schedule.h"

namespace fs = std::filesystem;

namespace mrl {
namespace {

const char* kFmnistDir = "/usr/share/datasets/fashion-mnist";

TEST(Idx, ReadsRealFashionMnistWithBalancedClasses) {
  auto fm = LoadFashionMnist(kFmnistDir);
  ASSERT_TRUE(fm.ok()) << fm.status().ToString();
  EXPECT_EQ(fm->train.count, 60000);
  EXPECT_EQ(fm->test.count, 10000);
  EXPECT_EQ(fm->train.height, 28);
  EXPECT_EQ(fm->train.width, 28);
  EXPECT_EQ(fm->train.pixels.size(), 60000u * 28 * 28);
  std::array<int, 10> train_counts{}, test_counts{};
  for (int64_t l : fm->train.labels) ++train_counts[static_cast<size_t>(l)];
  for (int64_t l : fm->test.labels) ++test_counts[static_cast<size_t>(l)];
  for (int c = 0; c < 10; ++c) {
    EXPECT_EQ(train_counts[static_cast<size_t>(c)], 6000) << "class " << c;
    EXPECT_EQ(test_counts[static_cast<size_t>(c)], 1000) << "class " << c;
  }
  // Real images, not zeros: mean intensity of Fashion-MNIST is ~72.9/255.
  double sum = 0;
  for (uint8_t p : fm->train.pixels) sum += p;
  EXPECT_NEAR(sum / static_cast<double>(fm->train.pixels.size()), 72.94, 0.1);
}

using ::mrl::test_util::TempDir;

void WriteGz(const std::string& path, const std::string& data) {
  gzFile f = gzopen(path.c_str(), "wb");
  gzwrite(f, data.data(), static_cast<unsigned>(data.size()));
  gzclose(f);
}

TEST(Idx, ReportsMissingTruncatedAndForeignFiles) {
  const std::string dir = TempDir("idx");
  auto missing = LoadFashionMnist(dir + "/absent");
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), Status::Code::kNotFound);
  // Header says 10 images of 28x28 but only 100 bytes follow.
  std::string header("\x00\x00\x08\x03\x00\x00\x00\x0a\x00\x00\x00\x1c\x00\x00\x00\x1c", 16);
  WriteGz(dir + "/train-images-idx3-ubyte.gz", header + std::string(100, 'x'));
  auto truncated = ReadIdx(dir + "/train-images-idx3-ubyte.gz");
  ASSERT_FALSE(truncated.ok());
  EXPECT_EQ(truncated.status().code(), Status::Code::kCorruption);
  EXPECT_NE(truncated.status().message().find("truncated"), std::string::npos);
  WriteGz(dir + "/junk.gz", "PK\x03\x04 definitely not idx");
  EXPECT_EQ(ReadIdx(dir + "/junk.gz").status().code(), Status::Code::kCorruption);
  // A directory with truncated images fails as a whole, naming the file.
  auto fm = LoadFashionMnist(dir);
  ASSERT_FALSE(fm.ok());
  EXPECT_NE(fm.status().message().find("train-images"), std::string::npos);
}

TEST(Config, RejectsBadNestingAndUnknownFields) {
  TrainConfig c;
  c.model.dim = 64;
  c.model.nesting = {8, 32, 16};
  Status st = FinalizeConfig(&c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("strictly increasing"), std::string::npos);
  c.model.nesting = {8, 16, 128};
  st = FinalizeConfig(&c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("exceeds model.dim"), std::string::npos);
  EXPECT_FALSE(ConfigFromJson(R"({"model": {"dimm": 3}})").ok());
  EXPECT_FALSE(ConfigFromJson(R"({"epochs": "four"})").ok());
  EXPECT_FALSE(ConfigFromJson("{not json").ok());
  TrainConfig d;
  EXPECT_FALSE(ApplyOverride(&d, "model.nope=1").ok());
  ASSERT_TRUE(ApplyOverride(&d, "model.nesting=[4,8]").ok());
  ASSERT_TRUE(ApplyOverride(&d, "model.head=mrl-e").ok());
  EXPECT_EQ(d.model.head, "mrl-e");
  EXPECT_EQ(d.model.nesting, (std::vector<int64_t>{4, 8}));
}

TEST(Config, DefaultNestingIsPowersOfTwoUpToDim) {
  TrainConfig c;
  ASSERT_TRUE(FinalizeConfig(&c).ok());
  EXPECT_EQ(c.model.nesting,
            (std::vector<int64_t>{8, 16, 32, 64, 128, 256, 512, 1024, 2048}));
  EXPECT_EQ(c.model.nesting_weights.size(), 9u);
  EXPECT_EQ(DefaultNesting(100), (std::vector<int64_t>{8, 16, 32, 64, 100}));
  // Round trip through JSON keeps every field.
  auto back = ConfigFromJson(ConfigToJson(c));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(ConfigToJson(back.value()), ConfigToJson(c));
}

TEST(Schedule, WarmupThenCosineToFinalRate) {
  LrSchedule s;
  s.peak_lr = 0.4;
  s.total_steps = 100;
  s.warmup_steps = 10;
  s.final_lr_ratio = 0.0;
  EXPECT_NEAR(s.At(0), 0.04, 1e-12);
  EXPECT_NEAR(s.At(9), 0.4, 1e-12);
  EXPECT_NEAR(s.At(10), 0.4, 1e-12);
  EXPECT_NEAR(s.At(55), 0.2, 1e-12);  // halfway through the decay
  EXPECT_LT(s.At(99), 0.001);
  for (int64_t i = 11; i < 100; ++i) EXPECT_LE(s.At(i), s.At(i - 1));
}

TEST(Metrics, ScoreRetrievalUsesThePapersAveragePrecision) {
  // Query 0 (label 7): hits at positions 1, 3 and 4 of 10 -> (1/1 + 2/3 + 3/4) / 10 = 0.241667.
  // Query 1 (label 1): all ten neighbours are label 1 -> 1.0, but its 1-NN is right too.
  // Rows have k = 12 columns: only the first 10 count towards mAP@10.
  std::vector<int64_t> labels = {7, 1, 7, 7, 2, 3, 4, 5, 6, 8, 7, 7,  //
                                 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0};
  RetrievalScore s = ScoreRetrieval(labels, 12, {7, 1});
  EXPECT_NEAR(s.top1, 1.0, 1e-12);
  EXPECT_NEAR(s.map_at_10, (0.2416666666666667 + 1.0) / 2, 1e-12);
  std::vector<int64_t> wrong(20, 1);
  RetrievalScore w = ScoreRetrieval(wrong, 10, {1, 2});
  EXPECT_NEAR(w.top1, 0.5, 1e-12);
  EXPECT_NEAR(w.map_at_10, 0.5, 1e-12);
}

TEST(Metrics, CascadeStopsEarlyOnlyWhenConfident) {
  CascadeInputs in;
  in.dims = {8, 64};
  // Sample 0: confident and right at dim 8. Sample 1: unsure and wrong at 8, right at 64.
  in.confidence = {{0.99f, 0.40f}, {0.99f, 0.95f}};
  in.correct = {{1, 0}, {1, 1}};
  const std::vector<float> th = LearnCascadeThresholds(in, 0.0);
  EXPECT_GT(th[0], 0.40f);
  EXPECT_LE(th[0], 0.99f);
  const CascadeResult r = RunCascade(in, th);
  EXPECT_DOUBLE_EQ(r.accuracy, 1.0);
  EXPECT_DOUBLE_EQ(r.expected_dim, (8.0 + 64.0) / 2);
}

}  // namespace
}  // namespace mrl

namespace mrl {
namespace {

// Samples of every rank for one epoch: disjoint, together the whole (drop-last) epoch; the order
// changes between epochs and is reproducible; a resumed run's step k uses the same samples.
TEST(Sampler, RanksGetDisjointSlicesCoveringTheEpoch) {
  const int64_t n = 1000;
  DataLayout l;
  l.batch = 16;
  l.ranks = 3;
  l.grad_accum = 2;
  l.steps_per_epoch = n / l.global_batch();  // 10 steps of 96
  for (int64_t epoch = 0; epoch < 2; ++epoch) {
    const auto perm = EpochPermutation(n, 42, epoch);
    std::vector<int> seen(n, 0);
    std::vector<std::vector<int64_t>> per_rank(3);
    for (int64_t step = epoch * l.steps_per_epoch; step < (epoch + 1) * l.steps_per_epoch; ++step) {
      for (int64_t micro = 0; micro < l.grad_accum; ++micro) {
        for (int64_t r = 0; r < l.ranks; ++r) {
          const int64_t off = SampleOffset(l, step, micro, r);
          for (int64_t i = 0; i < l.batch; ++i) {
            const int64_t id = perm[static_cast<size_t>(off + i)];
            ++seen[static_cast<size_t>(id)];
            per_rank[static_cast<size_t>(r)].push_back(id);
          }
        }
      }
    }
    int64_t covered = 0;
    for (int c : seen) {
      EXPECT_LE(c, 1);  // disjoint across ranks and steps
      covered += c;
    }
    EXPECT_EQ(covered, l.steps_per_epoch * l.global_batch());  // the whole drop-last epoch
    for (size_t r = 0; r < 3; ++r) EXPECT_EQ(per_rank[r].size(), 320u);
  }
  EXPECT_NE(EpochPermutation(n, 42, 0), EpochPermutation(n, 42, 1));
  EXPECT_EQ(EpochPermutation(n, 42, 1), EpochPermutation(n, 42, 1));
  // 2 ranks x batch 8 see exactly what 1 rank x batch 16 sees at the same step.
  DataLayout two{8, 2, 1, 50}, one{16, 1, 1, 50};
  for (int64_t step : {0, 7, 49, 50, 123}) {
    EXPECT_EQ(SampleOffset(two, step, 0, 0), SampleOffset(one, step, 0, 0));
    EXPECT_EQ(SampleOffset(two, step, 0, 1), SampleOffset(one, step, 0, 0) + 8);
  }
}

TEST(Progress, StragglersAreRanksAboveTheMedianByMoreThanTheFactor) {
  // One rank: nobody straggles. Median of {1, 1, 1, 3} is 1: rank 3 at 3x.
  EXPECT_TRUE(FindStragglers({5.0}).empty());
  auto s = FindStragglers({1.0, 1.0, 1.0, 3.0});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].rank, 3);
  EXPECT_DOUBLE_EQ(s[0].compute_s, 3.0);
  EXPECT_DOUBLE_EQ(s[0].ratio, 3.0);
  // 1.2x is not more than 1.2x; 1.25x is.
  EXPECT_TRUE(FindStragglers({1.0, 1.2}).empty());
  s = FindStragglers({1.0, 1.0, 1.25});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].rank, 2);
  // Two ranks, {2, 1}: the lower median is 1, so rank 0 at 2x is reported (with the upper
  // median, the slower rank itself, it never could be).
  s = FindStragglers({2.0, 1.0});
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0].rank, 0);
  EXPECT_DOUBLE_EQ(s[0].ratio, 2.0);
  // {1, 1, 3, 3}: both slow ranks.
  EXPECT_EQ(FindStragglers({1.0, 3.0, 1.0, 3.0}).size(), 2u);
  // No compute measured (median 0): nothing to compare with.
  EXPECT_TRUE(FindStragglers({0.0, 0.0, 4.0}).empty());
  // A custom factor.
  EXPECT_EQ(FindStragglers({1.0, 1.0, 1.5}, 2.0).size(), 0u);
  EXPECT_EQ(FindStragglers({1.0, 1.0, 2.5}, 2.0).size(), 1u);
}

TEST(Progress, CheckpointIsDueEveryNStepsAtEpochEndsAndWhereTrainingStops) {
  // 10 steps per epoch, every 4 steps, stopping at 23: due at 4, 8, 10, 12, 16, 20, 23.
  std::vector<int64_t> due;
  for (int64_t step = 1; step <= 23; ++step) {
    if (CheckpointDue(step, 10, 4, 23)) due.push_back(step);
  }
  EXPECT_EQ(due, (std::vector<int64_t>{4, 8, 10, 12, 16, 20, 23}));
  due.clear();
  for (int64_t step = 1; step <= 25; ++step) {
    if (CheckpointDue(step, 10, 0, 25)) due.push_back(step);  // no periodic checkpoints
  }
  EXPECT_EQ(due, (std::vector<int64_t>{10, 20, 25}));
}

TEST(Progress, ClockPrintsHoursMinutesSeconds) {
  EXPECT_EQ(FormatClock(0), "0:00:00");
  EXPECT_EQ(FormatClock(59.4), "0:00:59");
  EXPECT_EQ(FormatClock(59.6), "0:01:00");
  EXPECT_EQ(FormatClock(3 * 3600 + 25 * 60 + 7), "3:25:07");
  EXPECT_EQ(FormatClock(-5), "0:00:00");
}

}  // namespace
}  // namespace mrl
