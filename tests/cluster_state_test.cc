// The coordinator's cluster state on the metadata store, driven directly (no daemons): the same
// checks on the embedded store and on a real 3-member etcd cluster, then what only etcd has:
// several coordinators on one state (propagation, leadership, handover, fencing) and etcd away.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <thread>

#include "common/atomic_file.h"
#include "coordinator/cluster_keys.h"
#include "coordinator/cluster_state.h"
#include "coordinator/move.h"
#include "meta/leased_key.h"
#include "meta/store.h"
#include "ops/local_etcd.h"
#include "tests/test_util.h"

namespace mrl::coord {
namespace {

using Clock = std::chrono::steady_clock;
using test_util::TempDir;

CollectionSpec Spec(const std::string& name) {
  CollectionSpec s;
  s.name = name;
  s.dim = 16;
  s.nesting = {8, 16};
  s.num_buckets = 64;
  return s;
}

double SecondsSince(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Polls `pred` every 5 ms for up to `seconds`; true once it holds.
template <typename Pred>
bool Eventually(Pred pred, double seconds) {
  const auto t0 = Clock::now();
  while (SecondsSince(t0) < seconds) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return pred();
}

ops::LocalEtcd* SharedEtcd() {
  static std::unique_ptr<ops::LocalEtcd> etcd = [] {
    auto e = ops::LocalEtcd::Start(TempDir("cs_etcd"), 3, 60);
    if (!e.ok()) {
      ADD_FAILURE() << "cannot start a local etcd cluster: " << e.status().ToString();
      return std::unique_ptr<ops::LocalEtcd>();
    }
    return std::move(e).value();
  }();
  return etcd.get();
}

std::string FreshEtcdUrl() {
  static int n = 0;
  ops::LocalEtcd* etcd = SharedEtcd();
  if (etcd == nullptr) return "";
  return etcd->Url("cs" + std::to_string(n++) + "_" + std::to_string(::getpid()));
}

std::unique_ptr<ClusterState> OpenState(const std::string& dir, const std::string& url,
                                        const std::string& id, int ttl_s = 10,
                                        ClusterState::MapListener on_map = nullptr) {
  ClusterStateOptions o;
  o.data_dir = dir;
  o.meta_url = url;
  o.id = id;
  o.session_ttl_s = ttl_s;
  auto s = ClusterState::Open(o, std::move(on_map));
  EXPECT_TRUE(s.ok()) << s.status().ToString();
  return s.ok() ? std::move(s).value() : nullptr;
}

class BothStores : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    dir_ = TempDir("cs_" + GetParam());
    if (GetParam() == "etcd") {
      url_ = FreshEtcdUrl();
      ASSERT_FALSE(url_.empty());
    }
  }
  std::string dir_, url_;
};

// A change is durable in the store: a new ClusterState (a restarted coordinator, or one on an
// empty data dir with etcd) serves it at once, budgets included, and leads again at once after
// the previous holder resigned.
TEST_P(BothStores, ChangesOutliveTheProcessAndAReopenLeadsAtOnce) {
  std::vector<uint64_t> epochs;
  {
    auto s = OpenState(dir_, url_, "c1", 10, [&](const ShardMap& m) { epochs.push_back(m.epoch()); });
    ASSERT_NE(s, nullptr);
    s->StartSession("http://127.0.0.1:1");
    ASSERT_TRUE(s->AwaitLeadership(10000)) << s->CheckLeader().ToString();
    ASSERT_TRUE(s->AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
    ASSERT_TRUE(s->AddCollection(Spec("c")).ok());
    ASSERT_TRUE(s->AddCollection(Spec("c")).ok());  // idempotent: no new epoch
    ASSERT_TRUE(s->SetBudgets("c", {{"exact", ExactPlan(16, 10)}}).ok());
    EXPECT_EQ(s->Snapshot()->map.epoch(), 2u);
    EXPECT_EQ(s->SetBudgets("nope", {}).code(), Status::Code::kNotFound);
    const MetaState m = s->Meta();
    EXPECT_TRUE(m.leader);
    EXPECT_EQ(m.current.id, "c1");
    EXPECT_EQ(m.current.address, "http://127.0.0.1:1");
  }
  ASSERT_FALSE(epochs.empty());
  EXPECT_TRUE(std::is_sorted(epochs.begin(), epochs.end()));
  EXPECT_EQ(epochs.back(), 2u);
  // etcd: a coordinator with an empty data dir of its own.
  const std::string dir2 = GetParam() == "etcd" ? TempDir("cs_empty_dir") : dir_;
  const auto t0 = Clock::now();
  auto again = OpenState(dir2, url_, "c2");
  ASSERT_NE(again, nullptr);
  const auto snap = again->Snapshot();
  EXPECT_EQ(snap->map.epoch(), 2u);
  ASSERT_TRUE(snap->Spec("c").ok());
  EXPECT_EQ(*snap->Spec("c").value(), Spec("c"));
  auto budget = snap->Budget("c", "exact");
  ASSERT_TRUE(budget.ok()) << budget.status().ToString();
  EXPECT_EQ(budget->name, ExactPlan(16, 10).name);
  EXPECT_TRUE(budget->exact);
  again->StartSession("http://127.0.0.1:2");
  ASSERT_TRUE(again->AwaitLeadership(5000));  // c1 resigned (revoked its lease) when it closed
  std::printf("reopened and leading in %.3f s\n", SecondsSince(t0));
  ASSERT_TRUE(again->AddCollection(Spec("d")).ok());
  EXPECT_EQ(again->Snapshot()->map.epoch(), 3u);
  // Dropping: placement, spec and budgets leave in one change (epoch + 1); a second drop is
  // NotFound; a collection with an unfinished move is refused, unchanged.
  MoveRecord moving;
  moving.id = "m-c";
  moving.collection = "c";
  moving.phase = MovePhase::kCopy;
  ASSERT_TRUE(again->RecordMove(moving.id, ToJson(moving), 0).ok());
  const Status busy = again->RemoveCollection("c");
  EXPECT_EQ(busy.code(), Status::Code::kFailedPrecondition) << busy.ToString();
  EXPECT_NE(busy.message().find("move in progress ('m-c', COPY)"), std::string::npos) << busy.ToString();
  EXPECT_TRUE(again->Snapshot()->Spec("c").ok());
  ASSERT_TRUE(again->RemoveCollection("d").ok());
  const auto dropped = again->Snapshot();
  EXPECT_EQ(dropped->map.epoch(), 4u);
  EXPECT_FALSE(dropped->Spec("d").ok());
  EXPECT_FALSE(dropped->map.Placement("d").ok());
  EXPECT_EQ(again->RemoveCollection("d").code(), Status::Code::kNotFound);
}

// The move journal (moves/<id>): each phase change is one fenced compare-and-swap on the entry's
// revision, optionally with the map change it implies in the same transaction; a stale revision
// is refused without a change; a non-leader cannot write it.
TEST_P(BothStores, TheMoveJournalIsCompareAndSwappedWithTheMapInOneTransaction) {
  auto s = OpenState(dir_, url_, "c1");
  ASSERT_NE(s, nullptr);
  std::atomic<int> leads{0};
  s->SetLeadershipListener([&] { ++leads; });
  s->StartSession("http://127.0.0.1:1");
  ASSERT_TRUE(s->AwaitLeadership(10000));
  EXPECT_TRUE(Eventually([&] { return leads.load() == 1; }, 2));
  ASSERT_TRUE(s->AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
  const uint64_t epoch = s->Snapshot()->map.epoch();

  auto planned = s->RecordMove("m1", R"({"phase":"PLANNED"})", 0);
  ASSERT_TRUE(planned.ok()) << planned.status().ToString();
  EXPECT_GT(*planned, 0);
  // Absent expected, but it exists now: refused, nothing written.
  auto again = s->RecordMove("m1", R"({"phase":"OTHER"})", 0);
  EXPECT_EQ(again.status().code(), Status::Code::kAborted) << again.status().ToString();
  EXPECT_EQ(s->Snapshot()->moves.at("m1").value, R"({"phase":"PLANNED"})");

  // The next phase together with a map change: one transaction, one revision for both keys.
  auto dual = s->RecordMove("m1", R"({"phase":"DUAL_WRITE"})", *planned, [](ShardMap* m) {
    return m->AddGroup({{"s2", "127.0.0.1:7002"}});
  });
  ASSERT_TRUE(dual.ok()) << dual.status().ToString();
  EXPECT_GT(*dual, *planned);
  auto snap = s->Snapshot();
  EXPECT_EQ(snap->map.epoch(), epoch + 1);
  EXPECT_EQ(snap->moves.at("m1").value, R"({"phase":"DUAL_WRITE"})");
  EXPECT_EQ(snap->moves.at("m1").mod_revision, *dual);

  // A stale token: refused, and neither the entry nor the map changes.
  auto stale = s->RecordMove("m1", R"({"phase":"COPY"})", *planned,
                             [](ShardMap* m) { return m->AddGroup({{"s3", "127.0.0.1:7003"}}); });
  EXPECT_EQ(stale.status().code(), Status::Code::kAborted) << stale.status().ToString();
  EXPECT_EQ(s->Snapshot()->map.epoch(), epoch + 1);
  // A map change that fails writes nothing either.
  auto bad = s->RecordMove("m1", R"({"phase":"COPY"})", *dual,
                           [](ShardMap*) { return Status::FailedPrecondition("no"); });
  EXPECT_EQ(bad.status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(s->Snapshot()->moves.at("m1").mod_revision, *dual);
  EXPECT_EQ(s->RecordMove("bad id!", "{}", 0).status().code(), Status::Code::kInvalidArgument);

  // Done: the entry is deleted (also by compare-and-swap), and the deletion outlives the process.
  ASSERT_TRUE(s->RecordMove("m1", "", *dual).ok());
  EXPECT_EQ(s->Snapshot()->moves.count("m1"), 0u);
  ASSERT_TRUE(s->RecordMove("m2", R"({"phase":"COPY"})", 0).ok());
  s.reset();
  auto reopened = OpenState(GetParam() == "etcd" ? TempDir("cs_journal2") : dir_, url_, "c2");
  ASSERT_NE(reopened, nullptr);
  EXPECT_EQ(reopened->Snapshot()->moves.count("m1"), 0u);
  ASSERT_EQ(reopened->Snapshot()->moves.count("m2"), 1u);
  EXPECT_EQ(reopened->Snapshot()->moves.at("m2").value, R"({"phase":"COPY"})");
  // No session yet, so nobody leads: refused (Unavailable, "retry"), the entry unchanged.
  const int64_t m2 = reopened->Snapshot()->moves.at("m2").mod_revision;
  auto refused = reopened->RecordMove("m2", "", m2);
  EXPECT_EQ(refused.status().code(), Status::Code::kUnavailable) << refused.status().ToString();
  EXPECT_EQ(reopened->Snapshot()->moves.at("m2").mod_revision, m2);
}

INSTANTIATE_TEST_SUITE_P(Backends, BothStores, ::testing::Values("embedded", "etcd"),
                         [](const auto& info) { return info.param; });

// Older versions kept the state in data_dir/shard_map.json and collections.json: imported once.
TEST(ClusterStateEmbedded, ImportsAnOlderVersionsFilesOnce) {
  const std::string dir = TempDir("cs_legacy");
  ShardMap m;
  ASSERT_TRUE(m.AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
  ASSERT_TRUE(m.PlaceCollection("c", 64).ok());
  ASSERT_TRUE(m.Save(dir + "/shard_map.json").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/collections.json",
                              nlohmann::json{{"c", CollectionSpecToJson(Spec("c"))}}.dump())
                  .ok());
  {
    auto s = OpenState(dir, "", "c1");
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->Snapshot()->map.epoch(), m.epoch());
    ASSERT_TRUE(s->Snapshot()->Spec("c").ok());
    s->StartSession("");
    ASSERT_TRUE(s->AddCollection(Spec("d")).ok());
  }
  auto s = OpenState(dir, "", "c1");  // the files are still there; the store's state wins
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->Snapshot()->map.epoch(), m.epoch() + 1);
  EXPECT_TRUE(s->Snapshot()->Spec("d").ok());
}

// Two coordinators on one etcd state: one leads; the other refuses changes naming it, serves
// each change within 1 s, and takes over when the leader resigns.
TEST(ClusterStateEtcd, OneLeadsEveryoneServesEveryChangeAndAResignHandsOver) {
  const std::string url = FreshEtcdUrl();
  ASSERT_FALSE(url.empty());
  auto a = OpenState(TempDir("cs_a"), url, "a");
  ASSERT_NE(a, nullptr);
  a->StartSession("http://a:1");
  ASSERT_TRUE(a->AwaitLeadership(10000));
  auto b = OpenState(TempDir("cs_b"), url, "b");
  ASSERT_NE(b, nullptr);
  b->StartSession("http://b:2");
  EXPECT_FALSE(b->AwaitLeadership(1500));
  const Status refused = b->AddGroup({{"s1", "127.0.0.1:7001"}});
  EXPECT_EQ(refused.code(), Status::Code::kFailedPrecondition) << refused.ToString();
  EXPECT_NE(refused.message().find("'a' at http://a:1"), std::string::npos) << refused.message();
  EXPECT_EQ(b->Meta().current.id, "a");

  ASSERT_TRUE(a->AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
  std::vector<double> lag;
  for (int i = 0; i < 10; ++i) {
    const auto t0 = Clock::now();
    ASSERT_TRUE(a->AddCollection(Spec("c" + std::to_string(i))).ok());
    const uint64_t want = a->Snapshot()->map.epoch();
    ASSERT_TRUE(Eventually([&] { return b->Snapshot()->map.epoch() == want; }, 1.0))
        << "b serves epoch " << b->Snapshot()->map.epoch() << " 1 s after a published " << want;
    lag.push_back(SecondsSince(t0));
  }
  std::sort(lag.begin(), lag.end());
  std::printf("change -> served by the other coordinator: median %.1f ms, max %.1f ms\n",
              lag[lag.size() / 2] * 1e3, lag.back() * 1e3);
  EXPECT_TRUE(b->Snapshot()->Spec("c9").ok());
  EXPECT_EQ(b->Meta().coordinators, (std::vector<std::string>{"a", "b"}));

  const auto t0 = Clock::now();
  a.reset();  // resigns: its lease is revoked, the leader key goes with it
  ASSERT_TRUE(b->AwaitLeadership(3000));
  std::printf("handover after a resign: %.3f s\n", SecondsSince(t0));
  ASSERT_TRUE(b->AddCollection(Spec("after")).ok());
}

// Fencing: a leader whose session was lost (here: its lease revoked behind its back, as an
// expiry while it was paused would) and who has not noticed yet cannot write the map: the
// transaction compares the leader key's revision, which the new leader's key no longer has.
TEST(ClusterStateEtcd, ADeposedLeaderThatHasNotNoticedIsFenced) {
  const std::string url = FreshEtcdUrl();
  ASSERT_FALSE(url.empty());
  // A long TTL: its next keep-alive (ttl / 3 = 20 s) comes after this test's write attempt.
  auto a = OpenState(TempDir("cs_fa"), url, "a", 60);
  ASSERT_NE(a, nullptr);
  a->StartSession("http://a:1");
  ASSERT_TRUE(a->AwaitLeadership(10000));
  ASSERT_TRUE(a->AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
  auto b = OpenState(TempDir("cs_fb"), url, "b", 60);
  ASSERT_NE(b, nullptr);
  b->StartSession("http://b:2");
  ASSERT_TRUE(Eventually([&] { return b->Meta().coordinators.size() == 2; }, 5));

  auto raw = meta::OpenStore(url);
  ASSERT_TRUE(raw.ok());
  auto leader = raw.value()->Get(kLeaderKey);
  ASSERT_TRUE(leader.ok());
  ASSERT_EQ(leader->kvs.size(), 1u);
  ASSERT_TRUE(raw.value()->RevokeLease(leader->kvs[0].lease).ok());
  ASSERT_TRUE(b->AwaitLeadership(5000));
  ASSERT_TRUE(a->Meta().leader);  // a has not noticed

  const uint64_t epoch = b->Snapshot()->map.epoch();
  const Status st = a->AddCollection(Spec("stale"));
  EXPECT_EQ(st.code(), Status::Code::kFailedPrecondition) << st.ToString();
  EXPECT_NE(st.message().find("'b'"), std::string::npos) << st.message();
  EXPECT_FALSE(a->Meta().leader);
  EXPECT_EQ(a->Meta().fenced_writes, 1u);
  auto map = raw.value()->Get(kMapKey);
  ASSERT_TRUE(map.ok());
  auto stored = ShardMap::FromJson(map->kvs.at(0).value);
  ASSERT_TRUE(stored.ok());
  EXPECT_EQ(stored->epoch(), epoch);  // nothing written
  EXPECT_FALSE(stored->Placement("stale").ok());
  ASSERT_TRUE(b->AddCollection(Spec("fresh")).ok());
  // a re-joins with a new session and follows.
  ASSERT_TRUE(Eventually([&] { return a->Snapshot()->Spec("fresh").ok(); }, 2));
}

// Every etcd member stopped: the last state keeps serving, a change is refused with a clear
// error, and once etcd is back a change works with the same objects (nothing reopened).
TEST(ClusterStateEtcd, EtcdAwayRefusesChangesOnlyAndRecoveryNeedsNoRestart) {
  auto etcd = ops::LocalEtcd::Start(TempDir("cs_etcd_away"), 3, 60);
  ASSERT_TRUE(etcd.ok()) << etcd.status().ToString();
  auto a = OpenState(TempDir("cs_wa"), etcd.value()->Url("away"), "a");
  ASSERT_NE(a, nullptr);
  a->StartSession("http://a:1");
  ASSERT_TRUE(a->AwaitLeadership(10000));
  ASSERT_TRUE(a->AddGroup({{"s1", "127.0.0.1:7001"}}).ok());
  ASSERT_TRUE(a->AddCollection(Spec("c")).ok());
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd.value()->Signal(i, SIGSTOP).ok());
  const auto t0 = Clock::now();
  const Status st = a->AddCollection(Spec("during"));
  std::printf("change with etcd stopped: %s after %.1f s\n", st.ToString().c_str(),
              SecondsSince(t0));
  EXPECT_EQ(st.code(), Status::Code::kUnavailable) << st.ToString();
  EXPECT_NE(st.message().find("searches and writes go on"), std::string::npos) << st.message();
  EXPECT_TRUE(a->Snapshot()->Spec("c").ok());  // still served
  EXPECT_FALSE(a->Meta().reachable);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd.value()->Signal(i, SIGCONT).ok());
  const auto t1 = Clock::now();
  Status after;
  ASSERT_TRUE(Eventually(
      [&] {
        after = a->AddCollection(Spec("after"));
        return after.ok();
      },
      30))
      << after.ToString();
  std::printf("a change succeeded %.1f s after etcd resumed\n", SecondsSince(t1));
  EXPECT_TRUE(a->Snapshot()->Spec("after").ok());
}

// Two coordinators on etcd: the follower sees every journal change through its watch; when the
// leader resigns, the other is told it leads (the executor's cue to resume) and continues the
// journal from the revision it watched, while the old leader's write is refused.
TEST(ClusterStateEtcd, TheJournalPropagatesAndTheNextLeaderResumesIt) {
  const std::string url = FreshEtcdUrl();
  ASSERT_FALSE(url.empty());
  auto a = OpenState(TempDir("cs_ja"), url, "a", 4);
  auto b = OpenState(TempDir("cs_jb"), url, "b", 4);
  ASSERT_TRUE(a && b);
  std::atomic<int> b_leads{0};
  b->SetLeadershipListener([&] { ++b_leads; });
  a->StartSession("http://127.0.0.1:1");
  ASSERT_TRUE(a->AwaitLeadership(10000));
  b->StartSession("http://127.0.0.1:2");
  auto r1 = a->RecordMove("m1", R"({"phase":"COPY","cursor":17})", 0);
  ASSERT_TRUE(r1.ok()) << r1.status().ToString();
  const auto t0 = Clock::now();
  ASSERT_TRUE(Eventually([&] {
    auto snap = b->Snapshot();
    return snap->moves.count("m1") && snap->moves.at("m1").mod_revision == *r1;
  }, 5));
  std::printf("journal entry served by the other coordinator after %.3f s\n", SecondsSince(t0));
  EXPECT_EQ(b->RecordMove("m1", "{}", *r1).status().code(), Status::Code::kFailedPrecondition);
  EXPECT_EQ(b_leads.load(), 0);

  a.reset();  // resigns: b leads at once and is told so
  ASSERT_TRUE(b->AwaitLeadership(10000));
  EXPECT_TRUE(Eventually([&] { return b_leads.load() == 1; }, 2));
  const JournalEntry seen = b->Snapshot()->moves.at("m1");
  EXPECT_EQ(seen.value, R"({"phase":"COPY","cursor":17})");
  auto r2 = b->RecordMove("m1", R"({"phase":"VERIFY"})", seen.mod_revision);
  ASSERT_TRUE(r2.ok()) << r2.status().ToString();
  EXPECT_GT(*r2, *r1);
}

// meta::LeasedKey (a shard's registration) on the embedded store: registered under a lease, a
// changed value is put again on Update, a lease lost behind its back is replaced by a new one
// with the key put again, and Release deletes the key at once.
TEST(LeasedKey, RegistersFollowsItsValueRecoversALostLeaseAndReleases) {
  auto opened = meta::OpenStore("file:" + TempDir("leased_key"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  meta::Store& store = *opened.value();
  std::mutex mu;
  std::string value = "serving";
  meta::LeasedKey key(&store, {"shards/a", 2, "test"}, [&] {
    std::lock_guard<std::mutex> lock(mu);
    return value;
  });
  auto read = [&]() -> std::string {
    auto r = store.Get("shards/a");
    return r.ok() && !r->kvs.empty() ? r->kvs[0].value : "";
  };
  auto wait_for = [&](const std::function<bool()>& done) {
    for (int i = 0; i < 300 && !done(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return done();
  };
  // (state() says registered only once the put has returned, a moment after the key is visible)
  ASSERT_TRUE(wait_for([&] { return read() == "serving" && key.state().registered; }));
  const int64_t first_lease = key.state().lease;
  EXPECT_NE(first_lease, 0);
  EXPECT_EQ(store.Get("shards/a")->kvs[0].lease, first_lease);

  {
    std::lock_guard<std::mutex> lock(mu);
    value = "draining";
  }
  key.Update();
  EXPECT_TRUE(wait_for([&] { return read() == "draining"; })) << read();

  // Kept alive past several TTLs.
  std::this_thread::sleep_for(std::chrono::milliseconds(4500));
  EXPECT_EQ(read(), "draining");
  EXPECT_EQ(key.state().registrations, 1u);

  // The lease revoked behind its back (as etcd expiring it while the holder was paused): the key
  // is gone, then put again under a new lease at the next keep-alive.
  ASSERT_TRUE(store.RevokeLease(first_lease).ok());
  EXPECT_EQ(read(), "");
  EXPECT_TRUE(wait_for([&] { return read() == "draining" && key.state().registrations == 2; }))
      << key.state().last_error;
  EXPECT_NE(key.state().lease, first_lease);

  ASSERT_TRUE(key.Release().ok());
  EXPECT_EQ(read(), "");
  EXPECT_FALSE(key.state().registered);
  EXPECT_TRUE(key.Release().ok());  // idempotent
}

}  // namespace
}  // namespace mrl::coord
