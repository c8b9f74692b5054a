// The in-RAM index over one low-d prefix of a collection: an exact (brute-force) index for small
// shards and tests, and an HNSW graph (hnswlib) for everything else. Both answer the same
// interface, store the vectors they are given (the caller normalises them for cosine), and score
// "higher = closer" like engine.h: inner product, or the negated squared L2 distance.
//
// Thread safety: Search, Contains, size, memory_bytes and Save may run concurrently with each
// other; Upsert, Remove and AddBulk take an exclusive lock inside, so they may also be called
// concurrently with readers (the engine serialises writers per collection anyway).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"
#include "shard/engine.h"

namespace mrl::shard {

enum class IndexMetric : uint8_t { kInnerProduct = 0, kL2 = 1 };

class LowDIndex {
 public:
  virtual ~LowDIndex() = default;

  virtual int32_t dims() const = 0;
  virtual IndexKind kind() const = 0;

  // Inserts `id` or replaces its vector. REQUIRES: v has dims() floats.
  virtual void Upsert(uint64_t id, const float* v) = 0;
  // Adds n = ids.size() points (vectors row-major, n x dims()) using up to `threads` threads.
  // REQUIRES: the ids are distinct and not in the index (used by builds from a full scan).
  virtual void AddBulk(std::span<const uint64_t> ids, const float* vectors, int threads) = 0;
  // Returns whether `id` was present.
  virtual bool Remove(uint64_t id) = 0;
  virtual bool Contains(uint64_t id) const = 0;

  // The best `k` points for `query` (dims() floats), best first, ties by smaller id. `ef` is the
  // HNSW beam width (at least k is used); `exact` scans every stored vector instead.
  virtual void Search(const float* query, int32_t k, int32_t ef, bool exact,
                      std::vector<Candidate>* out) const = 0;

  virtual uint64_t size() const = 0;          // live points
  virtual uint64_t memory_bytes() const = 0;  // estimate of RAM held

  // Writes the index to `path` crash-safely (temporary file, fsync, rename, fsync directory).
  virtual Status Save(const std::string& path) const = 0;
};

// REQUIRES: spec.dims >= 1. `capacity` is a hint for the number of points (HNSW grows by
// doubling; the exact index by vector growth).
std::unique_ptr<LowDIndex> MakeLowDIndex(const IndexSpec& spec, IndexMetric metric,
                                         size_t capacity);

// Save writes, next to the file, its checksum sidecar (shard/index_checksum.h), published before
// the file itself.
// Loads an index written by Save for the same spec and metric. Corruption naming the failed
// check: no checksum file, truncated, checksum mismatch, or a file that does not match the spec
// (wrong kind, dims or HNSW parameters).
Result<std::unique_ptr<LowDIndex>> LoadLowDIndex(const std::string& path, const IndexSpec& spec,
                                                 IndexMetric metric);

// Orders candidates best first: higher score, then smaller id.
inline bool BetterCandidate(const Candidate& a, const Candidate& b) {
  return a.score > b.score || (a.score == b.score && a.id < b.id);
}

// Keeps the best k of a stream of candidates in a heap (worst on top), without allocating once
// the heap has grown to k.
class TopK {
 public:
  void Reset(size_t k, std::vector<Candidate>* heap);
  void Push(uint64_t id, float score);
  // Sorts the heap best first (leaves it in *heap).
  void Finish();

 private:
  size_t k_ = 0;
  std::vector<Candidate>* heap_ = nullptr;
};

}  // namespace mrl::shard
