// The single-process MRL training loop: SGD/AdamW, warmup + cosine (or one-cycle) schedule,
// progress output, atomic checkpoints (model, optimizer, step, RNG, data position), exact resume.
#pragma once

#include <torch/torch.h>

#include <memory>
#include <vector>

#include "common/status.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/dist.h"
#include "trainer/mpi_comm.h"
#include "trainer/model.h"
#include "trainer/precision.h"
#include "trainer/schedule.h"

namespace mrl {

class ProgressWindow;

struct StepRecord {
  int64_t step = 0;  // global step (1-based: the step just finished)
  int64_t epoch = 0;
  double loss = 0;
  double lr = 0;
};

class Trainer {
 public:
  // REQUIRES: config was finalized (FinalizeConfig) and `data` outlives the trainer.
  Trainer(const TrainConfig& config, const DataSplits& data);

  // Loads the newest checkpoint of out_dir if config.resume and one exists (every rank reads the
  // same file), then makes every rank hold rank 0's model. Fails if the checkpoint was written by
  // an incompatible config or world size, or is unreadable.
  Status MaybeResume();

  // Trains until the schedule ends or config.stop_after_steps. Writes checkpoints as configured
  // and always one at the point where it stops. Fails on a non-finite loss (no checkpoint is
  // written for the diverged state) or an I/O error.
  Status Train();

  MrlModel& model() { return model_; }
  // Where the model trains: CPU, or CUDA device (local rank mod GPUs) under device=auto|cuda.
  const torch::Device& device() const { return device_; }
  const LossScaler& loss_scaler() const { return scaler_; }
  int64_t global_step() const { return step_; }
  int64_t steps_per_epoch() const { return steps_per_epoch_; }
  int64_t total_steps() const { return steps_per_epoch_ * config_.epochs; }
  int64_t global_batch() const { return global_batch_; }
  // Samples of the training set that this rank uses at global step `step`, micro-batch `micro`:
  // positions [step*G + (micro*ranks + rank)*B, +B) of the epoch's permutation (G = global
  // batch). So N ranks x batch B see exactly the samples of 1 rank x batch N*B.
  int64_t SampleOffset(int64_t step, int64_t micro) const;
  bool finished() const { return step_ >= total_steps(); }
  const std::vector<StepRecord>& history() const { return history_; }

  Status SaveCheckpoint();
  // Path of the newest checkpoint in `out_dir`, or "" if none.
  static std::string LatestCheckpoint(const std::string& out_dir);
  // Loads only model weights (for evaluation / export of a finished run).
  static Status LoadModelWeights(const std::string& path, MrlModel& model);

 private:
  Status LoadCheckpoint(const std::string& path);
  Status ResumeFromDisk();
  // Checks the device and creates the gradient reducer (NCCL or MPI); idempotent.
  Status EnsureReady();
  void SetLearningRate(double lr);
  // Forward and backward of one micro-batch (the gradient accumulates); the last micro-batch of
  // a step arms the gradient sync. Returns the micro-batch's loss (divided by grad_accum).
  Result<double> ForwardBackward(const Batch& batch, bool last_micro, ProgressWindow* window);

  TrainConfig config_;
  const DataSplits& data_;
  MrlModel model_{nullptr};
  std::unique_ptr<torch::optim::Optimizer> optimizer_;
  LrSchedule schedule_;
  std::vector<double> loss_weights_;
  Communicator& comm_;
  std::unique_ptr<GradientSync> sync_;
  torch::Device device_{torch::kCPU};
  Status device_error_;
  bool ready_ = false;
  Precision precision_ = Precision::kFp32;
  LossScaler scaler_{false, 1.0, 1};
  int64_t global_batch_ = 0;
  int64_t steps_per_epoch_ = 0;
  int64_t step_ = 0;  // updates done so far; the data position is (step_ / spe, step_ % spe)
  std::vector<StepRecord> history_;
};

// The config fields a checkpoint must agree on to be resumed.
std::string ResumeKey(const TrainConfig& config, int world_size);

}  // namespace mrl
