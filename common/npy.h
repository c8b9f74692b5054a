// NumPy .npy files (format versions 1.0-3.0, C order, little-endian): the exchange format between
// the trainer's export, the serving side's bulk load, and users' own embeddings.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

enum class NpyDtype { kFloat32, kFloat16, kInt64, kInt32, kUInt64, kUInt8, kInt8 };

const char* NpyDescr(NpyDtype dtype);  // "<f4", ...
size_t NpyItemSize(NpyDtype dtype);

struct NpyArray {
  NpyDtype dtype = NpyDtype::kFloat32;
  std::vector<int64_t> shape;
  std::vector<char> data;  // shape product * item size bytes, C order

  int64_t numel() const;
  template <typename T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  template <typename T>
  T* as() { return reinterpret_cast<T*>(data.data()); }
};

// Parses and validates a .npy file. Errors name the file and what is wrong with it.
Result<NpyArray> ReadNpy(const std::string& path);
Result<NpyArray> ParseNpy(const std::string& bytes, const std::string& name_for_errors);

// The header alone (magic, version 1.0, dict padded to 64 bytes): for writers that stream the
// data after it.
std::string EncodeNpyHeader(NpyDtype dtype, const std::vector<int64_t>& shape);

// Serialises to .npy bytes (format 1.0).
std::string EncodeNpy(NpyDtype dtype, const std::vector<int64_t>& shape, const void* data);

// Writes atomically (see atomic_file.h).
Status WriteNpy(const std::string& path, NpyDtype dtype, const std::vector<int64_t>& shape,
                const void* data);

// Reads a label vector of any integer dtype as int64. REQUIRES: 1-D.
Result<std::vector<int64_t>> ReadNpyLabels(const std::string& path);

}  // namespace mrl
