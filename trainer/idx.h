// Reader for the IDX format of MNIST / Fashion-MNIST (optionally gzip'ed), as installed by
// Debian's dataset-fashion-mnist package under /usr/share/datasets/fashion-mnist.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct IdxArray {
  std::vector<int64_t> dims;  // e.g. {60000, 28, 28} or {60000}
  std::vector<uint8_t> data;  // unsigned bytes, C order
};

// Reads an IDX file of unsigned bytes (type 0x08). Gzip is detected by content.
// Errors: NotFound (missing), Corruption (bad magic, truncated, trailing bytes).
Result<IdxArray> ReadIdx(const std::string& path);

struct ImageSet {
  int64_t count = 0, height = 0, width = 0, channels = 1;
  std::vector<uint8_t> pixels;  // [count, height, width, channels]
  std::vector<int64_t> labels;  // [count]
};

struct FashionMnist {
  ImageSet train, test;
};

// Loads train-images-idx3-ubyte(.gz) etc. from `dir`, checking that image and label counts agree
// and that every label is in [0, 10).
Result<FashionMnist> LoadFashionMnist(const std::string& dir);

}  // namespace mrl
