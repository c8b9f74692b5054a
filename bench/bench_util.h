// Helpers shared by the benchmark binaries (shard_bench, engine_qps).
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/npy.h"
#include "common/vector_codec.h"

namespace mrl::bench {

[[noreturn]] inline void Die(const char* tool, const std::string& m) {
  std::fprintf(stderr, "%s: %s\n", tool, m.c_str());
  std::exit(1);
}

// [N, d] float32 or float16 .npy -> float32, row-major; exits with a message on a bad file.
inline std::vector<float> LoadMatrix(const char* tool, const std::string& path, int64_t* n, int64_t* d) {
  auto arr = ReadNpy(path);
  if (!arr.ok()) Die(tool, arr.status().ToString());
  if (arr->shape.size() != 2) Die(tool, path + ": expected a 2-D array [N, d]");
  *n = arr->shape[0];
  *d = arr->shape[1];
  std::vector<float> out(static_cast<size_t>(*n * *d));
  if (arr->dtype == NpyDtype::kFloat32) {
    std::memcpy(out.data(), arr->data.data(), out.size() * 4);
  } else if (arr->dtype == NpyDtype::kFloat16) {
    DecodeHalf(arr->data.data(), out.size(), out.data());
  } else {
    Die(tool, path + ": dtype must be float32 or float16");
  }
  return out;
}

}  // namespace mrl::bench
