#include "common/exact_search.h"

#include <algorithm>
#include <queue>
#include <thread>
#include <utility>

#include "common/distance.h"

namespace mrl {
namespace {

struct Scored {
  float score;
  uint32_t row;
};
// Orders so that the heap's top is the worst kept candidate: lower score, then larger row.
struct WorseFirst {
  bool operator()(const Scored& a, const Scored& b) const {
    return a.score != b.score ? a.score > b.score : a.row < b.row;
  }
};

}  // namespace

std::vector<std::vector<uint32_t>> ExactCosineTopK(const float* db, size_t n, const float* queries,
                                                   size_t nq, size_t d, size_t k, int threads) {
  std::vector<float> xb(db, db + n * d), xq(queries, queries + nq * d);
  for (size_t i = 0; i < n; ++i) NormalizeInPlace(&xb[i * d], d);
  for (size_t i = 0; i < nq; ++i) NormalizeInPlace(&xq[i * d], d);
  std::vector<std::vector<uint32_t>> out(nq);
  constexpr size_t kQueryBatch = 16;
  // ~512 KiB of database rows per block: stays in L2/L3 while a query batch scans it.
  const size_t block = std::max<size_t>(1, (512 * 1024) / (d * sizeof(float)));
  const size_t batches = (nq + kQueryBatch - 1) / kQueryBatch;
  auto work = [&](size_t first_batch, size_t stride) {
    using Heap = std::priority_queue<Scored, std::vector<Scored>, WorseFirst>;
    std::vector<Heap> heaps(kQueryBatch);
    for (size_t b = first_batch; b < batches; b += stride) {
      const size_t q0 = b * kQueryBatch, q1 = std::min(nq, q0 + kQueryBatch);
      for (auto& h : heaps) h = Heap();
      for (size_t r0 = 0; r0 < n; r0 += block) {
        const size_t r1 = std::min(n, r0 + block);
        for (size_t q = q0; q < q1; ++q) {
          Heap& h = heaps[q - q0];
          const float* qv = &xq[q * d];
          for (size_t r = r0; r < r1; ++r) {
            const Scored s{Dot(qv, &xb[r * d], d), static_cast<uint32_t>(r)};
            if (h.size() < k) {
              h.push(s);
            } else if (WorseFirst()(s, h.top())) {
              h.pop();
              h.push(s);
            }
          }
        }
      }
      for (size_t q = q0; q < q1; ++q) {
        Heap& h = heaps[q - q0];
        std::vector<uint32_t>& rows = out[q];
        rows.resize(h.size());
        for (size_t i = h.size(); i-- > 0;) {
          rows[i] = h.top().row;
          h.pop();
        }
      }
    }
  };
  const size_t t =
      static_cast<size_t>(std::max(1, std::min<int>(threads, static_cast<int>(batches))));
  std::vector<std::thread> pool;
  for (size_t i = 1; i < t; ++i) pool.emplace_back(work, i, t);
  work(0, t);
  for (auto& th : pool) th.join();
  return out;
}

}  // namespace mrl
