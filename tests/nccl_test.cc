#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <vector>

#include "trainer/nccl_comm.h"

namespace mrl {
namespace {

TEST(Nccl, AllReduceOnOneRankWorldKeepsValues) {
  if (NcclComm::DeviceCount() == 0) GTEST_SKIP() << "no CUDA device: NCCL path compiled, not run";
  Communicator& comm = Communicator::Init(nullptr, nullptr);
  auto nccl = NcclComm::Create(comm, 0, 30);
  ASSERT_TRUE(nccl.ok()) << nccl.status().ToString();
  std::vector<float> host(1 << 20);
  for (size_t i = 0; i < host.size(); ++i) host[i] = static_cast<float>(i % 97);
  float* dev = nullptr;
  ASSERT_EQ(cudaMalloc(&dev, host.size() * sizeof(float)), cudaSuccess);
  cudaMemcpy(dev, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice);
  ASSERT_TRUE((*nccl)->StartAllReduceSum(dev, host.size(), nullptr).ok());
  ASSERT_TRUE((*nccl)->Wait(nullptr, "test all-reduce").ok());
  std::vector<float> back(host.size());
  cudaMemcpy(back.data(), dev, back.size() * sizeof(float), cudaMemcpyDeviceToHost);
  cudaFree(dev);
  EXPECT_EQ(back, host);  // sum over a world of one
}

}  // namespace
}  // namespace mrl
