// NCCL bucket reducer for CUDA gradients. Compiled into mrl-trainer only with a CUDA LibTorch
// (MRL_WITH_CUDA); where only the CUDA toolkit is present (CI: Debian's CPU LibTorch) it is still
// compiled, as a check, but not linked.
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <vector>

#include "trainer/dist.h"
#include "trainer/nccl_comm.h"

namespace mrl {
namespace {

class NcclReducer : public BucketReducer {
 public:
  explicit NcclReducer(std::unique_ptr<NcclComm> comm) : comm_(std::move(comm)) {}

  // Runs where the bucket's last gradient was produced: on autograd's device thread, whose
  // current stream is the one the gradient (and the copy into the bucket) was queued on. NCCL is
  // queued on that same stream, so it starts after the copy without a host sync and overlaps the
  // rest of the backward pass.
  void Start(torch::Tensor& flat) override {
    TORCH_CHECK(flat.is_cuda(), "the NCCL reducer takes CUDA tensors");
    cudaStream_t stream = c10::cuda::getCurrentCUDAStream(flat.device().index()).stream();
    Status st = comm_->StartAllReduceSum(flat.data_ptr<float>(), static_cast<size_t>(flat.numel()),
                                         stream);
    if (!st.ok() && first_error_.ok()) first_error_ = st;
    if (std::find(streams_.begin(), streams_.end(), stream) == streams_.end()) streams_.push_back(stream);
  }

  Status WaitAll(const std::string& what) override {
    std::vector<cudaStream_t> streams;
    streams.swap(streams_);
    if (!first_error_.ok()) {
      Status st = first_error_;
      first_error_ = Status::Ok();
      return st;
    }
    for (cudaStream_t s : streams) MRL_RETURN_IF_ERROR(comm_->Wait(s, what));
    return Status::Ok();
  }
  const char* name() const override { return "nccl"; }

 private:
  std::unique_ptr<NcclComm> comm_;
  std::vector<cudaStream_t> streams_;
  Status first_error_;
};

}  // namespace

Result<std::unique_ptr<BucketReducer>> MakeNcclReducer(Communicator& comm, int device,
                                                       double timeout_s) {
  auto nccl = NcclComm::Create(comm, device, timeout_s);
  if (!nccl.ok()) return nccl.status();
  std::unique_ptr<BucketReducer> out = std::make_unique<NcclReducer>(std::move(nccl).value());
  return out;
}

}  // namespace mrl
