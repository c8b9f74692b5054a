#include "trainer/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mrl {

std::vector<Straggler> FindStragglers(const std::vector<double>& compute_s, double factor) {
  std::vector<Straggler> out;
  if (compute_s.size() < 2) return out;
  std::vector<double> sorted = compute_s;
  std::sort(sorted.begin(), sorted.end());
  // The lower median: with two ranks the upper one is the slower rank itself, which could then
  // never be reported (the loop printed nothing at world 2 before this was a function).
  const double median = sorted[(sorted.size() - 1) / 2];
  if (!(median > 0)) return out;
  for (size_t r = 0; r < compute_s.size(); ++r) {
    if (compute_s[r] > factor * median) {
      out.push_back({static_cast<int>(r), compute_s[r], compute_s[r] / median});
    }
  }
  return out;
}

bool CheckpointDue(int64_t step, int64_t steps_per_epoch, int64_t checkpoint_every, int64_t stop) {
  const bool periodic = checkpoint_every > 0 && step % checkpoint_every == 0;
  const bool epoch_end = steps_per_epoch > 0 && step % steps_per_epoch == 0;
  return periodic || epoch_end || step == stop;
}

std::string FormatClock(double seconds) {
  const long s = std::lround(std::max(0.0, seconds));
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
  return buf;
}

}  // namespace mrl
