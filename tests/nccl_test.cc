// NCCL all-reduce on real CUDA devices. Compiled wherever the CUDA toolkit and NCCL are found;
// every test skips where no GPU is visible.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "tests/test_util.h"
#include "trainer/nccl_comm.h"

namespace mrl {
namespace {

using ::mrl::test_util::HaveMpirun;
using ::mrl::test_util::Mpirun;
using ::mrl::test_util::Outcome;
using ::mrl::test_util::RunCommand;

constexpr size_t kFloats = 1 << 20;  // 4 MiB: several NCCL chunks

// Rank r's contribution at index i; a rank's own values are not the sum, so a no-op (or a
// broadcast of one rank's buffer) cannot pass for the all-reduce.
float Contribution(int rank, size_t i) { return static_cast<float>((rank + 1) * (i % 97)); }

// All-reduces every rank's contribution in place on `device` and returns the result.
std::vector<float> AllReduceContributions(Communicator& comm, int device) {
  auto nccl = NcclComm::Create(comm, device, 30);
  EXPECT_TRUE(nccl.ok()) << nccl.status().ToString();
  if (!nccl.ok()) return {};
  std::vector<float> host(kFloats);
  for (size_t i = 0; i < host.size(); ++i) host[i] = Contribution(comm.world().rank, i);
  float* dev = nullptr;
  EXPECT_EQ(cudaMalloc(&dev, host.size() * sizeof(float)), cudaSuccess);
  if (dev == nullptr) return {};
  EXPECT_EQ(cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice),
            cudaSuccess);
  Status st = (*nccl)->StartAllReduceSum(dev, host.size(), nullptr);
  EXPECT_TRUE(st.ok()) << st.ToString();
  if (st.ok()) {
    st = (*nccl)->Wait(nullptr, "test all-reduce");
    EXPECT_TRUE(st.ok()) << st.ToString();
  }
  std::vector<float> back(host.size());
  EXPECT_EQ(cudaMemcpy(back.data(), dev, back.size() * sizeof(float), cudaMemcpyDeviceToHost),
            cudaSuccess);
  cudaFree(dev);
  return back;
}

TEST(Nccl, AllReduceOnOneRankWorldKeepsValues) {
  if (NcclComm::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: NCCL path compiled, not run";
  Communicator& comm = Communicator::Init(nullptr, nullptr);
  const std::vector<float> back = AllReduceContributions(comm, 0);
  std::vector<float> want(kFloats);
  for (size_t i = 0; i < want.size(); ++i) want[i] = Contribution(0, i);
  EXPECT_EQ(back, want);  // sum over a world of one
}

// Run by TwoRanksSumTheirDifferentContributions as each of the 2 ranks under mpirun (DISABLED_,
// so a plain run of this binary skips it): rank r on CUDA device r, NCCL's id exchanged over MPI.
TEST(Nccl, DISABLED_TwoRankWorker) {
  Communicator& comm = Communicator::Init(nullptr, nullptr);
  ASSERT_EQ(comm.world().size, 2) << "start under mpirun -np 2";
  const int rank = comm.world().rank;
  ASSERT_LT(comm.world().local_rank, NcclComm::DeviceCount()) << "one CUDA device per rank";
  const std::vector<float> back = AllReduceContributions(comm, comm.world().local_rank);
  ASSERT_EQ(back.size(), kFloats);
  size_t wrong = 0;
  for (size_t i = 0; i < back.size(); ++i) {
    if (back[i] != Contribution(0, i) + Contribution(1, i)) {
      if (wrong++ < 5) ADD_FAILURE() << "rank " << rank << ": [" << i << "] = " << back[i];
    }
  }
  EXPECT_EQ(wrong, 0u) << "rank " << rank;
  if (wrong == 0) std::printf("[nccl] rank %d: all-reduce of 2 ranks summed correctly\n", rank);
  std::fflush(stdout);
  comm.Finalize();
}

// Over a world of one an all-reduce cannot be told from a no-op: 2 ranks, each with its own
// values, must both end with the sum. NCCL refuses two ranks of one communicator on one device
// ("Duplicate GPU detected"), so this needs 2 CUDA devices.
TEST(Nccl, TwoRanksSumTheirDifferentContributions) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) GTEST_SKIP() << "the launcher, not a rank";
  const int devices = NcclComm::DeviceCount();
  if (devices == 0) GTEST_SKIP() << "no CUDA device: NCCL path compiled, not run";
  if (devices < 2) GTEST_SKIP() << "1 CUDA device: NCCL needs one device per rank";
  if (!HaveMpirun()) GTEST_SKIP() << "mpirun not installed";
  // This binary again, as each rank, running only the worker.
  const std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  Outcome o =
      RunCommand("timeout 120 " + Mpirun(2) + self +
                 " --gtest_also_run_disabled_tests --gtest_filter=Nccl.DISABLED_TwoRankWorker");
  ASSERT_EQ(o.code, 0) << o.output;
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(o.output.find("[nccl] rank " + std::to_string(r) + ": all-reduce of 2 ranks summed"),
              std::string::npos)
        << o.output;
  }
}

}  // namespace
}  // namespace mrl
