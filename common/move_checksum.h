// The per-entry hash of a bucket's verify figures (count and order-independent checksum of
// (id, version) pairs), shared by the coordinator's VerifyFigures (coordinator/move.h) and the
// shard's BucketChecksum (shard/engine.h), so that both sides of a move hash alike.
//
// The checksum of a set is the sum mod 2^64 of MoveChecksumTerm over its pairs: the order of a
// scan does not matter, a pair seen twice does not cancel out (unlike XOR), and the figures of
// two disjoint sets add up to the figures of their union.
//
// Thread safety: pure functions.
#pragma once

#include <cstdint>

namespace mrl {

// splitmix64's finaliser: a cheap bijective 64-bit mix.
constexpr uint64_t MixU64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// One pair's contribution to a checksum. Changing it changes every stored move record's figures:
// both sides must hash alike.
constexpr uint64_t MoveChecksumTerm(uint64_t id, uint64_t version) {
  return MixU64(MixU64(id) ^ version);
}

}  // namespace mrl
