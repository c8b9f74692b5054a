// A full disk (issue 21): the watermark refuses writes before the filesystem fills, typed
// (InsufficientStorage), with deletes, reads and searches still served and no acknowledged write
// lost; writes come back by themselves once space returns; SIGTERM then exits 0 with the index
// checkpoint written. Real mrl-shard processes on a real small filesystem: a tmpfs this test
// mounts (root), or, without root, the test's own filesystem with a byte watermark and a ballast
// file to free.
#include <sys/mount.h>
#include <sys/statvfs.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "shard/disk_guard.h"
#include "shard/row_store.h"
#include "tests/shard_server_fixture.h"

namespace mrl {
namespace {

using namespace shard_server_testing;  // NOLINT: the shared helpers

TEST(DiskWatermark, RefusesAboveTheMarkAndReleasesBelowTheLowerOne) {
  shard::DiskWatermark w({.refuse_above_percent = 90, .release_below_percent = 80});
  const uint64_t total = 1000;
  EXPECT_FALSE(w.Observe({total, 500}));  // 50% used
  EXPECT_FALSE(w.Observe({total, 101}));  // 89.9%
  EXPECT_TRUE(w.Observe({total, 100}));   // 90%: refuse
  EXPECT_TRUE(w.Observe({total, 150}));   // 85%: between the marks, still refusing
  EXPECT_FALSE(w.Observe({total, 201}));  // 79.9%: released
  EXPECT_FALSE(w.Observe({total, 150}));  // 85% again: accepting until the upper mark
  EXPECT_NE(w.Explain({total, 150}).find("150 bytes free of 1000"), std::string::npos)
      << w.Explain({total, 150});
}

// The CI machine's disk sat at 90.2% used, between the default percent marks (95/90), when the
// byte mark tripped: a refusal must end when the mark that caused it releases.
TEST(DiskWatermark, EachMarkReleasesByItself) {
  shard::DiskWatermark w({.refuse_above_percent = 95,
                          .release_below_percent = 90,
                          .min_free_bytes = 80,
                          .release_free_bytes = 90});
  const uint64_t total = 1000;
  EXPECT_FALSE(w.Observe({total, 95}));   // 90.5% used: between the percent marks
  EXPECT_TRUE(w.Observe({total, 79}));    // the byte mark trips (92.1% used)
  EXPECT_TRUE(w.Observe({total, 89}));    // not yet back to its release level
  EXPECT_FALSE(w.Observe({total, 95}));   // bytes back; 90.5% is below the 95% refuse mark
  EXPECT_TRUE(w.Observe({total, 50}));    // 95%: now both marks trip
  EXPECT_TRUE(w.Observe({total, 95}));    // bytes released, percent still above 90%
  EXPECT_FALSE(w.Observe({total, 101}));  // 89.9%: both released
}

TEST(DiskWatermark, ByteMarkAndOffSwitch) {
  shard::DiskWatermark w({.refuse_above_percent = 100,
                          .release_below_percent = 100,
                          .min_free_bytes = 100,
                          .release_free_bytes = 300});
  EXPECT_FALSE(w.Observe({1000, 100}));
  EXPECT_TRUE(w.Observe({1000, 99}));
  EXPECT_TRUE(w.Observe({1000, 299}));
  EXPECT_FALSE(w.Observe({1000, 300}));
  shard::DiskWatermark off({.refuse_above_percent = 100, .release_below_percent = 100});
  EXPECT_FALSE(off.Observe({1000, 0}));  // a full disk: the watermark is off, RocksDB decides
  EXPECT_FALSE(
      shard::ValidateDiskMarks({.refuse_above_percent = 80, .release_below_percent = 90}).ok());
  EXPECT_FALSE(shard::ValidateDiskMarks({.min_free_bytes = 100, .release_free_bytes = 50}).ok());
}

uint64_t FreeBytes(const std::string& path) {
  struct statvfs s {};
  EXPECT_EQ(statvfs(path.c_str(), &s), 0) << std::strerror(errno);
  return static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
}

// Drives one shard through a fill-until-refused episode and checks the contract.
class FullDiskEpisode {
 public:
  FullDiskEpisode(ShardProcess& shard, const std::string& collection)
      : shard_(shard), name_(collection) {}

  // Upserts 200-point batches of fresh ids until one is refused; returns its status.
  Status FillUntilRefused(size_t max_points) {
    auto client = shard_.Client();
    std::mt19937_64 rng(next_id_);
    std::normal_distribution<float> g;
    while (next_id_ < max_points) {
      std::vector<uint64_t> ids(200);
      std::iota(ids.begin(), ids.end(), next_id_);
      std::vector<float> v(ids.size() * kDim);
      for (float& x : v) x = g(rng);
      auto r = client->Call(UpsertOf(name_, ids, v.data()), 20000);
      if (!r.ok()) return r.status();
      for (size_t i = 0; i < ids.size(); ++i)
        acked_[ids[i]].assign(&v[i * kDim], &v[(i + 1) * kDim]);
      next_id_ += ids.size();
      if ((next_id_ / 200) % 20 == 0) ExpectReadsAndSearches(*client);
    }
    return Status::Internal("the disk never filled");
  }

  // Every acknowledged point reads back exactly; a shortlist answers.
  void ExpectReadsAndSearches(rpc::RpcClient& client) {
    std::vector<uint64_t> ids;
    for (const auto& [id, v] : acked_) ids.push_back(id);
    for (size_t at = 0; at < ids.size(); at += 2000) {
      wire::GetRequestT get;
      get.collection = name_;
      get.with_vector = true;
      get.ids.assign(ids.begin() + at, ids.begin() + std::min(ids.size(), at + 2000));
      auto got = client.Call(get, 20000);
      ASSERT_TRUE(got.ok()) << got.status().ToString();
      ASSERT_EQ(got->points.size(), get.ids.size());
      for (const auto& p : got->points) {
        ASSERT_TRUE(p->found) << "acknowledged id " << p->id << " lost";
        ASSERT_EQ(p->vector, acked_.at(p->id)) << "id " << p->id;
      }
    }
    if (!ids.empty()) {
      auto sl = client.Call(ShortlistOf(name_, acked_.begin()->second, 1, 10, false), 20000);
      ASSERT_TRUE(sl.ok()) << sl.status().ToString();
      EXPECT_FALSE(sl->results.empty());
    }
  }

  // Deletes are accepted while writes are refused.
  void DeleteSome(size_t n) {
    auto client = shard_.Client();
    wire::DeleteRequestT del;
    del.collection = name_;
    for (auto it = acked_.begin(); it != acked_.end() && del.ids.size() < n; ++it)
      del.ids.push_back(it->first);
    auto r = client->Call(del, 20000);
    ASSERT_TRUE(r.ok()) << "delete while full: " << r.status().ToString();
    for (uint64_t id : del.ids) acked_.erase(id);
  }

  // Seconds until a write is accepted again (retrying every 100 ms up to `limit_s`); -1: never.
  double SecondsUntilWritesResume(double limit_s) {
    auto client = shard_.Client();
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<float> v(kDim, 0.5f);
    while (std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() < limit_s) {
      const uint64_t id = next_id_;
      auto r = client->Call(UpsertOf(name_, {id}, v.data()), 5000);
      if (r.ok()) {
        acked_[id] = v;
        ++next_id_;
        return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      }
      std::this_thread::sleep_for(100ms);
    }
    return -1;
  }

  size_t acknowledged() const { return acked_.size(); }

 private:
  ShardProcess& shard_;
  const std::string name_;
  uint64_t next_id_ = 0;
  std::map<uint64_t, std::vector<float>> acked_;
};

// SIGTERM exits 0; the next start loads the checkpointed index (no rebuild) with every point.
void ExpectCleanStopAndCheckpoint(ShardProcess& shard, size_t points, const std::string& name) {
  ASSERT_EQ(shard.Terminate(), 0) << shard.Log();
  shard.Start();
  auto stats = shard.Client()->Call(wire::StatsRequestT{}, 20000);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->collections.size(), 1u);
  EXPECT_EQ(stats->collections[0]->points, points);
  ASSERT_FALSE(stats->collections[0]->indexes.empty());
  EXPECT_TRUE(stats->collections[0]->indexes[0]->loaded) << "the index was rebuilt:\n"
                                                         << shard.Log();
  (void)name;
}

class TmpfsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_util::TempDir(std::string("disk_full_") +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
    mnt_ = dir_ + "/fs";
    fs::create_directories(mnt_);
  }
  void TearDown() override {
    if (mounted_) umount2(mnt_.c_str(), MNT_DETACH);
    fs::remove_all(dir_);
  }
  // Mounts a tmpfs of `mb` MiB at mnt_ (or resizes it); false when this process may not mount.
  bool Mount(int mb) {
    const std::string opts = "size=" + std::to_string(mb) + "m";
    const unsigned long flags = mounted_ ? MS_REMOUNT : 0;
    if (mount("tmpfs", mnt_.c_str(), "tmpfs", flags, opts.c_str()) != 0) {
      why_ = std::string("mount tmpfs: ") + std::strerror(errno);
      return false;
    }
    mounted_ = true;
    return true;
  }
  void Unmount() {
    if (mounted_) {
      EXPECT_EQ(umount2(mnt_.c_str(), 0), 0) << std::strerror(errno);
    }
    mounted_ = false;
  }
  std::string dir_, mnt_, why_;
  bool mounted_ = false;
};

TEST_F(TmpfsTest, WatermarkRefusesBeforeEnospcAndWritesResumeWithoutARestart) {
  for (int round = 1; round <= 5; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    if (!Mount(32))
      GTEST_SKIP() << "needs root to mount a tmpfs (" << why_
                   << "); DiskFullNoRoot covers the rest";
    ShardProcess shard(mnt_,
                       {"--disk-refuse-above-percent", "80", "--disk-release-below-percent", "70"});
    shard.Start();
    ASSERT_TRUE(shard.Client()->Call(CollectionRequest("c")).ok());
    FullDiskEpisode episode(shard, "c");
    const Status refused = episode.FillUntilRefused(200000);
    ASSERT_EQ(refused.code(), Status::Code::kInsufficientStorage) << refused.ToString() << "\n"
                                                                  << shard.Log();
    EXPECT_NE(refused.message().find("bytes free of"), std::string::npos) << refused.message();
    std::printf("[disk] round %d: refused after %zu points, %llu bytes free: %s\n", round,
                episode.acknowledged(), static_cast<unsigned long long>(FreeBytes(mnt_)),
                refused.message().c_str());
    episode.DeleteSome(100);
    episode.ExpectReadsAndSearches(*shard.Client());
    auto stats = shard.Client()->Call(wire::StatsRequestT{}, 20000);
    ASSERT_TRUE(stats.ok());
    EXPECT_TRUE(stats->refusing_writes);
    EXPECT_GT(stats->write_refusals, 0u);
    EXPECT_FALSE(stats->store_failed) << stats->store_error;  // refused before RocksDB saw ENOSPC
    ASSERT_TRUE(Mount(256));                                  // space returns
    const double s = episode.SecondsUntilWritesResume(5);
    EXPECT_GE(s, 0) << "writes still refused 5 s after space returned\n" << shard.Log();
    std::printf("[disk] round %d: writes resumed %.2f s after the filesystem grew\n", round, s);
    episode.ExpectReadsAndSearches(*shard.Client());
    ExpectCleanStopAndCheckpoint(shard, episode.acknowledged(), "c");
    ASSERT_EQ(shard.Terminate(), 0);
    Unmount();
    ASSERT_FALSE(HasFatalFailure());
  }
}

TEST_F(TmpfsTest, EnospcWithTheWatermarkOffResumesWithoutARestart) {
  if (!Mount(48)) GTEST_SKIP() << "needs root to mount a tmpfs (" << why_ << ")";
  // RocksDB's own ENOSPC (and its Resume) is what this case is for: without the rerank rows,
  // whose file grows ahead of RocksDB and refuses first (InsufficientStorage, nothing written:
  // RowsEnospcRefusesTheBatchWholeAndResumes below).
  ShardProcess shard(mnt_, {"--disk-refuse-above-percent", "100", "--disk-release-below-percent",
                            "100", "--rerank-rows", "false"});
  shard.Start();
  ASSERT_TRUE(shard.Client()->Call(CollectionRequest("c")).ok());
  FullDiskEpisode episode(shard, "c");
  const Status failed = episode.FillUntilRefused(200000);
  ASSERT_EQ(failed.code(), Status::Code::kIoError) << failed.ToString() << "\n" << shard.Log();
  std::printf("[disk] ENOSPC after %zu points: %s\n", episode.acknowledged(),
              failed.message().c_str());
  episode.ExpectReadsAndSearches(*shard.Client());
  ASSERT_TRUE(Mount(256));
  const double s = episode.SecondsUntilWritesResume(10);
  EXPECT_GE(s, 0) << "writes still refused 10 s after space returned\n" << shard.Log();
  std::printf("[disk] writes resumed %.2f s after the filesystem grew\n", s);
  episode.ExpectReadsAndSearches(*shard.Client());
  ExpectCleanStopAndCheckpoint(shard, episode.acknowledged(), "c");
  ASSERT_EQ(shard.Terminate(), 0);
}

// With the rerank rows on, whichever file meets the full disk first (the rows file, which grows
// before RocksDB takes a batch, or RocksDB's WAL) refuses the batch whole; writes resume when
// space returns, with no restart, and nothing acknowledged is lost.
TEST_F(TmpfsTest, WithRerankRowsEitherFileRefusesWholeAndWritesResume) {
  if (!Mount(48)) GTEST_SKIP() << "needs root to mount a tmpfs (" << why_ << ")";
  ShardProcess shard(mnt_,
                     {"--disk-refuse-above-percent", "100", "--disk-release-below-percent", "100"});
  shard.Start();
  ASSERT_TRUE(shard.Client()->Call(CollectionRequest("c")).ok());
  FullDiskEpisode episode(shard, "c");
  const Status failed = episode.FillUntilRefused(200000);
  std::printf("[disk] refused after %zu points: %s\n", episode.acknowledged(),
              failed.ToString().c_str());
  ASSERT_TRUE(failed.code() == Status::Code::kInsufficientStorage ||
              failed.code() == Status::Code::kIoError)
      << failed.ToString();
  episode.ExpectReadsAndSearches(*shard.Client());
  ASSERT_TRUE(Mount(256));
  const double s = episode.SecondsUntilWritesResume(10);
  EXPECT_GE(s, 0) << "writes still refused 10 s after space returned\n" << shard.Log();
  episode.ExpectReadsAndSearches(*shard.Client());
  ExpectCleanStopAndCheckpoint(shard, episode.acknowledged(), "c");
  ASSERT_EQ(shard.Terminate(), 0);
}

// The rows file on a full disk: growing it fails with InsufficientStorage (blocks are allocated
// up front, never a SIGBUS later through the mapping), the rows it holds read back unchanged,
// and it grows again once there is space.
TEST_F(TmpfsTest, RowStoreGrowthOnAFullDiskFailsCleanlyAndResumes) {
  if (!Mount(8)) GTEST_SKIP() << "needs root to mount a tmpfs (" << why_ << ")";
  bool loaded = true;
  std::string reason;
  auto opened = shard::RowStore::Open(mnt_ + "/rows.dat", 4096, "", &loaded, &reason);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  shard::RowStore& rows = *opened.value();
  EXPECT_FALSE(loaded);
  auto row_of = [](uint64_t id) { return std::string(4096, static_cast<char>('a' + id % 26)); };
  auto put = [&](uint64_t from, uint64_t to) {
    ASSERT_TRUE(rows.Reserve(to - from).ok());
    for (uint64_t id = from; id < to; ++id) ASSERT_TRUE(rows.Put(id, row_of(id).data()).ok());
  };
  auto expect_all = [&](uint64_t to) {
    shard::RowStore::Reader r(rows);
    size_t wrong = 0;
    for (uint64_t id = 0; id < to; ++id) {
      const uint8_t* p = r.Find(id);
      wrong += p == nullptr || std::memcmp(p, row_of(id).data(), 4096) != 0;
    }
    EXPECT_EQ(wrong, 0u);
  };
  put(0, 1000);  // 4 MiB of the 8
  const Status full = rows.Reserve(2000);
  ASSERT_EQ(full.code(), Status::Code::kInsufficientStorage) << full.ToString();
  EXPECT_NE(full.message().find("No space left"), std::string::npos) << full.message();
  std::printf("[disk] rows file: %s\n", full.message().c_str());
  expect_all(1000);
  ASSERT_TRUE(Mount(64));
  put(1000, 3000);
  expect_all(3000);
  EXPECT_EQ(rows.size(), 3000u);
}

// Without root: the test's filesystem, a byte watermark just below its free space, and a ballast
// file whose removal is the space that returns.
TEST(DiskFullNoRoot, ByteWatermarkRefusesAndReleasesWhenTheBallastIsFreed) {
  const std::string dir = test_util::TempDir("disk_full_noroot");
  const std::string ballast = dir + "/ballast";
  {
    std::ofstream f(ballast, std::ios::binary);
    const std::string mb(1 << 20, '\0');
    for (int i = 0; i < 256; ++i) f.write(mb.data(), static_cast<std::streamsize>(mb.size()));
  }
  ::sync();
  const uint64_t free_mb = FreeBytes(dir) >> 20;
  ASSERT_GT(free_mb, 1024u) << "too little disk for this test";
  // 128 MiB to fill (RocksDB preallocates its WAL: up to ~70 MiB of it at once), 256 to free.
  const uint64_t min_free = free_mb - 128, release = min_free + 64;
  // Only the byte mark: the percent marks depend on how full the machine's disk already is.
  ShardProcess shard(dir, {"--disk-min-free-mb", std::to_string(min_free), "--disk-release-free-mb",
                           std::to_string(release), "--disk-refuse-above-percent", "100",
                           "--disk-release-below-percent", "100"});
  shard.Start();
  ASSERT_TRUE(shard.Client()->Call(CollectionRequest("c")).ok());
  FullDiskEpisode episode(shard, "c");
  const Status refused = episode.FillUntilRefused(400000);
  ASSERT_EQ(refused.code(), Status::Code::kInsufficientStorage) << refused.ToString();
  std::printf("[disk] no root: refused after %zu points: %s\n", episode.acknowledged(),
              refused.message().c_str());
  episode.DeleteSome(100);
  episode.ExpectReadsAndSearches(*shard.Client());
  fs::remove(ballast);
  const double s = episode.SecondsUntilWritesResume(5);
  EXPECT_GE(s, 0) << "writes still refused 5 s after the ballast was freed\n" << shard.Log();
  ExpectCleanStopAndCheckpoint(shard, episode.acknowledged(), "c");
  ASSERT_EQ(shard.Terminate(), 0);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mrl
