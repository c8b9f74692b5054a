// Learning-rate schedules as pure functions of the global step, so a resumed run recomputes the
// same rate without saving any schedule object.
#pragma once

#include <cstdint>
#include <string>

namespace mrl {

struct LrSchedule {
  std::string kind = "cosine";  // cosine | onecycle | constant
  double peak_lr = 0.1;
  int64_t total_steps = 1;
  int64_t warmup_steps = 0;     // cosine: linear ramp from ~0 to peak
  double final_lr_ratio = 0.0;  // lr at total_steps relative to peak

  // Rate for the update made at `step` (0-based). Steps past the end keep the final rate.
  double At(int64_t step) const;
};

}  // namespace mrl
