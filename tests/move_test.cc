// A bucket's move as decisions: the shard map's moving state (write groups, query owner, epochs,
// JSON), the move record's state machine (phases, resumability, verify retries, abort and
// reverse), the refusals of a move request, and the rebalance and drain planners.
#include <gtest/gtest.h>

#include <map>
#include <nlohmann/json.hpp>
#include <random>
#include <set>

#include "coordinator/move.h"
#include "coordinator/rebalance_plan.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {
namespace {

using Code = Status::Code;
using Kind = MoveStep::Kind;

const auto kAllHealthy = [](const std::string&) { return true; };

// Groups 0 = {a1, a2}, 1 = {b1, b2}, 2 = {c1, c2}; "docs" has 8 buckets, bucket b on group b % 3.
ShardMap ThreeGroups() {
  ShardMap m;
  EXPECT_TRUE(m.AddGroup({{"a1", "127.0.0.1:1"}, {"a2", "127.0.0.1:2"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"b1", "127.0.0.1:3"}, {"b2", "127.0.0.1:4"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"c1", "127.0.0.1:5"}, {"c2", "127.0.0.1:6"}}).ok());
  EXPECT_TRUE(m.PlaceCollection("docs", 8).ok());
  return m;
}

uint32_t Owner(const ShardMap& m, uint32_t bucket) {
  return m.Placement("docs").value()->group_of_bucket[bucket];
}

std::vector<uint32_t> WriteGroups(const ShardMap& m, uint32_t bucket) {
  auto w = m.WriteGroupsOfBucket("docs", bucket);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return w.ok() ? w.value() : std::vector<uint32_t>{};
}

MoveRecord Planned(const ShardMap& m, uint32_t bucket, uint32_t target, std::string id = "m1") {
  auto r = PlanMove(m, {}, {id, "docs", bucket, target, 1000}, kAllHealthy);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.value();
}

// Plays the executor for one step: the map change (if any) and the outcome a healthy cluster
// gives. Copies take two batches; verifies agree unless `disagree`.
MoveRecord RunStep(ShardMap* map, const MoveRecord& r, bool disagree = false) {
  const MoveStep step = NextStep(r);
  StepOutcome out;
  out.step = step.kind;
  out.now_unix_ms = r.updated_unix_ms + 1;
  switch (step.kind) {
    case Kind::kBeginDualWrite:
    case Kind::kFlip:
    case Kind::kCleanup:
    case Kind::kDiscardTarget: {
      auto changed = ApplyMapStep(map, r);
      EXPECT_TRUE(changed.ok()) << changed.status().ToString();
      // Only an abort before DUAL_WRITE finds the map with nothing to undo.
      EXPECT_TRUE(!changed.ok() || changed.value() || r.phase == MovePhase::kAborted)
          << MoveStepName(step.kind);
      out.epoch = map->epoch();
      break;
    }
    case Kind::kCopyFrom:
      out.cursor = step.cursor.value_or(0) + 100;
      out.points_copied = 7;
      out.copy_finished = step.cursor.has_value();
      break;
    case Kind::kVerify:
      out.source = {10, 1234};
      out.target = disagree ? VerifyFigures{9, 1200} : out.source;
      break;
    default:
      break;
  }
  auto next = Advance(r, out);
  EXPECT_TRUE(next.ok()) << next.status().ToString();
  return next.ok() ? next.value() : r;
}

// Checks, after every change: each bucket has exactly one query owner (RouteQuery covers every
// bucket once), the owner is among the write groups, and an epoch always names the same owners.
struct OwnerInvariant {
  std::map<uint64_t, std::vector<uint32_t>> owners_at_epoch;
  void Check(const ShardMap& m) {
    auto route = m.RouteQuery("docs", kAllHealthy);
    ASSERT_TRUE(route.ok());
    uint32_t covered = 0;
    std::set<uint32_t> groups;
    for (const auto& t : route->targets) {
      covered += t.buckets;
      EXPECT_TRUE(groups.insert(t.group).second) << "group asked twice";
    }
    EXPECT_EQ(covered, 8u) << "epoch " << m.epoch();
    std::vector<uint32_t> owners;
    for (uint32_t b = 0; b < 8; ++b) {
      owners.push_back(Owner(m, b));
      EXPECT_EQ(WriteGroups(m, b).front(), owners.back()) << "the owner misses writes";
      auto replicas = m.ReplicasOfBucket("docs", b);
      ASSERT_TRUE(replicas.ok());
      EXPECT_EQ(replicas.value(), m.groups()[owners.back()].shards);
    }
    auto [it, fresh] = owners_at_epoch.emplace(m.epoch(), owners);
    EXPECT_TRUE(fresh || it->second == owners) << "epoch " << m.epoch() << " has two owners";
  }
};

TEST(ShardMapMove, WritesGoToBothGroupsUntilFinishAndQueriesMoveOnlyAtTheFlip) {
  ShardMap m = ThreeGroups();
  const uint64_t e0 = m.epoch();
  EXPECT_EQ(WriteGroups(m, 4), std::vector<uint32_t>{1});
  ASSERT_TRUE(m.BeginDualWrite("docs", 4, 2).ok());
  EXPECT_EQ(m.epoch(), e0 + 1);
  EXPECT_EQ(Owner(m, 4), 1u);
  EXPECT_EQ(WriteGroups(m, 4), (std::vector<uint32_t>{1, 2}));
  EXPECT_EQ(m.ReplicasOfBucket("docs", 4).value(), (std::vector<std::string>{"b1", "b2"}));
  ASSERT_TRUE(m.Flip("docs", 4).ok());
  EXPECT_EQ(m.epoch(), e0 + 2);
  EXPECT_EQ(Owner(m, 4), 2u);
  EXPECT_EQ(WriteGroups(m, 4), (std::vector<uint32_t>{2, 1}));
  EXPECT_EQ(m.ReplicasOfBucket("docs", 4).value(), (std::vector<std::string>{"c1", "c2"}));
  ASSERT_TRUE(m.FinishMove("docs", 4).ok());
  EXPECT_EQ(m.epoch(), e0 + 3);
  EXPECT_EQ(WriteGroups(m, 4), std::vector<uint32_t>{2});
  EXPECT_FALSE(m.MoveOf("docs", 4).value().has_value());
  // Cancel before the flip: back at rest on the source, one epoch each way.
  ASSERT_TRUE(m.BeginDualWrite("docs", 5, 0).ok());
  ASSERT_TRUE(m.CancelMove("docs", 5).ok());
  EXPECT_EQ(m.epoch(), e0 + 5);
  EXPECT_EQ(Owner(m, 5), 2u);
  EXPECT_EQ(WriteGroups(m, 5), std::vector<uint32_t>{2});
  // Reverse after the flip: same owner and write groups, the move now points back.
  ASSERT_TRUE(m.BeginDualWrite("docs", 6, 1).ok());
  ASSERT_TRUE(m.Flip("docs", 6).ok());
  const auto before = WriteGroups(m, 6);
  ASSERT_TRUE(m.ReverseMove("docs", 6).ok());
  EXPECT_EQ(m.epoch(), e0 + 8);
  EXPECT_EQ(Owner(m, 6), 1u);
  EXPECT_EQ(WriteGroups(m, 6), before);
  EXPECT_EQ(m.MoveOf("docs", 6).value(), (BucketMove{1, 0, BucketMovePhase::kDualWrite}));
}

TEST(ShardMapMove, AChangeInTheWrongPhaseIsATypedRefusalThatLeavesTheMapAlone) {
  ShardMap m = ThreeGroups();
  ASSERT_TRUE(m.BeginDualWrite("docs", 1, 0).ok());
  ASSERT_TRUE(m.BeginDualWrite("docs", 2, 0).ok());
  ASSERT_TRUE(m.Flip("docs", 2).ok());
  const std::string before = m.ToJson();
  EXPECT_EQ(m.BeginDualWrite("nope", 0, 1).code(), Code::kNotFound);
  EXPECT_EQ(m.BeginDualWrite("docs", 8, 1).code(), Code::kOutOfRange);
  EXPECT_EQ(m.BeginDualWrite("docs", 0, 3).code(), Code::kNotFound);
  EXPECT_EQ(m.BeginDualWrite("docs", 0, 0).code(), Code::kFailedPrecondition);  // lives there
  EXPECT_EQ(m.BeginDualWrite("docs", 1, 2).code(), Code::kFailedPrecondition);  // moving
  EXPECT_EQ(m.Flip("docs", 0).code(), Code::kFailedPrecondition);               // at rest
  EXPECT_EQ(m.Flip("docs", 2).code(), Code::kFailedPrecondition);               // flipped
  EXPECT_EQ(m.FinishMove("docs", 1).code(), Code::kFailedPrecondition);         // not flipped
  EXPECT_EQ(m.CancelMove("docs", 2).code(), Code::kFailedPrecondition);         // after flip
  EXPECT_EQ(m.CancelMove("docs", 0).code(), Code::kFailedPrecondition);
  EXPECT_EQ(m.ReverseMove("docs", 1).code(), Code::kFailedPrecondition);
  EXPECT_EQ(m.Flip("nope", 0).code(), Code::kNotFound);
  EXPECT_EQ(m.FinishMove("docs", 9).code(), Code::kOutOfRange);
  EXPECT_EQ(m.WriteGroupsOfBucket("nope", 0).status().code(), Code::kNotFound);
  EXPECT_EQ(m.WriteGroupsOfBucket("docs", 8).status().code(), Code::kOutOfRange);
  EXPECT_EQ(m.ToJson(), before);
}

TEST(ShardMapMove, AMapWrittenBeforeMovesParsesAndTheMovingStateRoundTrips) {
  // A map as written before moves existed: no "moving" anywhere.
  const std::string old_map = R"({"epoch": 5, "shards": [{"id": "a", "address": "h:1"},
      {"id": "b", "address": "h:2"}], "groups": [["a"], ["b"]],
      "collections": {"docs": {"num_buckets": 4, "group_of_bucket": [0, 1, 0, 1]}}})";
  auto old = ShardMap::FromJson(old_map);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->epoch(), 5u);
  for (uint32_t b = 0; b < 4; ++b) {
    EXPECT_FALSE(old->MoveOf("docs", b).value().has_value());
    EXPECT_EQ(old->WriteGroupsOfBucket("docs", b).value(), std::vector<uint32_t>{b % 2});
  }
  // A map at rest writes no "moving" field, so older readers read it as before.
  EXPECT_EQ(old->ToJson().find("moving"), std::string::npos);

  ShardMap m = ThreeGroups();
  ASSERT_TRUE(m.BeginDualWrite("docs", 1, 2).ok());
  ASSERT_TRUE(m.BeginDualWrite("docs", 3, 1).ok());
  ASSERT_TRUE(m.Flip("docs", 3).ok());
  auto back = ShardMap::FromJson(m.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), m.ToJson());
  EXPECT_EQ(back->MoveOf("docs", 1).value(), (BucketMove{1, 2, BucketMovePhase::kDualWrite}));
  EXPECT_EQ(back->MoveOf("docs", 3).value(), (BucketMove{0, 1, BucketMovePhase::kFlipped}));
  EXPECT_EQ(back->WriteGroupsOfBucket("docs", 3).value(), (std::vector<uint32_t>{1, 0}));

  // A moving entry that contradicts the bucket table, or names an unknown phase, is corruption.
  std::string bad = m.ToJson();
  bad.replace(bad.find("\"flipped\""), 9, "\"sideways\"");
  EXPECT_EQ(ShardMap::FromJson(bad).status().code(), Code::kCorruption);
  std::string wrong_owner = old_map;
  wrong_owner.replace(
      wrong_owner.find("}}}"), 3,
      R"(, "moving": [{"bucket": 0, "source": 1, "target": 0, "phase": "dual_write"}]}}})");
  EXPECT_EQ(ShardMap::FromJson(wrong_owner).status().code(), Code::kCorruption);
}

// Replicas of a group: a new one fills (takes writes, serves nothing) until promoted; removing
// one keeps the factor unless asked to lower it; a replacement keeps it; each refusal is typed
// and leaves the map (and its epoch) alone.
TEST(ShardMapReplicas, AFillingReplicaTakesWritesNotQueriesAndEachRefusalLeavesTheMapAlone) {
  ShardMap m = ThreeGroups();
  uint64_t epoch = m.epoch();
  ASSERT_TRUE(m.AddReplica(0, {"a3", "127.0.0.1:7"}).ok());
  EXPECT_EQ(m.epoch(), ++epoch);
  EXPECT_EQ(m.groups()[0].replication(), 3u);
  EXPECT_EQ(m.groups()[0].WriteShards(), (std::vector<std::string>{"a1", "a2", "a3"}));
  EXPECT_EQ(m.ReplicasOfBucket("docs", 0).value(), (std::vector<std::string>{"a1", "a2"}));
  // Queries never ask a filling replica, whatever the rotation.
  for (uint64_t rot = 0; rot < 6; ++rot) {
    auto route = m.RouteQuery("docs", kAllHealthy, rot).value();
    for (const auto& t : route.targets) EXPECT_NE(t.shard, "a3");
  }
  EXPECT_EQ(m.GroupOfShard("a3").value(), 0u);
  // The fill state survives the JSON round trip; a map without one writes no "filling".
  auto back = ShardMap::FromJson(m.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->ToJson(), m.ToJson());
  EXPECT_EQ(back->groups()[0].filling, std::vector<std::string>{"a3"});
  EXPECT_EQ(ThreeGroups().ToJson().find("filling"), std::string::npos);

  const std::string before = m.ToJson();
  auto refused = [&](const Status& st, Code code, const std::string& words) {
    EXPECT_EQ(st.code(), code) << st.ToString();
    EXPECT_NE(st.message().find(words), std::string::npos) << st.ToString();
    EXPECT_EQ(m.ToJson(), before) << "a refusal changed the map";
  };
  refused(m.AddReplica(0, {"b1", "127.0.0.1:9"}), Code::kFailedPrecondition, "already in the map");
  refused(m.AddReplica(7, {"x1", "127.0.0.1:9"}), Code::kNotFound, "group 7");
  refused(m.AddReplica(0, {"x1", "127.0.0.1"}), Code::kInvalidArgument, "host:port");
  refused(m.AddReplica(0, {"x1", "127.0.0.1:99999"}), Code::kInvalidArgument, "host:port");
  refused(m.RemoveReplica("a1", /*lower_factor=*/false), Code::kFailedPrecondition,
          "below its replication factor 3");
  refused(m.RemoveReplica("nope", true), Code::kNotFound, "unknown shard 'nope'");
  refused(m.ReplaceShard("nope", {"x1", "127.0.0.1:9"}), Code::kNotFound, "unknown shard 'nope'");
  refused(m.ReplaceShard("a1", {"b2", "127.0.0.1:9"}), Code::kFailedPrecondition, "already in the map");
  refused(m.PromoteReplica(0, "a1"), Code::kNotFound, "not being filled");

  ASSERT_TRUE(m.PromoteReplica(0, "a3").ok());
  EXPECT_EQ(m.epoch(), ++epoch);
  EXPECT_EQ(m.ReplicasOfBucket("docs", 0).value(), (std::vector<std::string>{"a1", "a2", "a3"}));
  // Replace: the factor stays, the successor fills; the dead one leaves the map.
  ASSERT_TRUE(m.ReplaceShard("a1", {"a4", "127.0.0.1:8"}).ok());
  EXPECT_EQ(m.epoch(), ++epoch);
  EXPECT_EQ(m.groups()[0].shards, (std::vector<std::string>{"a2", "a3"}));
  EXPECT_EQ(m.groups()[0].filling, std::vector<std::string>{"a4"});
  EXPECT_EQ(m.AddressOf("a1").status().code(), Code::kNotFound);
  // Lowering the factor removes a replica; the last serving one cannot go (drain instead), and
  // a replacement needs a serving replica to be filled from.
  ASSERT_TRUE(m.RemoveReplica("a4", /*lower_factor=*/true).ok());
  ASSERT_TRUE(m.RemoveReplica("a2", /*lower_factor=*/true).ok());
  EXPECT_EQ(m.groups()[0].shards, std::vector<std::string>{"a3"});
  const std::string one_left = m.ToJson();
  EXPECT_EQ(m.RemoveReplica("a3", true).code(), Code::kFailedPrecondition);
  const Status only = m.ReplaceShard("a3", {"a5", "127.0.0.1:10"});
  EXPECT_EQ(only.code(), Code::kFailedPrecondition);
  EXPECT_NE(only.message().find("only serving replica"), std::string::npos) << only.ToString();
  EXPECT_EQ(m.ToJson(), one_left);
}

TEST(MoveRecord, PhasesRunInOrderAndTheMapEpochGrowsAtDualWriteFlipAndFinish) {
  ShardMap m = ThreeGroups();
  const uint64_t e0 = m.epoch();
  MoveRecord r = Planned(m, 4, 2);
  EXPECT_EQ(r.source_group, 1u);
  std::vector<MovePhase> phases{r.phase};
  std::vector<Kind> steps;
  while (NextStep(r).kind != Kind::kNone) {
    steps.push_back(NextStep(r).kind);
    r = RunStep(&m, r);
    if (phases.back() != r.phase) phases.push_back(r.phase);
  }
  EXPECT_EQ(phases, (std::vector<MovePhase>{MovePhase::kPlanned, MovePhase::kDualWrite,
                                            MovePhase::kCopy, MovePhase::kVerify, MovePhase::kFlip,
                                            MovePhase::kCleanup, MovePhase::kDone}));
  EXPECT_EQ(steps, (std::vector<Kind>{Kind::kBeginDualWrite, Kind::kAwaitEpoch, Kind::kCopyFrom,
                                      Kind::kCopyFrom, Kind::kVerify, Kind::kFlip,
                                      Kind::kAwaitEpoch, Kind::kCleanup}));
  EXPECT_EQ(r.epoch_at_dual_write, e0 + 1);
  EXPECT_EQ(r.epoch_at_flip, e0 + 2);
  EXPECT_EQ(m.epoch(), e0 + 3);
  EXPECT_EQ(r.copy_cursor, 200u);
  EXPECT_EQ(r.points_copied, 14u);
  EXPECT_EQ(Owner(m, 4), 2u);
  EXPECT_EQ(WriteGroups(m, 4), std::vector<uint32_t>{2});
  EXPECT_FALSE(IsActive(r));
}

TEST(MoveRecord, WriteGroupsInEachPhaseAreSourceThenBothThenTarget) {
  ShardMap m = ThreeGroups();
  MoveRecord r = Planned(m, 4, 2);
  const std::map<MovePhase, std::vector<uint32_t>> expected{
      {MovePhase::kPlanned, {1}},   {MovePhase::kDualWrite, {1, 2}}, {MovePhase::kCopy, {1, 2}},
      {MovePhase::kVerify, {1, 2}}, {MovePhase::kFlip, {2, 1}},      {MovePhase::kCleanup, {2, 1}},
      {MovePhase::kDone, {2}}};
  std::set<MovePhase> seen;
  while (true) {
    EXPECT_EQ(WriteGroups(m, 4), expected.at(r.phase)) << MovePhaseName(r.phase);
    seen.insert(r.phase);
    if (NextStep(r).kind == Kind::kNone) break;
    r = RunStep(&m, r);
  }
  EXPECT_EQ(seen.size(), expected.size());
}

TEST(MoveRecord, NextStepIsTheSameForTheStoredRecordAndAMapStepRerunChangesNothing) {
  ShardMap m = ThreeGroups();
  MoveRecord r = Planned(m, 0, 1);
  while (NextStep(r).kind != Kind::kNone) {
    auto stored = MoveFromJson(ToJson(r));
    ASSERT_TRUE(stored.ok()) << stored.status().ToString();
    EXPECT_EQ(NextStep(stored.value()), NextStep(r)) << MovePhaseName(r.phase);
    EXPECT_EQ(ToJson(stored.value()), ToJson(r));
    const MoveRecord after = RunStep(&m, stored.value());
    // A crash after the map change but before the record's update: the rerun is a no-op.
    const Kind k = NextStep(r).kind;
    if (k == Kind::kBeginDualWrite || k == Kind::kFlip || k == Kind::kCleanup) {
      const uint64_t epoch = m.epoch();
      auto again = ApplyMapStep(&m, r);
      ASSERT_TRUE(again.ok()) << again.status().ToString();
      EXPECT_FALSE(again.value());
      EXPECT_EQ(m.epoch(), epoch);
    }
    r = after;
  }
  EXPECT_EQ(r.phase, MovePhase::kDone);
}

TEST(MoveRecord, AdvanceRefusesAnOutcomeOfAnotherStepSoNoPhaseIsSkipped) {
  ShardMap m = ThreeGroups();
  MoveRecord r = Planned(m, 0, 1);
  StepOutcome flip;
  flip.step = Kind::kFlip;
  EXPECT_EQ(Advance(r, flip).status().code(), Code::kInvalidArgument);
  r = RunStep(&m, r);  // DUAL_WRITE
  r = RunStep(&m, r);  // COPY
  StepOutcome copy;
  copy.step = Kind::kCopyFrom;
  copy.cursor = 50;
  r = Advance(r, copy).value();
  copy.cursor = 40;  // a stale batch
  EXPECT_EQ(Advance(r, copy).status().code(), Code::kInvalidArgument);
  StepOutcome verify;
  verify.step = Kind::kVerify;
  EXPECT_EQ(Advance(r, verify).status().code(), Code::kInvalidArgument);
  MoveRecord done = r;
  done.phase = MovePhase::kDone;
  StepOutcome none;
  EXPECT_EQ(Advance(done, none).status().code(), Code::kInvalidArgument);
}

TEST(MoveRecord, ADisagreeingVerifyCopiesAgainFromTheStartAndTheLastAllowedOneAborts) {
  ShardMap m = ThreeGroups();
  MoveRecord r = Planned(m, 0, 1);
  while (r.phase != MovePhase::kVerify) r = RunStep(&m, r);
  r = RunStep(&m, r, /*disagree=*/true);
  EXPECT_EQ(r.phase, MovePhase::kCopy);
  EXPECT_EQ(r.attempts, 1u);
  EXPECT_EQ(NextStep(r), (MoveStep{Kind::kCopyFrom, 0, std::nullopt}));
  EXPECT_EQ(r.points_copied, 0u);
  EXPECT_EQ(r.target_figures.count, 9u);
  while (r.phase != MovePhase::kVerify) r = RunStep(&m, r);
  r = RunStep(&m, r, true);
  while (r.phase != MovePhase::kVerify) r = RunStep(&m, r);
  r = RunStep(&m, r, true);
  EXPECT_EQ(r.phase, MovePhase::kAborted);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_NE(r.error.find("verify disagreed 3 times"), std::string::npos) << r.error;
  EXPECT_EQ(NextStep(r).kind, Kind::kDiscardTarget);
  r = RunStep(&m, r);  // cancels the dual write
  EXPECT_EQ(NextStep(r).kind, Kind::kNone);
  EXPECT_FALSE(IsActive(r));
  EXPECT_EQ(WriteGroups(m, 0), std::vector<uint32_t>{0});
}

TEST(MoveRecord, AbortBeforeFlipDiscardsTheTargetAndAfterFlipIsAReverseMove) {
  ShardMap m = ThreeGroups();
  MoveRecord r = Planned(m, 0, 1);
  while (r.phase != MovePhase::kCopy) r = RunStep(&m, r);
  auto early = Abort(r, "operator", 5000);
  ASSERT_TRUE(early.ok());
  EXPECT_FALSE(early->reverse.has_value());
  EXPECT_EQ(early->aborted.error, "operator");
  EXPECT_EQ(NextStep(early->aborted).kind, Kind::kDiscardTarget);
  EXPECT_TRUE(IsActive(early->aborted));

  while (r.phase != MovePhase::kFlip) r = RunStep(&m, r);
  auto late = Abort(r, "operator", 6000);
  ASSERT_TRUE(late.ok());
  EXPECT_EQ(NextStep(late->aborted).kind, Kind::kNone);
  EXPECT_FALSE(IsActive(late->aborted));
  ASSERT_TRUE(late->reverse.has_value());
  MoveRecord rev = *late->reverse;
  EXPECT_EQ(rev.reverse_of, r.id);
  EXPECT_EQ(rev.source_group, 1u);
  EXPECT_EQ(rev.target_group, 0u);
  EXPECT_EQ(NextStep(rev).kind, Kind::kBeginDualWrite);
  const auto writes_before = WriteGroups(m, 0);
  rev = RunStep(&m, rev);  // the map's flipped move turns around in place
  EXPECT_EQ(WriteGroups(m, 0), writes_before);
  while (NextStep(rev).kind != Kind::kNone) rev = RunStep(&m, rev);
  EXPECT_EQ(rev.phase, MovePhase::kDone);
  EXPECT_EQ(WriteGroups(m, 0), std::vector<uint32_t>{0});

  MoveRecord cleanup = r;
  cleanup.phase = MovePhase::kCleanup;
  EXPECT_EQ(Abort(cleanup, "x", 1).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(Abort(rev, "x", 1).status().code(), Code::kFailedPrecondition);  // DONE
  EXPECT_EQ(Abort(early->aborted, "x", 1).status().code(), Code::kFailedPrecondition);
}

// The invariant the issue names, over a whole move and an abort at every phase before CLEANUP.
TEST(MoveInvariant, EveryEpochHasExactlyOneQueryOwnerPerBucketThroughMovesAndAborts) {
  // When move "a" aborts, and how many map changes the two moves make in all: b makes 3; a
  // makes 3 when it completes, 0 aborted before DUAL_WRITE, 2 (begin, cancel) before FLIP, and 5
  // after it (begin, flip, reverse, flip back, finish).
  const std::vector<std::pair<std::optional<MovePhase>, uint64_t>> abort_at{
      {std::nullopt, 6},     {MovePhase::kPlanned, 3}, {MovePhase::kDualWrite, 5},
      {MovePhase::kCopy, 5}, {MovePhase::kVerify, 5},  {MovePhase::kFlip, 8}};
  for (const auto& [when, changes] : abort_at) {
    SCOPED_TRACE(when ? MovePhaseName(*when) : "no abort");
    ShardMap m = ThreeGroups();
    const uint64_t e0 = m.epoch();
    OwnerInvariant inv;
    inv.Check(m);
    std::vector<MoveRecord> todo{Planned(m, 4, 2, "a"), Planned(m, 0, 1, "b")};
    int steps = 0;
    while (!todo.empty() && ++steps < 100) {
      MoveRecord r = todo.back();
      todo.pop_back();
      if (when && r.phase == *when && r.id == "a") {
        auto aborted = Abort(r, "test", 1);
        ASSERT_TRUE(aborted.ok()) << aborted.status().ToString();
        r = aborted->aborted;
        if (aborted->reverse) todo.push_back(*aborted->reverse);
      }
      if (NextStep(r).kind == Kind::kNone) continue;
      r = RunStep(&m, r);
      inv.Check(m);
      todo.insert(todo.begin(), r);  // interleave the two moves
    }
    const bool rolled_back = when.has_value();
    EXPECT_EQ(Owner(m, 4), rolled_back ? 1u : 2u);
    EXPECT_EQ(Owner(m, 0), 1u);
    for (uint32_t b = 0; b < 8; ++b) EXPECT_EQ(WriteGroups(m, b).size(), 1u);
    EXPECT_EQ(m.epoch(), e0 + changes);
    EXPECT_EQ(inv.owners_at_epoch.size(), changes + 1);  // every epoch was checked
  }
}

TEST(MoveRecord, JsonRoundTripsAndAMissingFieldOrUnknownPhaseIsCorruptionNamingIt) {
  MoveRecord r;
  r.id = "m7";
  r.collection = "docs";
  r.bucket = 3;
  r.source_group = 1;
  r.target_group = 2;
  r.phase = MovePhase::kCopy;
  r.epoch_at_dual_write = 41;
  r.copy_cursor = 0xFFFFFFFFFFFFFFF0ULL;
  r.points_copied = 12;
  r.source_figures = {3, 0xDEADBEEFCAFEF00DULL};
  r.attempts = 1;
  r.error = "x";
  r.created_unix_ms = 1700000000000;
  r.updated_unix_ms = 1700000000123;
  auto back = MoveFromJson(ToJson(r));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(ToJson(back.value()), ToJson(r));
  EXPECT_EQ(back->copy_cursor, r.copy_cursor);
  EXPECT_FALSE(back->epoch_at_flip.has_value());
  EXPECT_EQ(back->source_figures, r.source_figures);

  auto j = nlohmann::json::parse(ToJson(r));
  for (const auto& [field, value] : j.items()) {
    auto without = j;
    without.erase(field);
    auto s = MoveFromJson(without.dump()).status();
    EXPECT_EQ(s.code(), Code::kCorruption) << field;
    EXPECT_NE(s.message().find("'" + field + "'"), std::string::npos) << s.message();
  }
  j["phase"] = "TELEPORT";
  auto s = MoveFromJson(j.dump()).status();
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_NE(s.message().find("phase"), std::string::npos);
  EXPECT_EQ(MoveFromJson("{").status().code(), Code::kCorruption);
}

TEST(VerifyFigures, AgreeRegardlessOfOrderAndDifferOnAVersionOrAMissingPoint) {
  VerifyFigures a, b, c, d;
  for (uint64_t id = 0; id < 100; ++id) a.Add(id, id * 3);
  for (uint64_t id = 100; id-- > 0;) b.Add(id, id * 3);
  EXPECT_EQ(a, b);
  for (uint64_t id = 0; id < 100; ++id) c.Add(id, id == 50 ? 1 : id * 3);
  EXPECT_FALSE(a == c);
  for (uint64_t id = 0; id < 99; ++id) d.Add(id, id * 3);
  EXPECT_FALSE(a == d);
}

}  // namespace
}  // namespace mrl::coord
