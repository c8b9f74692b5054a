#include "common/png.h"

#include <zlib.h>

namespace mrl {
namespace {

void Put32(std::string* out, uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out->push_back(static_cast<char>((v >> s) & 0xff));
}

// length, type, data, CRC of type + data.
void Chunk(std::string* out, const char* type, std::string_view data) {
  Put32(out, static_cast<uint32_t>(data.size()));
  const size_t at = out->size();
  out->append(type, 4);
  out->append(data);
  const uLong crc = crc32(0L, reinterpret_cast<const Bytef*>(out->data() + at),
                          static_cast<uInt>(4 + data.size()));
  Put32(out, static_cast<uint32_t>(crc));
}

}  // namespace

Result<std::string> EncodePng8(std::span<const uint8_t> pixels, int64_t height, int64_t width,
                               int64_t channels) {
  if (channels != 1 && channels != 3)
    return Status::InvalidArgument("PNG: channels must be 1 (gray) or 3 (RGB), not " +
                                   std::to_string(channels));
  if (height < 1 || width < 1 || height > 65535 || width > 65535)
    return Status::InvalidArgument("PNG: image of " + std::to_string(height) + " x " +
                                   std::to_string(width));
  const size_t row = static_cast<size_t>(width * channels);
  if (pixels.size() != row * static_cast<size_t>(height)) {
    return Status::InvalidArgument("PNG: " + std::to_string(pixels.size()) + " bytes for a " +
                                   std::to_string(height) + " x " + std::to_string(width) + " x " +
                                   std::to_string(channels) + " image");
  }
  // Each scanline gets filter type 0 (none): the images are small and deflate does the work.
  std::string raw;
  raw.reserve((row + 1) * static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back('\0');
    raw.append(reinterpret_cast<const char*>(pixels.data()) + static_cast<size_t>(y) * row, row);
  }
  uLongf packed_size = compressBound(static_cast<uLong>(raw.size()));
  std::string packed(packed_size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(packed.data()), &packed_size,
                reinterpret_cast<const Bytef*>(raw.data()), static_cast<uLong>(raw.size()),
                Z_BEST_COMPRESSION) != Z_OK) {
    return Status::Internal("PNG: zlib compress2 failed");
  }
  packed.resize(packed_size);
  std::string out("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  Put32(&ihdr, static_cast<uint32_t>(width));
  Put32(&ihdr, static_cast<uint32_t>(height));
  ihdr += {'\x08', channels == 1 ? '\x00' : '\x02', '\0', '\0', '\0'};  // 8 bits, gray/RGB
  Chunk(&out, "IHDR", ihdr);
  Chunk(&out, "IDAT", packed);
  Chunk(&out, "IEND", "");
  return out;
}

}  // namespace mrl
