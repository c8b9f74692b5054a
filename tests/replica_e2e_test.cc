// Replicas of a running group (issue 12: replicate, replace-shard), with real processes under
// query and write load: a group of one gains a replica (`mrlctl replicate --add --wait`), which
// is filled from the serving one and then serves; the original is killed (-9) and replaced
// (`mrlctl replace-shard --wait`) by a new shard filled from the survivor. Then: no query failed
// or came back partial, the exact answers over the data nobody wrote are as before, every
// acknowledged write reads back at its latest version and every acknowledged delete is absent,
// and the group's replicas hold the same versions of every bucket (BucketChecksum). Before any
// of it, each refusal (below the replication factor, an unknown shard, the only serving replica,
// the last replica) is a non-zero exit with the coordinator's reason and no change of the map.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <map>
#include <string>
#include <vector>

#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"
#include "tests/live_load.h"
#include "tests/test_util.h"

namespace mrl {
namespace {

// mrlctl with a bound: a wait that cannot end (a fill whose target died) fails the test in five
// minutes with mrlctl's output, instead of hanging until ctest's timeout.
const std::string kMrlctl = std::string("timeout 300 ") + MRL_MRLCTL_BIN + " ";

using namespace e2e;  // NOLINT: the fixture's helpers

test_util::Outcome Mrlctl(Cluster& c, const std::string& verb, const std::string& args) {
  const auto t = std::chrono::steady_clock::now();
  const test_util::Outcome run = test_util::RunCommand(
      kMrlctl + verb + " --url " + c.Url("") + " --token " + Cluster::kAdmin + " " + args);
  const std::string tail =
      run.output.size() > 600 ? "..." + run.output.substr(run.output.size() - 600) : run.output;
  std::printf("mrlctl %s %s: exit %d in %.1f s\n%s\n", verb.c_str(), args.c_str(), run.code,
              std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count(),
              tail.c_str());
  return run;
}

json Map(Cluster& c) {
  HttpResult r = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.Json();
}

// Count and checksum of (id, version) of `bucket` on the shard at `port`.
std::pair<uint64_t, uint64_t> Figures(uint16_t port, uint32_t epoch, uint32_t bucket) {
  rpc::ClientOptions o;
  o.port = port;
  rpc::RpcClient client(o);
  client.set_epoch(epoch);
  wire::BucketChecksumRequestT req;
  req.collection = "emb";
  req.bucket = bucket;
  auto a = client.Call(req, 10000);
  EXPECT_TRUE(a.ok()) << a.status().ToString();
  if (!a.ok()) return {0, 0};
  return {a->count + a->tombstone_count, a->checksum + a->tombstone_checksum};
}

TEST(ReplicaE2E, ReplicateThenReplaceAKilledShardUnderLoadFillsIdenticalReplicasAndLosesNothing) {
  std::setvbuf(stdout, nullptr, _IONBF, 0);
  // Two groups of one shard; a write needs one acknowledgement per group (so a dead replica of
  // a group of two does not fail writes), and every replica being filled.
  Cluster c("replica", 2, 1, {}, {"--write-quorum", "1", "--move-copy-batch", "2000"});
  const int n = 6000;
  const std::vector<float> data = MakeData(n, 21);
  c.CreateAndLoad(data, 16, n);
  const std::vector<float> queries = MakeData(10, 22);
  auto exact_answers = [&] { return ExactAnswers(c, queries); };

  const auto before = exact_answers();

  // Refusals: each exits non-zero with the coordinator's reason and leaves the map alone.
  const int s2 = c.AddShard();
  const std::string s2_arg = "s2=" + c.shard(s2).address();
  const json map0 = Map(c);
  test_util::Outcome run = Mrlctl(c, "remove-shard", "--shard s0");
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.output.find("below its replication factor 1"), std::string::npos) << run.output;
  run = Mrlctl(c, "replace-shard", "--shard nope --with " + s2_arg);
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.output.find("unknown shard 'nope'"), std::string::npos) << run.output;
  run = Mrlctl(c, "replace-shard", "--shard s0 --with " + s2_arg);
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.output.find("only serving replica"), std::string::npos) << run.output;
  run = Mrlctl(c, "replicate", "--group 0 --remove s0");
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.output.find("last serving replica"), std::string::npos) << run.output;
  run = Mrlctl(c, "replicate", "--group 0 --add s1=127.0.0.1:1");
  EXPECT_NE(run.code, 0);
  EXPECT_NE(run.output.find("already in the map"), std::string::npos) << run.output;
  EXPECT_EQ(Map(c), map0) << "a refusal changed the shard map";

  LiveLoad load(c, queries);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // Group 0 gains s2: filled from s0 while writes go on, then it serves.
  run = Mrlctl(c, "replicate", "--group 0 --add " + s2_arg + " --wait");
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("is filled and serves"), std::string::npos) << run.output;
  json map = Map(c);
  EXPECT_EQ(map["groups"][0], json({"s0", "s2"})) << map.dump();
  EXPECT_FALSE(map.contains("filling")) << map.dump();

  // s0 dies; queries go to s2. Its successor s3 is filled from s2.
  std::this_thread::sleep_for(std::chrono::seconds(1));
  ASSERT_EQ(c.shard(0).Kill(SIGKILL), 128 + SIGKILL);
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const int s3 = c.AddShard();
  run = Mrlctl(c, "replace-shard", "--shard s0 --with s3=" + c.shard(s3).address() + " --wait");
  EXPECT_EQ(run.code, 0) << run.output;
  EXPECT_NE(run.output.find("is filled and serves"), std::string::npos) << run.output;
  map = Map(c);
  EXPECT_EQ(map["groups"][0], json({"s2", "s3"})) << map.dump();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  // No query failed or came back partial, no write failed; every acknowledged write reads back
  // as its latest version and every acknowledged delete is absent; the data nobody wrote
  // answers exactly as before.
  load.StopAndCheck(c);
  EXPECT_EQ(exact_answers(), before);

  // Group 0's replicas hold the same versions of each of its buckets (the base data and the
  // writer's, deletes as tombstones).
  const uint32_t epoch = map["epoch"].get<uint32_t>();
  const std::vector<uint32_t> owner =
      map["collections"]["emb"]["group_of_bucket"].get<std::vector<uint32_t>>();
  size_t compared = 0;
  uint64_t entries = 0;
  for (uint32_t b = 0; b < owner.size(); ++b) {
    if (owner[b] != 0) continue;
    const auto a = Figures(c.shard(s2).port(), epoch, b);
    const auto d = Figures(c.shard(s3).port(), epoch, b);
    EXPECT_EQ(a, d) << "bucket " << b << ": s2 holds " << a.first << " entries, s3 " << d.first;
    ++compared;
    entries += a.first;
  }
  std::printf("group 0: %zu buckets, %llu entries, identical on s2 and s3\n", compared,
              static_cast<unsigned long long>(entries));
  EXPECT_GT(compared, 0u);
}

}  // namespace
}  // namespace mrl
