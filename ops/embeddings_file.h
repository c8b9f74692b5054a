// Embedding matrices from .npy files for mrlctl (ingest, eval): float32 or float16 [N, d], read
// as float32 rows.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::ops {

struct FloatMatrix {
  int64_t rows = 0, dims = 0;
  std::vector<float> data;  // rows * dims, row-major
};

// InvalidArgument (naming the file) for another dtype or a shape that is not [N, d].
Result<FloatMatrix> ReadEmbeddings(const std::string& path);
// int64 / int32 / uint64 ids of a 1-D .npy, exactly `expected` of them.
Result<std::vector<uint64_t>> ReadIds(const std::string& path, int64_t expected);

}  // namespace mrl::ops
