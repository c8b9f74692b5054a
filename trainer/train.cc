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
  steps_per_epoch_ = std::max<int64_t>(data.train_used / global_batch_, 1);  // drop last
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
std::string Clock(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}
}  // namespace

Status Trainer::Train() {
  MRL_RETURN_IF_ERROR(EnsureReady());
  using Clk = std::chrono::steady_clock;
  const int64_t total = total_steps();
  const int64_t stop = config_.stop_after_steps > 0 ? std::min(total, config_.stop_after_steps) : total;
  const int64_t B = config_.batch_size;
  const int64_t G = global_batch_;
  const bool leader = comm_.world().rank == 0;
  model_->train();
  std::vector<int64_t> perm;
  int64_t perm_epoch = -1;
  auto window_start = Clk::now();
  const auto run_start = window_start;
  int64_t window_images = 0, run_images = 0;
  double window_loss = 0;
  int64_t window_steps = 0;
  // Per log window: train accuracy per loss dim (correct, samples) and this rank's compute time
  // (forward + backward, excluding waits for peers), to report stragglers.
  const size_t nd = model_->loss_dims().size();
  std::vector<double> window_correct(nd, 0.0);
  double window_samples = 0, window_compute = 0;
  while (step_ < stop) {
    const auto compute_start = Clk::now();
    const int64_t epoch = step_ / steps_per_epoch_;
    if (epoch != perm_epoch) {
      perm = EpochPermutation(data_.train_used, config_.seed, epoch);
      perm_epoch = epoch;
    }
    const double lr = schedule_.At(step_);
    SetLearningRate(lr);
    optimizer_->zero_grad();
    const int64_t accum = config_.dist.grad_accum;
    double local_loss = 0;
    for (int64_t micro = 0; micro < accum; ++micro) {
      Batch batch = MakeBatch(data_.train, perm.data() + SampleOffset(step_, micro), B,
                              config_.data.augment, config_.data.max_shift, config_.seed, epoch);
      batch.x = batch.x.to(device_, /*non_blocking=*/true);
      batch.y = batch.y.to(device_, /*non_blocking=*/true);
      std::vector<torch::Tensor> logits;
      torch::Tensor loss;
      {
        AutocastScope autocast(device_, precision_);
        torch::Tensor z = model_->Embed(model_->PrepareInput(batch.x));
        logits = model_->TrainLogits(z);
        for (torch::Tensor& l : logits) l = l.to(torch::kFloat32);  // the loss in fp32
        loss = MrlLoss(logits, batch.y, loss_weights_, config_.model.label_smoothing);
      }
      if (accum > 1) loss = loss / static_cast<double>(accum);
      local_loss += loss.item<double>();
      if (config_.log_every > 0) {
        torch::NoGradGuard no_grad;
        for (size_t d = 0; d < nd; ++d) {
          window_correct[d] += logits[d].argmax(1).eq(batch.y).sum().item<double>();
        }
        window_samples += static_cast<double>(B);
      }
      if (sync_ && micro + 1 == accum) sync_->Arm(step_);
      (scaler_.enabled() ? loss * scaler_.scale() : loss).backward();
    }
    window_compute += std::chrono::duration<double>(Clk::now() - compute_start).count();
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
    window_loss += loss_value;
    ++window_steps;
    window_images += G;
    run_images += G;
    const bool epoch_end = step_ % steps_per_epoch_ == 0;
    if (config_.log_every > 0 && (step_ % config_.log_every == 0 || step_ == stop)) {
      // One all-reduce (every rank): accuracy counts, samples, and each rank's compute time in
      // its own slot.
      const size_t world = static_cast<size_t>(comm_.world().size);
      std::vector<double> stats(nd + 1 + world, 0.0);
      std::copy(window_correct.begin(), window_correct.end(), stats.begin());
      stats[nd] = window_samples;
      stats[nd + 1 + static_cast<size_t>(comm_.world().rank)] = window_compute;
      MRL_RETURN_IF_ERROR(comm_.AllReduceSum(stats.data(), stats.size(), config_.dist.timeout_s,
                                             "metrics all-reduce at step " + std::to_string(step_)));
      if (leader) {
        const double dt = std::chrono::duration<double>(Clk::now() - window_start).count();
        const double run_dt = std::chrono::duration<double>(Clk::now() - run_start).count();
        const double eta = run_images > 0 ? run_dt / static_cast<double>(run_images) *
                                                static_cast<double>((stop - step_) * G)
                                          : 0;
        std::string acc = "train acc@";
        for (size_t d = 0; d < nd; ++d) {
          acc += (d ? "/" : "") + std::to_string(model_->loss_dims()[d]);
        }
        acc += " ";
        for (size_t d = 0; d < nd; ++d) {
          char v[16];
          std::snprintf(v, sizeof(v), "%s%.1f", d ? "/" : "", 100.0 * stats[d] / std::max(stats[nd], 1.0));
          acc += v;
        }
        std::printf("[train] epoch %lld/%lld step %lld/%lld loss %.4f lr %.4g %.0f img/s ETA %s %s\n",
                    static_cast<long long>(epoch + 1), static_cast<long long>(config_.epochs),
                    static_cast<long long>(step_), static_cast<long long>(total),
                    window_loss / static_cast<double>(window_steps), lr,
                    static_cast<double>(window_images) / std::max(dt, 1e-9), Clock(eta).c_str(),
                    acc.c_str());
        if (world > 1) {
          // Straggler: a rank whose compute time exceeds the median by more than 20%.
          std::vector<double> t(stats.begin() + static_cast<std::ptrdiff_t>(nd + 1), stats.end());
          std::vector<double> sorted = t;
          std::sort(sorted.begin(), sorted.end());
          const double median = sorted[sorted.size() / 2];
          for (size_t r = 0; r < world; ++r) {
            if (median > 0 && t[r] > 1.2 * median) {
              std::printf("[train] straggler: rank %zu computed for %.2f s in this window, %.2fx the median rank\n",
                          r, t[r], t[r] / median);
            }
          }
        }
        std::fflush(stdout);
      }
      window_start = Clk::now();
      window_images = 0;
      window_loss = 0;
      window_steps = 0;
      std::fill(window_correct.begin(), window_correct.end(), 0.0);
      window_samples = 0;
      window_compute = 0;
    }
    const bool periodic = config_.checkpoint_every > 0 && step_ % config_.checkpoint_every == 0;
    if (periodic || epoch_end || step_ == stop) MRL_RETURN_IF_ERROR(SaveCheckpoint());
  }
  return Status::Ok();
}

}  // namespace mrl
