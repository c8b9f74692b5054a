// The coordinator's query fan-out (coordinator/fan_out.h, QueryEngine) without sockets: every
// shard is a real Engine behind a real ShardService, reached through an in-process channel
// that can also refuse calls (a dead replica) or never answer (a silent one: the channel's
// deadline timer answers, as RpcClient's does). Deadline, partial coverage and replica retry.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <queue>
#include <random>
#include <set>
#include <thread>

#include "common/bucket.h"
#include "common/distance.h"
#include "coordinator/fan_out.h"
#include "coordinator/query_engine.h"
#include "shard/engine.h"
#include "shard/service.h"
#include "tests/test_util.h"

namespace mrl::coord {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kDim = 64;
constexpr uint32_t kBuckets = 64;

// Runs tasks at their due time on one thread (the channels' "I/O thread").
class Scheduler {
 public:
  Scheduler() : thread_([this] { Loop(); }) {}
  ~Scheduler() {
    {
      std::lock_guard lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  void At(Clock::time_point when, std::function<void()> fn) {
    {
      std::lock_guard lock(mu_);
      tasks_.push({when, seq_++, std::move(fn)});
    }
    cv_.notify_all();
  }

 private:
  struct Task {
    Clock::time_point when;
    uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Task& o) const { return when > o.when || (when == o.when && seq > o.seq); }
  };
  void Loop() {
    std::unique_lock lock(mu_);
    while (!stop_) {
      if (tasks_.empty()) {
        cv_.wait(lock);
        continue;
      }
      if (Clock::now() < tasks_.top().when) {
        cv_.wait_until(lock, tasks_.top().when);
        continue;
      }
      auto fn = tasks_.top().fn;
      tasks_.pop();
      lock.unlock();
      fn();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::priority_queue<Task, std::vector<Task>, std::greater<>> tasks_;
  uint64_t seq_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

enum class Mode { kServe, kRefuse, kSilent };

// Shards in this process: an Engine and its ShardService each, behind ShardChannels.
class InProcessShards : public ShardChannels {
 public:
  void Add(const std::string& id) {
    shard::EngineOptions o;
    o.data_dir = test_util::TempDir("fanout_" + id);
    o.verbose = false;
    o.threads = 1;
    auto e = shard::Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    Shard& s = shards_[id];
    s.engine = std::move(e.value());
    s.service = std::make_unique<shard::ShardService>(*s.engine);
  }
  shard::Engine& engine(const std::string& id) { return *shards_.at(id).engine; }
  void set_mode(const std::string& id, Mode m) {
    std::lock_guard lock(mu_);
    shards_.at(id).mode = m;
  }
  int calls(const std::string& id) {
    std::lock_guard lock(mu_);
    return shards_.at(id).calls;
  }

  bool Healthy(const std::string& shard) override {
    std::lock_guard lock(mu_);
    return !down_.count(shard);
  }
  void Report(const std::string& shard, const Status& status) override {
    std::lock_guard lock(mu_);
    if (status.code() == Status::Code::kUnavailable ||
        status.code() == Status::Code::kDeadlineExceeded) {
      down_.insert(shard);
    }
  }
  void Call(const std::string& shard, wire::MessageType type, std::vector<uint8_t> body,
            uint32_t deadline_ms, rpc::RpcClient::Callback done) override {
    Mode mode;
    shard::ShardService* service;
    {
      std::lock_guard lock(mu_);
      Shard& s = shards_.at(shard);
      ++s.calls;
      mode = s.mode;
      service = s.service.get();
    }
    const auto now = Clock::now();
    switch (mode) {
      case Mode::kRefuse:
        sched_.At(now, [done] { done(Status::Unavailable("connection refused")); });
        break;
      case Mode::kSilent:  // no answer: the channel's deadline timer fires
        sched_.At(now + std::chrono::milliseconds(deadline_ms),
                  [done] { done(Status::DeadlineExceeded("no answer before the deadline")); });
        break;
      case Mode::kServe:
        sched_.At(now, [=, body = std::move(body)] {
          auto r = service->Handle(type, body);
          if (!r.ok()) {
            done(r.status());
            return;
          }
          done(rpc::RawReply{wire::ResponseTypeOf(type), std::move(r.value())});
        });
        break;
    }
  }

 private:
  struct Shard {
    std::unique_ptr<shard::Engine> engine;
    std::unique_ptr<shard::ShardService> service;
    Mode mode = Mode::kServe;
    int calls = 0;
  };
  std::mutex mu_;
  std::map<std::string, Shard> shards_;
  std::set<std::string> down_;
  Scheduler sched_;  // last: stopped first, while the shards it calls still exist
};

// Two groups of two replicas ({a1, a2}, {b1, b2}), one collection of 2000 points spread over
// them by bucket, every replica of a group holding its group's points.
class FanOutTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(map_.AddGroup({{"a1", "127.0.0.1:1"}, {"a2", "127.0.0.1:2"}}).ok());
    ASSERT_TRUE(map_.AddGroup({{"b1", "127.0.0.1:3"}, {"b2", "127.0.0.1:4"}}).ok());
    ASSERT_TRUE(map_.PlaceCollection("c", kBuckets).ok());
    CollectionSpec spec;
    spec.name = "c";
    spec.dim = kDim;
    spec.nesting = {8, 16, 32, 64};
    spec.storage = StorageType::kFp32;
    spec.num_buckets = kBuckets;
    IndexSpec ix;
    ix.dims = 16;
    ix.kind = IndexKind::kExact;
    spec.indexes = {ix};
    std::mt19937 rng(5);
    std::normal_distribution<float> g;
    data_.resize(static_cast<size_t>(n_) * kDim);
    for (float& x : data_) x = g(rng);
    const CollectionPlacement& p = *map_.Placement("c").value();
    for (const std::string id : {"a1", "a2", "b1", "b2"}) {
      shards_.Add(id);
      ASSERT_TRUE(shards_.engine(id).CreateCollection(spec).ok());
      const uint32_t group = id[0] == 'a' ? 0 : 1;
      std::vector<shard::PointView> pts;
      for (uint64_t i = 0; i < static_cast<uint64_t>(n_); ++i) {
        if (p.group_of_bucket[BucketOfId(i, kBuckets)] != group) continue;
        pts.push_back({i, std::span<const float>(&data_[i * kDim], kDim), ""});
      }
      ASSERT_TRUE(shards_.engine(id).Upsert("c", pts).ok());
    }
    query_.assign(data_.begin() + 7 * kDim, data_.begin() + 8 * kDim);
    for (float& x : query_) x += 0.1f * g(rng);
  }

  SearchSpec Spec(uint32_t deadline_ms = 2000) const {
    SearchSpec s;
    s.collection = "c";
    s.dims = kDim;
    s.queries = query_;
    // K above each group's point count: stage 0 passes every point, so the answer is exact.
    s.plan.stages = {{16, 2000}, {64, 10}};
    s.deadline_ms = deadline_ms;
    return s;
  }

  // The exact top-10 by full-d cosine among the points of `groups`.
  std::vector<uint64_t> Exact(std::set<uint32_t> groups) const {
    const CollectionPlacement& p = *map_.Placement("c").value();
    std::vector<std::pair<float, uint64_t>> all;
    std::vector<float> q = query_;
    NormalizeInPlace(q.data(), kDim);
    for (uint64_t i = 0; i < static_cast<uint64_t>(n_); ++i) {
      if (!groups.count(p.group_of_bucket[BucketOfId(i, kBuckets)])) continue;
      std::vector<float> x(&data_[i * kDim], &data_[(i + 1) * kDim]);
      NormalizeInPlace(x.data(), kDim);
      all.emplace_back(-Dot(q.data(), x.data(), kDim), i);
    }
    std::sort(all.begin(), all.end());
    std::vector<uint64_t> out;
    for (size_t i = 0; i < 10; ++i) out.push_back(all[i].second);
    return out;
  }

  static std::vector<uint64_t> Ids(const SearchOutcome& o) {
    std::vector<uint64_t> out;
    for (const ScoredId& s : o.hits.at(0)) out.push_back(s.id);
    return out;
  }

  const int n_ = 2000;
  std::vector<float> data_, query_;
  ShardMap map_;
  InProcessShards shards_;
};

TEST_F(FanOutTest, AllReplicasServingGiveTheExactAnswerWithFullCoverage) {
  QueryEngine qe(shards_);
  auto r = qe.Search(map_, Spec());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->coverage, 1.0);
  EXPECT_TRUE(r->failed_shards.empty());
  EXPECT_EQ(Ids(*r), Exact({0, 1}));
}

// A one-trip plan (calibration measures plans both ways): one Search call per group, the same
// exact answer.
TEST_F(FanOutTest, AOneTripPlanIsOneCallPerGroupWithTheSameAnswer) {
  QueryEngine qe(shards_);
  SearchSpec spec = Spec();
  spec.plan.one_trip = true;
  auto r = qe.Search(map_, spec);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->coverage, 1.0);
  EXPECT_EQ(Ids(*r), Exact({0, 1}));
  EXPECT_EQ(shards_.calls("a1") + shards_.calls("a2"), 1);
  EXPECT_EQ(shards_.calls("b1") + shards_.calls("b2"), 1);
}

TEST_F(FanOutTest, ARefusingReplicaIsRetriedOnItsGroupsOtherReplica) {
  shards_.set_mode("a1", Mode::kRefuse);
  shards_.set_mode("a2", Mode::kRefuse);
  shards_.set_mode("b1", Mode::kRefuse);  // group 1 still has b2
  QueryEngine qe(shards_);
  auto r = qe.Search(map_, Spec());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Group 0 lost both replicas: half the buckets; group 1 answered through b2.
  EXPECT_NEAR(r->coverage, 0.5, 0.2);
  EXPECT_LT(r->coverage, 1.0);
  EXPECT_EQ(Ids(*r), Exact({1}));
  const std::set<std::string> failed(r->failed_shards.begin(), r->failed_shards.end());
  EXPECT_TRUE(failed.count("b1") || shards_.calls("b1") == 0);
  EXPECT_GT(shards_.calls("b2"), 0);
  EXPECT_FALSE(shards_.Healthy("a1"));
}

TEST_F(FanOutTest, SilentReplicasEndTheStageAtTheDeadlineKeepingWhatArrived) {
  shards_.set_mode("b1", Mode::kSilent);
  shards_.set_mode("b2", Mode::kSilent);
  QueryEngine qe(shards_);
  const auto t0 = Clock::now();
  auto r = qe.Search(map_, Spec(/*deadline_ms=*/300));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_LT(r->coverage, 1.0);
  EXPECT_GT(r->coverage, 0.0);
  EXPECT_EQ(Ids(*r), Exact({0}));  // group 0's answer, reranked, was kept
  // Stage 0 waited for the silent group until the deadline less the rerank's reserve (50 ms),
  // then reranked what arrived: the query answered within its deadline.
  EXPECT_GE(ms, 245.0);
  EXPECT_LT(ms, 300.0 + 250.0) << "the query outlived its deadline";
}

TEST_F(FanOutTest, NoReplicaAnsweringIsUnavailable) {
  for (const std::string id : {"a1", "a2", "b1", "b2"}) shards_.set_mode(id, Mode::kRefuse);
  QueryEngine qe(shards_);
  auto r = qe.Search(map_, Spec());
  EXPECT_EQ(r.status().code(), Status::Code::kUnavailable) << r.status().ToString();
}

TEST_F(FanOutTest, ABadRequestIsReturnedAndNotRetriedOnOtherReplicas) {
  QueryEngine qe(shards_);
  SearchSpec bad = Spec();
  bad.plan.stages = {{12, 50}, {64, 10}};  // 12 is not a nesting dim: every shard refuses it
  auto r = qe.Search(map_, bad);
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument) << r.status().ToString();
  EXPECT_EQ(shards_.calls("a1") + shards_.calls("a2"), 1);
  EXPECT_EQ(shards_.calls("b1") + shards_.calls("b2"), 1);
  EXPECT_TRUE(shards_.Healthy("a1") && shards_.Healthy("b1"));
}

TEST(FanOutReadLists, ACountOtherThanTheQueriesIsCorruption) {
  wire::ShortlistResponseT resp;
  resp.results.push_back(std::make_unique<wire::CandidateListT>());
  resp.results[0]->candidates.emplace_back(7, 0.5f);
  const auto body = wire::PackBody(resp);
  auto one = ReadLists(wire::MessageType::ShortlistRequest, body, 1);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->at(0).size(), 1u);
  EXPECT_EQ(one->at(0)[0].id, 7u);
  EXPECT_EQ(ReadLists(wire::MessageType::ShortlistRequest, body, 2).status().code(),
            Status::Code::kCorruption);
}

}  // namespace
}  // namespace mrl::coord
