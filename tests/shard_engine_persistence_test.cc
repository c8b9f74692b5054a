// Shard engine: persistence and restarts (clean and crashed), bad input, bucket scans, drop and
// recreate, concurrent readers and writers. Real RocksDB in temporary directories.
#include <filesystem>
#include <fstream>

#include "tests/shard_engine_fixture.h"

namespace mrl::shard {
namespace {

using namespace shard_engine_testing;  // NOLINT: the shared helpers

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

// Issue 22 item 4: an index rebuilt on open says which check failed, in the stats (and, at
// warning level, in the log): truncated, checksum mismatch, no checksum file, stale, missing.
TEST(Persistence, ARebuiltIndexSaysWhyItsCheckpointWasNotUsed) {
  namespace fs = std::filesystem;
  const std::string dir = TempDir("rebuild_reason");
  const size_t n = 1500;
  const auto data = Clustered(n, kDim, 61);
  auto index_file = [&](const std::string& ext) {
    for (const auto& e : fs::recursive_directory_iterator(dir)) {
      if (e.path().extension() == ext) return e.path().string();
    }
    return std::string();
  };
  // Opens, checks every index's size and returns {hnsw reason, exact reason}.
  auto reasons = [&](bool checkpoint_after) {
    auto e = OpenOrDie(Options(dir));
    EXPECT_TRUE(e);
    std::map<IndexKind, std::string> out;
    const auto stats = e->Stats();
    for (const auto& ix : FindStats(stats, "c")->indexes) {
      EXPECT_EQ(ix.size, n);
      EXPECT_EQ(ix.loaded, ix.rebuild_reason.empty()) << ix.rebuild_reason;
      out[ix.kind] = ix.rebuild_reason;
    }
    if (checkpoint_after) {
      EXPECT_TRUE(e->Checkpoint().ok());
    }
    return out;
  };
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    ASSERT_TRUE(
        e->CreateCollection(Spec("c", Metric::kCosine, StorageType::kFp32, {Hnsw(16), Exact(8)}))
            .ok());
    UpsertAll(*e, "c", data, n);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  auto r = reasons(false);
  EXPECT_EQ(r[IndexKind::kHnsw], "");
  EXPECT_EQ(r[IndexKind::kExact], "");

  // Truncated HNSW file; random bytes (same size) in the exact one.
  const std::string hnsw = index_file(".hnsw"), exact = index_file(".exact");
  ASSERT_FALSE(hnsw.empty());
  ASSERT_FALSE(exact.empty());
  fs::resize_file(hnsw, fs::file_size(hnsw) / 2);
  {
    std::fstream f(exact, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(exact) / 2));
    std::mt19937 rng(7);
    for (int i = 0; i < 64; ++i) f.put(static_cast<char>(rng()));
  }
  r = reasons(true);
  EXPECT_NE(r[IndexKind::kHnsw].find("truncated"), std::string::npos) << r[IndexKind::kHnsw];
  EXPECT_NE(r[IndexKind::kExact].find("checksum mismatch"), std::string::npos)
      << r[IndexKind::kExact];

  // The checkpoint after the rebuild wrote good files again; then one loses its sum file.
  r = reasons(false);
  EXPECT_EQ(r[IndexKind::kHnsw], "");
  EXPECT_EQ(r[IndexKind::kExact], "");
  fs::remove(index_file(".hnsw") + ".sum");
  r = reasons(true);
  EXPECT_NE(r[IndexKind::kHnsw].find("no checksum file"), std::string::npos)
      << r[IndexKind::kHnsw];
  EXPECT_EQ(r[IndexKind::kExact], "");

  // Writes after the last checkpoint (no checkpoint at close): stale.
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e);
    UpsertAll(*e, "c", data, 10);  // the same ids again: n stays n
  }
  r = reasons(false);
  EXPECT_NE(r[IndexKind::kHnsw].find("stale"), std::string::npos) << r[IndexKind::kHnsw];
  EXPECT_NE(r[IndexKind::kExact].find("stale"), std::string::npos) << r[IndexKind::kExact];

  // No index file at all: missing.
  for (const char* ext : {".hnsw", ".exact"}) {
    for (std::string f = index_file(ext); !f.empty(); f = index_file(ext)) fs::remove(f);
  }
  r = reasons(false);
  EXPECT_NE(r[IndexKind::kHnsw].find("missing"), std::string::npos) << r[IndexKind::kHnsw];
  EXPECT_NE(r[IndexKind::kExact].find("missing"), std::string::npos) << r[IndexKind::kExact];
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
