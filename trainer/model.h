// MRL models: an encoder producing a d-dim embedding z, and nested classification heads.
//   MRL   : one linear head per nesting dim m, applied to z[:, :m].
//   MRL-E : one shared head W [C, d] + bias; dim m uses W[:, :m] (logits computed as prefix sums).
//   FF-k  : fixed-feature baseline; a single head sees only z[:, :k].
#pragma once

#include <torch/torch.h>

#include <vector>

#include "trainer/config.h"

namespace mrl {

// Builds the encoder named by config.encoder. `in_channels` is used by image encoders,
// `in_features` by the MLP. The result maps a batch to [B, config.dim].
torch::nn::Sequential MakeEncoder(const ModelConfig& config, int64_t in_channels,
                                  int64_t in_features);

// MRL-E nested logits, naive: for each m, z[:, :m] @ W[:, :m]^T + b  (sum over m of B*C*m MACs).
std::vector<torch::Tensor> NestedLogitsNaive(const torch::Tensor& z, const torch::Tensor& weight,
                                             const torch::Tensor& bias,
                                             const std::vector<int64_t>& nesting);
// MRL-E nested logits as prefix sums of per-block partial products: blocks [m_{i-1}, m_i) are
// multiplied once (B*C*d MACs in all, one d-wide matmul's worth) and accumulated with cumsum.
// Equal to NestedLogitsNaive up to float rounding.
std::vector<torch::Tensor> NestedLogitsPrefixSum(const torch::Tensor& z,
                                                 const torch::Tensor& weight,
                                                 const torch::Tensor& bias,
                                                 const std::vector<int64_t>& nesting);

// Loss = sum_m weights[m] * CE(logits[m], target) with optional label smoothing.
torch::Tensor MrlLoss(const std::vector<torch::Tensor>& logits, const torch::Tensor& target,
                      const std::vector<double>& weights, double label_smoothing);

class MrlModelImpl : public torch::nn::Module {
 public:
  MrlModelImpl(const ModelConfig& config, int64_t in_channels, int64_t in_features,
               int64_t num_classes);

  torch::Tensor Embed(const torch::Tensor& x) { return encoder_->forward(x); }
  // Logits for every dim the training loss uses: the nesting list (MRL, MRL-E) or {ff_dim} (FF).
  std::vector<torch::Tensor> TrainLogits(const torch::Tensor& z);
  // Logits of the classifier at dim m. REQUIRES: HasClassifierAt(m).
  torch::Tensor LogitsAt(const torch::Tensor& z, int64_t m);
  bool HasClassifierAt(int64_t m) const;
  // The dims TrainLogits returns logits for, in order.
  const std::vector<int64_t>& loss_dims() const { return loss_dims_; }
  const ModelConfig& config() const { return config_; }
  // Puts an image batch in the layout the encoder's kernels use (see ModelConfig::channels_last).
  torch::Tensor PrepareInput(const torch::Tensor& x) const;

  torch::nn::Sequential encoder() { return encoder_; }

 private:
  ModelConfig config_;
  std::vector<int64_t> loss_dims_;
  torch::nn::Sequential encoder_{nullptr};
  torch::nn::ModuleList heads_{nullptr};  // MRL: one per nesting dim; MRL-E / FF: one
};
TORCH_MODULE(MrlModel);

}  // namespace mrl
