// Mixed precision for the training step: autocast of the forward pass (bf16 or fp16) over fp32
// master weights, and dynamic loss scaling for fp16 (what torch.cuda.amp.GradScaler does).
// Written against both LibTorch 1.13 (Debian, CPU) and 2.x (CUDA), whose autocast APIs differ.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <string>
#include <vector>

namespace mrl {

enum class Precision { kFp32, kBf16, kFp16 };
// REQUIRES: name is fp32 | bf16 | fp16 (FinalizeConfig checks it).
Precision ParsePrecision(const std::string& name);

// Enables autocast for `device`'s type with the precision's dtype for its lifetime (no-op for
// fp32), restoring the previous state after. Use around the forward pass and the loss only.
class AutocastScope {
 public:
  AutocastScope(const torch::Device& device, Precision precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  bool cuda_ = false;
  bool previous_enabled_ = false;
  c10::ScalarType previous_dtype_ = c10::ScalarType::Float;
};

// Dynamic loss scaling. The loss is multiplied by scale() before backward; after the gradients
// are averaged over ranks (so every rank sees the same values and takes the same decision),
// UnscaleAndCheck divides them by the scale and reports inf/NaN. Update then halves the scale
// and the caller skips the optimizer step, or, after `growth_interval` good steps in a row,
// doubles it. Disabled (scale 1, never skips) for fp32 and bf16.
class LossScaler {
 public:
  LossScaler(bool enabled, double init_scale, int64_t growth_interval);

  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // Divides every defined .grad by scale(); true when any gradient holds inf or NaN.
  bool UnscaleAndCheck(const std::vector<torch::Tensor>& params) const;
  void Update(bool found_inf);

  // Checkpointed so a resumed run continues with the same scale.
  double state_scale() const { return scale_; }
  int64_t state_good_steps() const { return good_steps_; }
  void Restore(double scale, int64_t good_steps) {
    scale_ = scale;
    good_steps_ = good_steps;
  }
  int64_t skipped_steps() const { return skipped_; }

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_;
  int64_t good_steps_ = 0;
  int64_t skipped_ = 0;
};

}  // namespace mrl
