#include "trainer/sampler.h"

#include <cstddef>
#include <numeric>
#include <utility>

namespace mrl {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

std::vector<int64_t> EpochPermutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> p(static_cast<size_t>(n));
  std::iota(p.begin(), p.end(), 0);
  uint64_t state = SplitMix64(seed * 0x632be59bd9b4e019ULL + static_cast<uint64_t>(epoch) + 1);
  for (int64_t i = n - 1; i > 0; --i) {  // Fisher-Yates
    state = SplitMix64(state);
    const int64_t j = static_cast<int64_t>(state % static_cast<uint64_t>(i + 1));
    std::swap(p[static_cast<size_t>(i)], p[static_cast<size_t>(j)]);
  }
  return p;
}

int64_t SampleOffset(const DataLayout& l, int64_t step, int64_t micro, int64_t rank) {
  const int64_t pos = step % l.steps_per_epoch;
  return pos * l.global_batch() + (micro * l.ranks + rank) * l.batch;
}

}  // namespace mrl
