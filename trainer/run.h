// One whole run of mrl-trainer: load data -> (resume) train -> evaluate every dim -> export.
#pragma once

#include "common/status.h"
#include "trainer/config.h"

namespace mrl {

// REQUIRES: FinalizeConfig(&config) succeeded. Writes into config.out_dir: checkpoints,
// config.json, train_log.jsonl, results.json, export/ (see README). Prints progress and the
// per-dim table on stdout.
Status RunTraining(const TrainConfig& config);

}  // namespace mrl
