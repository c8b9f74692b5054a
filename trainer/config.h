// Configuration of one training run. Defaults reproduce the Fashion-MNIST MRL benchmark;
// every field can come from a JSON file and be overridden by `--set section.field=value`.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct DataConfig {
  // "fmnist" (IDX files), "fmnist3" (1000 classes: three Fashion-MNIST items side by side,
  // composed on the fly; trainer/data.h), "npy" (dense features + labels), or "shards"
  // (WebDataset-style tar shards written by mrl-make-shards: images or .npy features, streamed
  // while training).
  std::string kind = "fmnist";
  std::string fmnist_dir = "/usr/share/datasets/fashion-mnist";
  // kind == "npy": float32 [N, F] feature matrices and integer [N] label vectors.
  std::string train_features, train_labels, test_features, test_labels;
  int64_t train_limit = 0;  // use only the first N training samples (0 = all)
  int64_t test_limit = 0;   // use only the first N test samples (0 = all)
  // The last `holdout` training samples are not trained on; adaptive classification learns its
  // thresholds there (paper section 4.2).
  int64_t holdout = 5000;
  // Images: random horizontal flip + shift by up to `max_shift` pixels. Off by default: at the
  // few-epoch budgets used here it costs ~2 points of test accuracy (87.7 vs 89.7 at 2 epochs).
  bool augment = false;
  int64_t max_shift = 2;
  // kind == "shards": a directory (with manifest.json, or its *.tar files), a .txt/.list file of
  // shard paths, or a glob. Training streams train_shards; evaluation reads both into RAM.
  std::string train_shards, test_shards;
  int64_t image_size = 0;  // images are size x size; 0 = the shards' own (square) size
  // With augment: random-resized-crop (area scale, aspect ratio ranges) + horizontal flip, in
  // place of the in-RAM path's flip + shift. Evaluation: resize the shorter side to
  // round(image_size * eval_resize) and take the centre image_size x image_size.
  double crop_scale_min = 0.25, crop_scale_max = 1.0;
  double crop_ratio_min = 0.75, crop_ratio_max = 4.0 / 3;
  bool flip = true;
  double eval_resize = 1.0;
  int64_t shuffle_buffer = 2048;  // per rank; samples stream through it in shard order
  int64_t decode_threads = 1;     // per rank
  int64_t prefetch_batches = 4;   // decoded batches held ready ahead of the step
  // kind == "fmnist3": training composites per epoch (fresh items each epoch), test composites
  // (a fixed set), and the seed of the item draw (not the run's seed, so that every model sees
  // the same database and queries). The last `holdout` training items are held out; `holdout`
  // held-out composites are made of them.
  int64_t composites = 55000;
  int64_t test_composites = 10000;
  uint64_t composite_seed = 0;
};

struct ModelConfig {
  std::string encoder = "conv4";  // conv4 | resnet18 | resnet50 | mlp
  int64_t dim = 2048;             // embedding size d
  std::vector<int64_t> nesting;   // empty = powers of two from 8 to d (plus d)
  std::string head = "mrl";       // mrl | mrl-e | ff
  int64_t ff_dim = 0;             // head = ff: the head sees z[:, :ff_dim] (0 = d)
  std::vector<double> nesting_weights;  // relative weight c_m per nesting dim (empty = all 1)
  double label_smoothing = 0.0;
  std::vector<int64_t> conv_channels = {32, 64, 128, 256};  // conv4
  std::vector<int64_t> mlp_hidden = {1024};                 // mlp
  int64_t num_classes = 0;  // 0 = inferred from the labels
  // Conv kernels and image batches in NHWC (channels-last) layout. Numerically the same model.
  // Off by default: measured in mrl-trainer on 2 cores, conv4 at batch 128 runs ~740 img/s
  // channels-last vs ~790 NCHW (at batch 256: ~650 vs ~720), although a PyTorch probe at batch
  // 256 had shown channels-last ahead.
  bool channels_last = false;
  bool batch_norm = true;  // conv4 / mlp: BatchNorm after each hidden layer
  // conv4: the final average pool keeps this many columns (flattened before the linear map to
  // d), so a wide image of items side by side keeps where each item was. 0 = 3 for fmnist3,
  // else 1 (global average pool).
  int64_t pool_cols = 0;
};

struct OptimConfig {
  std::string optimizer = "sgd";  // sgd | adamw
  double lr = 0.05;               // peak learning rate for the global batch
  double momentum = 0.9;
  bool nesterov = true;
  double weight_decay = 5e-4;  // not applied to biases and normalisation parameters
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
  std::string schedule = "cosine";  // cosine | onecycle | constant
  double warmup_epochs = 0.3;       // linear warmup (cosine)
  double final_lr_ratio = 0.0;      // lr at the end, relative to the peak
};

// Data parallelism (mpirun -np N). The global batch is batch_size * ranks * grad_accum; the LR
// schedule and optim.lr are defined on the global batch.
struct DistConfig {
  int64_t grad_accum = 1;     // micro-batches per optimizer step
  double bucket_mb = 25;      // gradient all-reduce bucket size
  double timeout_s = 60;      // a collective that takes longer means a dead or stalled peer
  // Gradient all-reduce: "auto" = NCCL when the model is on CUDA, MPI otherwise.
  std::string backend = "auto";  // auto | mpi | nccl
};

struct TrainConfig {
  DataConfig data;
  ModelConfig model;
  OptimConfig optim;
  DistConfig dist;
  int64_t epochs = 4;
  int64_t batch_size = 128;
  uint64_t seed = 0;
  int threads = 0;  // intra-op threads; 0 = all cores
  std::string out_dir = "runs/fmnist-mrl";
  int64_t log_every = 50;
  int64_t checkpoint_every = 0;  // steps; 0 = at the end of every epoch only
  int keep_checkpoints = 2;
  bool resume = true;            // continue from the newest checkpoint in out_dir if present
  int64_t stop_after_steps = 0;  // stop (after checkpointing) at this global step; 0 = never
  bool evaluate = true;
  bool export_embeddings = true;
  std::vector<int64_t> eval_dims;  // empty = the nesting list
  bool eval_svd = true;
  // "auto" = CUDA when LibTorch sees a GPU (device = local rank mod GPUs), else CPU.
  std::string device = "auto";  // auto | cpu | cuda
  // Mixed precision: the forward pass under autocast, fp32 master weights and gradients.
  // bf16 works on CUDA and (slowly, for tests) on CPU; fp16 is CUDA-only and uses dynamic loss
  // scaling (start at loss_scale, halve on inf/NaN gradients and skip that step, double after
  // loss_scale_growth_interval good steps).
  std::string precision = "fp32";  // fp32 | bf16 | fp16
  double loss_scale = 65536;
  int64_t loss_scale_growth_interval = 2000;
};

// Fills derived defaults (nesting list, weights) and checks every field.
Status FinalizeConfig(TrainConfig* config);

std::string ConfigToJson(const TrainConfig& config, int indent = 2);
Result<TrainConfig> ConfigFromJson(const std::string& json_text);
Result<TrainConfig> LoadConfigFile(const std::string& path);
// "model.dim=64", "optim.lr=0.05", "model.nesting=[8,16]": value parsed as JSON, else a string.
Status ApplyOverride(TrainConfig* config, const std::string& assignment);

std::vector<int64_t> DefaultNesting(int64_t dim);

}  // namespace mrl
