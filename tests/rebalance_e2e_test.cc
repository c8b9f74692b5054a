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
#include "tests/test_util.h"

namespace mrl {
namespace {

using namespace e2e;  // NOLINT: the fixture's helpers
using Clock = std::chrono::steady_clock;

constexpr uint32_t kBuckets = 64;
constexpr uint64_t kWriterBase = 1'000'000'000;

int BasePoints() {
  const char* env = std::getenv("MRL_REBALANCE_POINTS");
  return env ? std::atoi(env) : 20000;
}

double Since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A writer's vector: near a basis direction of the high coordinates, where the base data is
// small, so no write ever enters a base query's top 10 (the "unchanged data" check stays exact).
std::vector<float> WriterVector(uint64_t id, uint32_t generation) {
  std::vector<float> v(kDim, 0.0f);
  v[64 + id % 64] = 1.0f;
  v[64 + (id / 64) % 64] += 0.001f * static_cast<float>(generation + 1);
  v[0] = 1e-4f * static_cast<float>(generation);
  return v;
}

// N of mrlctl's "started N moves" line; 0 when absent.
size_t StartedMoves(const std::string& out) {
  const size_t at = out.find("started ");
  return at == std::string::npos ? 0 : std::strtoul(out.c_str() + at + 8, nullptr, 10);
}

struct Load {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> queries{0}, failed_queries{0}, writes{0}, failed_writes{0};
  std::mutex mu;
  std::string first_failure;
  // Acknowledged state of the writer's ids: generation of the last acknowledged upsert, or -1
  // after an acknowledged delete. An id whose last write failed is in `uncertain`.
  std::map<uint64_t, int> acked;
  std::set<uint64_t> uncertain;
  std::vector<double> query_ms;
};

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
  auto exact_answers = [&] {
    std::vector<std::vector<uint64_t>> out;
    for (int q = 0; q < 20; ++q) {
      HttpResult a = Curl("POST", c.Url("/v1/collections/emb/search"),
                          json{{"vector", VectorJson(&queries[static_cast<size_t>(q) * kDim])},
                               {"k", 10}, {"exact", true}, {"deadline_ms", 30000}}.dump(),
                          Cluster::kRead);
      EXPECT_EQ(a.status, 200) << a.body;
      out.push_back(a.status == 200 ? Ids(a.Json()["results"][0]) : std::vector<uint64_t>{});
    }
    return out;
  };
  const auto before = exact_answers();

  Load load;
  std::thread searcher([&] {
    std::mt19937_64 rng(5);
    while (!load.stop) {
      const int q = static_cast<int>(rng() % 20);
      const auto t = Clock::now();
      HttpResult a = Curl("POST", c.Url("/v1/collections/emb/search"),
                          json{{"vector", VectorJson(&queries[static_cast<size_t>(q) * kDim])},
                               {"k", 10}, {"deadline_ms", 10000}}.dump(),
                          Cluster::kRead);
      ++load.queries;
      const bool ok = a.status == 200 && !a.Json().value("partial", true);
      std::lock_guard<std::mutex> lock(load.mu);
      load.query_ms.push_back(1000 * Since(t));
      if (!ok) {
        ++load.failed_queries;
        if (load.first_failure.empty())
          load.first_failure = std::to_string(a.status) + " " + a.body;
      }
    }
  });
  std::thread writer([&] {
    std::mt19937_64 rng(6);
    uint64_t next = 0;
    std::map<uint64_t, uint32_t> generation;
    while (!load.stop) {
      // Mostly new ids, some re-upserts (a newer version) and some deletes of earlier ids.
      const uint64_t pick = rng() % 10;
      std::vector<uint64_t> ids;
      bool del = false;
      if (pick < 6 || next < 50) {
        for (int i = 0; i < 20; ++i) ids.push_back(kWriterBase + next++);
      } else {
        for (int i = 0; i < 10; ++i) ids.push_back(kWriterBase + rng() % next);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        del = pick >= 8;
      }
      HttpResult a;
      if (del) {
        a = Curl("POST", c.Url("/v1/collections/emb/points/delete"),
                 json{{"ids", ids}, {"deadline_ms", 10000}}.dump(), Cluster::kAdmin);
      } else {
        json pts = json::array();
        for (uint64_t id : ids) {
          const uint32_t g = generation.count(id) ? generation[id] + 1 : 0;
          generation[id] = g;
          pts.push_back({{"id", id}, {"vector", WriterVector(id, g)}});
        }
        a = Curl("PUT", c.Url("/v1/collections/emb/points"),
                 json{{"points", pts}, {"deadline_ms", 10000}}.dump(), Cluster::kAdmin);
      }
      ++load.writes;
      std::lock_guard<std::mutex> lock(load.mu);
      for (uint64_t id : ids) {
        if (a.status == 200) {
          load.acked[id] = del ? -1 : static_cast<int>(generation[id]);
          load.uncertain.erase(id);
        } else {
          load.uncertain.insert(id);
        }
      }
      if (a.status != 200) {
        ++load.failed_writes;
        if (load.first_failure.empty())
          load.first_failure = std::to_string(a.status) + " " + a.body;
      }
      // A steady stream, not a flood: on 2 cores a flood starves the moves it is meant to meet.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  });

  // A fourth group joins; rebalance by vector count; group 0 is drained and retired: each with
  // the operator's CLI, as an operator would run it.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  auto mrlctl = [&](const std::string& verb, const std::string& args) {
    const auto t = Clock::now();
    const test_util::Outcome run =
        test_util::RunCommand(std::string(MRL_MRLCTL_BIN) + " " + verb + " --url " + c.Url("") +
                              " --token " + Cluster::kAdmin + " " + args);
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
  load.stop = true;
  searcher.join();
  writer.join();
  std::vector<double> ms = load.query_ms;
  std::sort(ms.begin(), ms.end());
  std::printf("under load: %llu queries (%llu failed or partial), p50 %.1f ms, p99 %.1f ms; "
              "%llu write requests (%llu failed)\n",
              static_cast<unsigned long long>(load.queries.load()),
              static_cast<unsigned long long>(load.failed_queries.load()),
              ms.empty() ? 0 : ms[ms.size() / 2], ms.empty() ? 0 : ms[ms.size() * 99 / 100],
              static_cast<unsigned long long>(load.writes.load()),
              static_cast<unsigned long long>(load.failed_writes.load()));
  EXPECT_GT(load.queries.load(), 0u);
  EXPECT_EQ(load.failed_queries.load(), 0u) << load.first_failure;
  EXPECT_EQ(load.failed_writes.load(), 0u) << load.first_failure;

  // The data nobody wrote answers exactly as before.
  EXPECT_EQ(exact_answers(), before);

  // Every acknowledged write reads back as its latest version; every acknowledged delete is
  // absent.
  std::vector<uint64_t> ids;
  for (const auto& [id, g] : load.acked) {
    if (!load.uncertain.count(id)) ids.push_back(id);
  }
  size_t live = 0, checked = 0;
  for (size_t at = 0; at < ids.size(); at += 1000) {
    const std::vector<uint64_t> part(
        ids.begin() + static_cast<std::ptrdiff_t>(at),
        ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + 1000)));
    r = Curl("POST", c.Url("/v1/collections/emb/points/get"),
             json{{"ids", part}, {"with_vector", true}}.dump(), Cluster::kRead);
    ASSERT_EQ(r.status, 200) << r.body;
    const json pts = r.Json()["points"];
    for (size_t i = 0; i < part.size(); ++i) {
      const int g = load.acked[part[i]];
      ++checked;
      if (g < 0) {
        EXPECT_FALSE(pts[i]["found"].get<bool>()) << "deleted id " << part[i] << " is back";
        continue;
      }
      ++live;
      ASSERT_TRUE(pts[i]["found"].get<bool>()) << "acknowledged id " << part[i] << " is lost";
      EXPECT_EQ(pts[i]["vector"].get<std::vector<float>>(),
                WriterVector(part[i], static_cast<uint32_t>(g)))
          << "id " << part[i] << " is not at its latest version " << g;
    }
  }
  std::printf("read back %zu acknowledged writer ids (%zu live)\n", checked, live);

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
  for (const auto& [id, g] : load.acked) {
    if (g >= 0 || load.uncertain.count(id)) ++expected[owner[BucketOfId(id, kBuckets)]];
  }
  const size_t uncertain = load.uncertain.size();
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

}  // namespace
}  // namespace mrl
