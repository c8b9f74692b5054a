#include "trainer/model.h"

#include <algorithm>
#include <stdexcept>

namespace mrl {
namespace nn = torch::nn;

namespace {

nn::Conv2d Conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2).bias(false));
}

// A ResNet residual block: basic (two 3x3) or bottleneck (1x1, 3x3, 1x1 x4).
class ResBlockImpl : public nn::Module {
 public:
  ResBlockImpl(int64_t in, int64_t width, int64_t stride, bool bottleneck) {
    const int64_t out = bottleneck ? width * 4 : width;
    if (bottleneck) {
      body_ = nn::Sequential(Conv(in, width, 1), nn::BatchNorm2d(width), nn::ReLU(),
                             Conv(width, width, 3, stride), nn::BatchNorm2d(width), nn::ReLU(),
                             Conv(width, out, 1), nn::BatchNorm2d(out));
    } else {
      body_ = nn::Sequential(Conv(in, width, 3, stride), nn::BatchNorm2d(width), nn::ReLU(),
                             Conv(width, width, 3), nn::BatchNorm2d(width));
    }
    register_module("body", body_);
    if (stride != 1 || in != out) {
      shortcut_ = nn::Sequential(Conv(in, out, 1, stride), nn::BatchNorm2d(out));
      register_module("shortcut", shortcut_);
    }
  }
  torch::Tensor forward(torch::Tensor x) {
    torch::Tensor skip = shortcut_ ? shortcut_->forward(x) : x;
    return torch::relu(body_->forward(x) + skip);
  }

 private:
  nn::Sequential body_{nullptr};
  nn::Sequential shortcut_{nullptr};
};
TORCH_MODULE(ResBlock);

nn::Sequential MakeResNet(const ModelConfig& c, int64_t in_channels) {
  const bool bottleneck = c.encoder == "resnet50";
  const std::vector<int64_t> depth =
      bottleneck ? std::vector<int64_t>{3, 4, 6, 3} : std::vector<int64_t>{2, 2, 2, 2};
  nn::Sequential net;
  // Small inputs (<= 64 px, e.g. 28x28 or CIFAR) keep resolution with a 3x3 stem; the ImageNet
  // stem (7x7 stride 2 + max-pool) would leave too few pixels.
  net->push_back(Conv(in_channels, 64, 3));
  net->push_back(nn::BatchNorm2d(64));
  net->push_back(nn::ReLU());
  int64_t in = 64;
  for (size_t stage = 0; stage < depth.size(); ++stage) {
    const int64_t width = 64 << stage;
    for (int64_t b = 0; b < depth[stage]; ++b) {
      net->push_back(ResBlock(in, width, (b == 0 && stage > 0) ? 2 : 1, bottleneck));
      in = bottleneck ? width * 4 : width;
    }
  }
  net->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions(1)));
  net->push_back(nn::Flatten());
  if (in != c.dim) net->push_back(nn::Linear(in, c.dim));  // 512 (ResNet-18) -> d
  return net;
}

}  // namespace

nn::Sequential MakeEncoder(const ModelConfig& c, int64_t in_channels, int64_t in_features) {
  if (c.encoder == "conv4") {
    // Four 3x3 conv + BN + ReLU layers, max-pool after the first two, global average pool and a
    // linear map to d. Layer order matches trainer/python/mrl_models.py so the exported state
    // dict loads into the PyTorch twin unchanged.
    nn::Sequential net;
    int64_t in = in_channels;
    for (size_t i = 0; i < c.conv_channels.size(); ++i) {
      net->push_back(nn::Conv2d(
          nn::Conv2dOptions(in, c.conv_channels[i], 3).padding(1).bias(!c.batch_norm)));
      if (c.batch_norm) net->push_back(nn::BatchNorm2d(c.conv_channels[i]));
      net->push_back(nn::ReLU());
      if (i < 2) net->push_back(nn::MaxPool2d(nn::MaxPool2dOptions(2)));
      in = c.conv_channels[i];
    }
    const int64_t cols = std::max<int64_t>(c.pool_cols, 1);
    net->push_back(nn::AdaptiveAvgPool2d(nn::AdaptiveAvgPool2dOptions({1, cols})));
    net->push_back(nn::Flatten());
    net->push_back(nn::Linear(in * cols, c.dim));
    return net;
  }
  if (c.encoder == "resnet18" || c.encoder == "resnet50") return MakeResNet(c, in_channels);
  if (c.encoder == "mlp") {
    nn::Sequential net;
    int64_t in = in_features;
    for (int64_t h : c.mlp_hidden) {
      net->push_back(nn::Linear(in, h));
      if (c.batch_norm) net->push_back(nn::BatchNorm1d(h));
      net->push_back(nn::ReLU());
      in = h;
    }
    net->push_back(nn::Linear(in, c.dim));
    return net;
  }
  throw std::invalid_argument("unknown encoder " + c.encoder);
}

std::vector<torch::Tensor> NestedLogitsNaive(const torch::Tensor& z, const torch::Tensor& weight,
                                             const torch::Tensor& bias,
                                             const std::vector<int64_t>& nesting) {
  std::vector<torch::Tensor> out;
  out.reserve(nesting.size());
  for (int64_t m : nesting) {
    out.push_back(torch::addmm(bias, z.narrow(1, 0, m), weight.narrow(1, 0, m).t()));
  }
  return out;
}

std::vector<torch::Tensor> NestedLogitsPrefixSum(const torch::Tensor& z,
                                                 const torch::Tensor& weight,
                                                 const torch::Tensor& bias,
                                                 const std::vector<int64_t>& nesting) {
  std::vector<torch::Tensor> partial;
  partial.reserve(nesting.size());
  int64_t start = 0;
  for (int64_t m : nesting) {
    partial.push_back(
        torch::mm(z.narrow(1, start, m - start), weight.narrow(1, start, m - start).t()));
    start = m;
  }
  torch::Tensor cum = torch::stack(partial).cumsum(0) + bias;  // [n, B, C]
  return cum.unbind(0);
}

torch::Tensor MrlLoss(const std::vector<torch::Tensor>& logits, const torch::Tensor& target,
                      const std::vector<double>& weights, double label_smoothing) {
  TORCH_CHECK(logits.size() == weights.size(), "one weight per nesting dim");
  const auto options = nn::functional::CrossEntropyFuncOptions().label_smoothing(label_smoothing);
  torch::Tensor loss;
  for (size_t i = 0; i < logits.size(); ++i) {
    torch::Tensor term = weights[i] * nn::functional::cross_entropy(logits[i], target, options);
    loss = loss.defined() ? loss + term : term;
  }
  return loss;
}

MrlModelImpl::MrlModelImpl(const ModelConfig& config, int64_t in_channels, int64_t in_features,
                           int64_t num_classes)
    : config_(config) {
  encoder_ = register_module("encoder", MakeEncoder(config, in_channels, in_features));
  heads_ = register_module("heads", nn::ModuleList());
  if (config.head == "mrl") {
    for (int64_t m : config.nesting) heads_->push_back(nn::Linear(m, num_classes));
    loss_dims_ = config.nesting;
  } else if (config.head == "mrl-e") {
    heads_->push_back(nn::Linear(config.dim, num_classes));
    loss_dims_ = config.nesting;
  } else {
    heads_->push_back(nn::Linear(config.ff_dim, num_classes));
    loss_dims_ = {config.ff_dim};
  }
  if (config.channels_last) {
    torch::NoGradGuard no_grad;
    for (auto& p : encoder_->parameters()) {
      if (p.dim() == 4) p.set_data(p.data().contiguous(at::MemoryFormat::ChannelsLast));
    }
  }
}

torch::Tensor MrlModelImpl::PrepareInput(const torch::Tensor& x) const {
  if (config_.channels_last && x.dim() == 4) return x.contiguous(at::MemoryFormat::ChannelsLast);
  return x;
}

std::vector<torch::Tensor> MrlModelImpl::TrainLogits(const torch::Tensor& z) {
  if (config_.head == "mrl-e") {
    auto* head = heads_[0]->as<nn::Linear>();
    return NestedLogitsPrefixSum(z, head->weight, head->bias, config_.nesting);
  }
  std::vector<torch::Tensor> out;
  for (size_t i = 0; i < loss_dims_.size(); ++i) {
    out.push_back(heads_[i]->as<nn::Linear>()->forward(z.narrow(1, 0, loss_dims_[i])));
  }
  return out;
}

bool MrlModelImpl::HasClassifierAt(int64_t m) const {
  if (config_.head == "mrl-e") return m >= 1 && m <= config_.dim;
  for (int64_t d : loss_dims_) {
    if (d == m) return true;
  }
  return false;
}

torch::Tensor MrlModelImpl::LogitsAt(const torch::Tensor& z, int64_t m) {
  if (config_.head == "mrl-e") {
    auto* head = heads_[0]->as<nn::Linear>();
    return torch::addmm(head->bias, z.narrow(1, 0, m), head->weight.narrow(1, 0, m).t());
  }
  for (size_t i = 0; i < loss_dims_.size(); ++i) {
    if (loss_dims_[i] == m) return heads_[i]->as<nn::Linear>()->forward(z.narrow(1, 0, m));
  }
  TORCH_CHECK(false, "no classifier at dim ", m);
}

}  // namespace mrl
