// Versioned writes and tombstones on the shard ("newest wins" for live bucket moves): arrival
// order, replays, stale writes after deletes, the old value format, bucket scans with tombstones,
// the bucket checksum against the coordinator's VerifyFigures, DropBucket / PurgeTombstones.
#include <filesystem>

#include "coordinator/move.h"
#include "shard/storage.h"
#include "tests/shard_engine_fixture.h"

namespace mrl::shard {
namespace shard_engine_testing {
namespace {

constexpr uint32_t kBuckets = 8;

CollectionSpec VersionSpec(std::vector<IndexSpec> indexes = {Exact(16)}) {
  CollectionSpec s = Spec("c", Metric::kCosine, StorageType::kFp32, std::move(indexes));
  s.num_buckets = kBuckets;
  return s;
}

// A distinct vector per (id, version): its first 16 dims tell the versions apart.
std::vector<float> VectorOf(uint64_t id, uint64_t version) {
  std::mt19937 rng(static_cast<uint32_t>(id * 1000 + version));
  std::normal_distribution<float> g(0.0f, 1.0f);
  std::vector<float> v(kDim);
  for (auto& x : v) x = g(rng);
  return v;
}

struct Write {
  uint64_t id, version;
};

// Upserts (id, version) points with VectorOf vectors and payload "v<version>".
WriteCounts UpsertVersioned(Engine& e, const std::vector<Write>& writes) {
  std::vector<std::vector<float>> vecs;
  std::vector<std::string> payloads;
  vecs.reserve(writes.size());
  payloads.reserve(writes.size());
  std::vector<PointView> pts;
  for (const auto& w : writes) {
    vecs.push_back(VectorOf(w.id, w.version));
    payloads.push_back(std::to_string(w.version));
    payloads.back().insert(0, 1, 'v');  // not "v" + ...: GCC 12 -Wrestrict false positive
    pts.push_back(PointView{w.id, vecs.back(), payloads.back(), w.version});
  }
  WriteCounts counts{999, 999};
  const Status s = e.Upsert("c", pts, &counts);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return counts;
}

WriteCounts DeleteVersioned(Engine& e, const std::vector<Write>& deletes) {
  std::vector<uint64_t> ids, versions;
  for (const auto& d : deletes) {
    ids.push_back(d.id);
    versions.push_back(d.version);
  }
  WriteCounts counts{999, 999};
  const Status s = e.Delete("c", ids, versions, &counts);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return counts;
}

// The stored point's version and payload, or nullopt.
std::optional<StoredPoint> GetOne(Engine& e, uint64_t id) {
  auto got = e.Get("c", std::vector<uint64_t>{id}, true);
  EXPECT_TRUE(got.ok()) << got.status().ToString();
  return got.ok() ? (*got)[0] : std::nullopt;
}

// The low-d index's best match for VectorOf(id, version)[:16] and its score.
Candidate IndexTop(Engine& e, uint64_t id, uint64_t version) {
  const auto q = VectorOf(id, version);
  auto sl = e.Shortlist("c", std::span<const float>(q.data(), 16), 1);
  EXPECT_TRUE(sl.ok()) << sl.status().ToString();
  return sl.ok() && !sl->empty() ? (*sl)[0] : Candidate{~0ull, -2.0f};
}

// Every point and tombstone of a bucket, scanned in pages of `limit` ids.
ScanPage ScanAll(Engine& e, uint32_t bucket, int32_t limit, int* pages = nullptr,
                 uint64_t min_version = 0) {
  ScanPage all;
  std::optional<uint64_t> after;
  int n = 0;
  do {
    auto page = e.ScanBucket("c", bucket, after, limit, min_version);
    EXPECT_TRUE(page.ok()) << page.status().ToString();
    if (!page.ok()) break;
    std::set<uint64_t> ids;
    for (const auto& p : page->points) ids.insert(p.id);
    for (const auto& t : page->tombstones) ids.insert(t.id);
    EXPECT_LE(ids.size(), static_cast<size_t>(limit));
    if (after) {
      EXPECT_TRUE(ids.empty() || *ids.begin() > *after);
    }
    for (auto& p : page->points) all.points.push_back(std::move(p));
    for (auto& t : page->tombstones) all.tombstones.push_back(t);
    after = page->next_after;
    ++n;
  } while (after && n < 10000);
  if (pages) *pages = n;
  return all;
}

// Ids of `bucket` among 0..max_id.
std::vector<uint64_t> IdsInBucket(uint32_t bucket, size_t want) {
  std::vector<uint64_t> out;
  for (uint64_t id = 1; out.size() < want; ++id) {
    if (BucketOf(id, kBuckets) == bucket) out.push_back(id);
  }
  return out;
}

TEST(Versions, NewestWinsWhateverTheArrivalOrder) {
  auto e = OpenOrDie(Options(TempDir("ver_order")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec()).ok());
  // id 1: v2 then v1 (the older copy arrives late); id 2: v1 then v2.
  WriteCounts c = UpsertVersioned(*e, {{1, 2}, {2, 1}});
  EXPECT_EQ(c.applied, 2u);
  EXPECT_EQ(c.skipped, 0u);
  c = UpsertVersioned(*e, {{1, 1}, {2, 2}});
  EXPECT_EQ(c.applied, 1u);
  EXPECT_EQ(c.skipped, 1u);
  for (uint64_t id : {1, 2}) {
    auto p = GetOne(*e, id);
    ASSERT_TRUE(p) << id;
    EXPECT_EQ(p->version, 2u) << id;
    EXPECT_EQ(p->payload, "v2") << id;
    EXPECT_EQ(p->vector, VectorOf(id, 2)) << id;
    // The index holds v2's vector too: its query matches it exactly (cosine 1).
    const Candidate top = IndexTop(*e, id, 2);
    EXPECT_EQ(top.id, id);
    EXPECT_NEAR(top.score, 1.0f, 1e-5) << id;
  }
  // Within one batch, each point is decided against the earlier ones.
  c = UpsertVersioned(*e, {{3, 5}, {3, 4}, {4, 1}, {4, 7}});
  EXPECT_EQ(c.applied, 3u);
  EXPECT_EQ(c.skipped, 1u);
  EXPECT_EQ(GetOne(*e, 3)->version, 5u);
  EXPECT_EQ(GetOne(*e, 4)->version, 7u);
  EXPECT_NEAR(IndexTop(*e, 4, 7).score, 1.0f, 1e-5);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, 4u);
}

TEST(Versions, StaleUpsertAfterNewerDeleteDoesNotResurrect) {
  const std::string dir = TempDir("ver_tombstone");
  {
    auto e = OpenOrDie(Options(dir));
    ASSERT_TRUE(e && e->CreateCollection(VersionSpec({Hnsw(16)})).ok());
    UpsertVersioned(*e, {{1, 1}, {2, 5}});
    WriteCounts c = DeleteVersioned(*e, {{1, 3}, {9, 4}});  // 9: never written
    EXPECT_EQ(c.applied, 2u);
    EXPECT_EQ(c.skipped, 0u);
    c = UpsertVersioned(*e, {{1, 2}, {9, 4}});  // older than (or as old as) the deletes
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.skipped, 2u);
    EXPECT_FALSE(GetOne(*e, 1));
    EXPECT_FALSE(GetOne(*e, 9));
    EXPECT_NE(IndexTop(*e, 1, 2).id, 1u);  // the low-d index does not return it
    EXPECT_NE(IndexTop(*e, 9, 4).id, 9u);
    // A stale delete leaves the newer point alone.
    c = DeleteVersioned(*e, {{2, 4}});
    EXPECT_EQ(c.applied, 0u);
    EXPECT_EQ(c.skipped, 1u);
    EXPECT_EQ(GetOne(*e, 2)->version, 5u);
    EXPECT_EQ(FindStats(e->Stats(), "c")->points, 1u);
  }
  // The tombstones are durable.
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  EXPECT_EQ(UpsertVersioned(*e, {{1, 3}}).skipped, 1u);
  EXPECT_FALSE(GetOne(*e, 1));
  // A newer write applies and replaces the tombstone.
  EXPECT_EQ(UpsertVersioned(*e, {{1, 6}}).applied, 1u);
  EXPECT_EQ(GetOne(*e, 1)->version, 6u);
  EXPECT_EQ(IndexTop(*e, 1, 6).id, 1u);
  const ScanPage scan = ScanAll(*e, BucketOf(1, kBuckets), 100);
  for (const auto& t : scan.tombstones) EXPECT_NE(t.id, 1u);
}

TEST(Versions, ReplayedWriteIsANoOp) {
  auto e = OpenOrDie(Options(TempDir("ver_replay")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec()).ok());
  UpsertVersioned(*e, {{1, 3}, {2, 3}});
  DeleteVersioned(*e, {{2, 4}});
  const uint64_t seq = FindStats(e->Stats(), "c")->indexes[0].sequence;
  WriteCounts c = UpsertVersioned(*e, {{1, 3}});
  EXPECT_EQ(c.applied, 0u);
  EXPECT_EQ(c.skipped, 1u);
  c = DeleteVersioned(*e, {{2, 4}});
  EXPECT_EQ(c.applied, 0u);
  EXPECT_EQ(c.skipped, 1u);
  // Nothing reached RocksDB.
  EXPECT_EQ(FindStats(e->Stats(), "c")->indexes[0].sequence, seq);
  EXPECT_EQ(GetOne(*e, 1)->version, 3u);
  EXPECT_FALSE(GetOne(*e, 2));
}

TEST(Versions, UnversionedWritesBehaveAsBefore) {
  auto e = OpenOrDie(Options(TempDir("ver_unversioned")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec({})).ok());  // no index: counted by reads
  WriteCounts c = UpsertVersioned(*e, {{1, 0}, {2, 0}, {1, 0}});
  EXPECT_EQ(c.applied, 3u);
  EXPECT_EQ(c.skipped, 0u);
  EXPECT_EQ(GetOne(*e, 1)->version, 0u);
  // Over a versioned point too.
  UpsertVersioned(*e, {{3, 9}});
  EXPECT_EQ(UpsertVersioned(*e, {{3, 0}}).applied, 1u);
  EXPECT_EQ(GetOne(*e, 3)->version, 0u);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, 3u);
  // An unversioned delete removes and leaves no tombstone; the two-argument call is unversioned.
  WriteCounts d{9, 9};
  ASSERT_TRUE(e->Delete("c", std::vector<uint64_t>{1}, {}, &d).ok());
  EXPECT_EQ(d.applied, 1u);
  ASSERT_TRUE(e->Delete("c", std::vector<uint64_t>{2}).ok());
  EXPECT_FALSE(GetOne(*e, 1));
  EXPECT_FALSE(GetOne(*e, 2));
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, 1u);
  for (uint32_t b = 0; b < kBuckets; ++b) EXPECT_TRUE(ScanAll(*e, b, 10).tombstones.empty());
  // Versions of the wrong length: typed error, nothing deleted.
  EXPECT_EQ(e->Delete("c", std::vector<uint64_t>{3}, std::vector<uint64_t>{1, 2}, nullptr).code(),
            Status::Code::kInvalidArgument);
  EXPECT_TRUE(GetOne(*e, 3));
}

TEST(Versions, UnversionedValueLayoutIsTheOldOneAndReadsAsVersionZero) {
  // The codec writes version 0 byte for byte as before versions; a version sets the flag.
  std::vector<float> v = {1.5f, -2.0f, 0.25f, 4.0f};
  std::string old_fp32(1, static_cast<char>(StorageType::kFp32));
  old_fp32.append(reinterpret_cast<const char*>(v.data()), 16);
  old_fp32 += "pay";
  std::string encoded;
  ValueCodec fp32(StorageType::kFp32, 4);
  fp32.Encode(v, "pay", 0, &encoded);
  EXPECT_EQ(encoded, old_fp32);
  fp32.Encode(v, "pay", 0x0102030405060708ull, &encoded);
  ASSERT_TRUE(fp32.Check(encoded).ok());
  EXPECT_EQ(static_cast<uint8_t>(encoded[0]), kVersionedFlag | uint8_t{0});
  EXPECT_EQ(ValueCodec::Version(encoded), 0x0102030405060708ull);
  EXPECT_EQ(fp32.Payload(encoded), "pay");
  for (StorageType st : {StorageType::kFp16, StorageType::kInt8}) {
    ValueCodec codec(st, 4);
    std::string plain, versioned;
    codec.Encode(v, "x", 0, &plain);
    codec.Encode(v, "x", 77, &versioned);
    ASSERT_EQ(versioned.size(), plain.size() + 8);
    std::vector<float> a(4), b(4);
    codec.DecodePrefix(plain, 4, a.data());
    codec.DecodePrefix(versioned, 4, b.data());
    EXPECT_EQ(a, b);
    EXPECT_EQ(ValueCodec::Version(versioned), 77u);
    EXPECT_EQ(codec.Payload(versioned), "x");
  }

  // A data directory holding a value written in the old layout opens and reads it as version 0.
  const std::string dir = TempDir("ver_oldformat");
  { ASSERT_TRUE(OpenOrDie(Options(dir))->CreateCollection(VersionSpec()).ok()); }
  const std::vector<float> vec = VectorOf(42, 0);
  {
    auto st = Storage::Open((std::filesystem::path(dir) / "db").string(), 8, true);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    std::string record;
    ASSERT_TRUE((*st)->db->Get({}, (*st)->meta, CollectionMetaKey("c"), &record).ok());
    uint32_t cid = 0;
    CollectionSpec spec;
    ASSERT_TRUE(DecodeCollectionRecord(record, &cid, &spec).ok());
    std::string raw(1, static_cast<char>(StorageType::kFp32));  // the pre-version layout
    raw.append(reinterpret_cast<const char*>(vec.data()), 4 * kDim);
    raw += "old";
    const PointKey key = EncodePointKey(cid, BucketOf(42, kBuckets), 42);
    ASSERT_TRUE(
        (*st)->db->Put({}, (*st)->points, rocksdb::Slice(key.data(), key.size()), raw).ok());
  }
  auto e = OpenOrDie(Options(dir));
  ASSERT_TRUE(e);
  auto p = GetOne(*e, 42);
  ASSERT_TRUE(p);
  EXPECT_EQ(p->version, 0u);
  EXPECT_EQ(p->payload, "old");
  EXPECT_EQ(p->vector, vec);
  EXPECT_EQ(IndexTop(*e, 42, 0).id, 42u);  // the rebuilt index has it
  // A versioned write replaces it.
  EXPECT_EQ(UpsertVersioned(*e, {{42, 1}}).applied, 1u);
  EXPECT_EQ(GetOne(*e, 42)->version, 1u);
}

TEST(Versions, ScanBucketReturnsVersionsAndTombstonesAndPages) {
  auto e = OpenOrDie(Options(TempDir("ver_scan")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec()).ok());
  const uint32_t b = 5;
  const std::vector<uint64_t> ids = IdsInBucket(b, 60);
  std::map<uint64_t, uint64_t> live, dead;
  std::vector<Write> writes, deletes;
  for (size_t i = 0; i < ids.size(); ++i) writes.push_back({ids[i], 10 + i});
  UpsertVersioned(*e, writes);
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i % 3 == 0) {
      deletes.push_back({ids[i], 100 + i});
      dead[ids[i]] = 100 + i;
    } else {
      live[ids[i]] = 10 + i;
    }
  }
  const uint64_t never_written = IdsInBucket(b, 61).back();
  deletes.push_back({never_written, 7});
  dead[never_written] = 7;
  DeleteVersioned(*e, deletes);
  UpsertVersioned(*e, {{IdsInBucket(b + 1, 1)[0], 1}});  // another bucket: not in this scan
  int pages = 0;
  const ScanPage all = ScanAll(*e, b, 7, &pages);
  EXPECT_EQ(pages, static_cast<int>((live.size() + dead.size() + 6) / 7));
  std::map<uint64_t, uint64_t> got_live, got_dead;
  uint64_t prev = 0;
  for (const auto& p : all.points) {
    EXPECT_GT(p.id, prev);
    prev = p.id;
    got_live[p.id] = p.version;
    EXPECT_EQ(p.vector, VectorOf(p.id, p.version));
  }
  prev = 0;
  for (const auto& t : all.tombstones) {
    EXPECT_GT(t.id, prev);
    prev = t.id;
    got_dead[t.id] = t.version;
  }
  EXPECT_EQ(got_live, live);
  EXPECT_EQ(got_dead, dead);

  // A catch-up's scan (min_version): only entries of that version or newer, each page bounded.
  for (const uint64_t min_version : {uint64_t{40}, uint64_t{100}, uint64_t{1000}}) {
    std::map<uint64_t, uint64_t> want_live, want_dead;
    for (const auto& [id, v] : live) if (v >= min_version) want_live[id] = v;
    for (const auto& [id, v] : dead) if (v >= min_version) want_dead[id] = v;
    const ScanPage since = ScanAll(*e, b, 2, nullptr, min_version);
    std::map<uint64_t, uint64_t> l, d;
    for (const auto& p : since.points) {
      l[p.id] = p.version;
      EXPECT_EQ(p.vector, VectorOf(p.id, p.version));
    }
    for (const auto& t : since.tombstones) d[t.id] = t.version;
    EXPECT_EQ(l, want_live) << "min_version " << min_version;
    EXPECT_EQ(d, want_dead) << "min_version " << min_version;
  }
}

TEST(Versions, ScanPagesComeFromOneSnapshotUnderConcurrentDeletes) {
  auto e = OpenOrDie(Options(TempDir("ver_snapshot")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec({})).ok());
  const uint32_t b = 2;
  const std::vector<uint64_t> ids = IdsInBucket(b, 400);
  std::vector<Write> writes;
  for (uint64_t id : ids) writes.push_back({id, 1});
  UpsertVersioned(*e, writes);
  std::atomic<bool> done{false};
  std::thread deleter([&] {
    // Each versioned delete turns a point into a tombstone in one batch.
    for (uint64_t id : ids) {
      std::vector<uint64_t> one{id}, version{2};
      EXPECT_TRUE(e->Delete("c", one, version, nullptr).ok());
    }
    done = true;
  });
  int scans = 0;
  while (!done || scans == 0) {
    auto page = e->ScanBucket("c", b, std::nullopt, 5000);
    ASSERT_TRUE(page.ok());
    std::set<uint64_t> seen;
    for (const auto& p : page->points) seen.insert(p.id);
    for (const auto& t : page->tombstones) {
      EXPECT_TRUE(seen.insert(t.id).second) << "id " << t.id << " both live and deleted";
    }
    ASSERT_EQ(seen.size(), ids.size()) << "an id neither live nor deleted, scan " << scans;
    ++scans;
  }
  deleter.join();
  EXPECT_GT(scans, 1);
}

TEST(Versions, BucketChecksumMatchesVerifyFiguresAndSeesAVersionChange) {
  auto e = OpenOrDie(Options(TempDir("ver_checksum")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec()).ok());
  const uint32_t b = 3;
  const std::vector<uint64_t> ids = IdsInBucket(b, 50);
  std::vector<Write> writes;
  for (size_t i = 0; i < ids.size(); ++i) writes.push_back({ids[i], 1 + i % 4});
  UpsertVersioned(*e, writes);
  DeleteVersioned(*e, {{ids[0], 9}, {ids[1], 9}});
  UpsertVersioned(*e, {{IdsInBucket(b + 1, 1)[0], 1}});  // another bucket
  coord::VerifyFigures points, tombstones, both;
  for (size_t i = 2; i < ids.size(); ++i) points.Add(ids[i], 1 + i % 4);
  for (size_t i = 0; i < 2; ++i) tombstones.Add(ids[i], 9);
  both = points;
  for (size_t i = 0; i < 2; ++i) both.Add(ids[i], 9);
  auto f = e->BucketChecksum("c", b);
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  EXPECT_EQ(f->count, points.count);
  EXPECT_EQ(f->checksum, points.checksum);
  EXPECT_EQ(f->tombstone_count, tombstones.count);
  EXPECT_EQ(f->tombstone_checksum, tombstones.checksum);
  EXPECT_EQ(f->checksum + f->tombstone_checksum, both.checksum);  // figures of the union add up
  // One version differs: same count, another checksum, equal to the figures recomputed.
  UpsertVersioned(*e, {{ids[10], 100}});
  auto g = e->BucketChecksum("c", b);
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->count, f->count);
  EXPECT_NE(g->checksum, f->checksum);
  coord::VerifyFigures changed;
  for (size_t i = 2; i < ids.size(); ++i) changed.Add(ids[i], i == 10 ? 100 : 1 + i % 4);
  EXPECT_EQ(g->checksum, changed.checksum);
  EXPECT_EQ(e->BucketChecksum("c", kBuckets).status().code(), Status::Code::kOutOfRange);
}

TEST(Versions, DropBucketClearsPointsAndTombstonesPurgeOnlyTombstones) {
  auto e = OpenOrDie(Options(TempDir("ver_drop")));
  ASSERT_TRUE(e && e->CreateCollection(VersionSpec()).ok());
  const std::vector<uint64_t> in1 = IdsInBucket(1, 10), in4 = IdsInBucket(4, 10);
  std::vector<Write> writes;
  for (uint64_t id : in1) writes.push_back({id, 1});
  for (uint64_t id : in4) writes.push_back({id, 1});
  UpsertVersioned(*e, writes);
  DeleteVersioned(*e, {{in1[0], 5}, {in4[0], 5}, {in4[1], 5}});
  ASSERT_TRUE(e->DropBucket("c", 1).ok());
  const ScanPage b1 = ScanAll(*e, 1, 100);
  EXPECT_TRUE(b1.points.empty());
  EXPECT_TRUE(b1.tombstones.empty());
  auto f = e->BucketChecksum("c", 1);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->count + f->tombstone_count, 0u);
  EXPECT_EQ(FindStats(e->Stats(), "c")->points, in4.size() - 2);
  // The tombstone went with the bucket: a copy of an older version may now land (a move back).
  EXPECT_EQ(UpsertVersioned(*e, {{in1[0], 2}}).applied, 1u);
  EXPECT_EQ(ScanAll(*e, 4, 100).tombstones.size(), 2u);  // other buckets keep theirs
  // A bucket holding only tombstones drops too.
  DeleteVersioned(*e, {{in1[0], 6}});
  ASSERT_TRUE(e->DropBucket("c", 1).ok());
  EXPECT_TRUE(ScanAll(*e, 1, 100).tombstones.empty());
  // PurgeTombstones: tombstones gone, points stay.
  ASSERT_TRUE(e->PurgeTombstones("c", 4).ok());
  const ScanPage b4 = ScanAll(*e, 4, 100);
  EXPECT_TRUE(b4.tombstones.empty());
  EXPECT_EQ(b4.points.size(), in4.size() - 2);
  EXPECT_EQ(e->PurgeTombstones("c", kBuckets).code(), Status::Code::kOutOfRange);
}

}  // namespace
}  // namespace shard_engine_testing
}  // namespace mrl::shard
