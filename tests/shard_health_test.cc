// The coordinator's view of each shard's health (coordinator/shard_health.h), driven with
// explicit times: when a shard is down, slow or up; the hedge delay; the hedge budget; the
// replica cost.
#include "coordinator/shard_health.h"

#include <gtest/gtest.h>

#include <cmath>

namespace mrl::coord {
namespace {

using Clock = ShardHealth::Clock;
using std::chrono::milliseconds;
constexpr auto kSearch = wire::MessageType::SearchRequest;

// `n` answered Search calls to `shard` of `ms` each, ending at `*now`.
void Answer(ShardHealth& h, const std::string& shard, int n, double ms, Clock::time_point* now) {
  for (int i = 0; i < n; ++i) {
    const uint64_t t = h.CallSent(shard, kSearch, *now);
    *now += std::chrono::microseconds(static_cast<int64_t>(ms * 1000));
    h.CallDone(shard, t, Status::Ok(), *now);
  }
}

TEST(ShardHealth, TheHedgeDelayIsTheShardsHighQuantileWithinItsBounds) {
  ShardHealthOptions o;
  o.hedge_quantile = 0.99;
  o.hedge_min_ms = 3;
  o.hedge_max_ms = 100;
  ShardHealth h(o);
  Clock::time_point now{};
  EXPECT_EQ(h.HedgeDelay("a", kSearch), milliseconds(100)) << "no samples: the upper bound";
  Answer(h, "a", 250, 10.0, &now);
  Answer(h, "a", 6, 40.0, &now);  // 6 of the last 256 (2.3%) are slow: the 0.99 quantile is 40
  EXPECT_EQ(h.HedgeDelay("a", kSearch), milliseconds(40));
  Answer(h, "b", 256, 0.2, &now);
  EXPECT_EQ(h.HedgeDelay("b", kSearch), milliseconds(3)) << "clamped to the lower bound";
  Answer(h, "c", 256, 900.0, &now);
  EXPECT_EQ(h.HedgeDelay("c", kSearch), milliseconds(100)) << "clamped to the upper bound";
  EXPECT_EQ(h.HedgeDelay("a", wire::MessageType::RerankRequest), milliseconds(100))
      << "each request type has its own samples";
}

TEST(ShardHealth, ASilentShardIsSlowOnlyWhileNothingAnswersAfterACallPastItsHedgeDelay) {
  ShardHealth h(ShardHealthOptions{});
  Clock::time_point now{};
  Answer(h, "a", 32, 1.0, &now);  // hedge delay: 3 ms (the lower bound)
  const uint64_t stuck = h.CallSent("a", kSearch, now);
  EXPECT_EQ(h.State("a", now + milliseconds(2)), ShardState::kUp);
  EXPECT_EQ(h.State("a", now + milliseconds(4)), ShardState::kSlow);
  EXPECT_TRUE(h.Usable("a", now + milliseconds(4))) << "slow is still usable (a sole replica)";
  // Another call answered after the stuck one was sent: the shard is alive, just one call slow.
  const uint64_t other = h.CallSent("a", kSearch, now + milliseconds(1));
  h.CallDone("a", other, Status::Ok(), now + milliseconds(5));
  EXPECT_EQ(h.State("a", now + milliseconds(6)), ShardState::kUp);
  // The stuck call times out: down until it answers again.
  h.CallDone("a", stuck, Status::DeadlineExceeded("no answer"), now + milliseconds(500));
  EXPECT_EQ(h.State("a", now + milliseconds(501)), ShardState::kDown);
  EXPECT_FALSE(h.Usable("a", now + milliseconds(501)));
  EXPECT_TRUE(std::isinf(h.RouteCost("a", now + milliseconds(501))));
  h.ProbeDone("a", Status::Ok(), 0.2, now + milliseconds(700));
  EXPECT_EQ(h.State("a", now + milliseconds(701)), ShardState::kUp);
}

TEST(ShardHealth, MissedProbesMarkAShardDownAndOneAnsweredProbeBringsItBack) {
  ShardHealthOptions o;
  o.probe_misses_to_down = 2;
  ShardHealth h(o);
  Clock::time_point now{};
  EXPECT_FALSE(h.ProbeDone("a", Status::Ok(), 0.3, now));  // not back: it was never down
  EXPECT_FALSE(h.ProbeDone("a", Status::DeadlineExceeded("probe"), 500, now + milliseconds(750)));
  EXPECT_EQ(h.State("a", now + milliseconds(751)), ShardState::kUp) << "one miss is not enough";
  EXPECT_FALSE(h.ProbeDone("a", Status::DeadlineExceeded("probe"), 500, now + milliseconds(1000)));
  EXPECT_EQ(h.State("a", now + milliseconds(1001)), ShardState::kDown);
  const auto reports = h.Reports(now + milliseconds(1001));
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].probes_missed, 2u);
  EXPECT_NE(reports[0].reason.find("probes missed"), std::string::npos) << reports[0].reason;
  // The answered probe that brings it back says so (the pool then restarts its connection
  // attempts to that shard: ShardPool::ProbeLoop).
  EXPECT_TRUE(h.ProbeDone("a", Status::Ok(), 0.4, now + milliseconds(1250)));
  EXPECT_EQ(h.State("a", now + milliseconds(1251)), ShardState::kUp);
  EXPECT_FALSE(h.ProbeDone("a", Status::Ok(), 0.4, now + milliseconds(1500)));
}

TEST(ShardHealth, WithoutProbesADownShardIsRetriedAfterRetryAfter) {
  ShardHealthOptions o;
  o.probe_interval_ms = 0;
  o.retry_after_ms = 2000;
  ShardHealth h(o);
  Clock::time_point now{};
  h.Report("a", Status::Unavailable("connection refused"), now);
  EXPECT_FALSE(h.Usable("a", now + milliseconds(1999)));
  EXPECT_TRUE(h.Usable("a", now + milliseconds(2001)));
}

TEST(ShardHealth, TheHedgeBudgetCapsHedgesAtItsShareOfCallsPlusTheBurst) {
  ShardHealthOptions o;
  o.hedge_budget = 0.05;
  o.hedge_burst = 10;
  ShardHealth h(o);
  Clock::time_point now{};
  int hedges = 0;
  for (int i = 0; i < 1000; ++i) {
    h.CallSent("a", kSearch, now);
    hedges += h.TakeHedge("a");  // every call wants one
  }
  EXPECT_LE(hedges, 0.05 * 1000 + 10 + 1);
  EXPECT_GE(hedges, 0.05 * 1000);
  EXPECT_EQ(h.hedges(), static_cast<uint64_t>(hedges));
  ShardHealthOptions off;
  off.hedge = false;
  ShardHealth none(off);
  none.CallSent("a", kSearch, now);
  EXPECT_FALSE(none.TakeHedge("a"));
}

TEST(ShardHealth, TheRouteCostPrefersTheFasterAndLessLoadedReplica) {
  ShardHealth h(ShardHealthOptions{});
  Clock::time_point now{};
  Answer(h, "fast", 50, 1.0, &now);
  Answer(h, "slow", 50, 5.0, &now);
  EXPECT_LT(h.RouteCost("fast", now), h.RouteCost("slow", now));
  // Calls in flight raise a replica's cost: 5 outstanding on "fast" (1 ms x 6) > "slow" (5 x 1).
  for (int i = 0; i < 5; ++i) h.CallSent("fast", kSearch, now);
  EXPECT_GT(h.RouteCost("fast", now), h.RouteCost("slow", now));
}

}  // namespace
}  // namespace mrl::coord
