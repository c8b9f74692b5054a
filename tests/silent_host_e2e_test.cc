// Silent hosts (issue 20 items 1-3) with real processes on loopback: a shard that stops answering
// without closing its sockets (SIGSTOP, as a hung VM or a cut link looks to the coordinator).
//   - Replication 1: the first search after the stop answers by its deadline with the live
//     shard's exact hits and coverage 1/2; after SIGCONT, full coverage within 1 s (probes).
//   - Replication 2: no search loses coverage while a member is stopped; hedged calls to the
//     other replica keep p99 within the hedge delay plus the healthy p99; a healthy run hedges at
//     most 5% of its calls.
// Searches go through the coordinator's binary API (the HTTP path adds curl's process start).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "common/bucket.h"
#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"

namespace mrl {
namespace {

using namespace e2e;  // NOLINT: the fixture's helpers
using Clock = std::chrono::steady_clock;

struct Answer {
  std::vector<uint64_t> ids;
  double coverage = 0;
  double ms = 0;
  Status status;
};

Answer ExactSearch(rpc::RpcClient& client, const float* q) {
  wire::SearchRequestT req;
  req.collection = "emb";
  req.dims = kDim;
  req.queries.assign(q, q + kDim);
  req.stages.emplace_back(kDim, 10);
  req.exact = true;
  Answer a;
  const auto t0 = Clock::now();
  auto r = client.Call(req, 10000);  // the coordinator applies its own --deadline-ms
  a.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  a.status = r.status();
  if (!r.ok()) return a;
  a.coverage = r->coverage;
  if (!r->results.empty() && r->results[0]) {
    for (const auto& h : r->results[0]->candidates) a.ids.push_back(h.id());
  }
  return a;
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// The brute-force top-10 among the points whose bucket the replica group `group` owns.
std::vector<uint64_t> ExactOverGroup(const std::vector<float>& data, const float* q,
                                     const std::vector<uint32_t>& group_of_bucket, uint32_t group) {
  std::vector<float> kept;
  std::vector<uint64_t> ids;
  for (int i = 0; i < kPoints; ++i) {
    const uint64_t id = static_cast<uint64_t>(i) * 7 + 3;
    if (group_of_bucket[BucketOfId(id, static_cast<uint32_t>(group_of_bucket.size()))] != group) continue;
    kept.insert(kept.end(), &data[static_cast<size_t>(i) * kDim], &data[static_cast<size_t>(i + 1) * kDim]);
    ids.push_back(id);
  }
  std::vector<uint64_t> out;
  for (uint64_t pos : BruteForceCosine(kept, q, 10, static_cast<int>(ids.size()))) {
    out.push_back(ids[(pos - 3) / 7]);  // BruteForceCosine names position i as i * 7 + 3
  }
  return out;
}

// Sends SIGCONT to a stopped shard when the test leaves (a failed assertion included).
struct Resume {
  DaemonProcess& shard;
  ~Resume() { shard.Signal(SIGCONT); }
};

double MetricValue(const std::string& metrics, const std::string& name) {
  const size_t at = metrics.find("\n" + name + " ");
  if (at == std::string::npos) return -1;
  return std::stod(metrics.substr(at + name.size() + 2));
}

TEST(SilentHostE2E, ReplicationOneKeepsTheLiveShardsAnswerAtTheDeadlineAndRecoversWithinASecond) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  Cluster c("silent_r1", 2, 1, {}, {"--deadline-ms", "500"});
  const std::vector<float> data = MakeData(kPoints, 31);
  c.CreateAndLoad(data);
  const json map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
  const auto owner = map["collections"]["emb"]["group_of_bucket"].get<std::vector<uint32_t>>();
  const double live_share =
      static_cast<double>(std::count(owner.begin(), owner.end(), 0u)) / static_cast<double>(owner.size());
  const std::vector<float> queries = MakeData(5, 32);
  rpc::ClientOptions o;
  o.port = c.BinaryPort();
  rpc::RpcClient client(o);
  for (int i = 0; i < 20; ++i) {  // warm-up: both shards answer
    const Answer a = ExactSearch(client, &queries[static_cast<size_t>(i % 5) * kDim]);
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    ASSERT_EQ(a.coverage, 1.0);
  }

  c.shard(1).Signal(SIGSTOP);
  Resume resume{c.shard(1)};
  const float* q0 = &queries[0];
  const Answer first = ExactSearch(client, q0);
  std::printf("first search after SIGSTOP: %.1f ms, coverage %.3f (live shard's share %.3f)\n",
              first.ms, first.coverage, live_share);
  ASSERT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_LE(first.ms, 500.0 + 50.0) << "the search outlived its deadline";
  EXPECT_DOUBLE_EQ(first.coverage, live_share);
  EXPECT_EQ(first.ids, ExactOverGroup(data, q0, owner, 0)) << "not the live shard's exact hits";
  // Later searches while it is away answer as fast: the shard is down, not waited for.
  for (int i = 1; i < 5; ++i) {
    const Answer a = ExactSearch(client, &queries[static_cast<size_t>(i) * kDim]);
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    EXPECT_DOUBLE_EQ(a.coverage, live_share);
    EXPECT_LE(a.ms, 550.0);
    EXPECT_EQ(a.ids, ExactOverGroup(data, &queries[static_cast<size_t>(i) * kDim], owner, 0));
    std::printf("search %d while stopped: %.1f ms, coverage %.3f\n", i, a.ms, a.coverage);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // probes have missed by now

  c.shard(1).Signal(SIGCONT);
  const auto resumed = Clock::now();
  double full_after_ms = -1;
  while (Clock::now() - resumed < std::chrono::seconds(5)) {
    const Answer a = ExactSearch(client, q0);
    if (a.status.ok() && a.coverage == 1.0) {
      full_after_ms = std::chrono::duration<double, std::milli>(Clock::now() - resumed).count();
      EXPECT_EQ(a.ids, BruteForceCosine(data, q0, 10));
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  std::printf("full coverage %.0f ms after SIGCONT\n", full_after_ms);
  EXPECT_GE(full_after_ms, 0.0) << "coverage never came back";
  EXPECT_LE(full_after_ms, 1000.0);
}

TEST(SilentHostE2E, ReplicationTwoHedgesToTheOtherReplicaAndNeverLosesCoverage) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  Cluster c("silent_r2", 4, 2, {}, {"--deadline-ms", "500"});
  const std::vector<float> data = MakeData(kPoints, 41);
  c.CreateAndLoad(data);
  const std::vector<float> queries = MakeData(20, 42);
  std::vector<std::vector<uint64_t>> truth;
  for (int q = 0; q < 20; ++q) truth.push_back(BruteForceCosine(data, &queries[static_cast<size_t>(q) * kDim], 10));
  rpc::ClientOptions o;
  o.port = c.BinaryPort();
  rpc::RpcClient client(o);

  // A healthy run: its p99, and the share of calls it hedged.
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(ExactSearch(client, &queries[static_cast<size_t>(i % 20) * kDim]).status.ok());
  const std::string m0 = Curl("GET", c.Url("/metrics")).body;
  std::vector<double> healthy;
  for (int i = 0; i < 600; ++i) {
    const Answer a = ExactSearch(client, &queries[static_cast<size_t>(i % 20) * kDim]);
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    EXPECT_EQ(a.coverage, 1.0);
    EXPECT_EQ(a.ids, truth[static_cast<size_t>(i % 20)]);
    healthy.push_back(a.ms);
  }
  const std::string m1 = Curl("GET", c.Url("/metrics")).body;
  const double hedges = MetricValue(m1, "mrl_coordinator_hedges_total") -
                        MetricValue(m0, "mrl_coordinator_hedges_total");
  const double calls = MetricValue(m1, "mrl_coordinator_hedgeable_calls_total") -
                       MetricValue(m0, "mrl_coordinator_hedgeable_calls_total");
  const double healthy_p99 = Quantile(healthy, 0.99);
  std::printf("healthy: %zu searches, p50 %.2f ms, p99 %.2f ms; %.0f of %.0f calls hedged (%.2f%%)\n",
              healthy.size(), Quantile(healthy, 0.5), healthy_p99, hedges, calls,
              calls > 0 ? 100.0 * hedges / calls : 0.0);
  ASSERT_GT(calls, 0);
  EXPECT_LE(hedges, 0.05 * calls) << "a healthy run hedged more than 5% of its calls";

  // Group 0 is {s0, s1}: stop the member the coordinator has sent more calls (replicas are
  // chosen by latency), with its hedge delay as the coordinator has measured it.
  const json health = Curl("GET", c.Url("/v1/shards/health"), "", Cluster::kRead).Json();
  std::map<std::string, json> seen;
  for (const json& s : health["shards"]) seen[s["shard"].get<std::string>()] = s;
  ASSERT_TRUE(seen.count("s0") && seen.count("s1")) << health.dump();
  const int victim = seen["s0"]["calls"].get<uint64_t>() >= seen["s1"]["calls"].get<uint64_t>() ? 0 : 1;
  const std::string name = "s" + std::to_string(victim);
  const double hedge_delay = seen[name]["hedge_delay_ms"].get<double>();
  std::printf("stopping %s (calls: s0 %s, s1 %s; its hedge delay %.2f ms)\n", name.c_str(),
              seen["s0"]["calls"].dump().c_str(), seen["s1"]["calls"].dump().c_str(), hedge_delay);
  ASSERT_GT(hedge_delay, 0) << health.dump();

  const std::string m2 = Curl("GET", c.Url("/metrics")).body;
  c.shard(victim).Signal(SIGSTOP);
  Resume resume{c.shard(victim)};
  std::vector<double> stopped;
  double lowest = 1.0;
  const auto t0 = Clock::now();
  for (int i = 0; Clock::now() - t0 < std::chrono::seconds(10); ++i) {
    const Answer a = ExactSearch(client, &queries[static_cast<size_t>(i % 20) * kDim]);
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    lowest = std::min(lowest, a.coverage);
    EXPECT_EQ(a.ids, truth[static_cast<size_t>(i % 20)]) << "search " << i;
    stopped.push_back(a.ms);
  }
  const double p99 = Quantile(stopped, 0.99);
  const std::string m3 = Curl("GET", c.Url("/metrics")).body;
  std::printf("hedged while stopped: %.0f of %.0f calls\n",
              MetricValue(m3, "mrl_coordinator_hedges_total") - MetricValue(m2, "mrl_coordinator_hedges_total"),
              MetricValue(m3, "mrl_coordinator_hedgeable_calls_total") -
                  MetricValue(m2, "mrl_coordinator_hedgeable_calls_total"));
  std::printf("%s stopped for 10 s: %zu searches, lowest coverage %.3f, p50 %.2f ms, p99 %.2f ms, "
              "max %.2f ms (hedge delay %.2f ms + healthy p99 %.2f ms = %.2f ms)\n",
              name.c_str(), stopped.size(), lowest, Quantile(stopped, 0.5), p99, Quantile(stopped, 1.0),
              hedge_delay, healthy_p99, hedge_delay + healthy_p99);
  EXPECT_EQ(lowest, 1.0) << "a search lost coverage with a replica of every group serving";
  EXPECT_LE(p99, hedge_delay + healthy_p99);
  const json during = Curl("GET", c.Url("/v1/shards/health"), "", Cluster::kRead).Json();
  bool listed = false;
  for (const json& s : during["shards"]) {
    if (s["shard"] == name) {
      listed = true;
      EXPECT_EQ(s["state"], "down") << s.dump();
      std::printf("%s while stopped, as the coordinator sees it: %s\n", name.c_str(), s.dump().c_str());
    }
  }
  EXPECT_TRUE(listed) << during.dump();

  c.shard(victim).Signal(SIGCONT);
  const auto resumed = Clock::now();
  bool up = false;
  json last;
  while (!up && Clock::now() - resumed < std::chrono::seconds(5)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    const json now = Curl("GET", c.Url("/v1/shards/health"), "", Cluster::kRead).Json();
    for (const json& s : now["shards"]) {
      if (s["shard"] == name) {
        up = s["state"] == "up";
        last = s;
      }
    }
  }
  std::printf("%s as the coordinator sees it: %s\n", name.c_str(), last.dump().c_str());
  std::printf("%s up again %.0f ms after SIGCONT\n", name.c_str(),
              std::chrono::duration<double, std::milli>(Clock::now() - resumed).count());
  EXPECT_TRUE(up);
}

}  // namespace
}  // namespace mrl
