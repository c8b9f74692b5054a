// mrl-shard as a process: search paths against brute force, deletes, restarts (graceful and
// kill -9). Malformed frames, auth, bad requests, pipelining, deadlines, drain and overload:
// shard_server_protocol_test.cc (same executable).
#include "tests/shard_server_fixture.h"

#include <map>

#include "common/bucket.h"
#include "common/move_checksum.h"

namespace mrl {
namespace {

using namespace shard_server_testing;  // NOLINT: the shared helpers

TEST_F(ShardServerTest, ExactShortlistRerankAndSearchEqualBruteForce) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints, wire::IndexKind::Exact);  // an exact low-d index
  constexpr size_t kQueries = 16;
  constexpr int kShort = 100, kFinal = 10;
  const auto qs = RandomVectors(kQueries, kDim, 2);

  auto sl = client->Call(ShortlistOf("c", qs, kQueries, kShort, /*exact=*/false));
  ASSERT_TRUE(sl.ok()) << sl.status().ToString();
  // The full scan (exact = true) agrees with the exact index.
  auto scan = client->Call(ShortlistOf("c", qs, kQueries, kShort, /*exact=*/true));
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  ASSERT_EQ(sl->results.size(), kQueries);
  wire::RerankRequestT rr;
  rr.collection = "c";
  rr.dims = kDim;
  rr.queries = qs;
  rr.k = kFinal;
  for (size_t i = 0; i < kQueries; ++i) {
    const float* q = &qs[i * kDim];
    const auto want = BruteForce(q, AllIds(), Data(), kLowDim, kShort);
    ASSERT_EQ(Ids(*sl->results[i]), want) << "query " << i;
    ASSERT_EQ(Ids(*scan->results[i]), want) << "query " << i;
    for (const auto& c : sl->results[i]->candidates) {
      EXPECT_NEAR(c.score(), Cosine(q, &Data()[c.id() * kDim], kLowDim), 1e-4);
    }
    auto list = std::make_unique<wire::IdListT>();
    list->ids = want;
    rr.id_lists.push_back(std::move(list));
  }
  auto re = client->Call(rr);
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  wire::SearchRequestT se;
  se.collection = "c";
  se.dims = kDim;
  se.queries = qs;
  se.stages = {wire::SearchStage(kLowDim, kShort), wire::SearchStage(kDim, kFinal)};
  auto sr = client->Call(se);
  ASSERT_TRUE(sr.ok()) << sr.status().ToString();
  for (size_t i = 0; i < kQueries; ++i) {
    const float* q = &qs[i * kDim];
    std::vector<float> shortlisted;
    for (uint64_t id : rr.id_lists[i]->ids) {
      shortlisted.insert(shortlisted.end(), &Data()[id * kDim], &Data()[id * kDim] + kDim);
    }
    const auto want = BruteForce(q, rr.id_lists[i]->ids, shortlisted, kDim, kFinal);
    EXPECT_EQ(Ids(*re->results[i]), want) << "rerank, query " << i;
    EXPECT_EQ(Ids(*sr->results[i]), want) << "one-trip search, query " << i;
  }
}

TEST_F(ShardServerTest, HnswShortlistRecallAtTenIsAtLeast95Percent) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  constexpr size_t kQueries = 100;
  const auto qs = RandomVectors(kQueries, kDim, 3);
  auto sl = client->Call(ShortlistOf("c", qs, kQueries, 10, /*exact=*/false, /*ef=*/200));
  ASSERT_TRUE(sl.ok()) << sl.status().ToString();
  size_t hits = 0;
  for (size_t i = 0; i < kQueries; ++i) {
    const auto want = BruteForce(&qs[i * kDim], AllIds(), Data(), kLowDim, 10);
    const auto got = Ids(*sl->results[i]);
    for (uint64_t id : got) hits += std::count(want.begin(), want.end(), id);
  }
  const double recall = double(hits) / (kQueries * 10);
  std::cout << "HNSW recall@10 at " << kLowDim << " dims: " << recall << "\n";
  EXPECT_GE(recall, 0.95);
}

TEST_F(ShardServerTest, DeletedIdsNeverComeBack) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(4, kDim, 4);
  // Delete every id the first shortlist returned: the best matches, so they would come back.
  auto before = client->Call(ShortlistOf("c", qs, 4, 20, true));
  ASSERT_TRUE(before.ok());
  wire::DeleteRequestT del;
  del.collection = "c";
  for (const auto& l : before->results) {
    for (uint64_t id : Ids(*l)) del.ids.push_back(id);
  }
  ASSERT_TRUE(client->Call(del).ok());
  const std::set<uint64_t> deleted(del.ids.begin(), del.ids.end());
  for (bool exact : {true, false}) {
    auto after = client->Call(ShortlistOf("c", qs, 4, 200, exact, 300));
    ASSERT_TRUE(after.ok());
    for (const auto& l : after->results) {
      EXPECT_EQ(l->candidates.size(), 200u);
      for (uint64_t id : Ids(*l)) EXPECT_FALSE(deleted.count(id)) << id << " exact=" << exact;
    }
  }
  wire::RerankRequestT rr;
  rr.collection = "c";
  rr.dims = kDim;
  rr.queries.assign(qs.begin(), qs.begin() + kDim);
  rr.id_lists.push_back(std::make_unique<wire::IdListT>());
  rr.id_lists[0]->ids = del.ids;
  rr.id_lists[0]->ids.push_back(kPoints - 1);  // one live id
  auto re = client->Call(rr);
  ASSERT_TRUE(re.ok());
  EXPECT_EQ(Ids(*re->results[0]), std::vector<uint64_t>{kPoints - 1});
  wire::GetRequestT get;
  get.collection = "c";
  get.ids = del.ids;
  auto got = client->Call(get);
  ASSERT_TRUE(got.ok());
  for (const auto& p : got->points) EXPECT_FALSE(p->found) << p->id;
  wire::SearchRequestT se;
  se.collection = "c";
  se.dims = kDim;
  se.queries = qs;
  se.stages = {wire::SearchStage(kLowDim, 100), wire::SearchStage(kDim, 10)};
  auto sr = client->Call(se);
  ASSERT_TRUE(sr.ok());
  for (const auto& l : sr->results) {
    for (uint64_t id : Ids(*l)) EXPECT_FALSE(deleted.count(id)) << id;
  }
}

TEST_F(ShardServerTest, GracefulRestartLoadsThePersistedIndex) {
  StartShard();
  const auto qs = RandomVectors(8, kDim, 5);
  std::vector<std::vector<uint64_t>> before;
  {
    auto client = shard_->Client();
    Load(*client, "c", Data(), kPoints);
    auto sl = client->Call(ShortlistOf("c", qs, 8, 10, false));
    ASSERT_TRUE(sl.ok());
    for (const auto& l : sl->results) before.push_back(Ids(*l));
  }
  ASSERT_EQ(shard_->Terminate(), 0) << shard_->Log();
  EXPECT_NE(shard_->Log().find("checkpointed"), std::string::npos) << shard_->Log();
  shard_->Start();
  const std::string log = shard_->Log();
  EXPECT_NE(log.find("collection c: 10000 points, index dims=32 size=10000"), std::string::npos)
      << log;
  EXPECT_NE(log.find("(loaded from disk)"), std::string::npos) << log;
  auto client = shard_->Client();
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), uint64_t(kPoints));
  EXPECT_EQ(IndexSize(*stats, "c"), uint64_t(kPoints));
  ASSERT_EQ(stats->collections.size(), 1u);
  ASSERT_EQ(stats->collections[0]->indexes.size(), 1u);
  EXPECT_TRUE(stats->collections[0]->indexes[0]->loaded) << "index rebuilt instead of loaded";
  auto sl = client->Call(ShortlistOf("c", qs, 8, 10, false));
  ASSERT_TRUE(sl.ok());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(Ids(*sl->results[i]), before[i]);
}

TEST_F(ShardServerTest, KillNineLosesNoAcknowledgedUpsert) {
  StartShard();
  {
    auto client = shard_->Client();
    ASSERT_TRUE(client->Call(CollectionRequest("c")).ok());
  }
  constexpr size_t kBatch = 20;
  const auto data = RandomVectors(20000, kDim, 6);  // point id i has data[i]
  std::mutex mu;
  std::vector<uint64_t> acked;
  std::atomic<size_t> sent{0};
  std::thread writer([&] {
    auto client = shard_->Client();
    for (size_t start = 0; start + kBatch <= 20000; start += kBatch) {
      std::vector<uint64_t> ids(kBatch);
      std::iota(ids.begin(), ids.end(), start);
      sent = start + kBatch;
      auto r = client->Call(UpsertOf("c", ids, &data[start * kDim]), 5000);
      if (!r.ok()) return;  // the server is gone
      std::lock_guard<std::mutex> lock(mu);
      acked.insert(acked.end(), ids.begin(), ids.end());
    }
  });
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (acked.size() >= 3000) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  shard_->Kill9();
  writer.join();
  ASSERT_GE(acked.size(), 1000u);
  shard_->Start();
  auto client = shard_->Client();
  // Every acknowledged point is there with its vector.
  std::vector<uint64_t> present;
  std::vector<float> present_vectors;
  std::set<uint64_t> acked_set(acked.begin(), acked.end());
  for (size_t start = 0; start < sent.load(); start += 1000) {
    wire::GetRequestT get;
    get.collection = "c";
    get.with_vector = true;
    for (size_t id = start; id < std::min(sent.load(), start + 1000); ++id) get.ids.push_back(id);
    auto got = client->Call(get);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    for (const auto& p : got->points) {
      if (acked_set.count(p->id)) {
        ASSERT_TRUE(p->found) << "acknowledged id " << p->id << " lost";
      }
      if (!p->found) continue;
      ASSERT_EQ(p->vector.size(), size_t(kDim));
      ASSERT_TRUE(std::equal(p->vector.begin(), p->vector.end(), &data[p->id * kDim]));
      present.push_back(p->id);
      present_vectors.insert(present_vectors.end(), p->vector.begin(), p->vector.end());
    }
  }
  std::cout << acked.size() << " acknowledged, " << present.size() << " present after kill -9\n";
  // The index agrees with RocksDB.
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), present.size());
  EXPECT_EQ(IndexSize(*stats, "c"), present.size());
  const auto qs = RandomVectors(4, kDim, 7);
  auto sl = client->Call(ShortlistOf("c", qs, 4, 50, true));
  ASSERT_TRUE(sl.ok());
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(Ids(*sl->results[i]),
              BruteForce(&qs[i * kDim], present, present_vectors, kLowDim, 50));
  }
  // The HNSW index holds nothing RocksDB does not.
  const std::set<uint64_t> present_set(present.begin(), present.end());
  auto hn = client->Call(ShortlistOf("c", qs, 4, 200, false, 300));
  ASSERT_TRUE(hn.ok());
  for (const auto& l : hn->results) {
    EXPECT_EQ(l->candidates.size(), std::min<size_t>(200, present.size()));
    for (uint64_t id : Ids(*l)) EXPECT_TRUE(present_set.count(id)) << id;
  }
}

// ---- Versions and tombstones (live bucket moves) -------------------------------------------

// Versions travel in UpsertRequest / DeleteRequest, stale writes come back as `skipped`, a bad
// versions length is a typed InvalidArgument that writes nothing, and ScanBucket,
// BucketChecksum and PurgeTombstones carry versions and tombstones.
TEST_F(ShardServerTest, VersionedWritesScanAndChecksumOverTheWire) {
  StartShard();
  auto client = shard_->Client();
  ASSERT_TRUE(client->Call(CollectionRequest("c", wire::IndexKind::Exact)).ok());
  const auto vecs = RandomVectors(8, kDim, 9);
  auto up = UpsertOf("c", {1, 2}, vecs.data());
  up.versions = {2, 2};
  auto r = client->Call(up);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->count, 2u);
  EXPECT_EQ(r->skipped, 0u);
  up = UpsertOf("c", {1, 2}, &vecs[2 * kDim]);
  up.versions = {1, 3};  // 1 is older than the stored 2
  r = client->Call(up);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->skipped, 1u);

  // Versions of the wrong length: InvalidArgument, nothing written.
  up = UpsertOf("c", {7, 8}, &vecs[4 * kDim]);
  up.versions = {5};
  r = client->Call(up);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("versions"), std::string::npos) << r.status().message();
  wire::DeleteRequestT del;
  del.collection = "c";
  del.ids = {1, 2};
  del.versions = {9};
  auto d = client->Call(del);
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), Status::Code::kInvalidArgument);

  del.ids = {1};
  del.versions = {5};
  d = client->Call(del);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->count, 1u);
  EXPECT_EQ(d->skipped, 0u);
  d = client->Call(del);  // replayed
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->skipped, 1u);
  up = UpsertOf("c", {1}, vecs.data());
  up.versions = {4};  // older than the delete: no resurrection
  r = client->Call(up);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->skipped, 1u);

  wire::GetRequestT get;
  get.collection = "c";
  get.ids = {1, 2, 7, 8};
  get.with_vector = true;
  auto got = client->Call(get);
  ASSERT_TRUE(got.ok());
  EXPECT_FALSE(got->points[0]->found);
  ASSERT_TRUE(got->points[1]->found);
  EXPECT_EQ(got->points[1]->version, 3u);
  EXPECT_EQ(got->points[1]->vector, std::vector<float>(&vecs[3 * kDim], &vecs[4 * kDim]));
  EXPECT_FALSE(got->points[2]->found);
  EXPECT_FALSE(got->points[3]->found);

  // Every bucket scanned: point 2 at version 3, tombstone {1 -> 5}; the checksum agrees.
  std::map<uint64_t, uint64_t> live, dead;
  for (uint32_t b = 0; b < 64; ++b) {
    wire::ScanBucketRequestT scan;
    scan.collection = "c";
    scan.bucket = b;
    scan.limit = 100;
    auto page = client->Call(scan);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_FALSE(page->has_next);
    uint64_t count = 0, checksum = 0;
    for (const auto& p : page->points) {
      live[p->id] = p->version;
      ++count;
      checksum += MoveChecksumTerm(p->id, p->version);
    }
    for (const auto& t : page->tombstones) dead[t.id()] = t.version();
    wire::BucketChecksumRequestT cr;
    cr.collection = "c";
    cr.bucket = b;
    auto figures = client->Call(cr);
    ASSERT_TRUE(figures.ok()) << figures.status().ToString();
    EXPECT_EQ(figures->count, count) << "bucket " << b;
    EXPECT_EQ(figures->checksum, checksum) << "bucket " << b;
    EXPECT_EQ(figures->tombstone_count, b == BucketOfId(1, 64) ? 1u : 0u) << "bucket " << b;
  }
  EXPECT_EQ(live, (std::map<uint64_t, uint64_t>{{2, 3}}));
  EXPECT_EQ(dead, (std::map<uint64_t, uint64_t>{{1, 5}}));

  wire::PurgeTombstonesRequestT purge;
  purge.collection = "c";
  purge.bucket = BucketOfId(1, 64);
  ASSERT_TRUE(client->Call(purge).ok());
  wire::BucketChecksumRequestT cr;
  cr.collection = "c";
  cr.bucket = purge.bucket;
  auto figures = client->Call(cr);
  ASSERT_TRUE(figures.ok());
  EXPECT_EQ(figures->tombstone_count, 0u);
  cr.bucket = 64;
  EXPECT_EQ(client->Call(cr).status().code(), Status::Code::kOutOfRange);
}

// ---- Raw sockets: what a broken or hostile peer can send ----------------------------------

}  // namespace
}  // namespace mrl
