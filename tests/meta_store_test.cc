// The metadata store suite: one set of tests, three backends (the embedded file store, a real
// 3-member etcd cluster started here on loopback ports, and another one with TLS, client
// certificates and authentication on), then etcd's own failure cases: a member killed (the leader
// included), every member stopped, a watch across an outage. TLS and auth's own cases:
// meta_store_security_test.cc.
#include <gtest/gtest.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "meta/base64.h"
#include "meta/embedded_store.h"
#include "meta/etcd_store.h"
#include "meta/store.h"
#include "ops/local_etcd.h"
#include "tests/meta_store_fixture.h"
#include "tests/test_util.h"

namespace mrl::meta {
namespace {

using store_test::Clock;
using store_test::Events;
using store_test::SharedEtcd;
using store_test::SharedSecureEtcd;

class StoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    static int n = 0;
    if (GetParam() == "embedded") {
      dir_ = test_util::TempDir("meta_embedded");
      url_ = "file:" + dir_;
    } else {
      ops::LocalEtcd* etcd = GetParam() == "etcd_tls_auth" ? SharedSecureEtcd() : SharedEtcd();
      ASSERT_NE(etcd, nullptr);
      url_ = etcd->Url("test" + std::to_string(n++) + "_" + std::to_string(::getpid()));
    }
    Reopen();
  }
  void Reopen() {
    store_.reset();
    auto s = OpenStore(url_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  std::string dir_, url_;
  std::unique_ptr<Store> store_;
};

TEST_P(StoreTest, PutGetAndPrefixReadsWithRevisions) {
  auto r0 = store_->GetPrefix("");
  ASSERT_TRUE(r0.ok()) << r0.status().ToString();
  EXPECT_TRUE(r0->kvs.empty());
  auto a = store_->Put("cluster/specs/b", "spec-b");
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = store_->Put("cluster/specs/a", std::string("bytes\0\xff", 7));
  ASSERT_TRUE(b.ok());
  EXPECT_GT(b.value(), a.value());
  ASSERT_TRUE(store_->Put("cluster/map", "m1").ok());
  ASSERT_TRUE(store_->Put("clusterx", "not under the prefix").ok());
  auto specs = store_->GetPrefix("cluster/specs/");
  ASSERT_TRUE(specs.ok());
  ASSERT_EQ(specs->kvs.size(), 2u);
  EXPECT_EQ(specs->kvs[0].key, "cluster/specs/a");  // key order
  EXPECT_EQ(specs->kvs[0].value, std::string("bytes\0\xff", 7));
  EXPECT_EQ(specs->kvs[1].key, "cluster/specs/b");
  EXPECT_EQ(specs->kvs[1].mod_revision, a.value());
  EXPECT_EQ(specs->kvs[1].version, 1);
  auto again = store_->Put("cluster/specs/b", "spec-b2");
  ASSERT_TRUE(again.ok());
  auto one = store_->Get("cluster/specs/b");
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->kvs.size(), 1u);
  EXPECT_EQ(one->kvs[0].value, "spec-b2");
  EXPECT_EQ(one->kvs[0].version, 2);
  EXPECT_EQ(one->kvs[0].create_revision, a.value());
  EXPECT_EQ(one->kvs[0].mod_revision, again.value());
  EXPECT_GE(one->revision, again.value());
  auto absent = store_->Get("cluster/nothing");
  ASSERT_TRUE(absent.ok());
  EXPECT_TRUE(absent->kvs.empty());
  EXPECT_EQ(store_->GetPrefix("cluster/")->kvs.size(), 3u);
  // What is written survives reopening the store (a new process, for the embedded one).
  Reopen();
  auto after = store_->GetPrefix("cluster/");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->kvs.size(), 3u);
  EXPECT_EQ(after->revision, one->revision);
}

TEST_P(StoreTest, TransactionsCompareAndSwapAtomically) {
  // Create-if-absent: exactly one of two racing creators wins.
  auto first = store_->Txn({Compare::Absent("leader")}, {Op::Put("leader", "c1")}, {});
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->succeeded);
  auto second = store_->Txn({Compare::Absent("leader")}, {Op::Put("leader", "c2")}, {});
  ASSERT_TRUE(second.ok());
  EXPECT_FALSE(second->succeeded);
  EXPECT_EQ(store_->Get("leader")->kvs[0].value, "c1");
  // Compare-and-swap on the mod revision; a stale revision runs `otherwise`.
  const int64_t rev = store_->Get("leader")->kvs[0].mod_revision;
  auto cas = store_->Txn({Compare::ModRevisionIs("leader", rev)},
                         {Op::Put("map", "epoch 2"), Op::Put("journal/1", "move")}, {});
  ASSERT_TRUE(cas.ok());
  EXPECT_TRUE(cas->succeeded);
  auto map = store_->Get("map");
  auto journal = store_->Get("journal/1");
  ASSERT_EQ(map->kvs.size(), 1u);
  ASSERT_EQ(journal->kvs.size(), 1u);
  EXPECT_EQ(map->kvs[0].mod_revision, journal->kvs[0].mod_revision);  // one revision, both keys
  ASSERT_TRUE(store_->Put("leader", "c2").ok());                      // deposed
  auto fenced = store_->Txn({Compare::ModRevisionIs("leader", rev)}, {Op::Put("map", "epoch 3")},
                            {Op::Put("refused/1", "x")});
  ASSERT_TRUE(fenced.ok());
  EXPECT_FALSE(fenced->succeeded);
  EXPECT_EQ(store_->Get("map")->kvs[0].value, "epoch 2");
  EXPECT_EQ(store_->Get("refused/1")->kvs.size(), 1u);
  // Value compares; delete and delete-prefix.
  auto by_value = store_->Txn({Compare::ValueIs("leader", "c2")}, {Op::Delete("leader")}, {});
  ASSERT_TRUE(by_value.ok());
  EXPECT_TRUE(by_value->succeeded);
  EXPECT_TRUE(store_->Get("leader")->kvs.empty());
  ASSERT_TRUE(store_->Put("journal/2", "m").ok());
  ASSERT_TRUE(store_->Txn({}, {Op::DeletePrefix("journal/")}, {}).ok());
  EXPECT_TRUE(store_->GetPrefix("journal/")->kvs.empty());
  EXPECT_EQ(store_->Get("map")->kvs.size(), 1u);
}

TEST_P(StoreTest, LeasedKeysVanishWhenTheLeaseExpiresOrIsRevoked) {
  auto lease = store_->GrantLease(2);
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  ASSERT_TRUE(store_->Put("shards/s1", "127.0.0.1:7001", lease.value()).ok());
  EXPECT_EQ(store_->Get("shards/s1")->kvs[0].lease, lease.value());
  // Kept alive past its TTL, the key stays.
  for (int i = 0; i < 6; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    ASSERT_TRUE(store_->KeepAlive(lease.value()).ok());
  }
  EXPECT_EQ(store_->Get("shards/s1")->kvs.size(), 1u);
  // Not kept alive: gone within TTL + a margin.
  const auto t0 = Clock::now();
  while (!store_->Get("shards/s1")->kvs.empty() && Clock::now() - t0 < std::chrono::seconds(8)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double gone_s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_TRUE(store_->Get("shards/s1")->kvs.empty());
  std::printf("[meta %s] leased key gone %.1f s after the last keep-alive (TTL 2 s)\n",
              GetParam().c_str(), gone_s);
  EXPECT_EQ(store_->KeepAlive(lease.value()).code(), Status::Code::kNotFound);
  // Revoked: gone at once. A put with an unknown lease is refused.
  auto l2 = store_->GrantLease(30);
  ASSERT_TRUE(l2.ok());
  ASSERT_TRUE(store_->Put("sessions/c1", "x", l2.value()).ok());
  ASSERT_TRUE(store_->RevokeLease(l2.value()).ok());
  EXPECT_TRUE(store_->Get("sessions/c1")->kvs.empty());
  EXPECT_FALSE(store_->Put("sessions/c2", "x", l2.value()).ok());
}

TEST_P(StoreTest, WatchDeliversEveryChangeFromARevisionInOrder) {
  const int64_t start = store_->GetPrefix("")->revision;
  ASSERT_TRUE(store_->Put("w/a", "1").ok());
  ASSERT_TRUE(store_->Txn({}, {Op::Put("w/b", "2"), Op::Put("w/c", "3")}, {}).ok());
  ASSERT_TRUE(store_->Put("elsewhere", "not watched").ok());
  Events ev;
  auto watch = store_->WatchPrefix("w/", start, ev.Callback());  // from before the changes
  ASSERT_TRUE(watch.ok()) << watch.status().ToString();
  ASSERT_TRUE(ev.WaitFor(3));
  ASSERT_TRUE(store_->Txn({}, {Op::Delete("w/a")}, {}).ok());
  ASSERT_TRUE(store_->Put("w/b", "2b").ok());
  ASSERT_TRUE(ev.WaitFor(5));
  {
    std::lock_guard<std::mutex> lock(ev.mu);
    ASSERT_EQ(ev.got.size(), 5u);
    EXPECT_TRUE(ev.error.ok()) << ev.error.ToString();
    EXPECT_EQ(ev.got[0].kv.key, "w/a");
    EXPECT_EQ(ev.got[1].kv.key, "w/b");
    EXPECT_EQ(ev.got[2].kv.key, "w/c");
    EXPECT_EQ(ev.got[1].kv.mod_revision, ev.got[2].kv.mod_revision);  // one transaction
    EXPECT_EQ(ev.got[3].type, WatchEvent::Type::kDelete);
    EXPECT_EQ(ev.got[3].kv.key, "w/a");
    EXPECT_EQ(ev.got[4].kv.value, "2b");
    for (size_t i = 1; i < ev.got.size(); ++i) {
      EXPECT_GE(ev.got[i].kv.mod_revision, ev.got[i - 1].kv.mod_revision);
    }
    // One delivery per revision: 4 revisions changed w/.
    EXPECT_EQ(ev.batch_revisions.size(), 4u);
  }
  // After the watch is destroyed nothing more arrives.
  watch.value().reset();
  ASSERT_TRUE(store_->Put("w/d", "4").ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  std::lock_guard<std::mutex> lock(ev.mu);
  EXPECT_EQ(ev.got.size(), 5u);
}

// A watch from a revision the store no longer has ends with OutOfRange: the cue to re-read.
TEST_P(StoreTest, AWatchFromACompactedRevisionSaysReRead) {
  const int64_t start = store_->GetPrefix("")->revision;
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(store_->Put("c/" + std::to_string(i), "v").ok());
  const int64_t now = store_->GetPrefix("")->revision;
  if (GetParam() == "embedded") {
    Reopen();  // the embedded history lives in memory: a new process starts at its revision
  } else {
    auto* etcd = dynamic_cast<EtcdStore*>(store_.get());
    ASSERT_NE(etcd, nullptr);
    auto c =
        etcd->Exchange(0, "/v3/kv/compaction",
                       "{\"revision\":\"" + std::to_string(now) + "\",\"physical\":true}", 5000);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
  }
  Events ev;
  auto watch = store_->WatchPrefix("c/", start, ev.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(ev.WaitForError());
  std::lock_guard<std::mutex> lock(ev.mu);
  EXPECT_EQ(ev.error.code(), Status::Code::kOutOfRange) << ev.error.ToString();
  EXPECT_NE(ev.error.message().find("re-read"), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Backends, StoreTest,
                         ::testing::Values("embedded", "etcd", "etcd_tls_auth"),
                         [](const auto& info) { return info.param; });

TEST(MetaStoreUrl, ParsesEtcdUrlsAndRefusesBadOnes) {
  auto o = ParseEtcdUrl("etcd://10.0.0.1:2379,10.0.0.2:2379/prod/mrl");
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->endpoints.size(), 2u);
  EXPECT_EQ(o->prefix, "/prod/mrl/");
  EXPECT_EQ(ParseEtcdUrl("etcd://127.0.0.1:2379")->prefix, "/mrl/");
  EXPECT_FALSE(ParseEtcdUrl("etcd://hostonly").ok());
  EXPECT_FALSE(ParseEtcdUrl("etcd://h:12x").ok());
  EXPECT_FALSE(OpenStore("zk://h:1").ok());
  EXPECT_EQ(Base64Encode("foo"), "Zm9v");
  EXPECT_EQ(Base64Decode("YmFy").value(), "bar");
  EXPECT_FALSE(Base64Decode("Zm9").ok());
  EXPECT_EQ(PrefixEnd("a/"), "a0");
}

// TLS and credentials come from the URL's parameters; the password only from a file.
// ---- etcd's failure cases (its own cluster: these kill members) ---------------------------

class EtcdFailures : public ::testing::Test {
 protected:
  void SetUp() override {
    auto e = ops::LocalEtcd::Start(test_util::TempDir("etcd_fail"), 3, 60);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    etcd_ = std::move(e).value();
    auto s = OpenStore(etcd_->Url("fail"));
    ASSERT_TRUE(s.ok());
    store_ = std::move(s).value();
  }
  std::unique_ptr<ops::LocalEtcd> etcd_;
  std::unique_ptr<Store> store_;
};

// kill -9 of one member, the leader first, then a follower: every call goes on (failover to
// another endpoint); the killed member comes back with its data.
TEST_F(EtcdFailures, KillingOneMemberIncludingTheLeaderFailsNoCall) {
  int failed = 0, ok = 0;
  std::atomic<bool> stop{false};
  std::thread load([&] {
    for (int i = 0; !stop; ++i) {
      const bool put = store_->Put("load/" + std::to_string(i % 50), std::to_string(i)).ok();
      const bool get = store_->GetPrefix("load/").ok();
      (put && get) ? ++ok : ++failed;
    }
  });
  struct Join {
    std::atomic<bool>& stop;
    std::thread& t;
    ~Join() {
      stop = true;
      if (t.joinable()) t.join();
    }
  } join{stop, load};
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  const int leader = etcd_->Leader();
  ASSERT_GE(leader, 0);
  ASSERT_TRUE(etcd_->Signal(leader, SIGKILL).ok());
  std::this_thread::sleep_for(std::chrono::seconds(3));
  const int follower = (leader + 1) % 3;
  ASSERT_TRUE(etcd_->Restart(leader).ok());
  ASSERT_TRUE(etcd_->Signal(follower, SIGKILL).ok());
  std::this_thread::sleep_for(std::chrono::seconds(2));
  ASSERT_TRUE(etcd_->Restart(follower).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  stop = true;
  load.join();
  std::printf("[meta etcd] leader (member %d) then a follower killed: %d calls ok, %d failed\n",
              leader, ok, failed);
  EXPECT_EQ(failed, 0);
  EXPECT_GT(ok, 10);
}

// Every member stopped: calls fail with Unavailable after the retry budget (no hang, no crash),
// a watch waits; once etcd is back the same store object works and the watch delivers what
// changed, without reopening anything.
TEST_F(EtcdFailures, AllMembersAwayIsUnavailableAndRecoveryNeedsNoRestart) {
  const int64_t start = store_->GetPrefix("")->revision;
  Events ev;
  auto watch = store_->WatchPrefix("x/", start, ev.Callback());
  ASSERT_TRUE(watch.ok());
  ASSERT_TRUE(store_->Put("x/before", "1").ok());
  ASSERT_TRUE(ev.WaitFor(1));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd_->Signal(i, SIGSTOP).ok());
  const auto t0 = Clock::now();
  auto away = store_->Put("x/during", "2");
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  EXPECT_EQ(away.status().code(), Status::Code::kUnavailable) << away.status().ToString();
  EXPECT_NE(away.status().message().find("unreachable"), std::string::npos);
  std::printf("[meta etcd] all members stopped: Unavailable after %.1f s (retry budget 5 s): %s\n",
              s, away.status().message().c_str());
  EXPECT_LT(s, 15.0);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(etcd_->Signal(i, SIGCONT).ok());
  const auto t1 = Clock::now();
  Result<int64_t> back = Status::Unavailable("not tried");
  while (Clock::now() - t1 < std::chrono::seconds(20)) {
    back = store_->Put("x/after", "3");
    if (back.ok()) break;
  }
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  std::printf("[meta etcd] writes again %.1f s after the members resumed\n",
              std::chrono::duration<double>(Clock::now() - t1).count());
  // The watch delivers what changed meanwhile. The write that returned Unavailable may have
  // been applied anyway: its request sat in a stopped member's socket and ran when it resumed
  // (seen here). Unavailable means "not known to be applied", never "not applied".
  const auto t2 = Clock::now();
  bool after_seen = false, during_seen = false;
  while (!after_seen && Clock::now() - t2 < std::chrono::seconds(20)) {
    ev.WaitFor(ev.got.size() + 1, 1);
    std::lock_guard<std::mutex> lock(ev.mu);
    for (const WatchEvent& e : ev.got) {
      after_seen |= e.kv.key == "x/after";
      during_seen |= e.kv.key == "x/during";
    }
  }
  EXPECT_TRUE(after_seen);
  std::printf("[meta etcd] the write that returned Unavailable was %s after the members resumed\n",
              during_seen ? "applied" : "not applied");
  std::lock_guard<std::mutex> lock(ev.mu);
  EXPECT_TRUE(ev.error.ok()) << ev.error.ToString();
}

}  // namespace
}  // namespace mrl::meta
