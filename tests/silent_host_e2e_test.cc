// Silent hosts (issue 20 items 1-3) with real processes on loopback: a shard that stops answering
// without closing its sockets (SIGSTOP, as a hung VM or a cut link looks to the coordinator).
//   - Replication 1: the first search after the stop answers by its deadline with the live
//     shard's exact hits and coverage 1/2; after SIGCONT, full coverage within 1 s (probes).
//   - Replication 2: no search loses coverage while a member is stopped; hedged calls to the
//     other replica keep p99 within the hedge delay plus the healthy p99; a healthy run hedges at
//     most 5% of its calls.
//   - Replication 2 writes (items 4-5): with a member stopped, writes are acknowledged again
//     within the documented timeout and stay acknowledged; after SIGCONT it catches up (its
//     coordinator killed -9 and restarted mid-way) and rejoins; every acknowledged write then
//     reads back from each member asked directly, and a search served by it finds them.
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
#include <atomic>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include "meta/base64.h"
#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"
#include "tests/e2e_clients.h"

namespace mrl {
namespace {

using namespace e2e;  // NOLINT: the fixture's helpers
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

// The shard map as the coordinator's embedded store holds it (readable with the coordinator
// dead): meta.json's "map" key.
json StoredMap(const Cluster& c) {
  const json meta = json::parse(test_util::Slurp(c.dir() + "/coord/meta.json"));
  for (const json& kv : meta.at("kvs")) {
    if (meta::Base64Decode(kv.at("key").get<std::string>()).value() == "map") {
      return json::parse(meta::Base64Decode(kv.at("value").get<std::string>()).value());
    }
  }
  return json();
}

bool Member(const json& list, const std::string& id) {
  return list.is_array() && std::find(list.begin(), list.end(), json(id)) != list.end();
}

TEST(SilentHostE2E, ReplicationTwoWritesGoOnWithAMemberStoppedAndItCatchesUpAcrossACoordinatorKill) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  // The documented timeout: a member down for --out-of-sync-after-ms leaves the in-sync set,
  // and a write that times out on it (--deadline-ms) takes it out at once. The catch-up copy is
  // throttled so that the coordinator can be killed in the middle of it.
  // A catch-up margin of 1 s (default 60 s): the catch-up copies what was written from 1 s before
  // s0 left, not the data loaded moments before the test stops it.
  const std::vector<std::string> coord_args = {"--deadline-ms", "500", "--out-of-sync-after-ms",
                                               "2000", "--catch-up-margin-ms", "1000",
                                               "--move-max-bytes-per-s", "100000",
                                               "--move-copy-batch", "20"};
  Cluster c("silent_w", 4, 2, {}, coord_args);
  const std::vector<float> data = MakeData(kPoints, 51);
  c.CreateAndLoad(data);
  json map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
  ASSERT_EQ(map["groups"][0], json({"s0", "s1"})) << map.dump();

  auto writer = std::make_unique<Writer>(c.BinaryPort(), 10'000'000);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  c.shard(0).Signal(SIGSTOP);
  Resume resume{c.shard(0)};
  const auto stopped_at = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(6));
  map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
  std::printf("map with s0 stopped: groups %s, out_of_sync %s\n", map["groups"].dump().c_str(),
              map.value("out_of_sync", json()).dump().c_str());
  EXPECT_EQ(map["groups"][0], json({"s1"}));
  EXPECT_TRUE(Member(map["out_of_sync"]["0"], "s0")) << map.dump();
  const std::string status = test_util::RunCommand(std::string(MRL_MRLCTL_BIN) + " status --url " + c.Url("") +
                                                   " --token " + Cluster::kAdmin).output;
  std::printf("mrlctl status with s0 stopped:\n%s", status.c_str());
  EXPECT_NE(status.find("out of sync: 's0' (group 0)"), std::string::npos) << status;

  // Writes: failures only until the member left the set, then every one acknowledged.
  writer->Stop();
  double last_failure_ms = -1, first_ack_ms = -1;
  size_t acked_after = 0, failed_after = 0;
  for (const auto& [t, ok] : writer->outcomes) {
    if (t < stopped_at) {
      EXPECT_TRUE(ok) << "a write failed before the stop: " << writer->first_error;
      continue;
    }
    const double ms = std::chrono::duration<double, std::milli>(t - stopped_at).count();
    if (!ok) {
      last_failure_ms = ms;
      ++failed_after;
    } else {
      ++acked_after;
      if (first_ack_ms < 0) first_ack_ms = ms;
    }
  }
  std::printf("write batches while s0 stopped (6 s): %zu acknowledged, %zu failed; first acknowledged %.0f "
              "ms after SIGSTOP, last failure %.0f ms after (%s)\n",
              acked_after, failed_after, first_ack_ms, last_failure_ms, writer->first_error.c_str());
  EXPECT_LE(last_failure_ms, 2000.0 + 500.0) << "writes failed past the documented timeout";
  EXPECT_GT(acked_after, 50u);
  std::set<uint64_t> upserts = writer->acked_upserts, deletes = writer->acked_deletes;
  uint64_t next_id = 10'000'000 + 10 * writer->outcomes.size() + 1000;
  writer.reset();

  // SIGCONT: the leader starts its catch-up once it answers a probe; the coordinator is killed
  // -9 while it runs and restarted; the catch-up resumes, writes going on around it.
  writer = std::make_unique<Writer>(c.BinaryPort(), next_id);
  c.shard(0).Signal(SIGCONT);
  const auto resumed = Clock::now();
  bool catching_up = false;
  while (!catching_up && Clock::now() - resumed < std::chrono::seconds(10)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    const json m = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
    catching_up = Member(m.value("filling", json::object()).value("0", json()), "s0");
  }
  ASSERT_TRUE(catching_up) << "the catch-up never started";
  std::printf("catch-up started %.0f ms after SIGCONT\n",
              std::chrono::duration<double, std::milli>(Clock::now() - resumed).count());
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  const json fills = Curl("GET", c.Url("/v1/cluster/fills"), "", Cluster::kRead).Json();
  std::printf("before the kill: %s\n", fills.dump().c_str());
  writer->Stop();
  ASSERT_EQ(c.coord().Kill(SIGKILL), 128 + SIGKILL);
  const json at_kill = StoredMap(c);
  ASSERT_TRUE(Member(at_kill.value("filling", json::object()).value("0", json()), "s0"))
      << "the catch-up finished before the kill: " << at_kill.dump();
  EXPECT_TRUE(at_kill["catch_up"].contains("s0")) << at_kill.dump();
  for (uint64_t id : writer->acked_upserts) upserts.insert(id);
  for (uint64_t id : writer->acked_deletes) deletes.insert(id);
  next_id += 10 * writer->outcomes.size() + 1000;
  writer.reset();
  c.coord().Start();
  writer = std::make_unique<Writer>(c.BinaryPort(), next_id);
  const auto restarted = Clock::now();
  bool serving = false;
  while (!serving && Clock::now() - restarted < std::chrono::seconds(90)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
    serving = Member(map["groups"][0], "s0");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  writer->Stop();
  for (uint64_t id : writer->acked_upserts) upserts.insert(id);
  for (uint64_t id : writer->acked_deletes) deletes.insert(id);
  EXPECT_TRUE(writer->first_error.empty()) << writer->first_error;
  std::printf("s0 serves again %.1f s after the coordinator restarted: %s\n",
              std::chrono::duration<double>(Clock::now() - restarted).count(), map.dump().c_str());
  ASSERT_TRUE(serving) << c.coord().Log();
  const std::string log = c.coord().Log();
  const size_t resumed_at = log.find("catching up shard 's0'");
  EXPECT_NE(resumed_at, std::string::npos) << "the restarted coordinator did not resume the catch-up:\n" << log;
  const size_t done_at = log.find("is caught up");
  EXPECT_NE(done_at, std::string::npos) << log;
  if (done_at != std::string::npos) {
    std::printf("restarted coordinator: %s\n", log.substr(done_at - 20, log.find('\n', done_at) - done_at + 20).c_str());
  }

  // Every acknowledged write reads back from each member, asked directly over the shard protocol.
  const uint32_t epoch = map["epoch"].get<uint32_t>();
  const auto owner = map["collections"]["emb"]["group_of_bucket"].get<std::vector<uint32_t>>();
  std::vector<uint64_t> mine_upserted, mine_deleted;
  for (uint64_t id : upserts) {
    if (owner[BucketOfId(id, 256)] == 0) mine_upserted.push_back(id);
  }
  for (uint64_t id : deletes) {
    if (owner[BucketOfId(id, 256)] == 0) mine_deleted.push_back(id);
  }
  std::printf("group 0 holds %zu acknowledged upserts and %zu acknowledged deletes of them (of %zu and %zu)\n",
              mine_upserted.size(), mine_deleted.size(), upserts.size(), deletes.size());
  ASSERT_GT(mine_upserted.size(), 100u);
  for (int s : {0, 1}) {
    rpc::ClientOptions o;
    o.port = c.shard(s).port();
    rpc::RpcClient member(o);
    member.set_epoch(epoch);
    size_t found = 0, exact = 0, gone = 0;
    for (size_t start = 0; start < mine_upserted.size(); start += 500) {
      wire::GetRequestT get;
      get.collection = "emb";
      get.with_vector = true;
      get.ids.assign(mine_upserted.begin() + static_cast<std::ptrdiff_t>(start),
                     mine_upserted.begin() + static_cast<std::ptrdiff_t>(std::min(mine_upserted.size(), start + 500)));
      auto r = member.Call(get, 10000);
      ASSERT_TRUE(r.ok()) << r.status().ToString();
      for (const auto& p : r->points) {
        if (!p || !p->found) continue;
        ++found;
        exact += p->vector == AwayVector(p->id);
      }
    }
    wire::GetRequestT get;
    get.collection = "emb";
    get.ids = mine_deleted;
    auto r = member.Call(get, 10000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    for (const auto& p : r->points) gone += p && !p->found;
    std::printf("s%d: %zu of %zu acknowledged upserts found (%zu exact), %zu of %zu deletes gone\n", s,
                found, mine_upserted.size(), exact, gone, mine_deleted.size());
    EXPECT_EQ(found, mine_upserted.size()) << "s" << s << " lost acknowledged writes";
    EXPECT_EQ(exact, mine_upserted.size());
    EXPECT_EQ(gone, mine_deleted.size()) << "s" << s << " brought deleted points back";
  }
  // A search served by s0 (asked directly) finds the points written while it was away.
  rpc::ClientOptions o;
  o.port = c.shard(0).port();
  rpc::RpcClient s0(o);
  s0.set_epoch(epoch);
  int top1 = 0, asked = 0;
  for (size_t i = 0; i < mine_upserted.size(); i += std::max<size_t>(1, mine_upserted.size() / 50)) {
    const uint64_t id = mine_upserted[i];
    const auto q = AwayVector(id);
    const Answer a = ExactSearch(s0, q.data());
    ASSERT_TRUE(a.status.ok()) << a.status.ToString();
    ++asked;
    top1 += !a.ids.empty() && a.ids[0] == id;
  }
  std::printf("searches served by s0 for points written while it was away: %d of %d found first\n",
              top1, asked);
  EXPECT_EQ(top1, asked);
}

}  // namespace
}  // namespace mrl
