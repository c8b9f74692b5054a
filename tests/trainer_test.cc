#include <gtest/gtest.h>

#include "tests/test_util.h"
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/npy.h"
#include "trainer/data.h"
#include "trainer/eval.h"
#include "trainer/idx.h"
#include "trainer/model.h"
#include "trainer/run.h"
#include "trainer/train.h"

namespace fs = std::filesystem;

namespace mrl {
namespace {

using ::mrl::test_util::TempDir;

TEST(MrlLoss, EqualsHandComputedWeightedSumOfCrossEntropies) {
  // Two nesting dims, two samples, three classes, weights 1 and 0.5.
  torch::Tensor l8 = torch::tensor({{2.0, 0.0, -1.0}, {0.5, 0.5, 3.0}});
  torch::Tensor l16 = torch::tensor({{1.0, 1.0, 1.0}, {-2.0, 4.0, 0.0}});
  torch::Tensor y = torch::tensor({0, 1}, torch::kInt64);
  auto ce = [](std::vector<double> row, int label) {
    double lse = 0;
    for (double v : row) lse += std::exp(v);
    return std::log(lse) - row[static_cast<size_t>(label)];
  };
  const double want = 1.0 * (ce({2, 0, -1}, 0) + ce({0.5, 0.5, 3}, 1)) / 2 +
                      0.5 * (ce({1, 1, 1}, 0) + ce({-2, 4, 0}, 1)) / 2;
  const double got = MrlLoss({l8, l16}, y, {1.0, 0.5}, 0.0).item<double>();
  EXPECT_NEAR(got, want, 1e-5);
  // Label smoothing eps: (1-eps) * CE + eps * mean over classes of -log p.
  const double eps = 0.1;
  auto smooth = [&](std::vector<double> row, int label) {
    double lse = 0;
    for (double v : row) lse += std::exp(v);
    double uniform = 0;
    for (double v : row) uniform += std::log(lse) - v;
    return (1 - eps) * ce(row, label) + eps * uniform / static_cast<double>(row.size());
  };
  const double want_s = (smooth({2, 0, -1}, 0) + smooth({0.5, 0.5, 3}, 1)) / 2;
  EXPECT_NEAR(MrlLoss({l8}, y, {1.0}, eps).item<double>(), want_s, 1e-5);
}

TEST(MrlE, PrefixSumLogitsEqualNaiveLogitsAndGradients) {
  torch::manual_seed(7);
  for (const std::vector<int64_t>& nesting :
       {std::vector<int64_t>{8, 16, 32, 64, 128, 256}, std::vector<int64_t>{3, 10, 100, 256}}) {
    const int64_t B = 33, C = 1000, d = 256;
    torch::Tensor z = torch::randn({B, d}, torch::requires_grad());
    torch::Tensor w = torch::randn({C, d}, torch::requires_grad());
    torch::Tensor b = torch::randn({C}, torch::requires_grad());
    auto naive = NestedLogitsNaive(z, w, b, nesting);
    auto fast = NestedLogitsPrefixSum(z, w, b, nesting);
    ASSERT_EQ(naive.size(), fast.size());
    for (size_t i = 0; i < naive.size(); ++i) {
      EXPECT_TRUE(torch::allclose(naive[i], fast[i], 1e-4, 1e-3)) << "dim " << nesting[i];
    }
    torch::Tensor g = torch::randn({B, C});
    torch::Tensor sn = torch::zeros({}), sf = torch::zeros({});
    for (size_t i = 0; i < naive.size(); ++i) {
      sn = sn + (naive[i] * g).sum();
      sf = sf + (fast[i] * g).sum();
    }
    auto gn = torch::autograd::grad({sn}, {z, w, b});
    auto gf = torch::autograd::grad({sf}, {z, w, b});
    for (size_t i = 0; i < 3; ++i) EXPECT_TRUE(torch::allclose(gn[i], gf[i], 1e-4, 1e-2));
  }
}

ModelConfig TinyModel(const std::string& head) {
  ModelConfig m;
  m.dim = 64;
  m.nesting = {8, 16, 32, 64};
  m.nesting_weights = {1, 1, 1, 1};
  m.head = head;
  m.conv_channels = {8, 16, 16, 32};
  return m;
}

TEST(FixedFeature, GivesZeroGradientToDimsAtOrBeyondK) {
  torch::manual_seed(1);
  ModelConfig m = TinyModel("ff");
  m.ff_dim = 16;
  MrlModel model(m, 1, 0, 10);
  torch::Tensor x = torch::randn({4, 1, 28, 28});
  torch::Tensor z = model->Embed(x);
  z.retain_grad();
  torch::Tensor loss = MrlLoss(model->TrainLogits(z), torch::tensor({1, 2, 3, 4}, torch::kInt64),
                               {1.0}, 0.0);
  loss.backward();
  EXPECT_EQ(z.grad().narrow(1, 16, 48).abs().max().item<float>(), 0.0f);
  EXPECT_GT(z.grad().narrow(1, 0, 16).abs().max().item<float>(), 0.0f);
  // The encoder's last linear rows for dims >= 16 get no gradient either.
  auto last = model->encoder()->children().back()->as<torch::nn::Linear>();
  EXPECT_EQ(last->weight.grad().narrow(0, 16, 48).abs().max().item<float>(), 0.0f);
}

// The SVD baseline's linear probe (ProbeTop1): features with 2 signal coordinates and 3000
// low-variance noise coordinates, fewer samples than coordinates. Scaling each coordinate to unit
// variance (the old probe) would make the noise as loud as the signal and the probe would fit
// it (43% at 2048-d on fmnist3, where the embedding's own head gets 79%); a uniform scale plus
// early stopping on held-out rows must do about as well as a probe on the signal alone.
TEST(SvdProbe, LowVarianceNoiseCoordinatesDoNotMakeItOverfit) {
  torch::manual_seed(3);
  const int64_t classes = 4, noise_dims = 3000;
  auto make = [&](int64_t n, std::vector<int64_t>* labels) {
    torch::Tensor y = torch::randint(classes, {n}, torch::kInt64);
    torch::Tensor centers = torch::tensor({-1.5f, -1.5f, -1.5f, 1.5f, 1.5f, -1.5f, 1.5f, 1.5f})
                                .view({classes, 2});
    torch::Tensor signal = centers.index_select(0, y) + torch::randn({n, 2});
    torch::Tensor noise = 0.05 * torch::randn({n, noise_dims});
    labels->assign(y.data_ptr<int64_t>(), y.data_ptr<int64_t>() + n);
    return torch::cat({signal, noise}, 1);
  };
  std::vector<int64_t> fit_y, ho_y, test_y;
  const torch::Tensor fit = make(2000, &fit_y), ho = make(1000, &ho_y), test = make(4000, &test_y);
  int64_t best_epoch = 0;
  const double full =
      ProbeTop1(fit, fit_y, ho, ho_y, test, test_y, classes, /*seed=*/1, &best_epoch);
  const double signal_only = ProbeTop1(fit.narrow(1, 0, 2), fit_y, ho.narrow(1, 0, 2), ho_y,
                                       test.narrow(1, 0, 2), test_y, classes, 1, nullptr);
  // Bayes accuracy here is Phi(1.5)^2 = 0.87.
  EXPECT_GT(signal_only, 0.80);
  EXPECT_GT(full, signal_only - 0.05) << "the probe fit the noise coordinates";
  EXPECT_GE(best_epoch, 1);
  EXPECT_LE(best_epoch, 15);
  // Without held-out rows it trains all 15 epochs and says so.
  const double no_ho = ProbeTop1(fit.narrow(1, 0, 2), fit_y, torch::empty({0, 2}), {},
                                 test.narrow(1, 0, 2), test_y, classes, 1, &best_epoch);
  EXPECT_EQ(best_epoch, 15);
  EXPECT_GT(no_ho, 0.80);
}

TEST(Data, EpochOrderIsAPermutationFixedBySeedAndEpoch) {
  auto a = EpochPermutation(1000, 5, 0);
  EXPECT_EQ(a, EpochPermutation(1000, 5, 0));
  EXPECT_NE(a, EpochPermutation(1000, 5, 1));
  EXPECT_NE(a, EpochPermutation(1000, 6, 0));
  std::vector<int64_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (int64_t i = 0; i < 1000; ++i) EXPECT_EQ(sorted[static_cast<size_t>(i)], i);
}

TEST(Data, AugmentationIsDeterministicPerSampleAndEpoch) {
  DataConfig dc;
  dc.train_limit = 64;
  dc.test_limit = 16;
  dc.holdout = 0;
  auto data = LoadData(dc);
  ASSERT_TRUE(data.ok()) << data.status().ToString();
  std::vector<int64_t> idx = {3, 5, 7, 11};
  Batch a = MakeBatch(data->train, idx.data(), 4, true, 2, 9, 0);
  Batch b = MakeBatch(data->train, idx.data(), 4, true, 2, 9, 0);
  Batch c = MakeBatch(data->train, idx.data(), 4, true, 2, 9, 1);
  Batch plain = MakeBatch(data->train, idx.data(), 4, false, 2, 9, 0);
  ASSERT_TRUE(dc.augment == false);  // opt-in
  EXPECT_TRUE(torch::equal(a.x, b.x));
  EXPECT_FALSE(torch::equal(a.x, c.x));
  EXPECT_FALSE(torch::equal(a.x, plain.x));
  // Normalized with the Fashion-MNIST statistics: mean ~0 over a batch of real images.
  EXPECT_NEAR(plain.x.mean().item<float>(), 0.0, 0.35);
}

TrainConfig TinyRun(const std::string& out_dir) {
  TrainConfig c;
  c.model = TinyModel("mrl");
  c.data.train_limit = 1200;
  c.data.test_limit = 300;
  c.data.holdout = 200;
  c.batch_size = 100;
  c.epochs = 2;
  c.threads = 1;
  c.log_every = 0;
  c.out_dir = out_dir;
  c.resume = true;
  c.evaluate = false;
  c.export_embeddings = false;
  EXPECT_TRUE(FinalizeConfig(&c).ok());
  return c;
}

TEST(Checkpoint, ResumedRunMatchesUninterruptedRun) {
  torch::set_num_threads(1);
  const std::string full_dir = TempDir("resume_full"), cut_dir = TempDir("resume_cut");
  TrainConfig full = TinyRun(full_dir);
  auto data = LoadData(full.data);
  ASSERT_TRUE(data.ok());

  Trainer uninterrupted(full, data.value());
  ASSERT_TRUE(uninterrupted.MaybeResume().ok());
  ASSERT_TRUE(uninterrupted.Train().ok());
  ASSERT_EQ(uninterrupted.global_step(), 20);

  TrainConfig first = TinyRun(cut_dir);
  first.stop_after_steps = 7;  // mid-epoch: epoch 0, batch 7 of 10
  {
    Trainer part(first, data.value());
    ASSERT_TRUE(part.MaybeResume().ok());
    ASSERT_TRUE(part.Train().ok());
    ASSERT_EQ(part.global_step(), 7);
  }
  torch::manual_seed(12345);  // the resumed process must not depend on fresh RNG state
  TrainConfig second = TinyRun(cut_dir);
  Trainer resumed(second, data.value());
  ASSERT_TRUE(resumed.MaybeResume().ok());
  ASSERT_EQ(resumed.global_step(), 7);
  ASSERT_TRUE(resumed.Train().ok());
  ASSERT_EQ(resumed.global_step(), 20);
  ASSERT_EQ(resumed.history().size(), 13u);
  for (const StepRecord& r : resumed.history()) {
    const StepRecord& u = uninterrupted.history()[static_cast<size_t>(r.step - 1)];
    EXPECT_EQ(u.step, r.step);
    EXPECT_NEAR(u.loss, r.loss, 1e-5 * std::max(1.0, u.loss)) << "step " << r.step;
    EXPECT_DOUBLE_EQ(u.lr, r.lr);
  }
  auto pu = uninterrupted.model()->parameters();
  auto pr = resumed.model()->parameters();
  for (size_t i = 0; i < pu.size(); ++i) EXPECT_TRUE(torch::allclose(pu[i], pr[i], 1e-5, 1e-5));
  // Only keep_checkpoints (2) files remain, all complete (no temporaries).
  int ckpts = 0;
  for (const auto& e : fs::directory_iterator(cut_dir)) {
    EXPECT_EQ(e.path().string().find(".tmp"), std::string::npos);
    ckpts += e.path().extension() == ".pt" ? 1 : 0;
  }
  EXPECT_EQ(ckpts, 2);
}

TEST(Checkpoint, RefusesToResumeUnderADifferentConfig) {
  const std::string dir = TempDir("resume_mismatch");
  TrainConfig c = TinyRun(dir);
  c.stop_after_steps = 3;
  auto data = LoadData(c.data);
  ASSERT_TRUE(data.ok());
  {
    Trainer t(c, data.value());
    ASSERT_TRUE(t.Train().ok());
  }
  TrainConfig other = TinyRun(dir);
  other.optim.lr = 0.01;
  Trainer t(other, data.value());
  Status st = t.MaybeResume();
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("different"), std::string::npos);
}

// A short real run on real Fashion-MNIST images: every nested dim must clearly beat chance (10%).
TEST(Training, ShortRealRunBeatsChanceAtEveryNestingDim) {
  torch::set_num_threads(2);
  const std::string dir = TempDir("short_run");
  TrainConfig c;
  c.model.dim = 128;
  c.model.head = "mrl";
  c.data.train_limit = 4000;
  c.data.holdout = 500;
  c.data.test_limit = 1000;
  c.epochs = 3;
  c.batch_size = 64;
  c.optim.lr = 0.05;
  c.log_every = 0;
  c.out_dir = dir;
  c.eval_svd = false;
  ASSERT_TRUE(FinalizeConfig(&c).ok());
  ASSERT_TRUE(RunTraining(c).ok());
  auto text = ReadFile(dir + "/results.json");
  ASSERT_TRUE(text.ok());
  auto results = nlohmann::json::parse(text.value());
  ASSERT_EQ(results["per_dim"].size(), 5u);  // 8, 16, 32, 64, 128
  for (const auto& row : results["per_dim"]) {
    EXPECT_GT(row["linear_top1"].get<double>(), 0.6) << "dim " << row["dim"];
    EXPECT_GT(row["knn_top1"].get<double>(), 0.6) << "dim " << row["dim"];
    EXPECT_GT(row["map_at_10"].get<double>(), 0.5) << "dim " << row["dim"];
  }
  ASSERT_TRUE(results.contains("adaptive"));
  // Export: shapes agree with the data.
  auto db = ReadNpy(dir + "/export/db_embeddings.npy");
  ASSERT_TRUE(db.ok());
  EXPECT_EQ(db->shape, (std::vector<int64_t>{4000, 128}));
  auto q = ReadNpy(dir + "/export/query_embeddings.npy");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->shape, (std::vector<int64_t>{1000, 128}));
  // The images in the embeddings' row order (mrlctl ingest --images stores them as payload PNGs):
  // the training split's first 4000 Fashion-MNIST images, byte for byte.
  auto images = ReadNpy(dir + "/export/db_images.npy");
  ASSERT_TRUE(images.ok()) << images.status().ToString();
  EXPECT_EQ(images->dtype, NpyDtype::kUInt8);
  EXPECT_EQ(images->shape, (std::vector<int64_t>{4000, 28, 28}));
  auto fm = LoadFashionMnist("/usr/share/datasets/fashion-mnist");
  ASSERT_TRUE(fm.ok());
  EXPECT_TRUE(std::equal(images->data.begin(), images->data.end(),
                         reinterpret_cast<const char*>(fm->train.pixels.data())));
  auto q_images = ReadNpy(dir + "/export/query_images.npy");
  ASSERT_TRUE(q_images.ok());
  EXPECT_EQ(q_images->shape, (std::vector<int64_t>{1000, 28, 28}));

  // Python's torch loads the exported state dict into trainer/python/mrl_models.py and reproduces
  // the exported query embeddings (skipped where Debian's python3-torch is absent).
  if (std::system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1") != 0) {
    GTEST_SKIP() << "python3-torch not installed: export round trip not checked";
  }
  const std::string py = std::string("cd ") + MRL_SOURCE_DIR + "/trainer/python && /usr/bin/python3 -c '"
      "import json, gzip, numpy as np, torch, mrl_models\n"
      "cfg = json.load(open(\"" + dir + "/export/model.json\"))\n"
      "m = mrl_models.MrlModel(cfg); m.load_state_dict(torch.load(\"" + dir + "/export/model_state.pt\")); m.eval()\n"
      "raw = gzip.open(\"/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz\").read()[16:16+50*784]\n"
      "x = torch.frombuffer(bytearray(raw), dtype=torch.uint8).reshape(50, 1, 28, 28)\n"
      "z = m(mrl_models.normalize(x)).detach().numpy()\n"
      "ref = np.load(\"" + dir + "/export/query_embeddings.npy\")[:50]\n"
      "err = float(np.abs(z - ref).max()); print(\"max abs diff\", err); assert err < 1e-3\n'";
  EXPECT_EQ(std::system(py.c_str()), 0);
}

TEST(Encoders, ResNetsAndMlpProduceDDimEmbeddings) {
  torch::NoGradGuard no_grad;
  for (const char* name : {"resnet18", "resnet50"}) {
    ModelConfig m;
    m.encoder = name;
    m.dim = 2048;
    m.nesting = DefaultNesting(2048);
    MrlModel model(m, 3, 0, 10);
    model->eval();
    torch::Tensor z = model->Embed(torch::randn({2, 3, 32, 32}));
    EXPECT_EQ(z.sizes(), (std::vector<int64_t>{2, 2048})) << name;
    EXPECT_EQ(model->TrainLogits(z).size(), 9u);
  }
  ModelConfig m;
  m.encoder = "mlp";
  m.dim = 96;
  m.nesting = {8, 32, 96};
  m.head = "mrl-e";
  MrlModel model(m, 0, 40, 5);
  model->eval();
  torch::Tensor z = model->Embed(torch::randn({3, 40}));
  EXPECT_EQ(z.sizes(), (std::vector<int64_t>{3, 96}));
  EXPECT_EQ(model->LogitsAt(z, 20).sizes(), (std::vector<int64_t>{3, 5}));  // any m for MRL-E
}

TEST(Training, SameSeedGivesIdenticalLosses) {
  torch::set_num_threads(1);
  TrainConfig c = TinyRun(TempDir("det_a"));
  c.stop_after_steps = 5;
  auto data = LoadData(c.data);
  ASSERT_TRUE(data.ok());
  Trainer a(c, data.value());
  ASSERT_TRUE(a.Train().ok());
  TrainConfig c2 = c;
  c2.out_dir = TempDir("det_b");
  Trainer b(c2, data.value());
  ASSERT_TRUE(b.Train().ok());
  for (size_t i = 0; i < a.history().size(); ++i) {
    EXPECT_EQ(a.history()[i].loss, b.history()[i].loss) << "step " << i + 1;
  }
  TrainConfig c3 = c;
  c3.out_dir = TempDir("det_c");
  c3.seed = 99;
  Trainer d(c3, data.value());
  ASSERT_TRUE(d.Train().ok());
  EXPECT_NE(a.history()[0].loss, d.history()[0].loss);
}

// Dense-feature input: MRL on top of existing features (.npy float32 [N, F] + labels). The
// features here are real Fashion-MNIST pixels, flattened and scaled.
TEST(Training, DenseNpyFeaturesWithMlpEncoderLearn) {
  torch::set_num_threads(2);
  const std::string dir = TempDir("npy_features");
  DataConfig fc;
  fc.train_limit = 3000;
  fc.test_limit = 500;
  fc.holdout = 0;
  auto images = LoadData(fc);
  ASSERT_TRUE(images.ok());
  auto dump = [&](const Split& s, const std::string& name) {
    std::vector<float> f(s.pixels.size());
    for (size_t i = 0; i < f.size(); ++i) f[i] = static_cast<float>(s.pixels[i]) / 255.0f;
    ASSERT_TRUE(WriteNpy(dir + "/" + name + "_x.npy", NpyDtype::kFloat32, {s.size(), 784}, f.data()).ok());
    ASSERT_TRUE(WriteNpy(dir + "/" + name + "_y.npy", NpyDtype::kInt64, {s.size()}, s.labels.data()).ok());
  };
  dump(images->train, "train");
  dump(images->test, "test");
  TrainConfig c;
  c.data.kind = "npy";
  c.data.train_features = dir + "/train_x.npy";
  c.data.train_labels = dir + "/train_y.npy";
  c.data.test_features = dir + "/test_x.npy";
  c.data.test_labels = dir + "/test_y.npy";
  c.data.holdout = 300;
  c.model.encoder = "mlp";
  c.model.mlp_hidden = {256};
  c.model.dim = 64;
  c.epochs = 4;
  c.batch_size = 64;
  c.optim.lr = 0.05;
  c.log_every = 0;
  c.eval_svd = false;
  c.out_dir = dir + "/run";
  ASSERT_TRUE(FinalizeConfig(&c).ok());
  ASSERT_TRUE(RunTraining(c).ok());
  auto results = nlohmann::json::parse(ReadFile(dir + "/run/results.json").value());
  for (const auto& row : results["per_dim"]) {
    EXPECT_GT(row["linear_top1"].get<double>(), 0.6) << "dim " << row["dim"];
  }
  // Wrong shapes are refused with a message naming the file.
  std::vector<int64_t> short_labels(10, 1);
  ASSERT_TRUE(WriteNpy(dir + "/bad_y.npy", NpyDtype::kInt64, {10}, short_labels.data()).ok());
  c.data.train_labels = dir + "/bad_y.npy";
  auto bad = LoadData(c.data);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("bad_y.npy"), std::string::npos);
}

// ---- The binary on bad input: clear message, non-zero exit, nothing half-written ----------

struct Outcome {
  int code = -1;
  std::string output;
};

Outcome RunTrainer(const std::string& args) {
  const std::string cmd = std::string(MRL_TRAINER_BIN) + " " + args + " 2>&1";
  Outcome o;
  FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) o.output.append(buf, n);
  const int status = pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return o;
}

int CountCheckpoints(const std::string& dir) {
  int n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) n += e.path().extension() == ".pt";
  return n;
}

const char* kTiny =
    "--dim 32 --set data.train_limit=600 --set data.test_limit=100 --set data.holdout=100 "
    "--set batch_size=50 --set model.conv_channels=[8,8,8,8] --set threads=1 ";

TEST(TrainerCli, MissingDatasetFailsWithClearMessage) {
  const std::string dir = TempDir("cli_missing");
  Outcome o = RunTrainer(std::string(kTiny) + "--out " + dir + "/run --set data.fmnist_dir=" + dir + "/none");
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.output.find("not found"), std::string::npos) << o.output;
  EXPECT_EQ(CountCheckpoints(dir + "/run"), 0);
}

TEST(TrainerCli, CorruptDatasetFileIsNamed) {
  const std::string dir = TempDir("cli_corrupt");
  for (const char* f : {"train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
                        "t10k-labels-idx1-ubyte.gz"}) {
    fs::copy_file(std::string("/usr/share/datasets/fashion-mnist/") + f, dir + "/" + f);
  }
  // A truncated copy of the training images.
  auto full = ReadFile("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz");
  ASSERT_TRUE(full.ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/train-images-idx3-ubyte.gz", full->substr(0, full->size() / 2)).ok());
  Outcome o = RunTrainer(std::string(kTiny) + "--out " + dir + "/run --set data.fmnist_dir=" + dir);
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.output.find("train-images-idx3-ubyte.gz"), std::string::npos) << o.output;
  EXPECT_EQ(CountCheckpoints(dir + "/run"), 0);
}

TEST(TrainerCli, BadNestingIsRejectedBeforeAnyWork) {
  const std::string dir = TempDir("cli_nesting");
  Outcome o = RunTrainer(std::string(kTiny) + "--out " + dir + " --set model.nesting=[16,8,32]");
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.output.find("strictly increasing"), std::string::npos) << o.output;
  o = RunTrainer(std::string(kTiny) + "--out " + dir + " --set model.nesting=[8,64]");
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.output.find("exceeds model.dim"), std::string::npos) << o.output;
  o = RunTrainer(std::string(kTiny) + "--out " + dir + " --set model.nope=1");
  EXPECT_EQ(o.code, 2);
  EXPECT_NE(o.output.find("unknown config field"), std::string::npos) << o.output;
}

TEST(TrainerCli, UnwritableOutputDirFailsUpFront) {
  const std::string dir = TempDir("cli_unwritable");
  ASSERT_TRUE(WriteFileAtomic(dir + "/file", "x").ok());
  Outcome o = RunTrainer(std::string(kTiny) + "--out " + dir + "/file/run");
  EXPECT_NE(o.code, 0);
  EXPECT_NE(o.output.find("output directory"), std::string::npos) << o.output;
}

TEST(TrainerCli, DivergingLossStopsWithoutWritingCheckpoint) {
  const std::string dir = TempDir("cli_nan");
  Outcome o = RunTrainer(std::string(kTiny) + "--out " + dir +
                         " --set optim.lr=1e30 --set optim.warmup_epochs=0 --set epochs=3");
  EXPECT_EQ(o.code, 1) << o.output;
  EXPECT_NE(o.output.find("non-finite loss"), std::string::npos) << o.output;
  EXPECT_EQ(CountCheckpoints(dir), 0);
  EXPECT_FALSE(fs::exists(dir + "/export"));
}

}  // namespace
}  // namespace mrl
