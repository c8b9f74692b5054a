// Mixed precision: bf16 autocast (runnable on CPU), dynamic loss scaling, and the device checks.
// The fp16 + CUDA path itself needs a GPU; these tests cover the logic that decides around it.
#include <gtest/gtest.h>

#include <cmath>

#include "tests/test_util.h"
#include "trainer/data.h"
#include "trainer/precision.h"
#include "trainer/train.h"

namespace mrl {
namespace {

using ::mrl::test_util::TempDir;

TrainConfig SmallRun(const std::string& out_dir) {
  TrainConfig c;
  c.model.dim = 64;
  c.model.nesting = {8, 16, 32, 64};
  c.model.conv_channels = {8, 16, 16, 32};
  c.data.train_limit = 1200;
  c.data.test_limit = 300;
  c.data.holdout = 200;
  c.batch_size = 100;
  c.epochs = 2;
  c.threads = 1;
  c.log_every = 0;
  c.out_dir = out_dir;
  c.evaluate = false;
  c.export_embeddings = false;
  return c;
}

TEST(LossScaler, SkipsAndHalvesOnInfThenGrowsAfterTheInterval) {
  LossScaler s(/*enabled=*/true, /*init_scale=*/1024, /*growth_interval=*/3);
  torch::Tensor p = torch::ones({4}, torch::requires_grad());
  p.mutable_grad() = torch::full({4}, 2048.0);
  EXPECT_FALSE(s.UnscaleAndCheck({p}));
  EXPECT_TRUE(torch::allclose(p.grad(), torch::full({4}, 2.0)));  // divided by the scale
  p.mutable_grad() = torch::tensor({1.0f, INFINITY, 0.0f, 1.0f});
  EXPECT_TRUE(s.UnscaleAndCheck({p}));
  s.Update(true);
  EXPECT_EQ(s.scale(), 512);
  EXPECT_EQ(s.skipped_steps(), 1);
  p.mutable_grad() = torch::tensor({1.0f, NAN, 0.0f, 1.0f});
  EXPECT_TRUE(s.UnscaleAndCheck({p}));
  for (int i = 0; i < 3; ++i) s.Update(false);
  EXPECT_EQ(s.scale(), 1024);  // doubled after 3 good steps
  LossScaler off(false, 1024, 3);
  EXPECT_EQ(off.scale(), 1);
  p.mutable_grad() = torch::tensor({INFINITY});
  EXPECT_FALSE(off.UnscaleAndCheck({p}));  // bf16 / fp32 never skip
}

TEST(MixedPrecision, Bf16AutocastRunsConvAndLinearInBf16AndRestoresState) {
  torch::nn::Linear lin(8, 4);
  torch::Tensor x = torch::randn({2, 8});
  {
    AutocastScope scope(torch::Device(torch::kCPU), Precision::kBf16);
    EXPECT_EQ(lin(x).scalar_type(), torch::kBFloat16);
  }
  EXPECT_EQ(lin(x).scalar_type(), torch::kFloat32);
  {
    AutocastScope scope(torch::Device(torch::kCPU), Precision::kFp32);
    EXPECT_EQ(lin(x).scalar_type(), torch::kFloat32);
  }
}

TEST(MixedPrecision, Bf16TrainingOnCpuTracksFp32WithFp32MasterWeights) {
  torch::set_num_threads(2);
  TrainConfig c32 = SmallRun(TempDir("fp32ref"));
  TrainConfig c16 = SmallRun(TempDir("bf16"));
  c16.precision = "bf16";
  ASSERT_TRUE(FinalizeConfig(&c32).ok());
  ASSERT_TRUE(FinalizeConfig(&c16).ok());
  auto data = LoadData(c32.data);
  ASSERT_TRUE(data.ok());
  Trainer ref(c32, data.value());
  ASSERT_TRUE(ref.Train().ok());
  Trainer t(c16, data.value());
  ASSERT_TRUE(t.Train().ok());
  ASSERT_EQ(t.history().size(), 20u);
  for (const auto& p : t.model()->parameters()) EXPECT_EQ(p.scalar_type(), torch::kFloat32);
  // Same seed and data: the bf16 run follows the fp32 loss curve (within bf16's ~3 significant
  // digits, compounded over 20 steps) and learns (the fp32 run goes from ~9.2 to ~7.7).
  bool any_difference = false;
  for (size_t i = 0; i < 20; ++i) {
    const double a = ref.history()[i].loss, b = t.history()[i].loss;
    EXPECT_NEAR(a, b, 0.02 * a) << "step " << i + 1;
    any_difference |= a != b;
  }
  EXPECT_TRUE(any_difference) << "bf16 run is bit-identical to fp32: autocast did not engage";
  EXPECT_LT(t.history().back().loss, 0.9 * t.history().front().loss);
}

TEST(MixedPrecision, Fp16WithoutCudaAndCudaWithoutGpuAreClearErrors) {
  if (torch::cuda::is_available()) GTEST_SKIP() << "a GPU is present";
  TrainConfig c = SmallRun(TempDir("fp16cpu"));
  c.precision = "fp16";
  c.device = "cpu";
  ASSERT_TRUE(FinalizeConfig(&c).ok());
  auto data = LoadData(c.data);
  ASSERT_TRUE(data.ok());
  Trainer t(c, data.value());
  Status st = t.MaybeResume();
  EXPECT_EQ(st.code(), Status::Code::kInvalidArgument);
  EXPECT_NE(st.message().find("fp16 needs a CUDA device"), std::string::npos) << st.ToString();
  TrainConfig g = SmallRun(TempDir("cudanogpu"));
  g.device = "cuda";
  ASSERT_TRUE(FinalizeConfig(&g).ok());
  Trainer tg(g, data.value());
  st = tg.Train();
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(st.message().find("no CUDA device"), std::string::npos) << st.ToString();
}

TEST(MixedPrecision, BadPrecisionOrBackendIsAConfigError) {
  TrainConfig c;
  c.precision = "fp8";
  EXPECT_EQ(FinalizeConfig(&c).code(), Status::Code::kInvalidArgument);
  TrainConfig d;
  d.dist.backend = "gloo";
  EXPECT_EQ(FinalizeConfig(&d).code(), Status::Code::kInvalidArgument);
}

}  // namespace
}  // namespace mrl
