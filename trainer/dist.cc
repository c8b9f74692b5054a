#include "trainer/dist.h"

#include <algorithm>

namespace mrl {

namespace {

class MpiReducer : public BucketReducer {
 public:
  MpiReducer(Communicator& comm, double timeout_s) : comm_(comm), timeout_s_(timeout_s) {}
  void Start(torch::Tensor& flat) override {
    TORCH_CHECK(flat.device().is_cpu(), "the MPI reducer takes CPU tensors");
    requests_.push_back(comm_.StartAllReduceSum(flat.data_ptr<float>(), static_cast<size_t>(flat.numel())));
  }
  Status WaitAll(const std::string& what) override {
    std::vector<Communicator::Request> requests;
    requests.swap(requests_);
    return comm_.Wait(requests, timeout_s_, what);
  }
  void Poke() override { comm_.Poke(); }
  const char* name() const override { return "mpi"; }

 private:
  Communicator& comm_;
  double timeout_s_;
  std::vector<Communicator::Request> requests_;
};

}  // namespace

std::unique_ptr<BucketReducer> MakeMpiReducer(Communicator& comm, double timeout_s) {
  return std::make_unique<MpiReducer>(comm, timeout_s);
}

GradientSync::GradientSync(std::vector<torch::Tensor> params, std::unique_ptr<BucketReducer> reducer,
                           int world_size, size_t bucket_bytes)
    : params_(std::move(params)), reducer_(std::move(reducer)), world_size_(world_size) {
  bucket_of_.resize(params_.size());
  slot_of_.resize(params_.size());
  seen_.assign(params_.size(), false);
  Bucket current;
  int64_t numel = 0;
  auto close = [&]() {
    if (current.params.empty()) return;
    current.flat = torch::zeros({numel}, params_[current.params.front()].options());
    buckets_.push_back(std::move(current));
    current = Bucket();
    numel = 0;
  };
  for (size_t k = params_.size(); k-- > 0;) {
    const torch::Tensor& p = params_[k];
    TORCH_CHECK(p.scalar_type() == torch::kFloat32, "GradientSync: float32 parameters only");
    bucket_of_[k] = buckets_.size();
    slot_of_[k] = current.params.size();
    current.params.push_back(k);
    current.offsets.push_back(numel);
    numel += p.numel();
    if (static_cast<size_t>(numel) * sizeof(float) >= bucket_bytes) close();
  }
  close();
  for (size_t k = 0; k < params_.size(); ++k) {
    params_[k].register_hook([this, k](torch::Tensor grad) {
      if (armed_) OnGradient(k, grad);
      return grad;
    });
  }
}

GradientSync::~GradientSync() = default;

void GradientSync::Arm(int64_t step) {
  armed_ = true;
  step_ = step;
  next_launch_ = 0;
  std::fill(seen_.begin(), seen_.end(), false);
  for (Bucket& b : buckets_) {
    b.ready = 0;
    b.launched = false;
  }
}

void GradientSync::OnGradient(size_t k, const torch::Tensor& grad) {
  if (seen_[k]) return;  // a parameter used twice: its hook fires with the summed gradient once
  seen_[k] = true;
  Bucket& b = buckets_[bucket_of_[k]];
  const torch::Tensor& p = params_[k];
  torch::Tensor dst = b.flat.narrow(0, b.offsets[slot_of_[k]], p.numel()).view(p.sizes());
  torch::NoGradGuard no_grad;
  // Gradient from earlier micro-batches (accumulation) plus this backward's contribution.
  if (p.grad().defined()) {
    dst.copy_(p.grad());
    dst.add_(grad);
  } else {
    dst.copy_(grad);
  }
  ++b.ready;
  LaunchReady();
  reducer_->Poke();
}

void GradientSync::LaunchReady() {
  while (next_launch_ < buckets_.size() &&
         buckets_[next_launch_].ready == buckets_[next_launch_].params.size()) {
    Bucket& b = buckets_[next_launch_];
    reducer_->Start(b.flat);
    b.launched = true;
    ++next_launch_;
  }
}

Status GradientSync::Finish() {
  armed_ = false;
  // A parameter that got no gradient this step contributes zeros (and its accumulated .grad).
  for (size_t k = 0; k < params_.size(); ++k) {
    if (seen_[k]) continue;
    Bucket& b = buckets_[bucket_of_[k]];
    torch::Tensor dst = b.flat.narrow(0, b.offsets[slot_of_[k]], params_[k].numel());
    if (params_[k].grad().defined()) {
      dst.copy_(params_[k].grad().reshape({-1}));
    } else {
      dst.zero_();
    }
    seen_[k] = true;
    ++b.ready;
  }
  LaunchReady();
  MRL_RETURN_IF_ERROR(reducer_->WaitAll("gradient all-reduce at step " + std::to_string(step_ + 1)));
  torch::NoGradGuard no_grad;
  const float inv = 1.0f / static_cast<float>(world_size_);
  for (const Bucket& b : buckets_) {
    for (size_t s = 0; s < b.params.size(); ++s) {
      torch::Tensor& p = params_[b.params[s]];
      torch::Tensor src = b.flat.narrow(0, b.offsets[s], p.numel()).view(p.sizes());
      if (!p.grad().defined()) p.mutable_grad() = torch::zeros_like(p);
      p.mutable_grad().copy_(src).mul_(inv);
    }
  }
  return Status::Ok();
}

namespace {

std::vector<torch::Tensor> State(torch::nn::Module& model, bool params, bool buffers) {
  std::vector<torch::Tensor> out;
  if (params) {
    for (auto& p : model.parameters()) out.push_back(p);
  }
  if (buffers) {
    for (auto& b : model.buffers()) out.push_back(b);
  }
  return out;
}

}  // namespace

Status BroadcastModel(torch::nn::Module& model, Communicator& comm, double timeout_s) {
  if (!comm.distributed()) return Status::Ok();
  torch::NoGradGuard no_grad;
  for (torch::Tensor& t : State(model, true, true)) {
    // MPI moves host memory: CUDA tensors are staged through the CPU (once per run).
    torch::Tensor c = t.to(torch::kCPU).contiguous();
    MRL_RETURN_IF_ERROR(comm.Broadcast(c.data_ptr(), static_cast<size_t>(c.nbytes()), 0, timeout_s,
                                       "broadcast of the initial model from rank 0"));
    if (!c.is_same(t)) t.copy_(c);
  }
  return Status::Ok();
}

Status AverageBuffers(torch::nn::Module& model, Communicator& comm, double timeout_s,
                      const std::string& when) {
  if (!comm.distributed()) return Status::Ok();
  torch::NoGradGuard no_grad;
  for (torch::Tensor& b : State(model, false, true)) {
    if (!b.is_floating_point()) continue;  // num_batches_tracked is equal on every rank
    torch::Tensor d = b.to(torch::kCPU, torch::kFloat64).contiguous();
    MRL_RETURN_IF_ERROR(comm.AllReduceSum(d.data_ptr<double>(), static_cast<size_t>(d.numel()),
                                          timeout_s, "BatchNorm statistics all-reduce for " + when));
    b.copy_(d / comm.world().size);
  }
  return Status::Ok();
}

Result<double> ParameterDivergence(torch::nn::Module& model, Communicator& comm, double timeout_s) {
  torch::NoGradGuard no_grad;
  double worst = 0;
  if (!comm.distributed()) return worst;
  for (torch::Tensor& p : State(model, true, false)) {
    torch::Tensor mine = p.to(torch::kCPU).contiguous().clone();
    torch::Tensor root = mine.clone();
    MRL_RETURN_IF_ERROR(comm.Broadcast(root.data_ptr(), static_cast<size_t>(root.nbytes()), 0,
                                       timeout_s, "replica check"));
    worst = std::max(worst, (mine - root).abs().max().item<double>());
  }
  // Max over ranks: sum of one-hot contributions would lose it; use -max trick via doubles.
  std::vector<double> all(static_cast<size_t>(comm.world().size), 0.0);
  all[static_cast<size_t>(comm.world().rank)] = worst;
  MRL_RETURN_IF_ERROR(comm.AllReduceSum(all.data(), all.size(), timeout_s, "replica check"));
  return *std::max_element(all.begin(), all.end());
}

}  // namespace mrl
