// The training loop's decisions that need no LibTorch, as pure functions the tests drive
// directly: which ranks straggle in a log window, when a checkpoint is due, how time prints.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace mrl {

struct Straggler {
  int rank = 0;
  double compute_s = 0;  // forward + backward seconds of this rank in the window
  double ratio = 0;      // compute_s / the median rank's
};

// Ranks whose compute time exceeds the median rank's (the lower median for an even count, so
// that of two ranks the slower one can be reported) by more than `factor`. None when the median
// is 0 or there is one rank.
std::vector<Straggler> FindStragglers(const std::vector<double>& compute_s, double factor = 1.2);

// Whether a checkpoint is written once `step` steps are done: every `checkpoint_every` steps
// (0 = never periodically), at every epoch end, and where training stops.
bool CheckpointDue(int64_t step, int64_t steps_per_epoch, int64_t checkpoint_every, int64_t stop);

// "h:mm:ss" of a non-negative duration (negative prints as 0:00:00).
std::string FormatClock(double seconds);

}  // namespace mrl
