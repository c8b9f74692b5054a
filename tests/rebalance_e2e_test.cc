// Live rebalancing with real processes (issue 12): 3 shard groups and a coordinator; while one
// thread searches and another upserts, re-upserts and deletes without pause, a fourth group is
// added, the cluster is rebalanced by vector count, and an original group is drained and
// retired. Then: no query failed or came back partial; the exact answers over the data nobody
// wrote are the same as before; every acknowledged write reads back as its latest version and
// every acknowledged delete is absent; the shards hold exactly the live points (no strays, no
// duplicates) and the live groups are within 10% of even.
//
// MRL_REBALANCE_POINTS sets the size of the base data (default 20000; the acceptance run uses
// 200000).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <utility>

#include "common/bucket.h"
#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"
#include "tests/live_load.h"
#include "tests/test_util.h"

namespace mrl {
namespace {

// mrlctl with a bound: a wait that cannot end (a fill whose target died) fails the test in five
// minutes with mrlctl's output, instead of hanging until ctest's timeout.
const std::string kMrlctl = std::string("timeout 300 ") + MRL_MRLCTL_BIN + " ";

using namespace e2e;  // NOLINT: the fixture's helpers
using Clock = std::chrono::steady_clock;

constexpr uint32_t kBuckets = 64;
int BasePoints() {
  const char* env = std::getenv("MRL_REBALANCE_POINTS");
  return env ? std::atoi(env) : 20000;
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// N of mrlctl's "started N moves" line; 0 when absent.
size_t StartedMoves(const std::string& out) {
  const size_t at = out.find("started ");
  return at == std::string::npos ? 0 : std::strtoul(out.c_str() + at + 8, nullptr, 10);
}

TEST(RebalanceE2E, AddGroupRebalanceAndDrainUnderQueryAndWriteLoadLoseNothing) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);  // progress shows as it happens
  const int n = BasePoints();
  Cluster c("rebalance", 3, 1, {}, {"--move-copy-batch", "2000"});
  const std::vector<float> data = MakeData(n, 11);
  HttpResult r = Curl("PUT", c.Url("/v1/collections/emb"),
                      json{{"dim", kDim}, {"storage", "fp32"}, {"num_buckets", kBuckets},
                           {"indexes", {{{"dims", 16}, {"kind", "hnsw"}}}}}.dump(),
                      Cluster::kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  const auto load_start = Clock::now();
  for (int start = 0; start < n; start += 1000) {
    json pts = json::array();
    for (int i = start; i < std::min(n, start + 1000); ++i) {
      pts.push_back({{"id", static_cast<uint64_t>(i)},
                     {"vector", VectorJson(&data[static_cast<size_t>(i) * kDim])}});
    }
    r = Curl("PUT", c.Url("/v1/collections/emb/points"),
             json{{"points", pts}, {"deadline_ms", 60000}}.dump(), Cluster::kAdmin);
    ASSERT_EQ(r.status, 200) << r.body;
  }
  std::printf("loaded %d points in %.1f s\n", n, Since(load_start));

  // Exact answers of 20 base queries, before anything moves.
  const std::vector<float> queries = MakeData(20, 12);
  auto exact_answers = [&] { return ExactAnswers(c, queries); };

  const auto before = exact_answers();

  LiveLoad load(c, queries);

  // A fourth group joins; rebalance by vector count; group 0 is drained and retired: each with
  // the operator's CLI, as an operator would run it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto mrlctl = [&](const std::string& verb, const std::string& args) {
    const auto t = Clock::now();
    const test_util::Outcome run =
        test_util::RunCommand(kMrlctl + verb + " --url " + c.Url("") + " --token " +
                              Cluster::kAdmin + " " + args);
    const int rc = run.code;
    const std::string& out = run.output;
    const std::string tail = out.size() > 600 ? "..." + out.substr(out.size() - 600) : out;
    std::printf("mrlctl %s %s: exit %d in %.1f s\n%s\n", verb.c_str(), args.c_str(), rc,
                Since(t), tail.c_str());
    EXPECT_EQ(rc, 0) << out;
    return out;
  };
  const int s3 = c.AddShard();
  std::string out = mrlctl("add-group", "--shard s3=" + c.shard(s3).address());
  EXPECT_NE(out.find("group 3"), std::string::npos) << out;
  out = mrlctl("rebalance", "--by vectors --wait");
  const size_t rebalance_moves = StartedMoves(out);
  EXPECT_GE(rebalance_moves, 10u) << out;  // 64 buckets over 3 groups -> 4: ~16 moves
  out = mrlctl("drain", "--group 0 --wait --remove");
  EXPECT_GE(StartedMoves(out), 10u) << out;
  EXPECT_NE(out.find("retired group 0"), std::string::npos) << out;

  std::this_thread::sleep_for(std::chrono::seconds(1));
  // No query failed or came back partial, no write failed; every acknowledged write reads back
  // as its latest version and every acknowledged delete is absent; the data nobody wrote
  // answers exactly as before.
  load.StopAndCheck(c);
  EXPECT_EQ(exact_answers(), before);

  // The shards hold exactly the live points: the retired shard nothing, the others their
  // groups' buckets, no duplicates; the live groups within 10% of even.
  r = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead);
  ASSERT_EQ(r.status, 200);
  const json map = r.Json();
  EXPECT_TRUE(map["groups"][0].empty()) << map.dump();
  const std::vector<uint32_t> owner =
      map["collections"]["emb"]["group_of_bucket"].get<std::vector<uint32_t>>();
  std::map<uint32_t, uint64_t> expected;
  for (int i = 0; i < n; ++i) ++expected[owner[BucketOfId(static_cast<uint64_t>(i), kBuckets)]];
  for (const auto& [id, g] : load.acked()) {
    if (g >= 0 || load.uncertain().count(id)) ++expected[owner[BucketOfId(id, kBuckets)]];
  }
  const size_t uncertain = load.uncertain().size();
  uint64_t total = 0;
  for (const auto& [g, count] : expected) total += count;
  const double mean = static_cast<double>(total) / 3;
  for (int s = 0; s < 4; ++s) {
    rpc::ClientOptions o;
    o.port = c.shard(s).port();
    rpc::RpcClient client(o);
    client.set_epoch(map["epoch"].get<uint32_t>());
    auto stats = client.Call(wire::StatsRequestT{}, 5000);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    uint64_t points = 0;
    for (const auto& col : stats->collections) points += col->points;
    const uint32_t group = s == 3 ? 3 : static_cast<uint32_t>(s);
    std::printf("shard s%d (group %u): %llu points, expected %llu\n", s, group,
                static_cast<unsigned long long>(points),
                static_cast<unsigned long long>(expected[group]));
    if (uncertain == 0) {
      EXPECT_EQ(points, expected[group]) << "shard s" << s;
    }
    if (group != 0) {
      EXPECT_LE(std::abs(static_cast<double>(points) - mean), 0.10 * mean) << "shard s" << s;
    }
  }
}

// The move journal keeps the newest --moves-keep-finished finished records (once finished for
// --moves-prune-after-s); older ones are pruned, each by compare-and-swap.
TEST(RebalanceE2E, FinishedMovesBeyondTheKeptNumberArePrunedFromTheJournal) {
  Cluster c("prune", 2, 1, {}, {"--moves-keep-finished", "1", "--moves-prune-after-s", "0"});
  const std::vector<float> data = MakeData(2000, 31);
  c.CreateAndLoad(data, 16, 2000);
  const json map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
  const std::vector<uint32_t> owner =
      map["collections"]["emb"]["group_of_bucket"].get<std::vector<uint32_t>>();
  std::vector<std::string> ids;
  for (uint32_t b = 0; b < owner.size() && ids.size() < 3; ++b) {
    if (owner[b] != 0) continue;
    const test_util::Outcome run = test_util::RunCommand(
        kMrlctl + "move --url " + c.Url("") + " --token " + Cluster::kAdmin +
        " --collection emb --bucket " + std::to_string(b) + " --to 1 --wait --json");
    ASSERT_EQ(run.code, 0) << run.output;
    const size_t at = run.output.find("\"id\": \"");
    ASSERT_NE(at, std::string::npos) << run.output;
    ids.push_back(run.output.substr(at + 7, run.output.find('"', at + 7) - at - 7));
  }
  ASSERT_EQ(ids.size(), 3u);
  // The executor prunes on its next pass (every 200 ms when idle).
  json listed;
  for (int i = 0; i < 50; ++i) {
    listed = Curl("GET", c.Url("/v1/moves"), "", Cluster::kAdmin).Json()["moves"];
    if (listed.size() == 1) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(listed.size(), 1u) << listed.dump();
  EXPECT_EQ(listed[0]["id"].get<std::string>(), ids.back()) << listed.dump();
  EXPECT_EQ(listed[0]["phase"].get<std::string>(), "DONE");
  EXPECT_NE(c.coord().Log().find("pruned"), std::string::npos) << c.coord().Log();
}

}  // namespace
}  // namespace mrl
