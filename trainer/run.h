// One whole run of mrl-trainer: load data -> (resume) train -> evaluate every dim -> export.
#pragma once

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "trainer/config.h"

namespace mrl {

// REQUIRES: FinalizeConfig(&config) succeeded. Writes into config.out_dir: checkpoints,
// config.json, train_log.jsonl, results.json, export/ (see README). Prints progress and the
// per-dim table on stdout. `provenance` (common/provenance.h: commit, command, machine, taken
// when the process started) is recorded in results.json.
Status RunTraining(const TrainConfig& config, const nlohmann::json& provenance = nlohmann::json());

}  // namespace mrl
