// The in-sync set's map changes and decisions (coordinator/in_sync.h), without sockets.
#include <gtest/gtest.h>

#include <map>
#include <optional>

#include "coordinator/in_sync.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {
namespace {

ShardMap TwoGroupsOfTwo() {
  ShardMap m;
  EXPECT_TRUE(m.AddGroup({{"a", "127.0.0.1:1"}, {"b", "127.0.0.1:2"}}).ok());
  EXPECT_TRUE(m.AddGroup({{"c", "127.0.0.1:3"}, {"d", "127.0.0.1:4"}}).ok());
  EXPECT_TRUE(m.PlaceCollection("emb", 8).ok());
  return m;
}

TEST(InSyncSet, AMemberLeavesCatchesUpAndServesAgainEachAnEpochAndNeverTheLastOne) {
  ShardMap m = TwoGroupsOfTwo();
  const uint64_t e0 = m.epoch();
  ASSERT_TRUE(m.TakeOutOfSync(0, "a", 1000).ok());
  EXPECT_EQ(m.epoch(), e0 + 1);
  EXPECT_EQ(m.groups()[0].shards, std::vector<std::string>{"b"});
  EXPECT_EQ(m.groups()[0].out_of_sync, std::vector<std::string>{"a"});
  EXPECT_TRUE(m.groups()[0].WriteShards() == std::vector<std::string>{"b"});
  EXPECT_EQ(m.groups()[0].replication(), 2u);
  EXPECT_EQ(m.GroupOfShard("a").value(), 0u);
  // Its bucket's queries and reads go to the in-sync member only.
  EXPECT_EQ(m.ReplicasOfBucket("emb", 0).value(), std::vector<std::string>{"b"});
  // The last in-sync member stays: writes wait for it.
  const Status last = m.TakeOutOfSync(0, "b", 2000);
  EXPECT_EQ(last.code(), Status::Code::kFailedPrecondition);
  EXPECT_NE(last.message().find("last in-sync replica of group 0"), std::string::npos) << last.ToString();
  EXPECT_EQ(m.TakeOutOfSync(0, "c", 1).code(), Status::Code::kNotFound);  // another group's
  EXPECT_EQ(m.StartCatchUp(0, "b").code(), Status::Code::kNotFound);      // not out

  ASSERT_TRUE(m.StartCatchUp(0, "a").ok());
  EXPECT_EQ(m.groups()[0].filling, std::vector<std::string>{"a"});
  EXPECT_EQ(m.groups()[0].catch_up.at("a").from_version, 1000u);
  EXPECT_EQ(m.groups()[0].catch_up.at("a").since_epoch, m.epoch());
  // Out again while catching up: the older from_version stays, the catch-up starts over.
  ASSERT_TRUE(m.TakeOutOfSync(0, "a", 5000).ok());
  EXPECT_EQ(m.groups()[0].catch_up.at("a").from_version, 1000u);
  EXPECT_EQ(m.groups()[0].catch_up.at("a").since_epoch, 0u);
  ASSERT_TRUE(m.StartCatchUp(0, "a").ok());

  // The map's JSON keeps all of it.
  auto back = ShardMap::FromJson(m.ToJson());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->groups()[0].filling, std::vector<std::string>{"a"});
  EXPECT_EQ(back->groups()[0].catch_up.at("a").from_version, 1000u);
  EXPECT_EQ(back->groups()[0].catch_up.at("a").since_epoch, m.epoch());
  EXPECT_EQ(back->ToJson(), m.ToJson());

  ASSERT_TRUE(m.PromoteReplica(0, "a").ok());
  EXPECT_EQ(m.groups()[0].shards, (std::vector<std::string>{"b", "a"}));
  EXPECT_TRUE(m.groups()[0].catch_up.empty());
  // A map with nobody out reads as before in-sync sets existed.
  EXPECT_EQ(m.ToJson().find("out_of_sync"), std::string::npos);
  EXPECT_EQ(m.ToJson().find("catch_up"), std::string::npos);
}

TEST(InSyncSet, AnInterruptedNewReplicaIsCopiedWholeAndAnOutMemberCanBeReplaced) {
  ShardMap m = TwoGroupsOfTwo();
  ASSERT_TRUE(m.AddReplica(1, {"e", "127.0.0.1:5"}).ok());
  ASSERT_TRUE(m.TakeOutOfSync(1, "e", 7000).ok());
  EXPECT_EQ(m.groups()[1].catch_up.at("e").from_version, 0u);  // it never held the group's data
  ASSERT_TRUE(m.TakeOutOfSync(1, "c", 7000).ok());
  ASSERT_TRUE(m.ReplaceShard("c", {"f", "127.0.0.1:6"}).ok());
  EXPECT_EQ(m.groups()[1].out_of_sync, std::vector<std::string>{"e"});
  EXPECT_EQ(m.groups()[1].filling, std::vector<std::string>{"f"});
  EXPECT_FALSE(m.groups()[1].catch_up.count("c"));
  EXPECT_FALSE(m.AddressOf("c").ok());
  ASSERT_TRUE(m.RemoveReplica("e", /*lower_factor=*/true).ok());
  EXPECT_TRUE(m.groups()[1].out_of_sync.empty());
  EXPECT_TRUE(m.groups()[1].catch_up.empty());
}

TEST(InSyncSet, TheLeaderTakesOutMembersDownPastTheTimeoutAndCatchesUpThoseThatAnswer) {
  ShardMap m = TwoGroupsOfTwo();
  ASSERT_TRUE(m.TakeOutOfSync(1, "d", 1).ok());
  InSyncOptions opt;
  opt.out_after_ms = 2000;
  std::map<std::string, double> down = {{"a", 2500}, {"b", 2600}, {"c", 1900}};
  std::map<std::string, bool> answering = {{"d", true}};
  auto down_for = [&](const std::string& s) -> std::optional<double> {
    auto it = down.find(s);
    return it == down.end() ? std::nullopt : std::optional<double>(it->second);
  };
  auto answers = [&](const std::string& s) { return answering.count(s) && answering.at(s); };
  auto actions = PlanInSyncActions(m, down_for, answers, opt);
  // a and b are both down past the timeout, but b would be group 0's last member; c is down
  // for less than the timeout and group 1's last in-sync member anyway; d answers again.
  ASSERT_EQ(actions.size(), 2u);
  EXPECT_EQ(actions[0].kind, InSyncAction::Kind::kTakeOut);
  EXPECT_EQ(actions[0].shard, "a");
  EXPECT_EQ(actions[1].kind, InSyncAction::Kind::kStartCatchUp);
  EXPECT_EQ(actions[1].shard, "d");
  // Down again, or not yet heard from: no catch-up.
  answering["d"] = false;
  actions = PlanInSyncActions(m, down_for, answers, opt);
  ASSERT_EQ(actions.size(), 1u);
  EXPECT_EQ(actions[0].shard, "a");
}

TEST(InSyncSet, BelowTheMinimumAGroupRefusesWritesNamingItself) {
  ShardMap m = TwoGroupsOfTwo();
  EXPECT_TRUE(CheckInSyncSize(0, m.groups()[0], 2).ok());
  ASSERT_TRUE(m.TakeOutOfSync(0, "a", 1).ok());
  EXPECT_TRUE(CheckInSyncSize(0, m.groups()[0], 1).ok());
  const Status st = CheckInSyncSize(0, m.groups()[0], 2);
  EXPECT_EQ(st.code(), Status::Code::kUnavailable);
  EXPECT_NE(st.message().find("group 0 has 1 in-sync replica(s) (b), fewer than --min-in-sync 2"),
            std::string::npos)
      << st.ToString();
  EXPECT_NE(st.message().find("until a catch(es) up"), std::string::npos) << st.ToString();
  EXPECT_TRUE(IsMemberFailure(Status::Unavailable("x")));
  EXPECT_TRUE(IsMemberFailure(Status::DeadlineExceeded("x")));
  EXPECT_FALSE(IsMemberFailure(Status::InvalidArgument("x")));
  EXPECT_EQ(CatchUpFromVersion(100'000'000, InSyncOptions{}), 100'000'000u - 60'000'000u);
}

}  // namespace
}  // namespace mrl::coord
