// A PNG writer for small 8-bit gray or RGB images (zlib only, no libpng): what `mrlctl ingest
// --images` stores in a point's payload so the web console can show search results as pictures.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "common/status.h"

namespace mrl {

// Lossless PNG of `pixels` ([height, width, channels] row-major, channels 1 = gray or 3 = RGB).
// InvalidArgument for an empty or oversized shape, another channel count, or a pixel count
// that is not height * width * channels.
Result<std::string> EncodePng8(std::span<const uint8_t> pixels, int64_t height, int64_t width,
                               int64_t channels);

}  // namespace mrl
