// Shard engine: storage layout, exact and HNSW indexes, rerank, persistence and restarts, bad
// input, bucket scans, concurrency. Real RocksDB in temporary directories.
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
namespace {

using test_util::TempDir;

constexpr int kDim = 256;
const std::vector<int32_t> kNesting = {8, 16, 32, 64, 128, 256};

// Gaussian clusters: neighbours are meaningful, so HNSW recall measures something.
std::vector<float> Clustered(size_t n, int d, uint32_t seed, int clusters = 64) {
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

EngineOptions Options(const std::string& dir) {
  EngineOptions o;
  o.data_dir = dir;
  o.block_cache_mb = 16;
  o.verbose = false;
  o.threads = 2;
  o.max_k = 1000;
  o.max_batch = 5000;
  return o;
}

std::unique_ptr<Engine> OpenOrDie(const EngineOptions& o) {
  auto e = Engine::Open(o);
  EXPECT_TRUE(e.ok()) << e.status().ToString();
  return e.ok() ? std::move(e.value()) : nullptr;
}

CollectionSpec Spec(const std::string& name, Metric metric, StorageType storage,
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

IndexSpec Exact(int dims) {
  IndexSpec s;
  s.dims = dims;
  s.kind = IndexKind::kExact;
  return s;
}
IndexSpec Hnsw(int dims, int ef_search = 64) {
  IndexSpec s;
  s.dims = dims;
  s.kind = IndexKind::kHnsw;
  s.hnsw_m = 16;
  s.ef_construction = 100;
  s.ef_search = ef_search;
  return s;
}

// Upserts rows [0, n) of `data` with ids id_base + i, in batches.
void UpsertAll(Engine& e, const std::string& coll, const std::vector<float>& data, size_t n,
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
std::map<uint64_t, std::vector<float>> Decoded(Engine& e, const std::string& coll,
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

double BfScore(Metric m, const float* q, const float* x, int d) {
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

Scored BfTop(Metric m, const std::map<uint64_t, std::vector<float>>& db, const float* q, int d,
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
void ExpectMatchesBruteForce(const std::vector<Candidate>& got, const Scored& want,
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

std::vector<uint64_t> Ids(const std::vector<Candidate>& c) {
  std::vector<uint64_t> out;
  for (const auto& x : c) out.push_back(x.id);
  return out;
}

const EngineStats::Collection* FindStats(const EngineStats& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// ---- kernels and codecs ---------------------------------------------------------------------

TEST(VectorKernels, DotAndL2MatchDoublePrecision) {
  std::mt19937 rng(1);
  std::normal_distribution<float> g;
  for (size_t n : {0, 1, 7, 8, 15, 16, 33, 64, 100, 257, 2048}) {
    std::vector<float> a(n), b(n);
    for (size_t i = 0; i < n; ++i) a[i] = g(rng), b[i] = g(rng);
    double dot = 0, l2 = 0;
    for (size_t i = 0; i < n; ++i)
      dot += double(a[i]) * b[i], l2 += double(a[i] - b[i]) * (a[i] - b[i]);
    EXPECT_NEAR(Dot(a.data(), b.data(), n), dot, 1e-4 * (1 + n)) << n;
    EXPECT_NEAR(L2Sq(a.data(), b.data(), n), l2, 1e-4 * (1 + n)) << n;
  }
  std::vector<float> v = {3, 4};
  EXPECT_FLOAT_EQ(NormalizeInPlace(v.data(), 2), 5.0f);
  EXPECT_FLOAT_EQ(v[0], 0.6f);
  std::vector<float> bad = {1, NAN, 2};
  EXPECT_FALSE(AllFinite(bad.data(), 3));
  bad[1] = INFINITY;
  EXPECT_FALSE(AllFinite(bad.data(), 3));
  EXPECT_TRUE(AllFinite(bad.data(), 1));
}

TEST(VectorKernels, HalfCodecIsExactAndMatchesScalarPath) {
  std::mt19937 rng(2);
  std::vector<float> in;
  std::normal_distribution<float> g(0, 100);
  for (int i = 0; i < 1000; ++i) in.push_back(g(rng));
  for (float x : {0.0f, -0.0f, 1e-8f, 6e-5f, -3e-7f, 65504.0f, 65519.0f, 65520.0f, 1e6f, -1e6f,
                  1.0009765625f, 1.00048828125f}) {
    in.push_back(x);
  }
  std::vector<unsigned char> enc(2 * in.size() + 1);
  // Odd address on purpose: RocksDB values are unaligned.
  EncodeHalf(in.data(), in.size(), enc.data() + 1);
  std::vector<float> out(in.size());
  DecodeHalf(enc.data() + 1, in.size(), out.data());
  for (size_t i = 0; i < in.size(); ++i) {
    uint16_t h;
    std::memcpy(&h, enc.data() + 1 + 2 * i, 2);
    EXPECT_EQ(h, FloatToHalf(in[i])) << in[i];  // vector path == scalar path
    EXPECT_EQ(out[i], HalfToFloat(h));
    if (std::fabs(in[i]) < 65504.0f && std::fabs(in[i]) > 1e-4f) {
      EXPECT_NEAR(out[i], in[i], std::fabs(in[i]) * 1e-3);
    }
  }
  EXPECT_EQ(FloatToHalf(1.00048828125f), 0x3c00);  // halfway: round to even
  EXPECT_EQ(FloatToHalf(65520.0f), 0x7c00);        // overflow to Inf
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0f, -24));
}

TEST(VectorKernels, Int8RoundTripWithinHalfStep) {
  std::vector<float> in = {0.5f, -1.27f, 0.0f, 1.0f, -0.01f};
  std::vector<int8_t> q(in.size());
  const float scale = EncodeInt8(in.data(), in.size(), q.data());
  EXPECT_FLOAT_EQ(scale, 1.27f / 127.0f);
  std::vector<float> out(in.size());
  DecodeInt8(q.data(), q.size(), scale, out.data());
  for (size_t i = 0; i < in.size(); ++i) EXPECT_NEAR(out[i], in[i], scale / 2 + 1e-7);
  std::vector<float> zeros(4, 0.0f);
  EXPECT_EQ(EncodeInt8(zeros.data(), 4, q.data()), 0.0f);
}

TEST(Buckets, BucketOfIsStableAndSpreads) {
  std::vector<int> count(16);
  for (uint64_t id = 0; id < 16000; ++id) ++count[BucketOf(id, 16)];
  for (int c : count) EXPECT_NEAR(c, 1000, 150);
  // Fixed values: a change of the mix re-homes every stored point, so it must show up here.
  // Derived outside this code base, in Python, from Vigna's SplitMix64 with state = id (all
  // arithmetic mod 2^64):
  //   z = id + 0x9e3779b97f4a7c15
  //   z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
  //   z = (z ^ (z >> 27)) * 0x94d049bb133111eb
  //   z = z ^ (z >> 31);  bucket = z mod num_buckets
  // For id 0 that is SplitMix64's well-known first output from seed 0, 0xe220a8397b1dcdaf.
  EXPECT_EQ(BucketOf(0, 4096), 3503u);  // 0xe220a8397b1dcdaf & 0xfff
  EXPECT_EQ(BucketOf(0, 16), 15u);
  EXPECT_EQ(BucketOf(1, 4096), 3265u);  // 0x910a2dec89025cc1
  EXPECT_EQ(BucketOf(1, 16), 1u);
  EXPECT_EQ(BucketOf(1000, 64), 8u);       // 0x3c1eba8b4dccc148
  EXPECT_EQ(BucketOf(12345, 4096), 416u);  // 0x22118258a9d111a0
  EXPECT_EQ(BucketOf(12345, 16), 0u);
  EXPECT_EQ(BucketOf((uint64_t{1} << 63) + 7, 4096), 4008u);  // 0x63dc0bbbddd40fa8
  EXPECT_EQ(BucketOf(12345, 1), 0u);
}

// ---- exact mode == brute force --------------------------------------------------------------

struct ExactCase {
  Metric metric;
  StorageType storage;
};

std::string ExactCaseName(const ::testing::TestParamInfo<ExactCase>& info) {
  static const char* kMetric[] = {"Cosine", "IP", "L2"};
  static const char* kStorage[] = {"Fp32", "Fp16", "Int8"};
  return std::string(kMetric[int(info.param.metric)]) + kStorage[int(info.param.storage)];
}

class ExactModeTest : public ::testing::TestWithParam<ExactCase> {};

TEST_P(ExactModeTest, ShortlistRerankAndSearchEqualBruteForce) {
  // Not a structured binding: clang 14 (the TSan build) cannot capture those in a lambda.
  const Metric metric = GetParam().metric;
  const StorageType storage = GetParam().storage;
  const std::string dir =
      TempDir("exact_" + std::to_string(int(metric)) + "_" + std::to_string(int(storage)));
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->CreateCollection(Spec("c", metric, storage, {Exact(8), Exact(16)})).ok());
  const size_t n = 10000;
  const auto data = Clustered(n, kDim, 7);
  UpsertAll(*e, "c", data, n);
  std::vector<uint64_t> all_ids(n);
  for (size_t i = 0; i < n; ++i) all_ids[i] = i;
  const auto db = Decoded(*e, "c", all_ids);
  ASSERT_EQ(db.size(), n);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, n);

  const auto queries = Clustered(5, kDim, 99);
  for (int qi = 0; qi < 5; ++qi) {
    const float* q = &queries[qi * kDim];
    auto score_at = [&](int d) {
      return [&, d](uint64_t id) { return BfScore(metric, q, db.at(id).data(), d); };
    };
    // Shortlist over the exact index (16), and over dims with no index (32: storage scan).
    for (int ds : {16, 32}) {
      auto sl = e->Shortlist("c", std::span<const float>(q, ds), 200);
      ASSERT_TRUE(sl.ok()) << sl.status().ToString();
      ExpectMatchesBruteForce(*sl, BfTop(metric, db, q, ds, nullptr, 200), score_at(ds),
                              "shortlist d=" + std::to_string(ds));
      // Rerank the shortlist at full d.
      const auto ids = Ids(*sl);
      auto rr = e->Rerank("c", std::span<const float>(q, kDim), ids, 10);
      ASSERT_TRUE(rr.ok());
      ExpectMatchesBruteForce(*rr, BfTop(metric, db, q, kDim, &ids, 10), score_at(kDim), "rerank");
    }
    // Three-stage funnel in one call.
    const std::vector<SearchStage> stages = {{16, 200}, {64, 50}, {256, 10}};
    auto s = e->Search("c", std::span<const float>(q, kDim), stages);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    const auto s0 = BfTop(metric, db, q, 16, nullptr, 200);
    std::vector<uint64_t> ids0;
    for (const auto& x : s0) ids0.push_back(x.second);
    const auto s1 = BfTop(metric, db, q, 64, &ids0, 50);
    std::vector<uint64_t> ids1;
    for (const auto& x : s1) ids1.push_back(x.second);
    ExpectMatchesBruteForce(*s, BfTop(metric, db, q, 256, &ids1, 10), score_at(kDim),
                            "search funnel");
  }
}

INSTANTIATE_TEST_SUITE_P(MetricsAndStorage, ExactModeTest,
                         ::testing::Values(ExactCase{Metric::kCosine, StorageType::kFp32},
                                           ExactCase{Metric::kCosine, StorageType::kFp16},
                                           ExactCase{Metric::kCosine, StorageType::kInt8},
                                           ExactCase{Metric::kInnerProduct, StorageType::kFp32},
                                           ExactCase{Metric::kInnerProduct, StorageType::kFp16},
                                           ExactCase{Metric::kL2, StorageType::kFp32},
                                           ExactCase{Metric::kL2, StorageType::kInt8}),
                         ExactCaseName);

// Reads through mmap (EngineOptions::mmap_reads) answer exactly as reads through pread, from
// flushed SST files, after a reopen, and after later writes and deletes.
TEST(Storage, MmapReadsAnswerExactlyLikePread) {
  const std::string dir = TempDir("mmap_reads");
  const size_t n = 3000;
  const auto data = Clustered(n, kDim, 11);
  const auto queries = Clustered(5, kDim, 12);
  const std::vector<SearchStage> stages = {{16, 100}, {kDim, 10}};
  std::vector<std::vector<Candidate>> want;
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Exact(16)})).ok());
    UpsertAll(*e, "c", data, n);
    ASSERT_TRUE(e->Checkpoint().ok());  // flushed: later reads come from SST files
    for (int qi = 0; qi < 5; ++qi) {
      auto r = e->Search("c", std::span<const float>(&queries[qi * kDim], kDim), stages);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      want.push_back(*r);
    }
  }
  EngineOptions o = Options(dir);
  o.mmap_reads = true;
  auto e = OpenOrDie(o);
  ASSERT_TRUE(e);
  for (int qi = 0; qi < 5; ++qi) {
    auto r = e->Search("c", std::span<const float>(&queries[qi * kDim], kDim), stages);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->size(), want[qi].size());
    for (size_t i = 0; i < r->size(); ++i) {
      EXPECT_EQ((*r)[i].id, want[qi][i].id) << "query " << qi << " rank " << i;
      EXPECT_EQ((*r)[i].score, want[qi][i].score);
    }
  }
  // Writes after the reopen: a deleted id is gone, a replaced vector is read back new.
  const uint64_t gone = want[0][0].id;
  ASSERT_TRUE(e->Delete("c", std::vector<uint64_t>{gone}).ok());
  ASSERT_TRUE(e->Checkpoint().ok());
  auto r = e->Search("c", std::span<const float>(&queries[0], kDim), stages);
  ASSERT_TRUE(r.ok());
  for (const auto& c : *r) EXPECT_NE(c.id, gone);
  auto got = e->Get("c", std::vector<uint64_t>{gone, want[0][1].id}, true);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE((*got)[0].has_value());
  ASSERT_TRUE((*got)[1].has_value());
  EXPECT_EQ((*got)[1]->vector.size(), static_cast<size_t>(kDim));
}

// ---- HNSW -----------------------------------------------------------------------------------

double Recall(const std::vector<Candidate>& got, const std::vector<Candidate>& truth) {
  std::set<uint64_t> t;
  for (const auto& c : truth) t.insert(c.id);
  int hit = 0;
  for (const auto& c : got) hit += t.count(c.id);
  return truth.empty() ? 1.0 : double(hit) / truth.size();
}

TEST(HnswIndex, RecallAt10AtLeast95Percent) {
  auto e = OpenOrDie(Options(TempDir("hnsw_recall")));
  ASSERT_TRUE(e);
  ASSERT_TRUE(
      e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16, 100), Hnsw(32)}))
          .ok());
  const size_t n = 10000;
  const auto data = Clustered(n, kDim, 11);
  UpsertAll(*e, "c", data, n);
  const auto queries = Clustered(100, kDim, 12);
  double shortlist_recall = 0, search_recall = 0;
  for (int qi = 0; qi < 100; ++qi) {
    const float* q = &queries[qi * kDim];
    auto approx = e->Shortlist("c", std::span<const float>(q, 16), 10);
    auto exact = e->Shortlist("c", std::span<const float>(q, 16), 10, 0, /*exact=*/true);
    ASSERT_TRUE(approx.ok() && exact.ok());
    shortlist_recall += Recall(*approx, *exact);
    const std::vector<SearchStage> plan = {{16, 200}, {kDim, 10}};
    auto s = e->Search("c", std::span<const float>(q, kDim), plan, /*ef=*/400);
    auto se = e->Search("c", std::span<const float>(q, kDim), plan, 0, /*exact=*/true);
    ASSERT_TRUE(s.ok() && se.ok());
    search_recall += Recall(*s, *se);
  }
  std::printf("recall@10: shortlist(16, ef=100) %.3f, search(16x200 -> 256x10, ef=400) %.3f\n",
              shortlist_recall / 100, search_recall / 100);
  EXPECT_GE(shortlist_recall / 100, 0.95);
  EXPECT_GE(search_recall / 100, 0.95);
  const auto stats = e->Stats();
  const auto* st = FindStats(stats, "c");
  ASSERT_EQ(st->indexes.size(), 2u);
  EXPECT_EQ(st->indexes[0].size, n);
  EXPECT_GT(st->indexes[0].memory_bytes, n * 16 * 4);
}

// ---- deletes, replacement, restarts ---------------------------------------------------------

class IndexKindTest : public ::testing::TestWithParam<IndexKind> {};

void ExpectNoneOf(Engine& e, const std::set<uint64_t>& deleted, const std::vector<float>& queries,
                  int nq) {
  for (int qi = 0; qi < nq; ++qi) {
    const float* q = &queries[qi * kDim];
    for (bool exact : {false, true}) {
      auto sl = e.Shortlist("c", std::span<const float>(q, 16), 100, 0, exact);
      ASSERT_TRUE(sl.ok());
      for (const auto& c : *sl) EXPECT_EQ(deleted.count(c.id), 0u) << c.id;
      auto s = e.Search("c", std::span<const float>(q, kDim),
                        std::vector<SearchStage>{{16, 100}, {kDim, 20}}, 0, exact);
      ASSERT_TRUE(s.ok());
      for (const auto& c : *s) EXPECT_EQ(deleted.count(c.id), 0u) << c.id;
    }
    auto scan = e.Shortlist("c", std::span<const float>(q, 64), 100);  // no index: storage
    ASSERT_TRUE(scan.ok());
    for (const auto& c : *scan) EXPECT_EQ(deleted.count(c.id), 0u) << c.id;
  }
  std::vector<uint64_t> del(deleted.begin(), deleted.end());
  auto rr = e.Rerank("c", std::span<const float>(&queries[0], kDim), del, 0);
  ASSERT_TRUE(rr.ok());
  EXPECT_TRUE(rr->empty());
  auto got = e.Get("c", del, false);
  ASSERT_TRUE(got.ok());
  for (const auto& g : *got) EXPECT_FALSE(g.has_value());
}

TEST_P(IndexKindTest, DeletedIdIsNeverReturnedAlsoAfterRestart) {
  const IndexKind kind = GetParam();
  const std::string dir = TempDir("delete_" + std::to_string(int(kind)));
  const size_t n = 3000;
  const auto data = Clustered(n, kDim, 21);
  const auto queries = Clustered(10, kDim, 22);
  std::set<uint64_t> deleted;
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    IndexSpec ix = kind == IndexKind::kHnsw ? Hnsw(16) : Exact(16);
    ASSERT_TRUE(e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {ix})).ok());
    UpsertAll(*e, "c", data, n);
    // Delete the current top results of every query, plus a spread of others.
    for (int qi = 0; qi < 10; ++qi) {
      auto sl = e->Shortlist("c", std::span<const float>(&queries[qi * kDim], 16), 20);
      ASSERT_TRUE(sl.ok());
      for (const auto& c : *sl) deleted.insert(c.id);
    }
    for (uint64_t id = 0; id < n; id += 7) deleted.insert(id);
    std::vector<uint64_t> del(deleted.begin(), deleted.end());
    del.push_back(999999);  // unknown ids are ignored
    ASSERT_TRUE(e->Delete("c", del).ok());
    ASSERT_TRUE(e->Delete("c", del).ok());  // idempotent
    EXPECT_EQ(FindStats(e->Stats(), "c")->points, n - deleted.size());
    ExpectNoneOf(*e, deleted, queries, 10);
  }
  {  // no Checkpoint: rebuilt from RocksDB
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    const auto stats = e->Stats();
    const auto* st = FindStats(stats, "c");
    EXPECT_FALSE(st->indexes[0].loaded);
    EXPECT_EQ(st->indexes[0].size, n - deleted.size());
    ExpectNoneOf(*e, deleted, queries, 10);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  {  // after Checkpoint: loaded
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    EXPECT_TRUE(FindStats(e->Stats(), "c")->indexes[0].loaded);
    ExpectNoneOf(*e, deleted, queries, 10);
    // Re-inserting a deleted id brings it back (and only it).
    const uint64_t back = *deleted.begin();
    PointView p{back, std::span<const float>(&data[back * kDim], kDim), ""};
    ASSERT_TRUE(e->Upsert("c", std::span<const PointView>(&p, 1)).ok());
    deleted.erase(back);
    ExpectNoneOf(*e, deleted, queries, 3);
    auto got = e->Get("c", std::vector<uint64_t>{back}, false);
    ASSERT_TRUE(got.ok());
    EXPECT_TRUE((*got)[0].has_value());
  }
}

TEST_P(IndexKindTest, UpsertOfExistingIdReplacesTheVector) {
  const IndexKind kind = GetParam();
  auto e = OpenOrDie(Options(TempDir("replace_" + std::to_string(int(kind)))));
  ASSERT_TRUE(e);
  IndexSpec ix = kind == IndexKind::kHnsw ? Hnsw(16) : Exact(16);
  ASSERT_TRUE(e->CreateCollection(Spec("c", Metric::kInnerProduct, StorageType::kFp32, {ix})).ok());
  const size_t n = 2000;
  const auto data = Clustered(n, kDim, 31);
  UpsertAll(*e, "c", data, n);
  // Move id 5 to a far-away spot that wins every inner-product query along +1.
  std::vector<float> v(kDim, 50.0f);
  PointView p{5, v, "new"};
  ASSERT_TRUE(e->Upsert("c", std::span<const PointView>(&p, 1)).ok());
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, n);
  std::vector<float> q(kDim, 1.0f);
  auto sl = e->Shortlist("c", std::span<const float>(q.data(), 16), 1);
  ASSERT_TRUE(sl.ok());
  ASSERT_EQ(sl->size(), 1u);
  EXPECT_EQ((*sl)[0].id, 5u);
  EXPECT_FLOAT_EQ((*sl)[0].score, 16 * 50.0f);
  auto got = e->Get("c", std::vector<uint64_t>{5}, true);
  ASSERT_TRUE(got.ok() && (*got)[0]);
  EXPECT_EQ((*got)[0]->payload, "new");
  EXPECT_EQ((*got)[0]->vector, v);
  auto rr = e->Rerank("c", q, std::vector<uint64_t>{5, 6, 5}, 0);  // duplicates scored once
  ASSERT_TRUE(rr.ok());
  ASSERT_EQ(rr->size(), 2u);
  EXPECT_EQ((*rr)[0].id, 5u);
  EXPECT_FLOAT_EQ((*rr)[0].score, kDim * 50.0f);
}

INSTANTIATE_TEST_SUITE_P(Kinds, IndexKindTest,
                         ::testing::Values(IndexKind::kExact, IndexKind::kHnsw),
                         [](const auto& info) {
                           return info.param == IndexKind::kHnsw ? "Hnsw" : "Exact";
                         });

TEST(Persistence, CleanRestartLoadsIndexesAndAnswersIdentically) {
  const std::string dir = TempDir("restart");
  const size_t n = 5000;
  const auto data = Clustered(n, kDim, 41);
  const auto queries = Clustered(20, kDim, 42);
  std::vector<std::vector<Candidate>> before;
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16), Exact(8)}))
            .ok());
    UpsertAll(*e, "c", data, n);
    for (int qi = 0; qi < 20; ++qi) {
      auto s = e->Search("c", std::span<const float>(&queries[qi * kDim], kDim),
                         std::vector<SearchStage>{{16, 100}, {kDim, 10}});
      ASSERT_TRUE(s.ok());
      before.push_back(*s);
    }
    const auto stats = e->Stats();
    for (const auto& ix : FindStats(stats, "c")->indexes) EXPECT_FALSE(ix.loaded);
    ASSERT_TRUE(e->Checkpoint().ok());
    ASSERT_TRUE(e->Checkpoint().ok());  // idempotent
  }
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  const auto stats = e->Stats();
  const auto* st = FindStats(stats, "c");
  ASSERT_NE(st, nullptr);
  EXPECT_EQ(st->points, n);
  for (const auto& ix : st->indexes) {
    EXPECT_TRUE(ix.loaded) << "index d=" << ix.dims << " was rebuilt";
    EXPECT_EQ(ix.size, n);
  }
  for (int qi = 0; qi < 20; ++qi) {
    auto s = e->Search("c", std::span<const float>(&queries[qi * kDim], kDim),
                       std::vector<SearchStage>{{16, 100}, {kDim, 10}});
    ASSERT_TRUE(s.ok());
    ASSERT_EQ(s->size(), before[qi].size());
    for (size_t i = 0; i < s->size(); ++i) {
      EXPECT_EQ((*s)[i].id, before[qi][i].id);
      EXPECT_EQ((*s)[i].score, before[qi][i].score);
    }
  }
  auto spec = e->DescribeCollection("c");
  ASSERT_TRUE(spec.ok());
  EXPECT_EQ(spec->indexes.size(), 2u);
}

// Opens the engine, writes past the last checkpoint and dies without any cleanup.
void WriteThenCrash(const std::string& dir, const std::vector<float>& data, size_t n) {
  auto e = Engine::Open(Options(dir));
  if (!e.ok()) _exit(2);
  std::vector<PointView> pts;
  for (size_t i = n / 2; i < n; ++i) {
    pts.push_back(PointView{i, std::span<const float>(&data[i * kDim], kDim), ""});
  }
  if (!(*e)->Upsert("c", pts).ok()) _exit(3);
  std::vector<uint64_t> del;
  for (uint64_t id = 0; id < n; id += 5) del.push_back(id);
  if (!(*e)->Delete("c", del).ok()) _exit(4);
  _exit(0);  // no destructor, no Checkpoint: like kill -9 after the acknowledgements
}

TEST(PersistenceDeathTest, CrashAfterCheckpointRebuildsAndAgreesWithStorage) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // The threadsafe death test re-runs this test in a fresh process up to EXPECT_EXIT; the
  // directory travels in the environment.
  const char* env = std::getenv("MRL_SHARD_CRASH_DIR");
  const std::string dir = env ? env : TempDir("crash");
  ::setenv("MRL_SHARD_CRASH_DIR", dir.c_str(), 1);
  const size_t n = 3000;
  const auto data = Clustered(n, kDim, 51);
  if (!env) {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kL2, StorageType::kFp32, {Hnsw(16), Exact(32)}))
            .ok());
    UpsertAll(*e, "c", data, n / 2);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  EXPECT_EXIT(WriteThenCrash(dir, data, n), ::testing::ExitedWithCode(0), "");
  ::unsetenv("MRL_SHARD_CRASH_DIR");

  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  const auto stats = e->Stats();
  const auto* st = FindStats(stats, "c");
  ASSERT_NE(st, nullptr);
  const size_t live = n - (n + 4) / 5;
  EXPECT_EQ(st->points, live);
  for (const auto& ix : st->indexes) {
    EXPECT_FALSE(ix.loaded) << "stale index d=" << ix.dims << " was loaded";
    EXPECT_EQ(ix.size, live);
  }
  // The exact index agrees with a brute force over what RocksDB holds.
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = i;
  const auto db = Decoded(*e, "c", ids);
  ASSERT_EQ(db.size(), live);
  const auto queries = Clustered(5, kDim, 52);
  for (int qi = 0; qi < 5; ++qi) {
    const float* q = &queries[qi * kDim];
    auto sl = e->Shortlist("c", std::span<const float>(q, 32), 50);
    ASSERT_TRUE(sl.ok());
    ExpectMatchesBruteForce(
        *sl, BfTop(Metric::kL2, db, q, 32, nullptr, 50),
        [&](uint64_t id) { return BfScore(Metric::kL2, q, db.at(id).data(), 32); }, "after crash");
    auto h = e->Shortlist("c", std::span<const float>(q, 16), 50);
    ASSERT_TRUE(h.ok());
    for (const auto& c : *h) EXPECT_EQ(db.count(c.id), 1u);
  }
}

// ---- bad input ------------------------------------------------------------------------------

TEST(BadInput, RejectedWithTypedErrorsAndNothingWritten) {
  EngineOptions o = Options(TempDir("bad"));
  o.max_batch = 100;
  o.max_k = 50;
  auto e = OpenOrDie(o);
  ASSERT_TRUE(e);
  CollectionSpec spec = Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16)});
  spec.max_payload_bytes = 8;
  ASSERT_TRUE(e->CreateCollection(spec).ok());
  ASSERT_TRUE(e->CreateCollection(spec).ok());  // identical: idempotent
  CollectionSpec other = spec;
  other.metric = Metric::kL2;
  EXPECT_EQ(e->CreateCollection(other).code(), Status::Code::kFailedPrecondition);

  CollectionSpec bad = spec;
  bad.name = "bad name!";
  EXPECT_EQ(e->CreateCollection(bad).code(), Status::Code::kInvalidArgument);
  bad = spec;
  bad.name = "b";
  bad.nesting = {8, 16, 32};  // does not end at dim
  EXPECT_EQ(e->CreateCollection(bad).code(), Status::Code::kInvalidArgument);
  bad.nesting = {16, 8, 256};
  EXPECT_EQ(e->CreateCollection(bad).code(), Status::Code::kInvalidArgument);
  bad.nesting = kNesting;
  bad.indexes = {Hnsw(12)};  // not a nesting dim
  EXPECT_EQ(e->CreateCollection(bad).code(), Status::Code::kInvalidArgument);
  bad.indexes = {};
  bad.num_buckets = 1000;  // not a power of two
  EXPECT_EQ(e->CreateCollection(bad).code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(e->ListCollections().size(), 1u);

  const auto data = Clustered(200, kDim, 61);
  std::vector<float> nan_vec(data.begin(), data.begin() + kDim);
  nan_vec[100] = NAN;
  std::vector<float> short_vec(data.begin(), data.begin() + kDim - 1);
  std::vector<PointView> batch;
  for (uint64_t i = 0; i < 10; ++i) {
    batch.push_back(PointView{i, std::span<const float>(&data[i * kDim], kDim), ""});
  }
  auto with = [&](PointView p) {
    auto b = batch;
    b.push_back(p);
    return b;
  };
  auto expect_nothing_written = [&] {
    std::vector<uint64_t> ids = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 100};
    auto got = e->Get("c", ids, false);
    ASSERT_TRUE(got.ok());
    for (const auto& g : *got) EXPECT_FALSE(g.has_value());
    EXPECT_EQ(FindStats(e->Stats(), "c")->points, 0u);
    EXPECT_EQ(FindStats(e->Stats(), "c")->indexes[0].size, 0u);
  };
  EXPECT_EQ(e->Upsert("c", with(PointView{100, nan_vec, ""})).code(),
            Status::Code::kInvalidArgument);
  expect_nothing_written();
  std::vector<float> inf_vec = nan_vec;
  inf_vec[100] = -INFINITY;
  EXPECT_EQ(e->Upsert("c", with(PointView{100, inf_vec, ""})).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(e->Upsert("c", with(PointView{100, short_vec, ""})).code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(
      e->Upsert("c", with(PointView{100, std::span<const float>(data.data(), kDim), "123456789"}))
          .code(),
      Status::Code::kOutOfRange);
  std::vector<PointView> big;
  for (uint64_t i = 0; i < 101; ++i) {
    big.push_back(PointView{i, std::span<const float>(&data[(i % 200) * kDim], kDim), ""});
  }
  EXPECT_EQ(e->Upsert("c", big).code(), Status::Code::kOutOfRange);
  expect_nothing_written();
  EXPECT_EQ(e->Upsert("nope", batch).code(), Status::Code::kNotFound);
  EXPECT_EQ(e->Delete("c", std::vector<uint64_t>(101, 1)).code(), Status::Code::kOutOfRange);

  ASSERT_TRUE(e->Upsert("c", batch).ok());
  std::span<const float> q(data.data(), 16);
  EXPECT_EQ(e->Shortlist("nope", q, 10).status().code(), Status::Code::kNotFound);
  EXPECT_EQ(e->Shortlist("c", q, 0).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(e->Shortlist("c", q, 51).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(e->Shortlist("c", q, 10, -1).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(e->Shortlist("c", std::span<const float>(data.data(), 17), 10).status().code(),
            Status::Code::kInvalidArgument);  // not a nesting dim
  std::vector<float> nan_q(nan_vec.begin() + 96, nan_vec.begin() + 112);
  EXPECT_EQ(e->Shortlist("c", nan_q, 10).status().code(), Status::Code::kInvalidArgument);
  EXPECT_EQ(
      e->Rerank("c", std::span<const float>(data.data(), kDim), std::vector<uint64_t>(101, 1), 10)
          .status()
          .code(),
      Status::Code::kOutOfRange);
  EXPECT_EQ(e->Rerank("c", std::span<const float>(data.data(), 100), std::vector<uint64_t>{1}, 1)
                .status()
                .code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(e->Get("c", std::vector<uint64_t>(101, 1), false).status().code(),
            Status::Code::kOutOfRange);
  std::vector<SearchStage> stages = {{16, 10}, {24, 5}};
  EXPECT_EQ(e->Search("c", std::span<const float>(data.data(), kDim), stages).status().code(),
            Status::Code::kInvalidArgument);
  stages = {{16, 10}, {256, 5}};
  EXPECT_EQ(e->Search("c", std::span<const float>(data.data(), 64), stages).status().code(),
            Status::Code::kInvalidArgument);  // query shorter than the stages need
  EXPECT_EQ(e->Search("c", std::span<const float>(data.data(), kDim), {}).status().code(),
            Status::Code::kInvalidArgument);
  EXPECT_EQ(e->ScanBucket("c", 64, std::nullopt, 10).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(e->ScanBucket("c", 0, std::nullopt, 0).status().code(), Status::Code::kOutOfRange);
  EXPECT_EQ(e->DropBucket("c", 64).code(), Status::Code::kOutOfRange);
  EXPECT_EQ(e->DropCollection("nope").code(), Status::Code::kNotFound);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, 10u);
}

// ---- buckets --------------------------------------------------------------------------------

TEST(Buckets, ScanBucketPagesExactlyAndDropBucketRemovesExactlyIt) {
  auto e = OpenOrDie(Options(TempDir("buckets")));
  ASSERT_TRUE(e);
  CollectionSpec spec = Spec("c", Metric::kL2, StorageType::kInt8, {Exact(16)});
  spec.num_buckets = 16;
  ASSERT_TRUE(e->CreateCollection(spec).ok());
  const size_t n = 2000;
  const auto data = Clustered(n, kDim, 71);
  UpsertAll(*e, "c", data, n, /*id_base=*/1000);
  std::map<uint32_t, std::vector<uint64_t>> by_bucket;
  for (uint64_t id = 1000; id < 1000 + n; ++id) by_bucket[BucketOf(id, 16)].push_back(id);
  size_t total = 0;
  for (uint32_t b = 0; b < 16; ++b) {
    std::vector<uint64_t> seen;
    std::optional<uint64_t> after;
    int pages = 0;
    do {
      auto page = e->ScanBucket("c", b, after, 37);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      ASSERT_LE(page->points.size(), 37u);
      for (const auto& p : page->points) {
        seen.push_back(p.id);
        ASSERT_EQ(p.vector.size(), size_t(kDim));
        EXPECT_EQ(p.payload, 'p' + std::to_string(p.id));
      }
      after = page->next_after;
      ++pages;
    } while (after && pages < 1000);
    EXPECT_EQ(seen, by_bucket[b]) << "bucket " << b;  // same ids, in id order
    total += seen.size();
  }
  EXPECT_EQ(total, n);
  // Vectors from the scan equal Get's.
  auto page = e->ScanBucket("c", 3, std::nullopt, 5);
  ASSERT_TRUE(page.ok());
  auto got = e->Get("c", std::vector<uint64_t>{page->points[0].id}, true);
  ASSERT_TRUE(got.ok() && (*got)[0]);
  EXPECT_EQ((*got)[0]->vector, page->points[0].vector);

  ASSERT_TRUE(e->DropBucket("c", 3).ok());
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, n - by_bucket[3].size());
  auto empty = e->ScanBucket("c", 3, std::nullopt, 100);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->points.empty());
  EXPECT_FALSE(empty->next_after.has_value());
  std::vector<uint64_t> all;
  for (uint64_t id = 1000; id < 1000 + n; ++id) all.push_back(id);
  auto after_drop = e->Get("c", all, false);
  ASSERT_TRUE(after_drop.ok());
  for (size_t i = 0; i < all.size(); ++i) {
    EXPECT_EQ((*after_drop)[i].has_value(), BucketOf(all[i], 16) != 3) << all[i];
  }
  auto sl = e->Shortlist("c", std::span<const float>(data.data(), 16), 1000);
  ASSERT_TRUE(sl.ok());
  EXPECT_EQ(sl->size(), 1000u);
  for (const auto& c : *sl) EXPECT_NE(BucketOf(c.id, 16), 3u);
}

TEST(Collections, DropAndRecreateStartsEmpty) {
  const std::string dir = TempDir("drop");
  const auto data = Clustered(500, kDim, 81);
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16)})).ok());
    UpsertAll(*e, "c", data, 500);
    ASSERT_TRUE(e->Checkpoint().ok());
    ASSERT_TRUE(e->DropCollection("c").ok());
    EXPECT_EQ(e->Shortlist("c", std::span<const float>(data.data(), 16), 5).status().code(),
              Status::Code::kNotFound);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16)})).ok());
    EXPECT_EQ(FindStats(e->Stats(), "c")->points, 0u);
    auto sl = e->Shortlist("c", std::span<const float>(data.data(), 16), 5);
    ASSERT_TRUE(sl.ok());
    EXPECT_TRUE(sl->empty());
  }
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, 0u);
  auto got = e->Get("c", std::vector<uint64_t>{1, 2}, false);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE((*got)[0].has_value());
}

// ---- concurrency ----------------------------------------------------------------------------

TEST(Concurrency, ReadersAndWritersRunTogether) {
  auto e = OpenOrDie(Options(TempDir("concurrent")));
  ASSERT_TRUE(e);
  ASSERT_TRUE(
      e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp16, {Hnsw(16), Exact(8)}))
          .ok());
  ASSERT_TRUE(e->CreateCollection(Spec("d", Metric::kL2, StorageType::kFp32, {})).ok());
  const size_t n = 2000;
  const auto data = Clustered(n, kDim, 91);
  UpsertAll(*e, "c", data, n / 2);
  std::atomic<bool> stop{false};
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&, r] {
      int i = 0;
      while (!stop) {
        const float* q = &data[((i++ * 7 + r) % n) * kDim];
        auto s = e->Search("c", std::span<const float>(q, kDim),
                           std::vector<SearchStage>{{16, 50}, {64, 20}, {kDim, 5}});
        auto sl = e->Shortlist("c", std::span<const float>(q, 8), 10);
        auto g = e->Get("c", std::vector<uint64_t>{1, 2, 3}, true);
        auto d = e->Shortlist("d", std::span<const float>(q, 16), 5);
        if (!s.ok() || !sl.ok() || !g.ok() || !d.ok()) ++failures;
        (void)e->Stats();
      }
    });
  }
  threads.emplace_back([&] {
    for (size_t start = n / 2; start < n; start += 100) {
      std::vector<PointView> pts;
      for (size_t i = start; i < start + 100; ++i) {
        pts.push_back(PointView{i, std::span<const float>(&data[i * kDim], kDim), ""});
      }
      if (!e->Upsert("c", pts).ok()) ++failures;
      if (!e->Upsert("d", pts).ok()) ++failures;
      std::vector<uint64_t> del = {start - n / 2, start - n / 2 + 1};
      if (!e->Delete("c", del).ok()) ++failures;
    }
    if (!e->Checkpoint().ok()) ++failures;
    stop = true;
  });
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, n - 20);
  EXPECT_EQ(FindStats(e->Stats(), "d")->points, n / 2);
  const auto st = e->Stats();
  EXPECT_GT(st.disk_bytes, 0u);
}

}  // namespace
}  // namespace mrl::shard
