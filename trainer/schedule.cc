#include "trainer/schedule.h"

#include <algorithm>
#include <cmath>

namespace mrl {

double LrSchedule::At(int64_t step) const {
  const double kPi = 3.14159265358979323846;
  step = std::clamp<int64_t>(step, 0, std::max<int64_t>(total_steps - 1, 0));
  const double final_lr = peak_lr * final_lr_ratio;
  if (kind == "constant") return peak_lr;
  int64_t warm = warmup_steps;
  double start_lr = 0.0;
  if (kind == "onecycle") {
    // Smith's one-cycle: 30% ramp from peak/25 to peak, then cosine to the final rate.
    warm = static_cast<int64_t>(0.3 * static_cast<double>(total_steps));
    start_lr = peak_lr / 25.0;
  }
  if (step < warm) {
    return start_lr + (peak_lr - start_lr) * static_cast<double>(step + 1) / static_cast<double>(warm);
  }
  const int64_t decay_steps = std::max<int64_t>(total_steps - warm, 1);
  const double t = static_cast<double>(step - warm) / static_cast<double>(decay_steps);
  return final_lr + (peak_lr - final_lr) * 0.5 * (1.0 + std::cos(kPi * t));
}

}  // namespace mrl
