// The search plan's stages, composed per call (FAISS's IndexRefine is the model): a shortlister
// produces the first candidates, then refine stages rescore the survivors from the rerank store
// at a wider prefix and keep fewer. Internal to shard/engine*.cc.
//
//   Shortlister        what produces the first candidates at Ds dims
//     kHnsw            the HNSW index over Ds (its beam: ef)
//     kIndexScan       every vector the index over Ds holds (fp32, or int8 for an int8 index)
//     kStorageScan     every stored point's Ds prefix, decoded from RocksDB (no index over Ds)
//   Refine             gathered full vectors (rows file, or one RocksDB MultiGet) scored on the
//                      first `dims` coordinates, best `k` kept; chained for a funnel
//
// Shortlist = a shortlister alone; Rerank = a refine over given ids; Search = a shortlister then
// its refine stages. The decode -> score -> top-k loop of a refine exists once (RefineStage).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace mrl::shard::engine_internal {

struct CollectionState;
struct IndexState;

enum class ShortlisterKind : uint8_t { kHnsw, kIndexScan, kStorageScan };

inline const char* ShortlisterName(ShortlisterKind k) {
  switch (k) {
    case ShortlisterKind::kHnsw: return "hnsw";
    case ShortlisterKind::kIndexScan: return "index-scan";
    case ShortlisterKind::kStorageScan: return "storage-scan";
  }
  return "?";
}

// The first stage of a plan over `dims`: chosen from the collection's indexes and the caller's
// `exact` flag (an index over dims: HNSW unless exact or the index is an exact one, which is a
// scan of what it holds; no index: a storage scan).
struct Shortlister {
  ShortlisterKind kind = ShortlisterKind::kStorageScan;
  int32_t dims = 0;
  int32_t ef = 0;
  const IndexState* index = nullptr;  // kHnsw and kIndexScan

  static Shortlister For(const CollectionState& c, int32_t dims, int32_t ef, bool exact);
};

// One refine stage: the survivors' stored vectors scored on the first `dims` coordinates against
// the query's prefix, the best `k` kept (k = 0: all, sorted).
struct RefineSpec {
  int32_t dims = 0;
  int32_t k = 0;
};

}  // namespace mrl::shard::engine_internal
