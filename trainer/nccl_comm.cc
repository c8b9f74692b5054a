#include "trainer/nccl_comm.h"

#include <cuda_runtime.h>
#include <nccl.h>

#include <chrono>
#include <thread>

namespace mrl {

struct NcclComm::State {
  ncclComm_t comm = nullptr;
  int device = 0;
};

namespace {
Status CudaError(cudaError_t e, const std::string& what) {
  return Status::Internal(what + ": " + cudaGetErrorString(e));
}
Status NcclError(ncclResult_t r, const std::string& what) {
  return Status::Internal(what + ": " + ncclGetErrorString(r));
}
}  // namespace

int NcclComm::DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) return 0;
  return n;
}

Result<std::unique_ptr<NcclComm>> NcclComm::Create(Communicator& comm, int device,
                                                   double timeout_s) {
  std::unique_ptr<NcclComm> out(new NcclComm());
  out->state_ = std::make_unique<State>();
  out->timeout_s_ = timeout_s;
  out->rank_ = comm.world().rank;
  out->state_->device = device;
  if (cudaError_t e = cudaSetDevice(device); e != cudaSuccess) {
    return CudaError(e, "cudaSetDevice(" + std::to_string(device) + ")");
  }
  ncclUniqueId id;
  if (comm.world().rank == 0) {
    if (ncclResult_t r = ncclGetUniqueId(&id); r != ncclSuccess) return NcclError(r, "ncclGetUniqueId");
  }
  MRL_RETURN_IF_ERROR(comm.Broadcast(&id, sizeof(id), 0, timeout_s, "broadcast of the NCCL id"));
  if (ncclResult_t r = ncclCommInitRank(&out->state_->comm, comm.world().size, id, comm.world().rank);
      r != ncclSuccess) {
    return NcclError(r, "ncclCommInitRank");
  }
  return out;
}

NcclComm::~NcclComm() {
  if (state_ && state_->comm != nullptr) ncclCommDestroy(state_->comm);
}

Status NcclComm::StartAllReduceSum(float* device_data, size_t n, void* stream) {
  ncclResult_t r = ncclAllReduce(device_data, device_data, n, ncclFloat, ncclSum, state_->comm,
                                 static_cast<cudaStream_t>(stream));
  return r == ncclSuccess ? Status::Ok() : NcclError(r, "ncclAllReduce");
}

Status NcclComm::Wait(void* stream, const std::string& what) {
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                            std::chrono::duration<double>(timeout_s_));
  while (true) {
    const cudaError_t q = cudaStreamQuery(static_cast<cudaStream_t>(stream));
    if (q == cudaSuccess) return Status::Ok();
    if (q != cudaErrorNotReady) return CudaError(q, what);
    ncclResult_t async = ncclSuccess;
    ncclCommGetAsyncError(state_->comm, &async);
    if (async != ncclSuccess) {
      ncclCommAbort(state_->comm);
      state_->comm = nullptr;
      return NcclError(async, "rank " + std::to_string(rank_) + ": " + what);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      ncclCommAbort(state_->comm);  // unblocks the stream; the communicator is unusable after
      state_->comm = nullptr;
      return Status::FailedPrecondition("rank " + std::to_string(rank_) + ": " + what +
                                        " did not complete within " +
                                        std::to_string(static_cast<int>(timeout_s_)) +
                                        " s: a peer rank died or stalled");
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
}

}  // namespace mrl
