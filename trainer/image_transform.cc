#include "trainer/image_transform.h"

#include <algorithm>
#include <cmath>

#include "trainer/sampler.h"

namespace mrl {

namespace {

// Uniform in [0, 1) from the k-th draw of a sample's stream.
double Uniform(uint64_t stream, uint64_t k) {
  return static_cast<double>(SplitMix64(stream + k * 0x9e3779b97f4a7c15ULL) >> 11) * 0x1.0p-53;
}

int64_t OutSize(const Image& in, const TransformOptions& o) {
  return o.size > 0 ? o.size : std::min(in.height, in.width);
}

}  // namespace

uint64_t KeyHash(const std::string& key) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : key) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

void CropResize(const Image& in, double x0, double y0, double cw, double ch, int64_t out_w,
                int64_t out_h, bool flip, Image* out) {
  const int64_t C = in.channels;
  out->height = out_h;
  out->width = out_w;
  out->channels = C;
  out->pixels.resize(static_cast<size_t>(out_h * out_w * C));
  const bool identity = x0 == 0 && y0 == 0 && cw == static_cast<double>(in.width) &&
                        ch == static_cast<double>(in.height) && out_w == in.width &&
                        out_h == in.height;
  const double sx = cw / static_cast<double>(out_w), sy = ch / static_cast<double>(out_h);
  for (int64_t y = 0; y < out_h; ++y) {
    for (int64_t x = 0; x < out_w; ++x) {
      const int64_t xo = flip ? out_w - 1 - x : x;
      uint8_t* dst = out->pixels.data() + (y * out_w + xo) * C;
      if (identity) {
        std::copy_n(in.pixels.data() + (y * in.width + x) * C, C, dst);
        continue;
      }
      const double fx = std::clamp(x0 + (static_cast<double>(x) + 0.5) * sx - 0.5, 0.0,
                                   static_cast<double>(in.width - 1));
      const double fy = std::clamp(y0 + (static_cast<double>(y) + 0.5) * sy - 0.5, 0.0,
                                   static_cast<double>(in.height - 1));
      const int64_t ix = static_cast<int64_t>(fx), iy = static_cast<int64_t>(fy);
      const int64_t ix1 = std::min(ix + 1, in.width - 1), iy1 = std::min(iy + 1, in.height - 1);
      const double ax = fx - static_cast<double>(ix), ay = fy - static_cast<double>(iy);
      for (int64_t c = 0; c < C; ++c) {
        auto at = [&](int64_t yy, int64_t xx) {
          return static_cast<double>(in.pixels[static_cast<size_t>((yy * in.width + xx) * C + c)]);
        };
        const double v = (1 - ay) * ((1 - ax) * at(iy, ix) + ax * at(iy, ix1)) +
                         ay * ((1 - ax) * at(iy1, ix) + ax * at(iy1, ix1));
        dst[c] = static_cast<uint8_t>(std::clamp(std::lround(v), 0L, 255L));
      }
    }
  }
}

void EvalTransform(const Image& in, const TransformOptions& o, Image* out) {
  const int64_t S = OutSize(in, o);
  // Resize the shorter side to R, then take the centre S x S; expressed as one crop of the input.
  const double R = std::max(1.0, std::round(static_cast<double>(S) * o.eval_resize));
  const double scale = static_cast<double>(std::min(in.height, in.width)) / R;  // input px per resized px
  const double cw = static_cast<double>(S) * scale, ch = cw;
  const double x0 = (static_cast<double>(in.width) - cw) / 2;
  const double y0 = (static_cast<double>(in.height) - ch) / 2;
  CropResize(in, x0, y0, cw, ch, S, S, false, out);
}

void TrainTransform(const Image& in, const TransformOptions& o, uint64_t seed, int64_t epoch,
                    uint64_t key_hash, Image* out) {
  if (!o.augment) return EvalTransform(in, o, out);
  const int64_t S = OutSize(in, o);
  const uint64_t stream =
      SplitMix64(seed ^ SplitMix64(static_cast<uint64_t>(epoch) * 0x100000001b3ULL + key_hash));
  const double W = static_cast<double>(in.width), H = static_cast<double>(in.height);
  double cw = W, ch = H, x0 = 0, y0 = 0;
  bool found = false;
  for (uint64_t attempt = 0; attempt < 10 && !found; ++attempt) {  // torchvision's scheme
    const double area = W * H * (o.scale_min + (o.scale_max - o.scale_min) * Uniform(stream, 4 * attempt));
    const double lr = std::log(o.ratio_min) +
                      (std::log(o.ratio_max) - std::log(o.ratio_min)) * Uniform(stream, 4 * attempt + 1);
    const double ratio = std::exp(lr);
    const double w = std::round(std::sqrt(area * ratio)), h = std::round(std::sqrt(area / ratio));
    if (w >= 1 && h >= 1 && w <= W && h <= H) {
      cw = w;
      ch = h;
      x0 = std::floor(Uniform(stream, 4 * attempt + 2) * (W - w + 1));
      y0 = std::floor(Uniform(stream, 4 * attempt + 3) * (H - h + 1));
      found = true;
    }
  }
  if (!found) {  // centre crop of the whole image, clamped to the ratio range
    const double r = std::clamp(W / H, o.ratio_min, o.ratio_max);
    cw = std::min(W, std::round(H * r));
    ch = std::min(H, std::round(W / r));
    x0 = (W - cw) / 2;
    y0 = (H - ch) / 2;
  }
  const bool flip = o.flip && Uniform(stream, 1000) < 0.5;
  CropResize(in, x0, y0, cw, ch, S, S, flip, out);
}

}  // namespace mrl
