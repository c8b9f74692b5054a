#include "trainer/image_codec.h"

#include <png.h>
#include <turbojpeg.h>

#include <cstring>

namespace mrl {

namespace {

Status DecodePng(const std::string& bytes, int64_t channels, Image* out) {
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_memory(&img, bytes.data(), bytes.size())) {
    return Status::Corruption(std::string("undecodable PNG: ") + img.message);
  }
  img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  out->height = img.height;
  out->width = img.width;
  out->channels = channels;
  out->pixels.resize(PNG_IMAGE_SIZE(img));
  if (!png_image_finish_read(&img, nullptr, out->pixels.data(), 0, nullptr)) {
    std::string msg = img.message;
    png_image_free(&img);
    return Status::Corruption("undecodable PNG: " + msg);
  }
  return Status::Ok();
}

Status DecodeJpeg(const std::string& bytes, int64_t channels, Image* out) {
  tjhandle h = tjInitDecompress();
  if (!h) return Status::Internal("tjInitDecompress failed");
  int w = 0, ht = 0, subsamp = 0, colorspace = 0;
  auto* src = reinterpret_cast<const unsigned char*>(bytes.data());
  const auto size = static_cast<unsigned long>(bytes.size());
  Status st;
  if (tjDecompressHeader3(h, src, size, &w, &ht, &subsamp, &colorspace) != 0) {
    st = Status::Corruption(std::string("undecodable JPEG: ") + tjGetErrorStr2(h));
  } else {
    out->height = ht;
    out->width = w;
    out->channels = channels;
    out->pixels.resize(static_cast<size_t>(w) * ht * channels);
    if (tjDecompress2(h, src, size, out->pixels.data(), w, 0, ht,
                      channels == 1 ? TJPF_GRAY : TJPF_RGB, TJFLAG_ACCURATEDCT) != 0) {
      st = Status::Corruption(std::string("undecodable JPEG: ") + tjGetErrorStr2(h));
    }
  }
  tjDestroy(h);
  return st;
}

}  // namespace

Status DecodeImage(const std::string& bytes, const std::string& ext, int64_t channels, Image* out) {
  if (channels != 1 && channels != 3) return Status::InvalidArgument("channels must be 1 or 3");
  if (ext == "png") return DecodePng(bytes, channels, out);
  if (ext == "jpg" || ext == "jpeg") return DecodeJpeg(bytes, channels, out);
  return Status::InvalidArgument("not an image extension: '" + ext + "'");
}

Result<std::string> EncodePng(const Image& image) {
  png_image img;
  std::memset(&img, 0, sizeof(img));
  img.version = PNG_IMAGE_VERSION;
  img.width = static_cast<png_uint_32>(image.width);
  img.height = static_cast<png_uint_32>(image.height);
  img.format = image.channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
  png_alloc_size_t size = 0;
  if (!png_image_write_get_memory_size(img, size, 0, image.pixels.data(), 0, nullptr)) {
    return Status::Internal(std::string("PNG encode failed: ") + img.message);
  }
  std::string out(size, '\0');
  if (!png_image_write_to_memory(&img, out.data(), &size, 0, image.pixels.data(), 0, nullptr)) {
    return Status::Internal(std::string("PNG encode failed: ") + img.message);
  }
  out.resize(size);
  return out;
}

Result<std::string> EncodeJpeg(const Image& image, int quality) {
  tjhandle h = tjInitCompress();
  if (!h) return Status::Internal("tjInitCompress failed");
  unsigned char* buf = nullptr;
  unsigned long size = 0;
  const bool gray = image.channels == 1;
  const int rc = tjCompress2(h, image.pixels.data(), static_cast<int>(image.width), 0,
                             static_cast<int>(image.height), gray ? TJPF_GRAY : TJPF_RGB, &buf,
                             &size, gray ? TJSAMP_GRAY : TJSAMP_444, quality, TJFLAG_ACCURATEDCT);
  Result<std::string> out = rc == 0 ? Result<std::string>(std::string(reinterpret_cast<char*>(buf), size))
                                    : Result<std::string>(Status::Internal(std::string("JPEG encode failed: ") + tjGetErrorStr2(h)));
  tjFree(buf);
  tjDestroy(h);
  return out;
}

}  // namespace mrl
