// Issue 18's acceptance, with real processes: a 3-member etcd cluster, 3 shards and 2
// coordinators on `--meta etcd://...`, under continuous query and write load through the
// coordinators, while the leader coordinator is killed or paused and etcd members are killed or
// all stopped. Every query and write a load thread sends is counted; every acknowledged write
// is read back at the end.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/atomic_file.h"
#include "ops/http_client.h"
#include "ops/local_etcd.h"
#include "tests/daemon_process.h"
#include "tests/test_util.h"

namespace mrl {
namespace {

using json = nlohmann::json;
using test_util::DaemonProcess;
using test_util::TempDir;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

constexpr int kDim = 16;
constexpr int kTtl = 4;  // the coordinators' session TTL (s); docs/metadata.md: 10 in production

double Since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::vector<float> RandomVector(std::mt19937_64& rng) {
  std::normal_distribution<float> g;
  std::vector<float> v(kDim);
  for (auto& x : v) x = g(rng);
  return v;
}

// Searches and single-point upserts in a loop against one coordinator; counts every outcome.
class Load {
 public:
  Load(std::string url, uint64_t first_id) : url_(std::move(url)), next_id_(first_id) {
    thread_ = std::thread([this] { Run(); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int queries() const { return queries_; }
  int writes() const { return static_cast<int>(acked_.size()); }
  int failed() const { return failed_queries_ + failed_writes_; }
  std::string failures() const {
    std::lock_guard<std::mutex> lock(mu_);
    return "failed queries " + std::to_string(failed_queries_) + ", failed writes " +
           std::to_string(failed_writes_) + (first_error_.empty() ? "" : "; first: " + first_error_);
  }
  const std::vector<uint64_t>& acked() const { return acked_; }

 private:
  void Run() {
    ops::HttpClient client(url_, "");
    std::mt19937_64 rng(next_id_);
    while (!stop_) {
      const json q = {{"vector", RandomVector(rng)}, {"k", 10}};
      auto r = client.Call(http::verb::post, "/v1/collections/emb/search", q.dump());
      ++queries_;
      if (r.status != 200) Fail(&failed_queries_, "search", r);
      const uint64_t id = next_id_++;
      const json w = {{"points", {{{"id", id}, {"vector", RandomVector(rng)}}}}};
      r = client.Call(http::verb::put, "/v1/collections/emb/points", w.dump());
      if (r.status == 200) {
        acked_.push_back(id);
      } else {
        Fail(&failed_writes_, "write", r);
      }
    }
  }
  void Fail(int* counter, const std::string& what, const ops::HttpReply& r) {
    std::lock_guard<std::mutex> lock(mu_);
    ++*counter;
    if (first_error_.empty()) first_error_ = what + ": " + std::to_string(r.status) + " " + r.body;
  }

  const std::string url_;
  uint64_t next_id_;
  std::atomic<bool> stop_{false};
  std::atomic<int> queries_{0};
  int failed_queries_ = 0, failed_writes_ = 0;
  std::string first_error_;
  mutable std::mutex mu_;
  std::vector<uint64_t> acked_;  // read after Stop
  std::thread thread_;
};

class MetaCluster : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = TempDir("meta_cluster_" + std::string(
                                         ::testing::UnitTest::GetInstance()->current_test_info()->name()));
    auto etcd = ops::LocalEtcd::Start(dir_ + "/etcd", 3, 60);
    ASSERT_TRUE(etcd.ok()) << etcd.status().ToString();
    etcd_ = std::move(etcd).value();
    for (int s = 0; s < 3; ++s) {
      shards_.push_back(std::make_unique<DaemonProcess>(
          "s" + std::to_string(s), MRL_SHARD_BIN,
          std::vector<std::string>{"--data-dir", dir_ + "/s" + std::to_string(s), "--port", "0",
                                   "--threads", "1", "--block-cache-mb", "16", "--meta",
                                   etcd_->Url("mrl"), "--shard-id", "s" + std::to_string(s),
                                   "--meta-ttl-s", std::to_string(kTtl)},
          dir_));
      shards_.back()->Start();
    }
    std::vector<std::string> extra;
    for (int s = 0; s < 3; ++s) {
      extra.push_back("--shard");
      extra.push_back("s" + std::to_string(s) + "=" + shards_[static_cast<size_t>(s)]->address());
    }
    StartCoordinator("c0", extra);
    StartCoordinator("c1", {});
    ASSERT_EQ(LeaderOf(0), "c0");
    // The collection and 1000 points, through the leader.
    Expect200("PUT", 0, "/v1/collections/emb",
              json{{"dim", kDim}, {"storage", "fp32"}, {"num_buckets", 64},
                   {"indexes", {{{"dims", 8}, {"kind", "hnsw"}}}}});
    std::mt19937_64 rng(1);
    json pts = json::array();
    for (int i = 0; i < 1000; ++i) pts.push_back({{"id", i}, {"vector", RandomVector(rng)}});
    Expect200("PUT", 0, "/v1/collections/emb/points", json{{"points", pts}});
    // The follower learns of the collection through its watch; a loaded machine may deliver
    // that a few hundred ms later, and the tests' load on c1 starts at once.
    const auto t0 = Clock::now();
    while (Call("GET", 1, "/v1/collections/emb").status != 200) {
      ASSERT_LT(Since(t0), 10.0) << "c1 never served the collection 'emb'";
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }

  void StartCoordinator(const std::string& id, std::vector<std::string> extra,
                        const std::string& data_dir = "") {
    std::vector<std::string> args = {"--data-dir", data_dir.empty() ? dir_ + "/" + id : data_dir,
                                     "--port", "0", "--meta", etcd_->Url("mrl"),
                                     "--coordinator-id", id, "--session-ttl-s",
                                     std::to_string(kTtl), "--threads", "4"};
    args.insert(args.end(), extra.begin(), extra.end());
    coords_.push_back(std::make_unique<DaemonProcess>(id, MRL_COORDINATOR_BIN, args, dir_));
    coords_.back()->Start();
  }
  DaemonProcess& coord(int i) { return *coords_[static_cast<size_t>(i)]; }
  std::string Url(int i) const {
    return "http://127.0.0.1:" + std::to_string(coords_[static_cast<size_t>(i)]->port());
  }
  ops::HttpReply Call(const std::string& method, int c, const std::string& path,
                      const json& body = json()) {
    ops::HttpClient client(Url(c), "");
    return client.Call(http::string_to_verb(method), path, body.is_null() ? "" : body.dump());
  }
  void Expect200(const std::string& method, int c, const std::string& path, const json& body) {
    auto r = Call(method, c, path, body);
    ASSERT_EQ(r.status, 200) << method << " " << path << ": " << r.body;
  }
  json Meta(int c) {
    auto r = Call("GET", c, "/v1/meta");
    return r.status == 200 ? json::parse(r.body, nullptr, false) : json();
  }
  std::string LeaderOf(int c) {
    const json m = Meta(c);
    return m.is_object() && m["leader"].is_object() ? m["leader"]["id"].get<std::string>() : "";
  }
  // The state of shard `id`'s registration as coordinator c reports it ("" when absent), and
  // the map member it was matched to (by address) in *map_shard.
  std::string Registration(int c, const std::string& id, std::string* map_shard = nullptr) {
    const json m = Meta(c);
    if (!m.is_object() || !m.contains("shards")) return "";
    for (const json& s : m["shards"]) {
      if (s.value("id", std::string()) != id) continue;
      if (map_shard) *map_shard = s["map_shard"].is_string() ? s["map_shard"].get<std::string>() : "";
      return s.value("state", std::string());
    }
    return "";
  }
  // Polls `done` every 20 ms for up to `seconds`: the seconds it took, or -1.
  static double WaitFor(double seconds, const std::function<bool()>& done) {
    const auto t0 = Clock::now();
    while (Since(t0) < seconds) {
      if (done()) return Since(t0);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return -1;
  }
  uint64_t Epoch(int c) {
    auto r = Call("GET", c, "/v1/cluster");
    return r.status == 200 ? json::parse(r.body)["epoch"].get<uint64_t>() : 0;
  }
  // Sends a collection creation until it is acknowledged (or `seconds` pass), as a client that
  // tries each coordinator in turn would: to c, then to the other running ones. The seconds it
  // took, or -1. Every refusal's body goes to *refusals.
  double ChangeUntilOk(int c, const std::string& name, double seconds,
                       std::vector<std::string>* refusals = nullptr) {
    const auto t0 = Clock::now();
    for (size_t attempt = 0; Since(t0) < seconds; ++attempt) {
      const int to = static_cast<int>((static_cast<size_t>(c) + attempt) % coords_.size());
      if (!coords_[static_cast<size_t>(to)]->running()) continue;
      auto r = Call("PUT", to, "/v1/collections/" + name, json{{"dim", kDim}, {"num_buckets", 64}});
      if (r.status == 200) return Since(t0);
      if (refusals) refusals->push_back(std::to_string(r.status) + " " + r.body);
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return -1;
  }
  // Every acknowledged write of `load` is there (read through coordinator c).
  void ExpectAllAcked(const Load& load, int c) {
    const auto& ids = load.acked();
    for (size_t at = 0; at < ids.size(); at += 500) {
      json batch = json::array();
      for (size_t i = at; i < std::min(ids.size(), at + 500); ++i) batch.push_back(ids[i]);
      auto r = Call("POST", c, "/v1/collections/emb/points/get", json{{"ids", batch}});
      ASSERT_EQ(r.status, 200) << r.body;
      const json got = json::parse(r.body);  // (a range-for over a temporary's member dangles)
      for (const json& p : got["points"]) {
        EXPECT_TRUE(p["found"].get<bool>()) << "acknowledged write lost: " << p.dump();
      }
    }
  }
  void ExpectNothingRestarted() {
    for (auto& s : shards_) EXPECT_TRUE(s->Alive() && s->starts() == 1);
    for (int i = 0; i < 2; ++i) {
      if (coords_[static_cast<size_t>(i)]->running()) EXPECT_TRUE(coord(i).Alive()) << "c" << i;
    }
  }

  std::string dir_;
  std::unique_ptr<ops::LocalEtcd> etcd_;
  std::vector<std::unique_ptr<DaemonProcess>> shards_, coords_;
};

// kill -9 of the leader coordinator: the other leads within TTL + 2 s, a change sent during the
// handover completes exactly once, and queries and writes through the survivor all succeed.
// Then a coordinator started on an empty data dir serves the cluster at once.
TEST_F(MetaCluster, KillingTheLeaderCoordinatorHandsOverWithoutAFailedQuery) {
  Load load(Url(1), 1'000'000);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const uint64_t epoch = Epoch(1);
  const auto t0 = Clock::now();
  coord(0).Kill(SIGKILL);
  std::vector<std::string> refusals;
  const double change_s = ChangeUntilOk(1, "during", kTtl + 10, &refusals);
  double lead_s = -1;
  if (Meta(1)["self"]["leader"].get<bool>()) lead_s = Since(t0);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  load.Stop();
  std::printf("leader killed: change acknowledged after %.2f s (%zu refusals, first: %s); "
              "c1 leading at %.2f s; load: %d queries, %d writes, %s\n",
              change_s, refusals.size(), refusals.empty() ? "-" : refusals[0].c_str(), lead_s,
              load.queries(), load.writes(), load.failures().c_str());
  ASSERT_GT(change_s, 0) << "no change succeeded; last refusal: "
                         << (refusals.empty() ? "" : refusals.back());
  EXPECT_LE(change_s, kTtl + 2.0);
  EXPECT_EQ(LeaderOf(1), "c1");
  EXPECT_EQ(Epoch(1), epoch + 1);  // exactly once
  EXPECT_EQ(load.failed(), 0) << load.failures();
  EXPECT_GT(load.queries(), 20);
  ExpectAllAcked(load, 1);
  EXPECT_NE(coord(1).Log().find("c1 leads the cluster"), std::string::npos);

  // A new coordinator on an empty data dir: the cluster is there on its first answer.
  StartCoordinator("c2", {}, TempDir("meta_cluster_empty"));
  auto r = Call("POST", 2, "/v1/collections/emb/search",
                json{{"vector", std::vector<float>(kDim, 0.5f)}, {"k", 5}});
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Epoch(2), epoch + 1);
  EXPECT_EQ(LeaderOf(2), "c1");
  ExpectNothingRestarted();
}

// kill -9 of the etcd leader member: no failed query or write, nothing restarted, and a change
// works within 5 s.
TEST_F(MetaCluster, KillingTheEtcdLeaderFailsNothing) {
  Load l0(Url(0), 1'000'000), l1(Url(1), 2'000'000);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int victim = etcd_->Leader();
  ASSERT_GE(victim, 0);
  ASSERT_TRUE(etcd_->Signal(victim, SIGKILL).ok());
  const double change_s = ChangeUntilOk(0, "after_kill", 5);
  std::this_thread::sleep_for(std::chrono::seconds(2));
  l0.Stop();
  l1.Stop();
  std::printf("etcd leader (member %d) killed: change after %.2f s; load c0 %d q / %d w (%s), "
              "c1 %d q / %d w (%s)\n",
              victim, change_s, l0.queries(), l0.writes(), l0.failures().c_str(), l1.queries(),
              l1.writes(), l1.failures().c_str());
  EXPECT_GE(change_s, 0);
  EXPECT_LE(change_s, 5);
  EXPECT_EQ(l0.failed() + l1.failed(), 0) << l0.failures() << " / " << l1.failures();
  ExpectAllAcked(l0, 1);
  ExpectAllAcked(l1, 0);
  EXPECT_EQ(LeaderOf(1), "c0");
  ExpectNothingRestarted();
  ASSERT_TRUE(etcd_->Restart(victim).ok());
}

// Every etcd member down for 30 s: no failed query or write; a change is refused with a clear
// error; once etcd is back a change succeeds and both coordinators serve it, nothing restarted.
TEST_F(MetaCluster, AllEtcdMembersDownFor30sFailsNoQueryOrWrite) {
  Load l0(Url(0), 1'000'000), l1(Url(1), 2'000'000);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd_->Signal(i, SIGKILL).ok());
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(kTtl));
  auto refused = Call("PUT", 0, "/v1/collections/during", json{{"dim", kDim}, {"num_buckets", 64}});
  std::printf("change with etcd down: %d %s\n", refused.status, refused.body.c_str());
  EXPECT_EQ(refused.status, 503) << refused.body;
  EXPECT_NE(refused.body.find("searches and writes go on"), std::string::npos) << refused.body;
  const json meta = Meta(1);
  EXPECT_FALSE(meta.value("reachable", true)) << meta.dump();
  std::this_thread::sleep_for(std::chrono::duration<double>(30 - Since(t0)));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd_->Restart(i, 0).ok());
  const auto t1 = Clock::now();
  ASSERT_TRUE(etcd_->AwaitReady().ok());
  const double change_s = ChangeUntilOk(0, "after", 30);
  const uint64_t epoch = Epoch(0);
  bool served = false;
  const auto t2 = Clock::now();
  while (Since(t2) < 5 && !(served = Epoch(1) == epoch)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  l0.Stop();
  l1.Stop();
  std::printf("etcd down %.1f s; after its return a change took %.2f s (%.2f s after the restart "
              "began); load c0 %d q / %d w (%s), c1 %d q / %d w (%s)\n",
              Since(t0) - Since(t1), change_s, Since(t1), l0.queries(), l0.writes(),
              l0.failures().c_str(), l1.queries(), l1.writes(), l1.failures().c_str());
  EXPECT_GE(change_s, 0);
  EXPECT_TRUE(served) << "c1 does not serve epoch " << epoch;
  EXPECT_EQ(l0.failed() + l1.failed(), 0) << l0.failures() << " / " << l1.failures();
  EXPECT_GT(l0.queries(), 20);
  ExpectAllAcked(l0, 1);
  ExpectAllAcked(l1, 0);
  ExpectNothingRestarted();
  // The shards rode the outage out too: each is registered again (its lease kept alive, or
  // replaced once etcd expired it), and none restarted.
  const double back_s = WaitFor(2 * kTtl + 5, [&] {
    return Registration(1, "s0") == "serving" && Registration(1, "s1") == "serving" &&
           Registration(1, "s2") == "serving";
  });
  std::printf("shard registrations all live %.2f s after the change\n", back_s);
  EXPECT_GE(back_s, 0) << Meta(1).dump();
}

// Shards register under their own lease (mrl-shard --meta): every coordinator sees each one with
// its state and map member; a shard paused past its TTL loses its key and registers again when
// resumed; a killed shard's key vanishes within the TTL; a cleanly stopped one's at once.
TEST_F(MetaCluster, ShardRegistrationsFollowEachShardsLifeUnderItsLease) {
  double all_s = WaitFor(10, [&] {
    for (const char* id : {"s0", "s1", "s2"}) {
      std::string member;
      if (Registration(1, id, &member) != "serving" || member != id) return false;
    }
    return true;
  });
  std::printf("3 shards registered and matched to the map (seen by c1) after %.2f s more\n", all_s);
  ASSERT_GE(all_s, 0) << Meta(1).dump();
  EXPECT_EQ(Registration(0, "s1"), "serving");

  // mrlctl's client sends a change refused by the follower (409 naming the leader) to the leader.
  const uint64_t epoch = Epoch(1);
  ops::HttpClient via_follower(Url(1), "");
  auto created = via_follower.CallJson(http::verb::put, "/v1/collections/via_follower",
                                       json{{"dim", kDim}, {"num_buckets", 64}}.dump(),
                                       "creating collection 'via_follower'");
  EXPECT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_TRUE(WaitFor(5, [&] { return Epoch(1) == epoch + 1; }) >= 0);

  // Paused past the TTL: gone; resumed: registered again under a new lease.
  shards_[0]->Signal(SIGSTOP);
  auto t0 = Clock::now();
  const double paused_gone_s = WaitFor(kTtl + 3, [&] { return Registration(1, "s0").empty(); });
  std::this_thread::sleep_for(std::chrono::duration<double>(std::max(0.0, kTtl + 1 - Since(t0))));
  shards_[0]->Signal(SIGCONT);
  const double back_s = WaitFor(kTtl + 3, [&] { return Registration(1, "s0") == "serving"; });
  std::printf("s0 paused: its key gone after %.2f s (TTL %d s); resumed: registered again after "
              "%.2f s\n", paused_gone_s, kTtl, back_s);
  EXPECT_GE(paused_gone_s, 0);
  EXPECT_LE(paused_gone_s, kTtl + 2.0);
  EXPECT_GE(back_s, 0);
  EXPECT_NE(shards_[0]->Log().find("registering again"), std::string::npos) << shards_[0]->Log();

  // kill -9: the key outlives the shard by at most the TTL, and the map member shows as
  // unregistered.
  t0 = Clock::now();
  shards_[2]->Kill(SIGKILL);
  const double killed_gone_s = WaitFor(kTtl + 3, [&] { return Registration(1, "s2").empty(); });
  const json unregistered = Meta(1)["unregistered_shards"];
  std::printf("s2 killed: its key gone after %.2f s; unregistered map members: %s\n",
              killed_gone_s, unregistered.dump().c_str());
  EXPECT_GE(killed_gone_s, 0);
  EXPECT_LE(killed_gone_s, kTtl + 2.0);
  EXPECT_EQ(unregistered, json::array({"s2"}));

  // SIGTERM: drains, then revokes its lease: the key goes at once.
  shards_[1]->Signal(SIGTERM);
  const int code = shards_[1]->Wait();
  const double stopped_gone_s = WaitFor(kTtl + 3, [&] { return Registration(1, "s1").empty(); });
  std::printf("s1 stopped (exit %d): its key gone %.2f s after the exit\n", code, stopped_gone_s);
  EXPECT_EQ(code, 0) << shards_[1]->Log();
  EXPECT_GE(stopped_gone_s, 0);
  EXPECT_LE(stopped_gone_s, 1.0);
  EXPECT_NE(shards_[1]->Log().find("released (lease"), std::string::npos) << shards_[1]->Log();
}

// A leader paused (SIGSTOP) past its TTL loses the leader key to the other coordinator; resumed,
// its change is refused and logged, and the map is not written by it.
TEST_F(MetaCluster, ALeaderPausedPastItsTtlCannotWriteTheMap) {
  const uint64_t epoch = Epoch(1);
  coord(0).Signal(SIGSTOP);
  const auto t0 = Clock::now();
  bool took_over = false;
  while (Since(t0) < kTtl + 5 && !(took_over = LeaderOf(1) == "c1")) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  std::printf("c0 stopped; c1 leads after %.2f s\n", Since(t0));
  ASSERT_TRUE(took_over);
  coord(0).Signal(SIGCONT);
  auto r = Call("PUT", 0, "/v1/collections/stale", json{{"dim", kDim}, {"num_buckets", 64}});
  std::printf("c0 resumed; its change: %d %s\n", r.status, r.body.c_str());
  EXPECT_NE(r.status, 200) << r.body;
  EXPECT_EQ(Epoch(1), epoch);
  auto got = Call("GET", 1, "/v1/collections/stale");
  EXPECT_EQ(got.status, 404) << got.body;
  const std::string log = coord(0).Log();
  EXPECT_NE(log.find("refused"), std::string::npos) << log;
  EXPECT_NE(log.find("no longer leads"), std::string::npos) << log;
  // The new leader's change goes through and c0, now a follower, serves it.
  ASSERT_GE(ChangeUntilOk(1, "fresh", 5), 0);
  const auto t1 = Clock::now();
  while (Since(t1) < 5 && Call("GET", 0, "/v1/collections/fresh").status != 200) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(Call("GET", 0, "/v1/collections/fresh").status, 200);
}

}  // namespace
}  // namespace mrl
