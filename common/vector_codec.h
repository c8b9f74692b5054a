// Storage codecs for full vectors: fp16 (IEEE binary16, round to nearest even) and int8 with one
// scale per vector (x ~= q * scale, q in [-127, 127], scale = max|x| / 127).
//
// Encoded bytes may sit at any address (RocksDB values are not aligned), so the codecs take
// byte pointers and never dereference a misaligned uint16_t*. The fp16 array codecs use F16C
// where the CPU has it (chosen once per process) and an exact portable path elsewhere; both give
// bit-identical results.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mrl {

uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);

// out: 2 * n bytes, little-endian binary16.
void EncodeHalf(const float* in, size_t n, void* out);
// in: 2 * n bytes as written by EncodeHalf.
void DecodeHalf(const void* in, size_t n, float* out);

// Writes n int8 values to `out` and returns the scale (0 for an all-zero vector).
float EncodeInt8(const float* in, size_t n, int8_t* out);
void DecodeInt8(const int8_t* in, size_t n, float scale, float* out);

// Scoring against fp16 vectors in place (no decode into a float buffer), the rerank's inner
// loop: *dot = sum q[i] * x[i] and *xx = sum x[i]^2 over i < n (cosine is dot / sqrt(xx) for a
// unit q); HalfL2Sq = sum (q[i] - x[i])^2. x: 2 * n bytes as written by EncodeHalf, any
// alignment. AVX2+FMA+F16C where the CPU has them, else a portable path (last bits may differ).
void HalfDotAndNorm(const float* q, const void* x, size_t n, float* dot, float* xx);
float HalfL2Sq(const float* q, const void* x, size_t n);

// "f16c" or "generic".
const char* HalfKernelName();

}  // namespace mrl
