#include "trainer/export.h"

#include <filesystem>

#include "common/atomic_file.h"
#include "common/npy.h"

namespace mrl {

Status ExportEmbeddings(const std::string& dir, const std::string& name, const torch::Tensor& z,
                        const std::vector<uint64_t>& ids, const std::vector<int64_t>& labels) {
  namespace fs = std::filesystem;
  const torch::Tensor c = z.to(torch::kFloat32).contiguous();
  if (c.size(0) != static_cast<int64_t>(ids.size()) || ids.size() != labels.size()) {
    return Status::InvalidArgument("export: embeddings, ids and labels differ in length");
  }
  const auto path = [&](const char* what) { return (fs::path(dir) / (name + what)).string(); };
  MRL_RETURN_IF_ERROR(WriteNpy(path("_embeddings.npy"), NpyDtype::kFloat32, {c.size(0), c.size(1)},
                               c.data_ptr<float>()));
  MRL_RETURN_IF_ERROR(WriteNpy(path("_ids.npy"), NpyDtype::kUInt64,
                               {static_cast<int64_t>(ids.size())}, ids.data()));
  return WriteNpy(path("_labels.npy"), NpyDtype::kInt64, {static_cast<int64_t>(labels.size())},
                  labels.data());
}

Status ExportModel(const std::string& dir, MrlModel& model, const std::string& model_json) {
  namespace fs = std::filesystem;
  c10::Dict<std::string, at::Tensor> state;
  for (const auto& p : model->named_parameters()) state.insert(p.key(), p.value().detach());
  for (const auto& b : model->named_buffers()) state.insert(b.key(), b.value().detach());
  const std::vector<char> bytes = torch::pickle_save(c10::IValue(state));
  MRL_RETURN_IF_ERROR(WriteFileAtomic((fs::path(dir) / "model_state.pt").string(),
                                      std::string_view(bytes.data(), bytes.size())));
  return WriteFileAtomic((fs::path(dir) / "model.json").string(), model_json);
}

}  // namespace mrl
