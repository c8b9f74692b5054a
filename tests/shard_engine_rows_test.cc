// Shard engine: the rerank rows (shard/row_store.h) against RocksDB, their source of truth.
// Every check compares what a rerank reads from the rows with what it reads from RocksDB (the
// same directory opened with rerank_rows off): the same ids with bit-identical scores.
#include <signal.h>
#include <sys/wait.h>

#include <filesystem>
#include <fstream>

#include "shard/row_store.h"
#include "tests/shard_engine_fixture.h"

namespace mrl::shard {
namespace {

using namespace shard_engine_testing;  // NOLINT: the shared helpers
namespace fs = std::filesystem;

EngineOptions RowsOptions(const std::string& dir, bool rows) {
  EngineOptions o = Options(dir);
  o.rerank_rows = rows;
  return o;
}

// Every id in [0, universe) that the engine holds, scored by a full-d rerank (k = 0: all).
std::vector<Candidate> RerankAll(Engine& e, uint64_t universe, const std::vector<float>& q) {
  std::vector<Candidate> out;
  for (uint64_t start = 0; start < universe; start += 4000) {
    std::vector<uint64_t> ids;
    for (uint64_t id = start; id < std::min(universe, start + 4000); ++id) ids.push_back(id);
    auto r = e.Rerank("c", q, ids, 0);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (r.ok()) out.insert(out.end(), r->begin(), r->end());
  }
  std::sort(out.begin(), out.end(), [](const Candidate& a, const Candidate& b) { return a.id < b.id; });
  return out;
}

void ExpectSame(const std::vector<Candidate>& a, const std::vector<Candidate>& b,
                const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  size_t differ = 0;
  for (size_t i = 0; i < a.size(); ++i) differ += a[i].id != b[i].id || a[i].score != b[i].score;
  EXPECT_EQ(differ, 0u) << what << ": " << differ << " of " << a.size() << " differ";
}

// Random upserts (new ids, rewrites, versioned), deletes and a dropped bucket.
void RandomWrites(Engine& e, uint64_t universe, uint32_t seed, int rounds) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<uint64_t> pick(0, universe - 1);
  const auto data = Clustered(400, kDim, seed);
  uint64_t version = 1000 + seed * 100000ull;
  for (int r = 0; r < rounds; ++r) {
    std::vector<PointView> pts;
    std::vector<uint64_t> del;
    const bool versioned = r % 3 == 2;
    for (size_t i = 0; i < 200; ++i) {
      PointView p{pick(rng), std::span<const float>(&data[(rng() % 400) * kDim], kDim), "x"};
      if (versioned) p.version = ++version;
      pts.push_back(p);
    }
    for (size_t i = 0; i < 60; ++i) del.push_back(pick(rng));
    ASSERT_TRUE(e.Upsert("c", pts).ok());
    if (versioned) {
      std::vector<uint64_t> versions;
      for (size_t i = 0; i < del.size(); ++i) versions.push_back(++version);
      ASSERT_TRUE(e.Delete("c", del, versions, nullptr).ok());
    } else {
      ASSERT_TRUE(e.Delete("c", del).ok());
    }
  }
}

void Create(Engine& e, StorageType storage) {
  ASSERT_TRUE(
      e.CreateCollection(Spec("c", Metric::kCosine, storage, {Hnsw(16), Exact(32)})).ok());
}

TEST(Rows, MatchRocksDbAfterRandomUpsertsDeletesAndADroppedBucket) {
  for (StorageType storage : {StorageType::kFp16, StorageType::kFp32, StorageType::kInt8}) {
    SCOPED_TRACE(static_cast<int>(storage));
    const std::string dir = TempDir("rows_random");
    const uint64_t universe = 3000;
    const auto q = Clustered(1, kDim, 7);
    std::vector<Candidate> with_rows;
    {
      auto e = OpenOrDie(RowsOptions(dir, true));
      ASSERT_TRUE(e);
      Create(*e, storage);
      UpsertAll(*e, "c", Clustered(universe, kDim, 3), 2000);
      RandomWrites(*e, universe, 11, 12);
      ASSERT_TRUE(e->DropBucket("c", 5).ok());
      RandomWrites(*e, universe, 12, 3);
      const auto stats = e->Stats();
      const auto* st = FindStats(stats, "c");
      ASSERT_NE(st, nullptr);
      EXPECT_TRUE(st->rows.enabled);
      EXPECT_EQ(st->rows.rows, st->points);
      EXPECT_GE(st->rows.file_bytes, st->rows.rows * RowStore::RowBytesFor(
                                                         storage == StorageType::kFp16 ? 2 * kDim
                                                         : storage == StorageType::kFp32
                                                             ? 4 * kDim
                                                             : kDim + 4));
      with_rows = RerankAll(*e, universe, q);
      EXPECT_GT(with_rows.size(), 1000u);
      ASSERT_TRUE(e->Checkpoint().ok());
    }
    auto plain = OpenOrDie(RowsOptions(dir, false));
    ASSERT_TRUE(plain);
    EXPECT_FALSE(FindStats(plain->Stats(), "c")->rows.enabled);
    ExpectSame(with_rows, RerankAll(*plain, universe, q), "rows vs RocksDB");
  }
}

TEST(Rows, ACheckpointIsLoadedAndAWriteAfterItRewritesTheRowsOnOpen) {
  const std::string dir = TempDir("rows_reopen");
  const uint64_t universe = 2500;
  const auto q = Clustered(1, kDim, 8);
  std::vector<Candidate> before;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(universe, kDim, 4), universe);
    RandomWrites(*e, universe, 21, 4);
    ASSERT_TRUE(e->Checkpoint().ok());
    before = RerankAll(*e, universe, q);
  }
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    const auto st = *FindStats(e->Stats(), "c");
    EXPECT_TRUE(st.rows.loaded) << st.rows.rebuild_reason;
    EXPECT_TRUE(st.rows.enabled);
    ExpectSame(before, RerankAll(*e, universe, q), "loaded rows");
    // A write after the checkpoint: its table is gone, and the next open rewrites the rows.
    RandomWrites(*e, universe, 22, 2);
    before = RerankAll(*e, universe, q);
  }
  auto e = OpenOrDie(RowsOptions(dir, true));
  ASSERT_TRUE(e);
  const auto st = *FindStats(e->Stats(), "c");
  EXPECT_FALSE(st.rows.loaded);
  EXPECT_NE(st.rows.rebuild_reason.find("no row table"), std::string::npos)
      << st.rows.rebuild_reason;
  ExpectSame(before, RerankAll(*e, universe, q), "rewritten rows");
}

TEST(Rows, ACorruptTableIsRefusedAndTheRowsRewritten) {
  const std::string dir = TempDir("rows_corrupt");
  const uint64_t universe = 1500;
  const auto q = Clustered(1, kDim, 9);
  std::vector<Candidate> before;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(universe, kDim, 5), universe);
    ASSERT_TRUE(e->Checkpoint().ok());
    before = RerankAll(*e, universe, q);
  }
  std::string table;
  for (const auto& f : fs::recursive_directory_iterator(dir)) {
    if (f.path().extension() == ".rowids") table = f.path().string();
  }
  ASSERT_FALSE(table.empty());
  {
    std::fstream f(table, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);
    f.put('\x7f');
  }
  auto e = OpenOrDie(RowsOptions(dir, true));
  ASSERT_TRUE(e);
  const auto st = *FindStats(e->Stats(), "c");
  EXPECT_FALSE(st.rows.loaded);
  EXPECT_NE(st.rows.rebuild_reason.find("checksum"), std::string::npos) << st.rows.rebuild_reason;
  ExpectSame(before, RerankAll(*e, universe, q), "rows after a corrupt table");
}

// kill -9 of a process in the middle of its writes (rows rewritten in place, a torn row likely):
// on open the rows are rewritten from RocksDB and agree with it.
TEST(Rows, KillNineMidWriteLeavesRowsThatAgreeWithRocksDbOnOpen) {
  const std::string dir = TempDir("rows_kill");
  const uint64_t universe = 4000;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(universe, kDim, 6), universe);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto e = Engine::Open(RowsOptions(dir, true));
    if (!e.ok()) _exit(2);
    const auto data = Clustered(256, kDim, 77);
    std::mt19937_64 rng(5);
    for (uint64_t round = 0;; ++round) {  // until killed
      std::vector<PointView> pts;
      for (int i = 0; i < 256; ++i) {
        pts.push_back(PointView{rng() % (universe + 2000),
                                std::span<const float>(&data[(rng() % 256) * kDim], kDim), ""});
      }
      if (!(*e)->Upsert("c", pts).ok()) _exit(3);
      std::vector<uint64_t> del{rng() % universe, rng() % universe};
      if (!(*e)->Delete("c", del).ok()) _exit(4);
    }
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  ASSERT_EQ(kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer exited on its own with " << WEXITSTATUS(status);

  const auto q = Clustered(1, kDim, 10);
  std::vector<Candidate> rows;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    const auto st = *FindStats(e->Stats(), "c");
    EXPECT_FALSE(st.rows.loaded) << "the killed writer's rows were trusted";
    EXPECT_TRUE(st.rows.enabled);
    EXPECT_EQ(st.rows.rows, st.points);
    rows = RerankAll(*e, universe + 2000, q);
    std::printf("after kill -9: %llu points, rows rewritten (%s)\n",
                static_cast<unsigned long long>(st.points), st.rows.rebuild_reason.c_str());
  }
  auto plain = OpenOrDie(RowsOptions(dir, false));
  ASSERT_TRUE(plain);
  ExpectSame(rows, RerankAll(*plain, universe + 2000, q), "rows vs RocksDB after kill -9");
}

// RocksDB loses the writes after a checkpoint (a power cut with unsynced WAL, simulated by
// restoring a copy of its directory) while the rows file kept them: the checkpoint's table was
// removed before the first row changed, so the rows are not trusted.
TEST(Rows, RowsAheadOfRocksDbAreNotTrusted) {
  const std::string dir = TempDir("rows_ahead");
  const uint64_t universe = 2000;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(universe, kDim, 14), universe);
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  fs::copy(dir + "/db", dir + "/db_at_checkpoint", fs::copy_options::recursive);
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    RandomWrites(*e, universe, 31, 3);
  }
  fs::remove_all(dir + "/db");
  fs::rename(dir + "/db_at_checkpoint", dir + "/db");
  const auto q = Clustered(1, kDim, 15);
  std::vector<Candidate> rows;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    EXPECT_FALSE(FindStats(e->Stats(), "c")->rows.loaded) << "rows ahead of RocksDB were loaded";
    rows = RerankAll(*e, universe, q);
  }
  auto plain = OpenOrDie(RowsOptions(dir, false));
  ASSERT_TRUE(plain);
  ExpectSame(rows, RerankAll(*plain, universe, q), "rows vs RocksDB after RocksDB lost writes");
}

// Evicted from the page cache (cold-store measurements), with and without readahead of a
// rerank's rows: the same answers; the eviction leaves (almost) nothing of the file resident.
TEST(Rows, EvictedRowsAndReadaheadAnswerTheSame) {
  const std::string dir = TempDir("rows_evict");
  const uint64_t universe = 3000;
  const auto q = Clustered(1, kDim, 16);
  std::vector<Candidate> warm;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(universe, kDim, 17), universe);
    ASSERT_TRUE(e->Checkpoint().ok());
    warm = RerankAll(*e, universe, q);
    EXPECT_GE(FindStats(e->Stats(), "c")->rows.resident_bytes, universe * 2 * kDim);
    ASSERT_TRUE(e->EvictRows("c").ok());
    EXPECT_LT(FindStats(e->Stats(), "c")->rows.resident_bytes, universe * 64);
    ExpectSame(warm, RerankAll(*e, universe, q), "after eviction");
    EXPECT_EQ(e->EvictRows("nope").code(), Status::Code::kNotFound);
  }
  EngineOptions o = RowsOptions(dir, true);
  o.rows_readahead = true;
  auto e = OpenOrDie(o);
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->EvictRows("c").ok());
  ExpectSame(warm, RerankAll(*e, universe, q), "readahead");
}

// Searches read the rows too: the same answers as with reads from RocksDB.
TEST(Rows, StagedSearchAnswersAsFromRocksDb) {
  const std::string dir = TempDir("rows_search");
  const size_t n = 3000;
  const auto queries = Clustered(10, kDim, 12);
  std::vector<std::vector<Candidate>> with_rows;
  {
    auto e = OpenOrDie(RowsOptions(dir, true));
    ASSERT_TRUE(e);
    Create(*e, StorageType::kFp16);
    UpsertAll(*e, "c", Clustered(n, kDim, 13), n);
    for (int qi = 0; qi < 10; ++qi) {
      auto s = e->Search("c", std::span<const float>(&queries[qi * kDim], kDim),
                         std::vector<SearchStage>{{16, 200}, {64, 50}, {kDim, 10}});
      ASSERT_TRUE(s.ok());
      with_rows.push_back(*s);
    }
    ASSERT_TRUE(e->Checkpoint().ok());
  }
  auto plain = OpenOrDie(RowsOptions(dir, false));
  ASSERT_TRUE(plain);
  for (int qi = 0; qi < 10; ++qi) {
    auto s = plain->Search("c", std::span<const float>(&queries[qi * kDim], kDim),
                           std::vector<SearchStage>{{16, 200}, {64, 50}, {kDim, 10}});
    ASSERT_TRUE(s.ok());
    ExpectSame(*s, with_rows[qi], "search " + std::to_string(qi));
  }
}

}  // namespace
}  // namespace mrl::shard
