#include "ops/embeddings_file.h"

#include <algorithm>

#include "common/npy.h"
#include "common/vector_codec.h"

namespace mrl::ops {

Result<FloatMatrix> ReadEmbeddings(const std::string& path) {
  auto a = ReadNpy(path);
  if (!a.ok()) return a.status();
  if (a->shape.size() != 2)
    return Status::InvalidArgument("'" + path + "': expected a 2-D array [N, d]");
  FloatMatrix m;
  m.rows = a->shape[0];
  m.dims = a->shape[1];
  m.data.resize(static_cast<size_t>(a->numel()));
  if (a->dtype == NpyDtype::kFloat32) {
    std::copy_n(a->as<float>(), m.data.size(), m.data.begin());
  } else if (a->dtype == NpyDtype::kFloat16) {
    DecodeHalf(a->data.data(), m.data.size(), m.data.data());
  } else {
    return Status::InvalidArgument("'" + path + "': embeddings must be float32 or float16");
  }
  return m;
}

Result<std::vector<uint64_t>> ReadIds(const std::string& path, int64_t expected) {
  auto a = ReadNpy(path);
  if (!a.ok()) return a.status();
  if (a->shape.size() != 1 || a->numel() != expected) {
    return Status::InvalidArgument("'" + path + "': need " + std::to_string(expected) +
                                   " ids in a 1-D array");
  }
  std::vector<uint64_t> ids(static_cast<size_t>(expected));
  for (size_t i = 0; i < ids.size(); ++i) {
    switch (a->dtype) {
      case NpyDtype::kUInt64:
        ids[i] = a->as<uint64_t>()[i];
        break;
      case NpyDtype::kInt64:
        if (a->as<int64_t>()[i] < 0)
          return Status::InvalidArgument("'" + path + "': ids must be non-negative");
        ids[i] = static_cast<uint64_t>(a->as<int64_t>()[i]);
        break;
      case NpyDtype::kInt32:
        if (a->as<int32_t>()[i] < 0)
          return Status::InvalidArgument("'" + path + "': ids must be non-negative");
        ids[i] = static_cast<uint64_t>(a->as<int32_t>()[i]);
        break;
      default:
        return Status::InvalidArgument("'" + path + "': ids must be int32, int64 or uint64");
    }
  }
  return ids;
}

}  // namespace mrl::ops
