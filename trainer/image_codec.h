// Image encoding/decoding for tar shards: PNG (libpng) and JPEG (libjpeg-turbo), 8-bit gray or
// RGB, pixels interleaved [H, W, C]. No LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct Image {
  int64_t height = 0, width = 0, channels = 0;  // channels: 1 (gray) or 3 (RGB)
  std::vector<uint8_t> pixels;                  // [height, width, channels]
};

// Decodes PNG or JPEG bytes (`ext`: png | jpg | jpeg) into `channels` channels (1 or 3),
// converting colour space if the file has another. Errors: Corruption with libpng/libjpeg's
// message (the caller adds shard and key).
Status DecodeImage(const std::string& bytes, const std::string& ext, int64_t channels, Image* out);

// Lossless PNG of a gray/RGB image.
Result<std::string> EncodePng(const Image& image);
// JPEG at `quality` (1..100); gray images are stored as 1-component JPEG, RGB with 4:4:4.
Result<std::string> EncodeJpeg(const Image& image, int quality);

}  // namespace mrl
