#include "common/vector_codec.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define MRL_X86 1
#endif

namespace mrl {
namespace {

inline uint32_t AsBits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}
inline float AsFloat(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

void EncodeHalfGeneric(const float* in, size_t n, void* out) {
  auto* o = static_cast<unsigned char*>(out);
  for (size_t i = 0; i < n; ++i) {
    const uint16_t h = FloatToHalf(in[i]);
    std::memcpy(o + 2 * i, &h, 2);
  }
}

void DecodeHalfGeneric(const void* in, size_t n, float* out) {
  const auto* p = static_cast<const unsigned char*>(in);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    out[i] = HalfToFloat(h);
  }
}

#ifdef MRL_X86
__attribute__((target("avx,f16c"))) void EncodeHalfF16c(const float* in, size_t n, void* out) {
  auto* o = static_cast<unsigned char*>(out);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(in + i), _MM_FROUND_TO_NEAREST_INT);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(o + 2 * i), h);
  }
  EncodeHalfGeneric(in + i, n - i, o + 2 * i);
}

__attribute__((target("avx,f16c"))) void DecodeHalfF16c(const void* in, size_t n, float* out) {
  const auto* p = static_cast<const unsigned char*>(in);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i));
    _mm256_storeu_ps(out + i, _mm256_cvtph_ps(h));
  }
  DecodeHalfGeneric(p + 2 * i, n - i, out + i);
}
#endif

void HalfDotAndNormGeneric(const float* q, const void* x, size_t n, float* dot, float* xx) {
  const auto* p = static_cast<const unsigned char*>(x);
  float d = 0, s = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const float v = HalfToFloat(h);
    d += q[i] * v;
    s += v * v;
  }
  *dot = d;
  *xx = s;
}

float HalfL2SqGeneric(const float* q, const void* x, size_t n) {
  const auto* p = static_cast<const unsigned char*>(x);
  float s = 0;
  for (size_t i = 0; i < n; ++i) {
    uint16_t h;
    std::memcpy(&h, p + 2 * i, 2);
    const float v = q[i] - HalfToFloat(h);
    s += v * v;
  }
  return s;
}

#ifdef MRL_X86
__attribute__((target("avx2,fma,f16c"))) inline float HSum(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
  lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
  return _mm_cvtss_f32(lo);
}

__attribute__((target("avx2,fma,f16c"))) void HalfDotAndNormAvx2(const float* q, const void* x,
                                                                 size_t n, float* dot,
                                                                 float* xx) {
  const auto* p = static_cast<const unsigned char*>(x);
  __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i)));
    const __m256 b =
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i + 16)));
    d0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), a, d0);
    d1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), b, d1);
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  float d, s;
  HalfDotAndNormGeneric(q + i, p + 2 * i, n - i, &d, &s);
  *dot = HSum(_mm256_add_ps(d0, d1)) + d;
  *xx = HSum(_mm256_add_ps(s0, s1)) + s;
}

__attribute__((target("avx2,fma,f16c"))) float HalfL2SqAvx2(const float* q, const void* x,
                                                           size_t n) {
  const auto* p = static_cast<const unsigned char*>(x);
  __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 a = _mm256_sub_ps(
        _mm256_loadu_ps(q + i),
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i))));
    const __m256 b = _mm256_sub_ps(
        _mm256_loadu_ps(q + i + 8),
        _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 2 * i + 16))));
    s0 = _mm256_fmadd_ps(a, a, s0);
    s1 = _mm256_fmadd_ps(b, b, s1);
  }
  return HSum(_mm256_add_ps(s0, s1)) + HalfL2SqGeneric(q + i, p + 2 * i, n - i);
}
#endif

#ifdef MRL_X86
// GCC's __builtin_cpu_supports knows "f16c"; clang 14's does not, so ask CPUID (leaf 1, ECX).
bool CpuHasF16c() {
#if defined(__clang__)
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(1, &a, &b, &c, &d) != 0 && (c & bit_F16C) != 0;
#else
  return __builtin_cpu_supports("f16c");
#endif
}
#endif

struct HalfKernels {
  void (*encode)(const float*, size_t, void*) = EncodeHalfGeneric;
  void (*decode)(const void*, size_t, float*) = DecodeHalfGeneric;
  void (*dot_norm)(const float*, const void*, size_t, float*, float*) = HalfDotAndNormGeneric;
  float (*l2sq)(const float*, const void*, size_t) = HalfL2SqGeneric;
  const char* name = "generic";
  HalfKernels() {
#ifdef MRL_X86
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx") && CpuHasF16c()) {
      encode = EncodeHalfF16c;
      decode = DecodeHalfF16c;
      name = "f16c";
      if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dot_norm = HalfDotAndNormAvx2;
        l2sq = HalfL2SqAvx2;
        name = "f16c+avx2+fma";
      }
    }
#endif
  }
};

const HalfKernels& HK() {
  static const HalfKernels k;
  return k;
}

}  // namespace

// Round to nearest even, like F16C (after F. Giesen's float_to_half_fast3_rtne).
uint16_t FloatToHalf(float f) {
  uint32_t x = AsBits(f);
  const uint32_t sign = x & 0x80000000u;
  x ^= sign;
  uint16_t o;
  if (x >= (127u + 16u) << 23) {               // overflow to Inf, or Inf/NaN
    o = (x > (255u << 23)) ? 0x7e00 : 0x7c00;  // quiet NaN : Inf
  } else if (x < (113u << 23)) {               // result is subnormal or zero
    const uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
    o = static_cast<uint16_t>(AsBits(AsFloat(x) + AsFloat(denorm_magic)) - denorm_magic);
  } else {
    const uint32_t mant_odd = (x >> 13) & 1u;
    x += (static_cast<uint32_t>(15 - 127) << 23) + 0xfffu;
    x += mant_odd;
    o = static_cast<uint16_t>(x >> 13);
  }
  return static_cast<uint16_t>(o | (sign >> 16));
}

float HalfToFloat(uint16_t h) {
  const uint32_t shifted_exp = 0x7c00u << 13;
  uint32_t o = (static_cast<uint32_t>(h) & 0x7fffu) << 13;
  const uint32_t exp = shifted_exp & o;
  o += (127u - 15u) << 23;
  if (exp == shifted_exp) {
    o += (128u - 16u) << 23;  // Inf / NaN
  } else if (exp == 0) {
    o += 1u << 23;  // zero / subnormal: renormalise
    o = AsBits(AsFloat(o) - AsFloat(113u << 23));
  }
  o |= (static_cast<uint32_t>(h) & 0x8000u) << 16;
  return AsFloat(o);
}

void EncodeHalf(const float* in, size_t n, void* out) { HK().encode(in, n, out); }
void DecodeHalf(const void* in, size_t n, float* out) { HK().decode(in, n, out); }

void HalfDotAndNorm(const float* q, const void* x, size_t n, float* dot, float* xx) {
  HK().dot_norm(q, x, n, dot, xx);
}
float HalfL2Sq(const float* q, const void* x, size_t n) { return HK().l2sq(q, x, n); }

float EncodeInt8(const float* in, size_t n, int8_t* out) {
  float max_abs = 0.0f;
  for (size_t i = 0; i < n; ++i) max_abs = std::max(max_abs, std::fabs(in[i]));
  if (max_abs == 0.0f) {
    std::memset(out, 0, n);
    return 0.0f;
  }
  const float scale = max_abs / 127.0f;
  const float inv = 127.0f / max_abs;
  for (size_t i = 0; i < n; ++i) {
    const float q = std::clamp(std::nearbyint(in[i] * inv), -127.0f, 127.0f);
    out[i] = static_cast<int8_t>(q);
  }
  return scale;
}

void DecodeInt8(const int8_t* in, size_t n, float scale, float* out) {
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) * scale;
}

const char* HalfKernelName() { return HK().name; }

}  // namespace mrl
