// The project's exact search: the ground truth that every "recall@k against exact" figure is
// measured against (mrlctl eval, bench programs). Full-d fp32 cosine over the original vectors:
// queries and database rows are L2-normalised copies, scored by inner product, ties broken by the
// smaller row number so the truth is deterministic. FAISS's IndexFlatIP over the same normalised
// vectors computes the same answer (shard_bench uses it); this one needs no FAISS.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace mrl {

// Top-k row numbers of `db` ([n, d] row-major fp32) for each of the `nq` queries ([nq, d]), best
// first; fewer than k when n < k. Blocked over database rows so each block is scored against a
// batch of queries while it sits in cache; `threads` split the queries.
// REQUIRES: d > 0, k > 0.
std::vector<std::vector<uint32_t>> ExactCosineTopK(const float* db, size_t n, const float* queries,
                                                   size_t nq, size_t d, size_t k, int threads);

}  // namespace mrl
