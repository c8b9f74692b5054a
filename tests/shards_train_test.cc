// mrl-trainer on tar shards: a real single-process run learns; a real `mpirun -np 2` run over 5
// shards of unequal size finishes with both ranks running the same steps; a 2-rank run stopped
// mid-epoch and resumed ends with the same parameters as an uninterrupted one; bad shards fail
// with the shard file and sample key named.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "tests/test_util.h"
#include "trainer/idx.h"
#include "trainer/model.h"
#include "trainer/shard_set.h"
#include "trainer/shard_writer.h"
#include "trainer/tar_shard.h"
#include "trainer/train.h"

namespace fs = std::filesystem;

namespace mrl {
namespace {

using ::mrl::test_util::HaveMpirun;
using ::mrl::test_util::Mpirun;
using ::mrl::test_util::Outcome;
using ::mrl::test_util::RunCommand;
using ::mrl::test_util::TempDir;

const std::string kFmnist = "/usr/share/datasets/fashion-mnist";

// Writes Fashion-MNIST train[0, sizes...) and test[0, test_n) as png shards under dir/train,
// dir/test. Returns false (test skipped) if the dataset is not installed.
bool MakeShards(const std::string& dir, const std::vector<int64_t>& sizes, int64_t test_n) {
  auto fm = LoadFashionMnist(kFmnist);
  if (!fm.ok()) return false;
  ShardWriteOptions w;
  w.out_dir = dir + "/train";
  w.shard_sizes = sizes;
  int64_t n = 0;
  for (int64_t s : sizes) n += s;
  w.limit = n;
  Status st = WriteImageShards(fm->train, w);
  EXPECT_TRUE(st.ok()) << st.ToString();
  ShardWriteOptions t;
  t.out_dir = dir + "/test";
  t.shards = 2;
  t.limit = test_n;
  st = WriteImageShards(fm->test, t);
  EXPECT_TRUE(st.ok()) << st.ToString();
  return true;
}

std::string ShardFlags(const std::string& dir) {
  return " --set data.kind=shards --set data.train_shards=" + dir + "/train" +
         " --set data.test_shards=" + dir + "/test" +
         " --dim 32 --set model.nesting=[8,16,32] --set model.conv_channels=[8,8,16,16]"
         " --set data.holdout=0 --set threads=1 --set eval_svd=false --set export_embeddings=false";
}

int64_t StepsIn(const std::string& output, int rank) {
  std::smatch m;
  const std::regex re("\\[data\\] rank " + std::to_string(rank) + " ran (\\d+) steps");
  return std::regex_search(output, m, re) ? std::stoll(m[1]) : -1;
}

TEST(ShardTraining, ShortRunOnPngShardsBeatsChanceAtEveryNestingDim) {
  const std::string dir = TempDir("shard_train");
  if (!MakeShards(dir, {1000, 1000, 1000, 1000}, 1000)) GTEST_SKIP() << "Fashion-MNIST missing";
  Outcome o = RunCommand(std::string(MRL_TRAINER_BIN) + ShardFlags(dir) +
                         " --set epochs=2 --set batch_size=64 --set optim.lr=0.1"
                         " --set log_every=20 --out " +
                         dir + "/run");
  ASSERT_EQ(o.code, 0) << o.output;
  EXPECT_NE(o.output.find("[data] shards: 4 train shards, 62 steps per epoch"), std::string::npos)
      << o.output;
  auto text = ReadFile(dir + "/run/results.json");
  ASSERT_TRUE(text.ok());
  const auto results = nlohmann::json::parse(text.value());
  for (const auto& row : results["per_dim"]) {
    std::printf("dim %d: linear top-1 %.3f, 1-NN top-1 %.3f\n", row["dim"].get<int>(),
                row["linear_top1"].get<double>(), row["knn_top1"].get<double>());
    EXPECT_GT(row["linear_top1"].get<double>(), 0.5);  // chance: 0.1
    EXPECT_GT(row["knn_top1"].get<double>(), 0.5);
  }
}

// Acceptance (c): 5 shards of unequal size on 2 ranks, 2 epochs (the order each rank streams its
// shards in changes between epochs; with these distinct sizes the assignment does not): no
// deadlock, both ranks run the same number of steps, replicas agree.
TEST(ShardTraining, UnevenShardsOnTwoRanksFinishWithEqualSteps) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not installed";
  const std::string dir = TempDir("shard_uneven");
  const std::vector<int64_t> sizes = {1100, 250, 700, 430, 320};
  if (!MakeShards(dir, sizes, 300)) GTEST_SKIP() << "Fashion-MNIST missing";
  // Expected steps, by hand from trainer/shard_plan.h's rule (largest shard first, each to the
  // rank with fewer samples so far, lower rank on ties; all sizes differ, so the seed's shuffle
  // cannot change the assignment, and every epoch gets the same split):
  //   1100 -> rank 0 (1100); 700 -> rank 1 (700); 430 -> rank 1 (1130); 320 -> rank 0 (1420);
  //   250 -> rank 1 (1380).
  // Drop-last per rank at batch 16: floor(1420 / 16) = 88, floor(1380 / 16) = 86; every rank
  // runs the smaller, 86 steps per epoch, so 2 epochs = 172 steps on each rank.
  const int64_t expected = 172;
  Outcome o = RunCommand(Mpirun(2) + MRL_TRAINER_BIN + ShardFlags(dir) +
                         " --set epochs=2 --set batch_size=16 --set log_every=25"
                         " --set evaluate=false --set dist.timeout_s=30 --out " +
                         dir + "/run");
  ASSERT_EQ(o.code, 0) << o.output;
  std::printf("uneven shards %s on 2 ranks: %lld steps each, %.1f s\n", "{1100,250,700,430,320}",
              static_cast<long long>(StepsIn(o.output, 0)), o.seconds);
  EXPECT_EQ(StepsIn(o.output, 0), expected) << o.output;
  EXPECT_EQ(StepsIn(o.output, 1), expected) << o.output;
  EXPECT_NE(o.output.find("replicas agree: max |param - rank 0 param| = 0 "), std::string::npos)
      << o.output;
}

// Exact mid-epoch resume on 2 ranks: stop inside epoch 2, rerun, compare with an uninterrupted run.
TEST(ShardTraining, TwoRankRunStoppedMidEpochResumesToTheSameParameters) {
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not installed";
  const std::string dir = TempDir("shard_resume");
  if (!MakeShards(dir, {600, 400, 500, 300, 200}, 200)) GTEST_SKIP() << "Fashion-MNIST missing";
  // Augmentation on: resumed runs must also see identical random crops and flips.
  const std::string cmd = Mpirun(2) + MRL_TRAINER_BIN + ShardFlags(dir) +
                          " --set epochs=2 --set batch_size=16 --set log_every=0"
                          " --set model.batch_norm=false --set data.augment=true"
                          " --set data.shuffle_buffer=256 --set data.decode_threads=2"
                          " --set evaluate=false --out ";
  Outcome whole = RunCommand(cmd + dir + "/whole");
  ASSERT_EQ(whole.code, 0) << whole.output;
  // Steps per epoch, by hand as in UnevenShardsOnTwoRanksFinishWithEqualSteps: 600 -> rank 0,
  // 500 -> rank 1, 400 -> rank 1 (900), 300 -> rank 0 (900), 200 -> rank 0 (tie: lower rank,
  // 1100). floor(1100 / 16) = 68, floor(900 / 16) = 56: 56 steps per epoch.
  const int64_t spe = 56;
  const int64_t stop = spe + spe / 2 + 3;  // mid epoch 2
  Outcome first = RunCommand(cmd + dir + "/parts --set stop_after_steps=" + std::to_string(stop));
  ASSERT_EQ(first.code, 0) << first.output;
  Outcome second = RunCommand(cmd + dir + "/parts");
  ASSERT_EQ(second.code, 0) << second.output;
  EXPECT_NE(second.output.find("resumed from"), std::string::npos) << second.output;

  ModelConfig m;
  m.dim = 32;
  m.nesting = {8, 16, 32};
  m.nesting_weights = {1, 1, 1};
  m.conv_channels = {8, 8, 16, 16};
  m.batch_norm = false;
  MrlModel a(m, 1, 0, 10), b(m, 1, 0, 10);
  const std::string ca = Trainer::LatestCheckpoint(dir + "/whole");
  const std::string cb = Trainer::LatestCheckpoint(dir + "/parts");
  EXPECT_EQ(fs::path(ca).filename(), "ckpt-000000112.pt");  // 2 epochs x 56 steps
  EXPECT_EQ(fs::path(cb).filename(), "ckpt-000000112.pt");
  ASSERT_TRUE(Trainer::LoadModelWeights(ca, a).ok());
  ASSERT_TRUE(Trainer::LoadModelWeights(cb, b).ok());
  double worst = 0;
  auto pa = a->named_parameters(), pb = b->named_parameters();
  for (const auto& p : pa)
    worst = std::max(worst, (p.value() - pb[p.key()]).abs().max().item<double>());
  std::printf(
      "stopped at step %lld of %lld (epoch 2, step %lld of %lld) and resumed: "
      "max |param - uninterrupted param| = %.3g\n",
      static_cast<long long>(stop), static_cast<long long>(2 * spe),
      static_cast<long long>(stop - spe), static_cast<long long>(spe), worst);
  EXPECT_EQ(worst, 0.0);
  auto la = ReadFile(dir + "/whole/train_log.jsonl"), lb = ReadFile(dir + "/parts/train_log.jsonl");
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_EQ(la.value(), lb.value());  // identical per-step losses
}

TEST(ShardTrainerCli, MissingLabelFailsNamingShardAndSample) {
  const std::string dir = TempDir("shard_cli_bad");
  if (!MakeShards(dir, {300, 300}, 100)) GTEST_SKIP() << "Fashion-MNIST missing";
  // Replace shard 1 by one whose second sample lacks its .cls.
  const std::string bad = dir + "/train/shard-000001.tar";
  {
    auto r = TarShardReader::Open(dir + "/train/shard-000000.tar");
    ASSERT_TRUE(r.ok());
    RawSample s;
    auto w = TarShardWriter::Create(bad);
    ASSERT_TRUE(w.ok());
    for (int i = 0; i < 300 && r.value()->Next(&s).value(); ++i) {
      if (i == 1) {
        ASSERT_TRUE(w.value()->AddMember("000000301.png", s.payload).ok());
      } else {
        ASSERT_TRUE(
            w.value()->Add("000000" + std::to_string(300 + i), "png", s.payload, s.label).ok());
      }
    }
    ASSERT_TRUE(w.value()->Finish().ok());
  }
  Outcome o = RunCommand(std::string(MRL_TRAINER_BIN) + ShardFlags(dir) +
                         " --set epochs=1 --set batch_size=32 --set data.shuffle_buffer=0"
                         " --set log_every=0 --out " +
                         dir + "/run");
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(
      o.output.find("shard '" + bad + "': sample '000000301' has no label (000000301.cls missing)"),
      std::string::npos)
      << o.output;

  // A truncated shard is named too.
  const std::string dir2 = TempDir("shard_cli_trunc");
  ASSERT_TRUE(MakeShards(dir2, {300, 300}, 100));
  const std::string cut = dir2 + "/train/shard-000001.tar";
  // Cut on a 512-byte block: inside a member libarchive reports a truncated tar; at a member
  // boundary the archive ends "cleanly" and the manifest's count catches it.
  fs::resize_file(cut, fs::file_size(cut) / 3 / 512 * 512);
  o = RunCommand(std::string(MRL_TRAINER_BIN) + ShardFlags(dir2) +
                 " --set epochs=1 --set batch_size=32 --set log_every=0 --out " + dir2 + "/run");
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(o.output.find("error: Corruption: shard '" + cut + "'"), std::string::npos) << o.output;
  EXPECT_NE(o.output.find("truncated"), std::string::npos) << o.output;
}

}  // namespace
}  // namespace mrl
