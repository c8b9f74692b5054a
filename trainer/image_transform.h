// Train / eval image transforms on uint8 [H, W, C] images (no LibTorch).
// Training: random-resized-crop + horizontal flip, whose randomness is a pure function of
// (seed, epoch, sample key), so a resumed run sees exactly the same pixels. Evaluation: resize
// the shorter side + centre crop. An image that already has the output size and needs no
// augmentation is copied unchanged (Fashion-MNIST at 28x28 trains on the same pixels as the IDX
// path).
#pragma once

#include <cstdint>
#include <string>

#include "trainer/image_codec.h"

namespace mrl {

struct TransformOptions {
  int64_t size = 0;              // output is size x size; 0 = the input's size (must be square)
  bool augment = false;          // training only: random-resized-crop + flip
  double scale_min = 0.25, scale_max = 1.0;   // crop area / image area
  double ratio_min = 3.0 / 4, ratio_max = 4.0 / 3;  // crop aspect ratio (w / h)
  bool flip = true;              // with augment: horizontal flip with probability 1/2
  double eval_resize = 1.0;      // eval: shorter side resized to round(size * eval_resize)
};

// 64-bit FNV-1a of a sample key: the per-sample counter of the augmentation stream.
uint64_t KeyHash(const std::string& key);

// Training transform. REQUIRES: in has height, width >= 1.
void TrainTransform(const Image& in, const TransformOptions& o, uint64_t seed, int64_t epoch,
                    uint64_t key_hash, Image* out);
// Evaluation transform (deterministic).
void EvalTransform(const Image& in, const TransformOptions& o, Image* out);

// Bilinear resize (half-pixel centres) of the crop [x0, x0+cw) x [y0, y0+ch) of `in` to
// out_w x out_h, optionally mirrored horizontally.
void CropResize(const Image& in, double x0, double y0, double cw, double ch, int64_t out_w,
                int64_t out_h, bool flip, Image* out);

}  // namespace mrl
