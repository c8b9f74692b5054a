// bucket = mix(id) mod num_buckets: how points are spread over buckets, shared by the shards
// (RocksDB key prefix) and the coordinator (write routing). Changing it re-homes every point.
#pragma once

#include <cstdint>

namespace mrl {

// SplitMix64's finaliser: consecutive ids land in unrelated buckets.
inline uint64_t MixId(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// REQUIRES: num_buckets is a power of two.
inline uint32_t BucketOfId(uint64_t id, uint32_t num_buckets) {
  return static_cast<uint32_t>(MixId(id) & (num_buckets - 1));
}

}  // namespace mrl
