// Shard engine: vector kernels, buckets, exact and HNSW indexes, rerank, storage modes.
// Real RocksDB in temporary directories. Persistence, bad input, scans and concurrency:
// shard_engine_persistence_test.cc (same executable).
#include "tests/shard_engine_fixture.h"

namespace mrl::shard {
namespace {

using namespace shard_engine_testing;  // NOLINT: the shared helpers

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

// The in-place fp16 scoring kernels against a double-precision reference on the decoded values,
// at lengths that exercise the vector body and the scalar tail, from an odd address.
TEST(VectorKernels, HalfDotNormAndL2MatchADoubleReference) {
  std::mt19937 rng(3);
  std::normal_distribution<float> g(0, 1);
  for (size_t n : {1u, 7u, 15u, 16u, 17u, 100u, 2048u}) {
    std::vector<float> q(n), x(n);
    for (size_t i = 0; i < n; ++i) {
      q[i] = g(rng);
      x[i] = g(rng);
    }
    std::vector<unsigned char> enc(2 * n + 1);
    EncodeHalf(x.data(), n, enc.data() + 1);
    std::vector<float> xd(n);
    DecodeHalf(enc.data() + 1, n, xd.data());
    double dot = 0, xx = 0, l2 = 0;
    for (size_t i = 0; i < n; ++i) {
      dot += double(q[i]) * xd[i];
      xx += double(xd[i]) * xd[i];
      l2 += (double(q[i]) - xd[i]) * (double(q[i]) - xd[i]);
    }
    float got_dot = -1, got_xx = -1;
    HalfDotAndNorm(q.data(), enc.data() + 1, n, &got_dot, &got_xx);
    const double tol = 1e-5 * (1.0 + std::sqrt(double(n)) * 4);
    EXPECT_NEAR(got_dot, dot, tol * (1 + std::fabs(dot))) << "n=" << n << " " << HalfKernelName();
    EXPECT_NEAR(got_xx, xx, tol * (1 + xx)) << "n=" << n;
    EXPECT_NEAR(HalfL2Sq(q.data(), enc.data() + 1, n), l2, tol * (1 + l2)) << "n=" << n;
  }
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

// The stages compose (shard/engine_stages.h): every shortlister (a storage scan where no index
// exists, a scan of an exact index, a scan of an HNSW index when exact, the HNSW graph) feeds the
// same refine stages, and a one-trip Search is its shortlist followed by refines.
TEST(SearchStages, EveryShortlisterFeedsTheSameRefineStages) {
  const Metric metric = Metric::kCosine;
  auto e = OpenOrDie(Options(TempDir("stages")));
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->CreateCollection(Spec("c", metric, StorageType::kFp16, {Hnsw(16), Exact(32)})).ok());
  const size_t n = 6000;
  const auto data = Clustered(n, kDim, 11);
  UpsertAll(*e, "c", data, n);
  std::vector<uint64_t> all_ids(n);
  for (size_t i = 0; i < n; ++i) all_ids[i] = i;
  const auto db = Decoded(*e, "c", all_ids);
  ASSERT_EQ(db.size(), n);
  const auto queries = Clustered(4, kDim, 5);
  for (int qi = 0; qi < 4; ++qi) {
    const float* q = &queries[qi * kDim];
    const std::span<const float> query(q, kDim);
    auto score_full = [&](uint64_t id) { return BfScore(metric, q, db.at(id).data(), kDim); };
    // Brute-force funnel: top 150 at ds, top 40 of those at 64, top 10 of those at full d.
    auto bf_funnel = [&](int ds) {
      std::vector<uint64_t> a, b;
      for (const auto& x : BfTop(metric, db, q, ds, nullptr, 150)) a.push_back(x.second);
      for (const auto& x : BfTop(metric, db, q, 64, &a, 40)) b.push_back(x.second);
      return BfTop(metric, db, q, kDim, &b, 10);
    };
    // 8: no index (storage scan); 32: the exact index; 16 with exact: the HNSW index scanned.
    for (const auto& [ds, exact] : {std::pair{8, false}, std::pair{32, false}, std::pair{16, true}}) {
      const std::vector<SearchStage> stages = {{ds, 150}, {64, 40}, {kDim, 10}};
      auto got = e->Search("c", query, stages, /*ef=*/0, exact);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ExpectMatchesBruteForce(*got, bf_funnel(ds), score_full,
                              "funnel from Ds=" + std::to_string(ds) + (exact ? " (exact)" : ""));
    }
    // The HNSW graph: Search == Rerank(Shortlist), stage by stage, bit for bit.
    auto sl = e->Shortlist("c", query.first(16), 150);
    ASSERT_TRUE(sl.ok());
    auto mid = e->Rerank("c", query.first(64), Ids(*sl), 40);
    ASSERT_TRUE(mid.ok());
    auto last = e->Rerank("c", query, Ids(*mid), 10);
    ASSERT_TRUE(last.ok());
    const std::vector<SearchStage> stages = {{16, 150}, {64, 40}, {kDim, 10}};
    auto one_trip = e->Search("c", query, stages);
    ASSERT_TRUE(one_trip.ok());
    ASSERT_EQ(one_trip->size(), last->size());
    for (size_t i = 0; i < last->size(); ++i) {
      EXPECT_EQ((*one_trip)[i].id, (*last)[i].id) << "rank " << i;
      EXPECT_EQ((*one_trip)[i].score, (*last)[i].score) << "rank " << i;
    }
  }
}

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

// int8 HNSW (IndexSpec::int8, issue 13 item 2): recall against the exact prefix scan beside the
// fp32 index over the same prefix, the staged search's recall, RAM, and the persisted file.
TEST(HnswIndex, Int8VectorsKeepRecallAtAQuarterOfTheVectorRam) {
  const std::string dir = TempDir("hnsw_int8");
  const size_t n = 10000;
  const auto data = Clustered(n, kDim, 13);
  const auto queries = Clustered(100, kDim, 14);
  IndexSpec i8 = Hnsw(32, 100);
  i8.int8 = true;
  uint64_t ram_fp32 = 0, ram_int8 = 0;
  std::vector<std::vector<Candidate>> before;
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(e->CreateCollection(Spec("f", Metric::kCosine, StorageType::kFp16, {Hnsw(32, 100)})).ok());
    ASSERT_TRUE(e->CreateCollection(Spec("q", Metric::kCosine, StorageType::kFp16, {i8})).ok());
    UpsertAll(*e, "f", data, n);
    UpsertAll(*e, "q", data, n);
    double recall_f = 0, recall_q = 0, search_f = 0, search_q = 0;
    for (int qi = 0; qi < 100; ++qi) {
      const float* q = &queries[qi * kDim];
      auto exact = e->Shortlist("f", std::span<const float>(q, 32), 10, 0, /*exact=*/true);
      auto f = e->Shortlist("f", std::span<const float>(q, 32), 10);
      auto g = e->Shortlist("q", std::span<const float>(q, 32), 10);
      ASSERT_TRUE(exact.ok() && f.ok() && g.ok());
      recall_f += Recall(*f, *exact);
      recall_q += Recall(*g, *exact);
      const std::vector<SearchStage> plan = {{32, 200}, {kDim, 10}};
      auto s = e->Search("q", std::span<const float>(q, kDim), plan, 400);
      auto sf = e->Search("f", std::span<const float>(q, kDim), plan, 400);
      auto se = e->Search("f", std::span<const float>(q, kDim), plan, 0, /*exact=*/true);
      ASSERT_TRUE(s.ok() && sf.ok() && se.ok());
      search_q += Recall(*s, *se);
      search_f += Recall(*sf, *se);
      before.push_back(*g);
    }
    for (const auto& c : e->Stats().collections) {
      (c.name == "f" ? ram_fp32 : ram_int8) = c.indexes.at(0).memory_bytes;
    }
    std::printf("recall@10 of the 32-d shortlist: fp32 %.3f, int8 %.3f; search(32x200 -> 256x10, "
                "ef=400): fp32 %.3f, int8 %.3f; index RAM fp32 %llu, int8 %llu bytes\n",
                recall_f / 100, recall_q / 100, search_f / 100, search_q / 100,
                static_cast<unsigned long long>(ram_fp32), static_cast<unsigned long long>(ram_int8));
    EXPECT_GE(recall_q / 100, 0.90);
    EXPECT_GE(recall_q / 100, recall_f / 100 - 0.05);
    EXPECT_GE(search_q / 100, search_f / 100 - 0.05);
    // 32 floats (128 bytes) become 36 bytes per vector.
    EXPECT_LE(ram_int8 + n * 80, ram_fp32);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  for (const auto& c : e->Stats().collections) EXPECT_TRUE(c.indexes.at(0).loaded) << c.name;
  for (int qi = 0; qi < 100; ++qi) {
    auto g = e->Shortlist("q", std::span<const float>(&queries[qi * kDim], 32), 10);
    ASSERT_TRUE(g.ok());
    EXPECT_EQ(Ids(*g), Ids(before[qi])) << "query " << qi << " after reload";
  }
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

}  // namespace
}  // namespace mrl::shard
