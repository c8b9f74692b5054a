// NCCL all-reduce for CUDA buffers, with the rendezvous done over MPI: rank 0 calls
// ncclGetUniqueId, broadcasts it with the Communicator, every rank calls ncclCommInitRank.
// Built only where the CUDA toolkit and NCCL are found (MRL_WITH_NCCL); needs no LibTorch, so it
// compiles on CPU-only machines that have the toolkit. Waits have deadlines like the MPI path:
// a stalled peer aborts the NCCL communicator instead of hanging the stream forever.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

#include "common/status.h"
#include "trainer/mpi_comm.h"

namespace mrl {

class NcclComm {
 public:
  // Number of CUDA devices visible to this process (0 where there is no GPU or no driver).
  static int DeviceCount();
  // REQUIRES: comm initialised on every rank; `device` < DeviceCount().
  static Result<std::unique_ptr<NcclComm>> Create(Communicator& comm, int device, double timeout_s);
  ~NcclComm();

  // Starts an in-place sum all-reduce of n floats in device memory on `stream` (a cudaStream_t;
  // nullptr = the default stream).
  Status StartAllReduceSum(float* device_data, size_t n, void* stream);
  // Waits for `stream` with a deadline, checking NCCL's asynchronous errors while it waits.
  Status Wait(void* stream, const std::string& what);

 private:
  NcclComm() = default;
  struct State;
  std::unique_ptr<State> state_;
  double timeout_s_ = 60;
  int rank_ = 0;
};

}  // namespace mrl
