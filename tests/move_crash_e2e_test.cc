// A bucket move survives kill -9 at every phase boundary (issue 12): of the coordinator (the
// executor's failpoint ends the process right after a journal write, as kill -9 would), of the
// source shard and of the target shard (the executor holds at the boundary while the test kills
// and restarts the shard). After the restart the move completes, or is rolled back; either way
// every acknowledged write reads back at its latest version, every acknowledged delete stays
// gone, the shards hold each live point exactly once, and the map has one owner per bucket and
// no move left in it.
#include <gtest/gtest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "common/bucket.h"
#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"
#include "tests/live_load.h"

namespace mrl {
namespace {

using namespace e2e;  // NOLINT: the fixture's helpers
using Clock = std::chrono::steady_clock;

constexpr uint32_t kBuckets = 8;
constexpr int kBase = 1200;
constexpr uint32_t kBucket = 0;  // on group 0 (buckets are dealt round-robin), moved to group 1

enum class Victim { kCoordinator, kSource, kTarget };

struct Case {
  Victim victim;
  const char* point;  // the executor's failpoint (coordinator/move_executor.cc)
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << (c.victim == Victim::kCoordinator ? "coordinator"
          : c.victim == Victim::kSource    ? "source"
                                           : "target")
      << " at " << c.point;
}

std::string Name(const testing::TestParamInfo<Case>& info) {
  std::string n = info.param.victim == Victim::kCoordinator ? "Coordinator"
                  : info.param.victim == Victim::kSource    ? "Source"
                                                            : "Target";
  n += "_";
  for (const char* c = info.param.point; *c; ++c) n += std::isalnum(*c) ? *c : '_';
  return n;
}

std::vector<float> Vec(uint64_t id, int generation) {
  std::vector<float> v(kDim, 0.0f);
  v[id % kDim] = 1.0f;
  v[(id / kDim) % kDim] += 0.5f;
  v[kDim - 1] = 0.01f * static_cast<float>(generation + 1);
  return v;
}

bool WaitFor(const std::function<bool()>& done, double seconds) {
  const auto t0 = Clock::now();
  while (std::chrono::duration<double>(Clock::now() - t0).count() < seconds) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return done();
}

class MoveCrash : public testing::TestWithParam<Case> {
 protected:
  // id -> generation of the last acknowledged upsert, -1 after an acknowledged delete.
  std::map<uint64_t, int> acked_;

  // Upserts `ids` at `generation` (or deletes them); retried for a while, since a restarted
  // process is marked down for a moment. True when acknowledged.
  bool Write(Cluster& c, const std::vector<uint64_t>& ids, int generation, bool del) {
    json body;
    std::string path;
    if (del) {
      body = {{"ids", ids}, {"deadline_ms", 10000}};
      path = "/v1/collections/emb/points/delete";
    } else {
      json pts = json::array();
      for (uint64_t id : ids) pts.push_back({{"id", id}, {"vector", Vec(id, generation)}});
      body = {{"points", pts}, {"deadline_ms", 10000}};
      path = "/v1/collections/emb/points";
    }
    for (int attempt = 0; attempt < 40; ++attempt) {
      HttpResult r = Curl(del ? "POST" : "PUT", c.Url(path), body.dump(), Cluster::kAdmin);
      if (r.status == 200) {
        for (uint64_t id : ids) acked_[id] = del ? -1 : generation;
        return true;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
    }
    return false;
  }

  // The ids of kBucket among [from, to).
  static std::vector<uint64_t> BucketIds(uint64_t from, uint64_t to, size_t max) {
    std::vector<uint64_t> out;
    for (uint64_t id = from; id < to && out.size() < max; ++id) {
      if (BucketOfId(id, kBuckets) == kBucket) out.push_back(id);
    }
    return out;
  }
};

TEST_P(MoveCrash, TheMoveCompletesOrRollsBackAndNothingIsLostOrDuplicated) {
  const Case& tc = GetParam();
  const std::string release = TempDir("move_release") + "/go";
  const std::string spec =
      std::string(tc.victim == Victim::kCoordinator ? "exit:" : "pause:") + tc.point;
  // The coordinator inherits the failpoint; its restart (below) does not.
  setenv("MRL_MOVE_FAILPOINT", spec.c_str(), 1);
  setenv("MRL_MOVE_FAILPOINT_RELEASE", release.c_str(), 1);
  Cluster c("move_crash", 2, 1, {}, {"--move-copy-batch", "25"});
  unsetenv("MRL_MOVE_FAILPOINT");
  unsetenv("MRL_MOVE_FAILPOINT_RELEASE");
  c.shard(0).PinPort();
  c.shard(1).PinPort();

  HttpResult r = Curl("PUT", c.Url("/v1/collections/emb"),
                      json{{"dim", kDim},
                           {"storage", "fp32"},
                           {"num_buckets", kBuckets},
                           {"indexes", {{{"dims", 16}, {"kind", "hnsw"}}}}}
                          .dump(),
                      Cluster::kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  for (uint64_t start = 0; start < kBase; start += 400) {
    std::vector<uint64_t> ids;
    for (uint64_t id = start; id < start + 400; ++id) ids.push_back(id);
    ASSERT_TRUE(Write(c, ids, 0, false));
  }
  // Before the move: newer versions of some of the bucket's points, deletes of others.
  const std::vector<uint64_t> in_bucket = BucketIds(0, kBase, 1000);
  ASSERT_GT(in_bucket.size(), 100u);
  ASSERT_TRUE(Write(c, {in_bucket.begin(), in_bucket.begin() + 20}, 1, false));
  ASSERT_TRUE(Write(c, {in_bucket.begin() + 20, in_bucket.begin() + 30}, 0, true));

  r = Curl("POST", c.Url("/v1/moves"),
           json{{"collection", "emb"}, {"bucket", kBucket}, {"target_group", 1}}.dump(),
           Cluster::kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::string move_id = r.Json()["move"]["id"];

  if (tc.victim == Victim::kCoordinator) {
    ASSERT_TRUE(WaitFor([&] { return !c.coord().Alive(); }, 60))
        << "the failpoint " << spec << " was not reached:\n"
        << c.coord().Log();
    c.coord().Start();
  } else {
    ASSERT_TRUE(
        WaitFor([&] { return c.coord().Log().find("paused until") != std::string::npos; }, 60))
        << "the failpoint " << spec << " was not reached:\n"
        << c.coord().Log();
    // Writes while the move holds at the boundary (dual write from DUAL_WRITE on), then the
    // victim dies without warning and comes back on its port.
    ASSERT_TRUE(Write(c, {in_bucket.begin() + 10, in_bucket.begin() + 40}, 2, false));
    ASSERT_TRUE(Write(c, BucketIds(kBase, kBase + 400, 20), 0, false));
    DaemonProcess& victim = c.shard(tc.victim == Victim::kSource ? 0 : 1);
    victim.Kill(SIGKILL);
    victim.Start();
    ASSERT_TRUE(WriteFileAtomic(release, "go\n").ok());
  }
  // After the restart: more writes and deletes to the bucket while the move resumes.
  ASSERT_TRUE(Write(c, {in_bucket.begin() + 40, in_bucket.begin() + 60}, 3, false));
  ASSERT_TRUE(Write(c, {in_bucket.begin() + 60, in_bucket.begin() + 70}, 0, true));
  ASSERT_TRUE(Write(c, BucketIds(kBase + 400, kBase + 800, 20), 0, false));

  json move;
  ASSERT_TRUE(WaitFor(
      [&] {
        HttpResult m = Curl("GET", c.Url("/v1/moves"), "", Cluster::kAdmin);
        if (m.status != 200) return false;
        const json list = m.Json();
        for (const json& x : list.at("moves")) {
          if (x["id"] == move_id) move = x;
        }
        const std::string phase = move.value("phase", "");
        return phase == "DONE" || (phase == "ABORTED" && move.value("target_discarded", false));
      },
      120))
      << "move did not finish: " << move.dump() << "\n"
      << c.coord().Log();
  const bool done = move["phase"] == "DONE";
  std::printf("%s: move %s (%s)\n", spec.c_str(), done ? "completed" : "rolled back",
              move.value("error", std::string()).c_str());

  // One owner per bucket, no move left in the map.
  r = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead);
  ASSERT_EQ(r.status, 200);
  const json map = r.Json();
  const json placement = map["collections"]["emb"];
  EXPECT_EQ(placement["group_of_bucket"][kBucket].get<uint32_t>(), done ? 1u : 0u) << map.dump();
  EXPECT_TRUE(placement.value("moving", json::array()).empty()) << map.dump();

  // Every base point not written since, every acknowledged write at its latest version, every
  // acknowledged delete absent.
  std::map<uint64_t, int> expect;
  for (uint64_t id = 0; id < kBase; ++id) expect[id] = 0;
  for (const auto& [id, g] : acked_) expect[id] = g;
  const uint64_t live = CheckReadBack(c, expect, [](uint64_t id, int g) { return Vec(id, g); });
  // Each live point on exactly one shard: the two shards' counts add up to the live points.
  uint64_t stored = 0;
  for (int s = 0; s < 2; ++s) {
    rpc::ClientOptions o;
    o.port = c.shard(s).port();
    rpc::RpcClient client(o);
    client.set_epoch(map["epoch"].get<uint32_t>());
    auto stats = client.Call(wire::StatsRequestT{}, 5000);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    for (const auto& col : stats->collections) stored += col->points;
  }
  EXPECT_EQ(stored, live) << "points stored twice or lost";
}

// The coordinator at every journal write of a move, and inside CLEANUP between the map change,
// the drop and DONE.
INSTANTIATE_TEST_SUITE_P(Coordinator, MoveCrash,
                         testing::Values(Case{Victim::kCoordinator, "after:DUAL_WRITE"},
                                         Case{Victim::kCoordinator, "after:COPY"},
                                         Case{Victim::kCoordinator, "copy_page"},
                                         Case{Victim::kCoordinator, "after:VERIFY"},
                                         Case{Victim::kCoordinator, "after:FLIP"},
                                         Case{Victim::kCoordinator, "after:CLEANUP"},
                                         Case{Victim::kCoordinator, "cleanup_map"},
                                         Case{Victim::kCoordinator, "dropped"}),
                         Name);
// The source and the target shard at each phase boundary.
INSTANTIATE_TEST_SUITE_P(
    Shards, MoveCrash,
    testing::Values(Case{Victim::kSource, "after:DUAL_WRITE"}, Case{Victim::kSource, "copy_page"},
                    Case{Victim::kSource, "after:VERIFY"}, Case{Victim::kSource, "after:FLIP"},
                    Case{Victim::kSource, "cleanup_map"}, Case{Victim::kTarget, "after:DUAL_WRITE"},
                    Case{Victim::kTarget, "copy_page"}, Case{Victim::kTarget, "after:VERIFY"},
                    Case{Victim::kTarget, "after:FLIP"}, Case{Victim::kTarget, "cleanup_map"}),
    Name);

}  // namespace
}  // namespace mrl
