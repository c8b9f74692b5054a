#include "trainer/train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <mutex>
#include <regex>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "trainer/progress.h"
#include "trainer/shard_plan.h"

namespace mrl {
namespace fs = std::filesystem;

std::string ResumeKey(const TrainConfig& c, int world_size) {
  auto j = nlohmann::json::parse(ConfigToJson(c, -1));
  nlohmann::json key;
  for (const char* k : {"data", "model", "optim", "epochs", "batch_size", "seed"}) key[k] = j[k];
  key["grad_accum"] = c.dist.grad_accum;
  key["ranks"] = world_size;  // the data order depends on it
  return key.dump();
}

Trainer::Trainer(const TrainConfig& config, const DataSplits& data)
    : config_(config), data_(data), comm_(Communicator::Get()) {
  torch::manual_seed(config.seed);
  const Split& tr = data.train;
  model_ = MrlModel(config.model, tr.channels, tr.features, data.num_classes);
  // Device: one GPU per process (local rank mod the node's GPUs), else the CPU.
  const bool have_cuda = torch::cuda::is_available();
  if (config.device == "cuda" && !have_cuda) {
    device_error_ = Status::FailedPrecondition(
        "device=cuda but LibTorch sees no CUDA device (CPU-only LibTorch or no GPU); use device=cpu");
  } else if (config.device != "cpu" && have_cuda) {
    const int gpus = static_cast<int>(torch::cuda::device_count());
    device_ = torch::Device(torch::kCUDA, static_cast<c10::DeviceIndex>(comm_.world().local_rank % gpus));
    model_->to(device_);
  }
  precision_ = ParsePrecision(config.precision);
  if (precision_ == Precision::kFp16 && !device_.is_cuda() && device_error_.ok()) {
    device_error_ = Status::InvalidArgument(
        "precision=fp16 needs a CUDA device (CPU autocast supports bf16 only); use bf16 or fp32");
  }
  scaler_ = LossScaler(precision_ == Precision::kFp16, config.loss_scale,
                       config.loss_scale_growth_interval);

  // Weight decay on weights only; biases and normalisation parameters are not decayed.
  std::vector<torch::Tensor> decay, no_decay;
  for (const auto& p : model_->named_parameters()) {
    (p.value().dim() > 1 ? decay : no_decay).push_back(p.value());
  }
  const OptimConfig& o = config.optim;
  if (o.optimizer == "sgd") {
    auto opts = torch::optim::SGDOptions(o.lr).momentum(o.momentum).nesterov(o.nesterov);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::SGDOptions>(
                                   torch::optim::SGDOptions(opts).weight_decay(o.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::SGDOptions>(
                                      torch::optim::SGDOptions(opts).weight_decay(0)));
    optimizer_ = std::make_unique<torch::optim::SGD>(groups, opts);
  } else {
    auto opts = torch::optim::AdamWOptions(o.lr).betas({o.beta1, o.beta2}).eps(o.eps);
    std::vector<torch::optim::OptimizerParamGroup> groups;
    groups.emplace_back(decay, std::make_unique<torch::optim::AdamWOptions>(
                                   torch::optim::AdamWOptions(opts).weight_decay(o.weight_decay)));
    groups.emplace_back(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                      torch::optim::AdamWOptions(opts).weight_decay(0)));
    optimizer_ = std::make_unique<torch::optim::AdamW>(groups, opts);
  }
  global_batch_ = config.batch_size * comm_.world().size * config.dist.grad_accum;
  if (data.shards) {
    // Every rank derives the same count from the shard plans of all epochs (no communication):
    // the smallest per-rank share of any epoch, in whole steps; each rank drops the rest.
    steps_per_epoch_ = std::max<int64_t>(
        ShardStepsPerEpoch(data.shards->train_counts, config.seed, config.epochs,
                           comm_.world().size, config.batch_size * config.dist.grad_accum),
        1);
  } else {
    steps_per_epoch_ = std::max<int64_t>(data.train_used / global_batch_, 1);  // drop last
  }
  schedule_.kind = o.schedule;
  schedule_.peak_lr = o.lr;
  schedule_.total_steps = steps_per_epoch_ * config.epochs;
  schedule_.warmup_steps =
      static_cast<int64_t>(std::llround(o.warmup_epochs * static_cast<double>(steps_per_epoch_)));
  schedule_.final_lr_ratio = o.final_lr_ratio;
  // FF-k trains one head; MRL and MRL-E weight each nesting dim by c_m.
  loss_weights_ = config.model.head == "ff" ? std::vector<double>{1.0} : config.model.nesting_weights;
}

void Trainer::SetLearningRate(double lr) {
  for (auto& group : optimizer_->param_groups()) group.options().set_lr(lr);
}

std::string Trainer::LatestCheckpoint(const std::string& out_dir) {
  static const std::regex kName(R"(ckpt-(\d{9})\.pt)");
  std::string best;
  int64_t best_step = -1;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(out_dir, ec)) {
    std::smatch m;
    const std::string name = e.path().filename().string();
    if (std::regex_match(name, m, kName) && std::stoll(m[1]) > best_step) {
      best_step = std::stoll(m[1]);
      best = e.path().string();
    }
  }
  return best;
}

int64_t Trainer::SampleOffset(int64_t step, int64_t micro) const {
  DataLayout layout;
  layout.batch = config_.batch_size;
  layout.ranks = comm_.world().size;
  layout.grad_accum = config_.dist.grad_accum;
  layout.steps_per_epoch = steps_per_epoch_;
  return mrl::SampleOffset(layout, step, micro, comm_.world().rank);
}

Status Trainer::SaveCheckpoint() {
  // Every rank: make BatchNorm running statistics identical, then rank 0 writes while the others
  // wait, so a restart after any crash finds a complete checkpoint.
  MRL_RETURN_IF_ERROR(AverageBuffers(*model_, comm_, config_.dist.timeout_s,
                                     "checkpoint at step " + std::to_string(step_)));
  if (comm_.world().rank != 0) {
    return comm_.Barrier(config_.dist.timeout_s,
                         "checkpoint barrier at step " + std::to_string(step_));
  }
  torch::serialize::OutputArchive archive;
  torch::serialize::OutputArchive model_archive, optim_archive;
  model_->save(model_archive);
  optimizer_->save(optim_archive);
  archive.write("model", model_archive);
  archive.write("optimizer", optim_archive);
  archive.write("step", torch::tensor(step_, torch::kInt64));
  archive.write("resume_key", c10::IValue(ResumeKey(config_, comm_.world().size)));
  archive.write("config", c10::IValue(ConfigToJson(config_)));
  archive.write("torch_rng", torch::globalContext().defaultGenerator(torch::kCPU).get_state());
  archive.write("loss_scale", torch::tensor(scaler_.state_scale(), torch::kFloat64));
  archive.write("loss_scale_good_steps", torch::tensor(scaler_.state_good_steps(), torch::kInt64));
  std::ostringstream bytes;
  archive.save_to(bytes);
  char name[32];
  std::snprintf(name, sizeof(name), "ckpt-%09lld.pt", static_cast<long long>(step_));
  const std::string path = (fs::path(config_.out_dir) / name).string();
  MRL_RETURN_IF_ERROR(WriteFileAtomic(path, bytes.str()));
  // Keep the newest keep_checkpoints files.
  static const std::regex kName(R"(ckpt-(\d{9})\.pt)");
  std::vector<std::string> all;
  for (const auto& e : fs::directory_iterator(config_.out_dir)) {
    if (std::regex_match(e.path().filename().string(), kName)) all.push_back(e.path().string());
  }
  std::sort(all.begin(), all.end());
  for (size_t i = 0; i + static_cast<size_t>(config_.keep_checkpoints) < all.size(); ++i) {
    fs::remove(all[i]);
  }
  return comm_.Barrier(config_.dist.timeout_s, "checkpoint barrier at step " + std::to_string(step_));
}

Status Trainer::LoadCheckpoint(const std::string& path) {
  try {
    torch::serialize::InputArchive archive;
    archive.load_from(path);
    c10::IValue key;
    archive.read("resume_key", key);
    if (key.toStringRef() != ResumeKey(config_, comm_.world().size)) {
      return Status::FailedPrecondition(
          "checkpoint '" + path +
          "' was written by a run with a different data/model/optim/epochs/batch/seed config or "
          "number of ranks; use another out_dir or --set resume=false to start over");
    }
    torch::serialize::InputArchive model_archive, optim_archive;
    archive.read("model", model_archive);
    archive.read("optimizer", optim_archive);
    model_->load(model_archive);
    optimizer_->load(optim_archive);
    torch::Tensor step, rng;
    archive.read("step", step);
    archive.read("torch_rng", rng);
    step_ = step.item<int64_t>();
    torch::Tensor scale, good;
    if (archive.try_read("loss_scale", scale) && archive.try_read("loss_scale_good_steps", good)) {
      scaler_.Restore(scale.item<double>(), good.item<int64_t>());
    }
    auto gen = torch::globalContext().defaultGenerator(torch::kCPU);
    std::lock_guard<std::mutex> lock(gen.mutex());
    gen.set_state(rng);
  } catch (const c10::Error& e) {
    return Status::Corruption("cannot read checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  return Status::Ok();
}

Status Trainer::LoadModelWeights(const std::string& path, MrlModel& model) {
  try {
    torch::serialize::InputArchive archive, model_archive;
    archive.load_from(path);
    archive.read("model", model_archive);
    model->load(model_archive);
  } catch (const c10::Error& e) {
    return Status::Corruption("cannot read checkpoint '" + path + "': " + e.what_without_backtrace());
  }
  return Status::Ok();
}

Status Trainer::EnsureReady() {
  if (ready_) return Status::Ok();
  MRL_RETURN_IF_ERROR(device_error_);
  if (comm_.distributed()) {
    const std::string& backend = config_.dist.backend;
    std::unique_ptr<BucketReducer> reducer;
    if (backend == "nccl" || (backend == "auto" && device_.is_cuda())) {
#ifdef MRL_WITH_CUDA
      if (!device_.is_cuda()) {
        return Status::InvalidArgument("dist.backend=nccl needs the model on CUDA (device=cuda)");
      }
      auto nccl = MakeNcclReducer(comm_, device_.index(), config_.dist.timeout_s);
      if (!nccl.ok()) return nccl.status();
      reducer = std::move(nccl).value();
#else
      return Status::InvalidArgument(
          "dist.backend=nccl: this mrl-trainer was built without CUDA LibTorch + NCCL");
#endif
    } else {
      if (device_.is_cuda()) {
        return Status::InvalidArgument(
            "dist.backend=mpi moves host memory; with the model on CUDA use backend nccl or auto");
      }
      reducer = MakeMpiReducer(comm_, config_.dist.timeout_s);
    }
    sync_ = std::make_unique<GradientSync>(model_->parameters(), std::move(reducer),
                                           comm_.world().size,
                                           static_cast<size_t>(config_.dist.bucket_mb * (1 << 20)));
  }
  if (comm_.world().rank == 0) {
    std::printf("[train] device %s, precision %s, gradient all-reduce %s\n", device_.str().c_str(),
                config_.precision.c_str(), sync_ ? sync_->backend() : "none (1 rank)");
    std::fflush(stdout);
  }
  ready_ = true;
  return Status::Ok();
}

Status Trainer::MaybeResume() {
  MRL_RETURN_IF_ERROR(EnsureReady());
  MRL_RETURN_IF_ERROR(ResumeFromDisk());
  return BroadcastModel(*model_, comm_, config_.dist.timeout_s);
}

Status Trainer::ResumeFromDisk() {
  if (!config_.resume) {
    if (comm_.world().rank != 0) return Status::Ok();
    // A fresh start must not later resume from an older run's files.
    std::error_code ec;
    for (std::string p = LatestCheckpoint(config_.out_dir); !p.empty();
         p = LatestCheckpoint(config_.out_dir)) {
      fs::remove(p, ec);
      if (ec) return Status::IoError("cannot remove old checkpoint '" + p + "'");
    }
    return Status::Ok();
  }
  const std::string latest = LatestCheckpoint(config_.out_dir);
  if (latest.empty()) return Status::Ok();
  MRL_RETURN_IF_ERROR(LoadCheckpoint(latest));
  if (comm_.world().rank == 0) std::printf("[train] resumed from %s at step %lld (epoch %lld, batch %lld)\n", latest.c_str(),
              static_cast<long long>(step_), static_cast<long long>(step_ / steps_per_epoch_),
              static_cast<long long>(step_ % steps_per_epoch_));
  return Status::Ok();
}

namespace {

using Clk = std::chrono::steady_clock;

// This rank's batches: the epoch's permutation of the in-RAM split, or (data.kind == "shards")
// the epoch's shard stream. A (re)started epoch's stream skips the samples of the steps already
// done, so a resumed run continues at the exact next sample.
class BatchSource {
 public:
  BatchSource(const TrainConfig& config, const DataSplits& data, int rank, int world,
              int64_t steps_per_epoch)
      : config_(config), data_(data), rank_(rank), world_(world), spe_(steps_per_epoch) {}

  // The batch of global step `step` that starts at `offset` in the epoch's permutation (the
  // stream ignores `offset`: it is this rank's already).
  Result<Batch> Get(int64_t step, int64_t offset) {
    const int64_t epoch = step / spe_;
    const int64_t B = config_.batch_size;
    if (epoch != epoch_) {
      if (data_.shards) {
        stream_.reset();
        const int64_t per_step = B * config_.dist.grad_accum;
        const int64_t done = step % spe_;
        stream_ = OpenTrainStream(config_, data_, epoch, rank_, world_, done * per_step,
                                  (spe_ - done) * per_step);
      } else {
        perm_ = EpochPermutation(data_.train_used, config_.seed, epoch);
      }
      epoch_ = epoch;
    }
    if (!stream_) {
      return MakeBatch(data_.train, perm_.data() + offset, B, config_.data.augment,
                       config_.data.max_shift, config_.seed, epoch);
    }
    SampleBatch samples;
    auto more = stream_->Next(&samples);
    if (!more.ok()) return more.status();
    if (!more.value() || samples.count != B) {
      return Status::Internal("rank " + std::to_string(rank_) +
                              ": shard stream ended early at step " + std::to_string(step));
    }
    return BatchFromSamples(samples);
  }

 private:
  const TrainConfig& config_;
  const DataSplits& data_;
  const int rank_, world_;
  const int64_t spe_;
  int64_t epoch_ = -1;
  std::vector<int64_t> perm_;
  std::unique_ptr<ShardStream> stream_;
};

}  // namespace

// One log window: loss, images, train accuracy per loss dim, and this rank's compute time
// (forward + backward, excluding waits for peers) to report stragglers. Report() all-reduces
// the counts (every rank must call it at the same steps), prints on the leader and resets.
class ProgressWindow {
 public:
  ProgressWindow(Communicator& comm, std::vector<int64_t> dims)
      : comm_(comm), dims_(std::move(dims)), correct_(dims_.size(), 0.0) {}

  void AddMicroBatch(const std::vector<torch::Tensor>& logits, const torch::Tensor& y) {
    torch::NoGradGuard no_grad;
    for (size_t d = 0; d < dims_.size(); ++d) {
      correct_[d] += logits[d].argmax(1).eq(y).sum().item<double>();
    }
    samples_ += static_cast<double>(y.size(0));
  }
  void AddStep(double loss, int64_t images, double compute_s) {
    loss_ += loss;
    ++steps_;
    images_ += images;
    run_images_ += images;
    compute_ += compute_s;
  }

  struct Where {
    int64_t epoch, epochs, step, total, stop;
    double lr;
    int64_t global_batch;
    double timeout_s;
  };
  Status Report(const Where& w) {
    const size_t nd = dims_.size();
    const size_t world = static_cast<size_t>(comm_.world().size);
    // One all-reduce: accuracy counts, samples, and each rank's compute time in its own slot.
    std::vector<double> stats(nd + 1 + world, 0.0);
    std::copy(correct_.begin(), correct_.end(), stats.begin());
    stats[nd] = samples_;
    stats[nd + 1 + static_cast<size_t>(comm_.world().rank)] = compute_;
    MRL_RETURN_IF_ERROR(comm_.AllReduceSum(stats.data(), stats.size(), w.timeout_s,
                                           "metrics all-reduce at step " + std::to_string(w.step)));
    if (comm_.world().rank == 0) Print(w, stats);
    start_ = Clk::now();
    images_ = 0;
    loss_ = 0;
    steps_ = 0;
    std::fill(correct_.begin(), correct_.end(), 0.0);
    samples_ = 0;
    compute_ = 0;
    return Status::Ok();
  }

 private:
  void Print(const Where& w, const std::vector<double>& stats) const {
    const size_t nd = dims_.size();
    const double dt = std::chrono::duration<double>(Clk::now() - start_).count();
    const double run_dt = std::chrono::duration<double>(Clk::now() - run_start_).count();
    const double eta = run_images_ > 0 ? run_dt / static_cast<double>(run_images_) *
                                             static_cast<double>((w.stop - w.step) * w.global_batch)
                                       : 0;
    std::string acc = "train acc@";
    for (size_t d = 0; d < nd; ++d) acc += (d ? "/" : "") + std::to_string(dims_[d]);
    acc += " ";
    for (size_t d = 0; d < nd; ++d) {
      char v[16];
      std::snprintf(v, sizeof(v), "%s%.1f", d ? "/" : "", 100.0 * stats[d] / std::max(stats[nd], 1.0));
      acc += v;
    }
    std::printf("[train] epoch %lld/%lld step %lld/%lld loss %.4f lr %.4g %.0f img/s ETA %s %s\n",
                static_cast<long long>(w.epoch + 1), static_cast<long long>(w.epochs),
                static_cast<long long>(w.step), static_cast<long long>(w.total),
                loss_ / static_cast<double>(std::max<int64_t>(steps_, 1)), w.lr,
                static_cast<double>(images_) / std::max(dt, 1e-9), FormatClock(eta).c_str(),
                acc.c_str());
    const std::vector<double> compute(stats.begin() + static_cast<std::ptrdiff_t>(nd + 1), stats.end());
    for (const Straggler& s : FindStragglers(compute)) {
      std::printf("[train] straggler: rank %d computed for %.2f s in this window, %.2fx the median rank\n",
                  s.rank, s.compute_s, s.ratio);
    }
    std::fflush(stdout);
  }

  Communicator& comm_;
  const std::vector<int64_t> dims_;
  const Clk::time_point run_start_ = Clk::now();
  Clk::time_point start_ = run_start_;
  std::vector<double> correct_;
  double samples_ = 0, compute_ = 0, loss_ = 0;
  int64_t steps_ = 0, images_ = 0, run_images_ = 0;
};

Result<double> Trainer::ForwardBackward(const Batch& host_batch, bool last_micro,
                                        ProgressWindow* window) {
  const int64_t accum = config_.dist.grad_accum;
  torch::Tensor x = host_batch.x.to(device_, /*non_blocking=*/true);
  torch::Tensor y = host_batch.y.to(device_, /*non_blocking=*/true);
  std::vector<torch::Tensor> logits;
  torch::Tensor loss;
  {
    AutocastScope autocast(device_, precision_);
    torch::Tensor z = model_->Embed(model_->PrepareInput(x));
    logits = model_->TrainLogits(z);
    for (torch::Tensor& l : logits) l = l.to(torch::kFloat32);  // the loss in fp32
    loss = MrlLoss(logits, y, loss_weights_, config_.model.label_smoothing);
  }
  if (accum > 1) loss = loss / static_cast<double>(accum);
  const double value = loss.item<double>();
  if (window) window->AddMicroBatch(logits, y);
  if (sync_ && last_micro) sync_->Arm(step_);
  (scaler_.enabled() ? loss * scaler_.scale() : loss).backward();
  return value;
}

Status Trainer::Train() {
  MRL_RETURN_IF_ERROR(EnsureReady());
  const int64_t total = total_steps();
  const int64_t stop = config_.stop_after_steps > 0 ? std::min(total, config_.stop_after_steps) : total;
  const bool leader = comm_.world().rank == 0;
  model_->train();
  BatchSource source(config_, data_, comm_.world().rank, comm_.world().size, steps_per_epoch_);
  ProgressWindow window(comm_, model_->loss_dims());
  ProgressWindow* tracked = config_.log_every > 0 ? &window : nullptr;
  while (step_ < stop) {
    const auto compute_start = Clk::now();
    const int64_t epoch = step_ / steps_per_epoch_;
    const double lr = schedule_.At(step_);
    SetLearningRate(lr);
    optimizer_->zero_grad();
    const int64_t accum = config_.dist.grad_accum;
    double local_loss = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      auto batch = source.Get(step_, SampleOffset(step_, micro));
      if (!batch.ok()) return batch.status();
      auto loss = ForwardBackward(batch.value(), micro + 1 == accum, tracked);
      if (!loss.ok()) return loss.status();
      local_loss += loss.value();
    }
    const double compute_s = std::chrono::duration<double>(Clk::now() - compute_start).count();
    if (sync_) MRL_RETURN_IF_ERROR(sync_->Finish());
    // The mean loss over ranks: every rank takes the same decision on a non-finite loss.
    double loss_value = local_loss;
    MRL_RETURN_IF_ERROR(comm_.AllReduceSum(&loss_value, 1, config_.dist.timeout_s,
                                           "loss all-reduce at step " + std::to_string(step_ + 1)));
    loss_value /= comm_.world().size;
    if (!std::isfinite(loss_value)) {
      return Status::FailedPrecondition(
          "non-finite loss (" + std::to_string(loss_value) + ") at step " +
          std::to_string(step_ + 1) + " with lr " + std::to_string(lr) +
          ": training diverged; lower optim.lr (no checkpoint was written for this state)");
    }
    // fp16: gradients were scaled; every rank holds the same averaged values, so every rank
    // takes the same skip decision.
    const bool found_inf = scaler_.UnscaleAndCheck(model_->parameters());
    scaler_.Update(found_inf);
    if (found_inf) {
      if (leader) {
        std::printf("[train] step %lld: inf/NaN gradients under fp16, step skipped, loss scale now %g\n",
                    static_cast<long long>(step_ + 1), scaler_.scale());
      }
    } else {
      optimizer_->step();
    }
    ++step_;
    history_.push_back({step_, epoch, loss_value, lr});
    window.AddStep(loss_value, global_batch_, compute_s);
    if (config_.log_every > 0 && (step_ % config_.log_every == 0 || step_ == stop)) {
      MRL_RETURN_IF_ERROR(window.Report({epoch, config_.epochs, step_, total, stop, lr,
                                         global_batch_, config_.dist.timeout_s}));
    }
    if (CheckpointDue(step_, steps_per_epoch_, config_.checkpoint_every, stop)) {
      MRL_RETURN_IF_ERROR(SaveCheckpoint());
    }
  }
  return Status::Ok();
}

}  // namespace mrl
