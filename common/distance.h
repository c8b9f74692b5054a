// Distance kernels on float prefixes: the inner loops of shortlist scans, HNSW and rerank.
// Each function picks, once per process, an AVX2+FMA path where the CPU has it and a portable
// path (plain loops that the compiler vectorises with SSE2) elsewhere, so one binary runs on any
// x86-64. The two paths may differ in the last bits (different summation order).
#pragma once

#include <cstddef>

namespace mrl {

// sum a[i] * b[i], i < n
float Dot(const float* a, const float* b, size_t n);
// sum (a[i] - b[i])^2, i < n
float L2Sq(const float* a, const float* b, size_t n);
// sum a[i]^2, i < n
float SquaredNorm(const float* a, size_t n);
// Scales v[0, n) to unit L2 norm and returns the original norm; a zero vector stays zero.
float NormalizeInPlace(float* v, size_t n);
// True when every v[i], i < n, is finite (no NaN, no +-Inf).
bool AllFinite(const float* v, size_t n);

// "avx2+fma" or "generic": which path the dispatch chose (printed by benchmarks).
const char* DistanceKernelName();

}  // namespace mrl
