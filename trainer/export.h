// Export of a trained run: the serving side's input (embeddings as .npy with ids and labels) and
// the model as a state dict that Python's torch.load reads (see docs/export.md).
#pragma once

#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/status.h"
#include "trainer/model.h"

namespace mrl {

// Writes <dir>/<name>_embeddings.npy (float32 [N, d]), <name>_ids.npy (uint64 [N]) and
// <name>_labels.npy (int64 [N]), each atomically.
Status ExportEmbeddings(const std::string& dir, const std::string& name, const torch::Tensor& z,
                        const std::vector<uint64_t>& ids, const std::vector<int64_t>& labels);

// Writes <dir>/model_state.pt (a dict name -> tensor of every parameter and buffer, readable
// with torch.load) and <dir>/model.json (what is needed to rebuild the module in Python).
Status ExportModel(const std::string& dir, MrlModel& model, const std::string& model_json);

}  // namespace mrl
