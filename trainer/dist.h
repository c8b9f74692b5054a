// Data-parallel synchronisation of a model across the ranks of a Communicator, the way DDP and
// Horovod do it: parameters and buffers broadcast from rank 0 at start; gradients averaged in
// buckets (~25 MB) whose all-reduce starts from autograd hooks as soon as every gradient of the
// bucket is ready, so communication overlaps the rest of the backward pass. Buckets are launched
// strictly in bucket order on every rank (collectives must match across ranks).
//
// BatchNorm: batch statistics are per rank (as in DDP's default); running statistics are
// averaged across ranks before every checkpoint and evaluation (AverageBuffers), so the saved and
// evaluated model is the same on every rank.
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "trainer/mpi_comm.h"

namespace mrl {

// How a bucket's in-place sum all-reduce is carried out: MPI for CPU tensors, NCCL for CUDA
// tensors. Start is called in bucket order, possibly from autograd's thread; WaitAll from the
// training thread.
class BucketReducer {
 public:
  virtual ~BucketReducer() = default;
  virtual void Start(torch::Tensor& flat) = 0;
  // Waits for every started all-reduce, with the reducer's deadline; `what` names the step.
  virtual Status WaitAll(const std::string& what) = 0;
  // Lets started operations progress (MPI advances non-blocking calls only inside MPI calls).
  virtual void Poke() {}
  virtual const char* name() const = 0;
};

// Non-blocking MPI_Iallreduce on CPU float32 buckets.
std::unique_ptr<BucketReducer> MakeMpiReducer(Communicator& comm, double timeout_s);
#ifdef MRL_WITH_CUDA
// NCCL on the CUDA stream LibTorch computes the gradients on (see dist_nccl.cc). Creates the
// NCCL communicator (rank 0's unique id is broadcast over MPI).
Result<std::unique_ptr<BucketReducer>> MakeNcclReducer(Communicator& comm, int device,
                                                       double timeout_s);
#endif

class GradientSync {
 public:
  // `params` in registration order; buckets are filled from the last parameter backwards (the
  // order gradients become ready). REQUIRES: all params float32 on one device, which the
  // reducer handles (CPU for MPI, CUDA for NCCL).
  GradientSync(std::vector<torch::Tensor> params, std::unique_ptr<BucketReducer> reducer,
               int world_size, size_t bucket_bytes);
  ~GradientSync();

  // Arms the hooks for the next backward pass (the last micro-batch of a step). Gradients that
  // the hooks see are added to what .grad already holds from earlier micro-batches.
  void Arm(int64_t step);
  // Waits for every bucket, writes the averaged gradient into each parameter's .grad.
  Status Finish();

  size_t num_buckets() const { return buckets_.size(); }
  const char* backend() const { return reducer_->name(); }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    std::vector<int64_t> offsets;
    torch::Tensor flat;          // float32 [numel]
    size_t ready = 0;
    bool launched = false;
  };
  void OnGradient(size_t param, const torch::Tensor& grad);
  void LaunchReady();

  std::vector<torch::Tensor> params_;
  std::vector<size_t> bucket_of_;
  std::vector<size_t> slot_of_;
  std::vector<bool> seen_;
  std::vector<Bucket> buckets_;
  size_t next_launch_ = 0;
  bool armed_ = false;
  int64_t step_ = 0;
  std::unique_ptr<BucketReducer> reducer_;
  int world_size_;
};

// Copies every parameter and buffer of rank 0 to all ranks.
Status BroadcastModel(torch::nn::Module& model, Communicator& comm, double timeout_s);
// Averages floating-point buffers (BatchNorm running statistics) across ranks. `when` names the
// occasion in errors, e.g. "checkpoint at step 120".
Status AverageBuffers(torch::nn::Module& model, Communicator& comm, double timeout_s,
                      const std::string& when);
// max |p_rank - p_rank0| over all parameters, reduced to every rank (a replica-consistency check).
Result<double> ParameterDivergence(torch::nn::Module& model, Communicator& comm, double timeout_s);

}  // namespace mrl
