// Helpers of the shard engine tests (shard_engine_test.cc, shard_engine_persistence_test.cc):
// clustered data, engine options, brute-force scoring.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <thread>

#include "common/distance.h"
#include "common/vector_codec.h"
#include "shard/engine.h"
#include "tests/test_util.h"

namespace mrl::shard {
// Named (not unnamed): gtest needs the fixture class to be one class in every test file.
namespace shard_engine_testing {


using test_util::TempDir;

constexpr int kDim = 256;
const std::vector<int32_t> kNesting = {8, 16, 32, 64, 128, 256};

// Gaussian clusters: neighbours are meaningful, so HNSW recall measures something.
inline std::vector<float> Clustered(size_t n, int d, uint32_t seed, int clusters = 64) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> centers(static_cast<size_t>(clusters) * d);
  for (auto& x : centers) x = g(rng);
  std::vector<float> out(n * d);
  std::uniform_int_distribution<int> pick(0, clusters - 1);
  for (size_t i = 0; i < n; ++i) {
    const int c = pick(rng);
    for (int j = 0; j < d; ++j) out[i * d + j] = centers[c * d + j] + 0.5f * g(rng);
  }
  return out;
}

inline EngineOptions Options(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.block_cache_mb = 16;
  o.verbose = false;
  o.threads = 2;
  o.max_k = 1000;
  o.max_batch = 5000;
  return o;
}

inline std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e.value()) : nullptr;
}

inline CollectionSpec Spec(const std::string& name, Metric metric, StorageType storage,
                    std::vector<IndexSpec> indexes) {
  CollectionSpec s;
  s.name = name;
  s.dim = kDim;
  s.nesting = kNesting;
  s.metric = metric;
  s.storage = storage;
  s.num_buckets = 64;
  s.indexes = std::move(indexes);
  return s;
}

inline IndexSpec Exact(int dims) {
  IndexSpec s;
  s.dims = dims;
  s.kind = IndexKind::kExact;
  return s;
}
inline IndexSpec Hnsw(int dims, int ef_search = 64) {
  IndexSpec s;
  s.dims = dims;
  s.kind = IndexKind::kHnsw;
  s.hnsw_m = 16;
  s.ef_construction = 100;
  s.ef_search = ef_search;
  return s;
}

// Upserts rows [0, n) of `data` with ids id_base + i, in batches.
inline void UpsertAll(Engine& e, const std::string& coll, const std::vector<float>& data, size_t n,
               uint64_t id_base = 0, size_t batch = 2000) {
  for (size_t start = 0; start < n; start += batch) {
    const size_t end = std::min(n, start + batch);
    std::vector<PointView> pts;
    std::vector<std::string> payloads;
    payloads.reserve(end - start);
    for (size_t i = start; i < end; ++i) {
      payloads.push_back(std::to_string(id_base + i));
      payloads.back().insert(0, 1, 'p');
      pts.push_back(
          PointView{id_base + i, std::span<const float>(&data[i * kDim], kDim), payloads.back()});
    }
    ASSERT_TRUE(e.Upsert(coll, pts).ok());
  }
}

// The stored (decoded) vectors, read back through Get: the brute force must score what the
// engine stores (fp16/int8 lose precision).
inline std::map<uint64_t, std::vector<float>> Decoded(Engine& e, const std::string& coll,
                                               const std::vector<uint64_t>& ids) {
  std::map<uint64_t, std::vector<float>> out;
  for (size_t start = 0; start < ids.size(); start += 1000) {
    std::vector<uint64_t> chunk(ids.begin() + start,
                                ids.begin() + std::min(ids.size(), start + 1000));
    auto got = e.Get(coll, chunk, true);
    EXPECT_TRUE(got.ok());
    for (size_t i = 0; i < chunk.size(); ++i) {
      if (got.value()[i]) out[chunk[i]] = got.value()[i]->vector;
    }
  }
  return out;
}

inline double BfScore(Metric m, const float* q, const float* x, int d) {
  double dot = 0, qq = 0, xx = 0, l2 = 0;
  for (int i = 0; i < d; ++i) {
    dot += double(q[i]) * x[i];
    qq += double(q[i]) * q[i];
    xx += double(x[i]) * x[i];
    l2 += (double(q[i]) - x[i]) * (double(q[i]) - x[i]);
  }
  if (m == Metric::kL2) return -l2;
  if (m == Metric::kInnerProduct) return dot;
  return (qq > 0 && xx > 0) ? dot / std::sqrt(qq * xx) : 0.0;
}

using Scored = std::vector<std::pair<double, uint64_t>>;

inline Scored BfTop(Metric m, const std::map<uint64_t, std::vector<float>>& db, const float* q, int d,
             const std::vector<uint64_t>* among, size_t k) {
  Scored all;
  if (among) {
    for (uint64_t id : *among) all.emplace_back(BfScore(m, q, db.at(id).data(), d), id);
  } else {
    for (const auto& [id, v] : db) all.emplace_back(BfScore(m, q, v.data(), d), id);
  }
  std::sort(all.begin(), all.end(), [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  });
  if (all.size() > k) all.resize(k);
  return all;
}

// Same answer as the brute force: same length, scores equal to float precision at every rank,
// and where ids differ the engine's id scores (by the brute force) the same as the expected one:
// a tie that float rounding may order either way.
inline void ExpectMatchesBruteForce(const std::vector<Candidate>& got, const Scored& want,
                             const std::function<double(uint64_t)>& bf_score_of,
                             const std::string& what) {
  ASSERT_EQ(got.size(), want.size()) << what;
  int mismatched = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double tol = 2e-4 * (1.0 + std::fabs(want[i].first));
    EXPECT_NEAR(got[i].score, want[i].first, tol) << what << " rank " << i;
    if (got[i].id != want[i].second && std::fabs(bf_score_of(got[i].id) - want[i].first) > tol) {
      ++mismatched;
    }
  }
  EXPECT_EQ(mismatched, 0) << what;
}

inline std::vector<uint64_t> Ids(const std::vector<Candidate>& c) {
  std::vector<uint64_t> out;
  for (const auto& x : c) out.push_back(x.id);
  return out;
}

inline const EngineStats::Collection* FindStats(const EngineStats& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// ---- kernels and codecs ---------------------------------------------------------------------

}  // namespace shard_engine_testing
}  // namespace mrl::shard
