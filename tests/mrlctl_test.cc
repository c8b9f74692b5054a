// mrlctl as an operator runs it: up (2 shards + coordinator), ingest from .npy files, eval (every
// plan through the coordinator, HTTP and binary API), down. Checks the figures it writes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/npy.h"
#include "meta/base64.h"
#include "tests/daemon_process.h"
#include "tests/test_util.h"

namespace mrl {
namespace {

TEST(Mrlctl, UpIngestEvalDownOnClusteredData) {
  const std::string dir = test_util::TempDir("mrlctl");
  const int n = 3000, nq = 40, d = 64, classes = 8;
  std::mt19937 rng(5);
  std::normal_distribution<float> g;
  std::vector<float> centres(classes * d);
  // MRL-like: early coordinates carry more of each vector than late ones, so a 16-d prefix
  // shortlists well; noise twice the centre spread mixes classes in the top 10.
  std::vector<float> scale(d);
  for (int j = 0; j < d; ++j) scale[j] = 1.0f / std::sqrt(1.0f + j / 2.0f);
  for (auto& c : centres) c = g(rng);
  auto make = [&](int rows, std::vector<float>* v, std::vector<int64_t>* labels) {
    for (int i = 0; i < rows; ++i) {
      const int c = i % classes;
      labels->push_back(c);
      for (int j = 0; j < d; ++j) v->push_back(scale[j] * (centres[c * d + j] + 2.0f * g(rng)));
    }
  };
  std::vector<float> db, q;
  std::vector<int64_t> dbl, ql, ids;
  make(n, &db, &dbl);
  make(nq, &q, &ql);
  for (int i = 0; i < n; ++i) ids.push_back(1000 + i);
  ASSERT_TRUE(WriteNpy(dir + "/db.npy", NpyDtype::kFloat32, {n, d}, db.data()).ok());
  ASSERT_TRUE(WriteNpy(dir + "/ids.npy", NpyDtype::kInt64, {n}, ids.data()).ok());
  ASSERT_TRUE(WriteNpy(dir + "/dbl.npy", NpyDtype::kInt64, {n}, dbl.data()).ok());
  ASSERT_TRUE(WriteNpy(dir + "/q.npy", NpyDtype::kFloat32, {nq, d}, q.data()).ok());
  ASSERT_TRUE(WriteNpy(dir + "/ql.npy", NpyDtype::kInt64, {nq}, ql.data()).ok());
  // An image per point (uint8 [n, 6, 5]), stored by --images as a PNG in the payload; and a file
  // with one image too few, which ingest must refuse before writing anything.
  std::vector<uint8_t> images(static_cast<size_t>(n) * 30);
  for (size_t p = 0; p < images.size(); ++p) images[p] = static_cast<uint8_t>(p * 7 % 251);
  ASSERT_TRUE(WriteNpy(dir + "/images.npy", NpyDtype::kUInt8, {n, 6, 5}, images.data()).ok());
  ASSERT_TRUE(WriteNpy(dir + "/short_images.npy", NpyDtype::kUInt8, {n - 1, 6, 5}, images.data()).ok());
  // The expected figures, computed here independently of mrlctl: the exact fp32 cosine top-10 of
  // each query by a plain loop, and the paper's AP@10 of those neighbours' labels.
  auto norm = [&](const float* v) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += double(v[j]) * v[j];
    return std::sqrt(s);
  };
  double expected_map = 0, hits_normalised_map = 0;
  std::vector<int64_t> truth_ids;  // [nq, 10] db ids, best first: mrlctl eval --truth's input
  for (int i = 0; i < nq; ++i) {
    std::vector<std::pair<double, int>> sc;
    const double qn = norm(&q[i * d]);
    for (int r = 0; r < n; ++r) {
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += double(q[i * d + j]) * db[r * d + j];
      sc.push_back({-dot / (qn * norm(&db[r * d])), r});
    }
    std::partial_sort(sc.begin(), sc.begin() + 10, sc.end());
    for (int p = 0; p < 10; ++p) truth_ids.push_back(ids[sc[p].second]);
    double hits = 0, ap = 0;
    for (int p = 0; p < 10; ++p) {
      if (dbl[sc[p].second] == ql[i]) ap += ++hits / (p + 1);
    }
    expected_map += ap / 10;
    hits_normalised_map += hits > 0 ? ap / hits : 0;
  }
  expected_map = 100 * expected_map / nq;
  hits_normalised_map = 100 * hits_normalised_map / nq;
  ASSERT_TRUE(WriteNpy(dir + "/truth.npy", NpyDtype::kInt64, {nq, 10}, truth_ids.data()).ok());
  truth_ids[3 * 10 + 4] = 99;  // an id the database does not hold
  ASSERT_TRUE(WriteNpy(dir + "/bad_truth.npy", NpyDtype::kInt64, {nq, 10}, truth_ids.data()).ok());
  const std::string ctl = std::string(MRL_MRLCTL_BIN) + " ";
  const std::string cl = " --dir " + dir + "/cluster";
  auto run = [&](const std::string& args) {
    const std::string cmd = ctl + args + " >> " + dir + "/out.log 2>&1";
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(run("up --shards 2" + cl), 0) << test_util::Slurp(dir + "/out.log");
  EXPECT_NE(run("ingest --collection c --create --index-dims 16 --storage fp16 --embeddings " + dir +
                "/db.npy --ids " + dir + "/ids.npy --labels " + dir + "/dbl.npy --images " + dir +
                "/short_images.npy" + cl),
            0);
  EXPECT_NE(test_util::Slurp(dir + "/out.log").find("has 2999 images for 3000 embeddings"), std::string::npos)
      << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(run("ingest --collection c --create --index-dims 16 --storage fp16 --embeddings " + dir +
                "/db.npy --ids " + dir + "/ids.npy --labels " + dir + "/dbl.npy --images " + dir + "/images.npy" + cl),
            0)
      << test_util::Slurp(dir + "/out.log");
  {  // Point 17's payload: its label and its image as a 5 x 6 gray PNG (signature, IHDR).
    const auto cluster = nlohmann::json::parse(test_util::Slurp(dir + "/cluster/cluster.json"));
    const std::string cmd = "curl -s -X POST -d '{\"ids\":[1017]}' " + cluster["url"].get<std::string>() +
                            "/v1/collections/c/points/get > " + dir + "/got.json";
    ASSERT_EQ(std::system(cmd.c_str()), 0);
    const auto got = nlohmann::json::parse(test_util::Slurp(dir + "/got.json"), nullptr, false);
    ASSERT_TRUE(got.is_object()) << test_util::Slurp(dir + "/got.json");
    const auto& payload = got["points"][0]["payload"];
    EXPECT_EQ(payload["label"], dbl[17]);
    auto png = meta::Base64Decode(payload["image_png"].get<std::string>());
    ASSERT_TRUE(png.ok());
    ASSERT_GT(png->size(), 24u);
    EXPECT_EQ(png->substr(0, 8), std::string("\x89PNG\r\n\x1a\n", 8));
    EXPECT_EQ(png->substr(12, 4), "IHDR");
    EXPECT_EQ(png->substr(16, 8), std::string("\0\0\0\x05\0\0\0\x06", 8));  // width 5, height 6
  }
  EXPECT_EQ(run("eval --collection c --queries " + dir + "/q.npy --query-labels " + dir + "/ql.npy --db-embeddings " +
                dir + "/db.npy --db-ids " + dir + "/ids.npy --db-labels " + dir +
                "/dbl.npy --concurrency 1 4 --warmup 5 --json " + dir + "/eval.json" + cl),
            0)
      << test_util::Slurp(dir + "/out.log");
  // Without the original vectors there is no ground truth: a clear error, not a silent figure.
  EXPECT_NE(run("eval --collection c --queries " + dir + "/q.npy --query-labels " + dir + "/ql.npy --db-ids " + dir +
                "/ids.npy --db-labels " + dir + "/dbl.npy" + cl),
            0);
  EXPECT_NE(test_util::Slurp(dir + "/out.log").find("needs --db-embeddings"), std::string::npos);
  // A precomputed truth (--truth) instead of the scan, and the exact plan on the first 10 queries
  // only (--exact-limit, for 1M-point collections).
  EXPECT_EQ(run("eval --collection c --queries " + dir + "/q.npy --query-labels " + dir + "/ql.npy --truth " +
                dir + "/truth.npy --db-ids " + dir + "/ids.npy --db-labels " + dir +
                "/dbl.npy --plans exact paper budget_exact --exact-limit 10 --concurrency 1 --warmup 5 --json " + dir +
                "/eval_truth.json" + cl),
            0)
      << test_util::Slurp(dir + "/out.log");
  EXPECT_NE(run("eval --collection c --queries " + dir + "/q.npy --query-labels " + dir + "/ql.npy --truth " +
                dir + "/bad_truth.npy --db-ids " + dir + "/ids.npy --db-labels " + dir + "/dbl.npy" + cl),
            0);
  EXPECT_NE(test_util::Slurp(dir + "/out.log").find("names id 99, which is not in --db-ids"), std::string::npos);
  EXPECT_EQ(run("down" + cl), 0);
  const nlohmann::json r = nlohmann::json::parse(test_util::Slurp(dir + "/eval.json"), nullptr, false);
  ASSERT_TRUE(r.is_object()) << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(r["queries"], nq);
  ASSERT_TRUE(r["provenance"].is_object());
  EXPECT_FALSE(r["provenance"]["commit"].get<std::string>().empty());
  EXPECT_NE(r["provenance"]["command"].get<std::string>().find("eval --collection c"), std::string::npos);
  EXPECT_GE(r["provenance"]["machine"]["cores"].get<int>(), 1);

  std::printf("independent mAP@10: paper's %.2f, hits-normalised %.2f; mrlctl exact %.2f, paper plan %.2f\n",
              expected_map, hits_normalised_map, r["plans"][0]["map_at_10"].get<double>(),
              r["plans"][1]["map_at_10"].get<double>());

  // The truth's own mAP@10 (the figure the plans are held to) is the independent one.
  EXPECT_NEAR(r["truth"]["map_at_10"].get<double>(), expected_map, 1e-6);
  EXPECT_DOUBLE_EQ(r["truth"]["recall_at_10"].get<double>(), 1.0);
  const nlohmann::json rt = nlohmann::json::parse(test_util::Slurp(dir + "/eval_truth.json"), nullptr, false);
  ASSERT_TRUE(rt.is_object()) << test_util::Slurp(dir + "/out.log");
  EXPECT_NEAR(rt["truth"]["map_at_10"].get<double>(), expected_map, 1e-6);
  ASSERT_EQ(rt["plans"].size(), 3u);
  EXPECT_EQ(rt["plans"][0]["queries"].get<int>(), 10);
  EXPECT_EQ(rt["plans"][1]["queries"].get<int>(), nq);
  // The exact budget is held to --exact-limit too, and checked against the exact plan's answers
  // on those 10 queries (not on 50 it never ran).
  EXPECT_EQ(rt["plans"][2]["queries"].get<int>(), 10);
  if (rt["plans"][2].contains("same_as")) {
    EXPECT_EQ(rt["plans"][2]["checked_identical_queries"].get<int>(), 10);
  }
  EXPECT_GE(rt["plans"][0]["recall_at_10"].get<double>(), 0.98);
  // The same truth, read or scanned: the paper plan's recall is the same figure.
  EXPECT_DOUBLE_EQ(rt["plans"][1]["recall_at_10"].get<double>(), r["plans"][1]["recall_at_10"].get<double>());
  ASSERT_GE(r["plans"].size(), 7u);
  const auto& plans = r["plans"];
  // The exact scan over the stored (fp16) vectors against the fp32 truth: near 1, and the
  // budget named "exact" is the exact plan (same answers).
  EXPECT_GE(plans[0]["recall_at_10"].get<double>(), 0.98);
  EXPECT_NEAR(plans[0]["map_at_10"].get<double>(), expected_map, 1.0);
  const auto& exact_budget = plans[6];
  EXPECT_NE(exact_budget["plan"].get<std::string>().find("exact"), std::string::npos);
  EXPECT_DOUBLE_EQ(exact_budget["recall_at_10"].get<double>(), plans[0]["recall_at_10"].get<double>());
  // Not scanned twice: checked against the exact scan's answers, then that row's figures.
  if (exact_budget.contains("same_as")) {
    EXPECT_EQ(exact_budget["same_as"], plans[0]["plan"]);
    EXPECT_EQ(exact_budget["checked_identical_queries"].get<int>(), std::min(nq, 50));
  }
  // This data mixes classes in the top 10 (noise 1.5 x the centre spread), so the paper's AP@10
  // (divide by k) and the hits-normalised form differ: the figure must be the paper's.
  EXPECT_GT(hits_normalised_map - expected_map, 5.0);
  EXPECT_GE(plans[1]["recall_at_10"].get<double>(), 0.9);
  EXPECT_NEAR(plans[1]["map_at_10"].get<double>(), expected_map, 3.0);
  ASSERT_EQ(r["concurrency_binary"].size(), 2u);
  EXPECT_GE(r["concurrency_binary"][0]["recall_at_10"].get<double>(), 0.9);
}

// Runs `cmd` (stderr with stdout); returns {exit status, output}.
std::pair<int, std::string> RunCapture(const std::string& cmd) {
  const test_util::Outcome o = test_util::RunCommand(cmd);
  return {o.code, o.output};
}

// Issue 22 item 5: --dir naming a directory without a cluster says so.
TEST(Mrlctl, StatusOfADirWithoutAClusterSaysSo) {
  const std::string dir = test_util::TempDir("mrlctl_nocluster");
  const auto [rc, out] = RunCapture(std::string(MRL_MRLCTL_BIN) + " status --dir " + dir);
  EXPECT_NE(rc, 0);
  EXPECT_NE(out.find("'" + dir + "' has no cluster (no " + dir + "/cluster.json)"),
            std::string::npos)
      << out;
  EXPECT_EQ(out.find("give --url"), out.find("give --url of a running coordinator")) << out;
}

// Issue 18: `mrlctl up --meta etcd` starts a local 3-member etcd cluster and a coordinator on it;
// `mrlctl status` shows the store, its members' health and the leader; `down` stops etcd too.
TEST(Mrlctl, UpWithMetaEtcdShowsTheStoreMembersAndLeaderInStatus) {
  const std::string dir = test_util::TempDir("mrlctl_etcd") + "/c";
  const std::string bin = MRL_MRLCTL_BIN;
  auto [rc, out] = RunCapture(bin + " up --dir " + dir + " --shards 2 --meta etcd");
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("etcd at etcd://127.0.0.1:"), std::string::npos) << out;
  auto [src, status] = RunCapture(bin + " status --dir " + dir);
  EXPECT_EQ(src, 0) << status;
  EXPECT_NE(status.find("metadata: etcd 127.0.0.1:"), std::string::npos) << status;
  EXPECT_NE(status.find("leader: coordinator0 at http://127.0.0.1:"), std::string::npos) << status;
  EXPECT_NE(status.find("this coordinator coordinator0 leads"), std::string::npos) << status;
  EXPECT_NE(status.find("healthy, leader"), std::string::npos) << status;
  size_t healthy = 0;  // lines "  etcd 127.0.0.1:P: healthy[, leader]"
  std::istringstream lines(status);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  etcd ", 0) == 0 && line.find(": healthy") != std::string::npos) ++healthy;
  }
  EXPECT_EQ(healthy, 3u) << status;
  // Each shard registers under its own lease (in the background: poll status a few times).
  const std::string reg0 = "shard shard0 at 127.0.0.1:", reg1 = "shard shard1 at 127.0.0.1:";
  for (int i = 0; i < 20 && (status.find(reg0) == std::string::npos ||
                             status.find(reg1) == std::string::npos);
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    status = RunCapture(bin + " status --dir " + dir).second;
  }
  EXPECT_NE(status.find(reg0), std::string::npos) << status;
  EXPECT_NE(status.find(": serving (map shard0, group 0)"), std::string::npos) << status;
  EXPECT_NE(status.find(": serving (map shard1, group 1)"), std::string::npos) << status;
  const nlohmann::json state = nlohmann::json::parse(test_util::Slurp(dir + "/cluster.json"));
  ASSERT_EQ(state["etcd_pids"].size(), 3u);
  auto [drc, down] = RunCapture(bin + " down --dir " + dir);
  EXPECT_EQ(drc, 0) << down;
  for (const nlohmann::json& p : state["etcd_pids"]) EXPECT_NE(::kill(p.get<pid_t>(), 0), 0) << "etcd still runs";
}

// Issue 22 item 6: every binary's --version names the version, the commit it was built from,
// the build type and the libraries it was compiled against.
TEST(Mrlctl, EveryBinaryPrintsItsVersionCommitBuildTypeAndLibraries) {
  const auto [git_rc, head] =
      RunCapture(std::string("git -C '") + MRL_SOURCE_DIR + "' rev-parse --short=7 HEAD");
  std::vector<std::pair<std::string, std::vector<std::string>>> binaries = {
      {MRL_SHARD_BIN, {"mrl-shard ", "RocksDB ", "Boost ", "FlatBuffers "}},
      {MRL_COORDINATOR_BIN, {"mrl-coordinator ", "Boost ", "FlatBuffers "}},
      {MRL_MRLCTL_BIN, {"mrlctl ", "Boost ", "FlatBuffers "}},
#ifdef MRL_TRAINER_BIN
      {MRL_TRAINER_BIN, {"mrl-trainer ", "LibTorch 1", "MPI"}},
      {MRL_EMBED_BIN, {"mrl-embed ", "LibTorch "}},
#endif
  };
  for (const auto& [bin, needles] : binaries) {
    const auto [rc, out] = RunCapture(bin + " --version");
    EXPECT_EQ(rc, 0) << bin << ": " << out;
    std::printf("%s", out.c_str());
    for (const std::string& n : needles) EXPECT_NE(out.find(n), std::string::npos) << n << " in " << out;
    EXPECT_NE(out.find(" build"), std::string::npos) << out;  // "..., Release build"
    EXPECT_NE(out.find("(git "), std::string::npos) << out;
    if (git_rc == 0) {  // built from this checkout: the commit is in the version
      EXPECT_NE(out.find(head.substr(0, 7)), std::string::npos) << head << " in " << out;
    }
  }
}

// A running `mrlctl up` cluster in `dir` with collection "c": `n` random 16-d points in 16
// buckets (few buckets: a rebalance is a handful of moves). Returns the mrlctl command prefix.
std::string UpWithCollection(const std::string& dir, int shards, int n) {
  std::mt19937 rng(11);
  std::normal_distribution<float> g;
  const int d = 16;
  std::vector<float> v(static_cast<size_t>(n) * d);
  for (float& x : v) x = g(rng);
  std::vector<int64_t> ids;
  for (int i = 0; i < n; ++i) ids.push_back(i + 1);
  EXPECT_TRUE(WriteNpy(dir + "/db.npy", NpyDtype::kFloat32, {n, d}, v.data()).ok());
  EXPECT_TRUE(WriteNpy(dir + "/ids.npy", NpyDtype::kInt64, {n}, ids.data()).ok());
  const std::string ctl = std::string(MRL_MRLCTL_BIN) + " ";
  auto [up_rc, up] =
      RunCapture(ctl + "up --shards " + std::to_string(shards) + " --dir " + dir + "/cluster");
  EXPECT_EQ(up_rc, 0) << up;
  const std::string data = " --embeddings " + dir + "/db.npy --ids " + dir + "/ids.npy";
  auto [in_rc, in] = RunCapture(ctl + "ingest --collection c --create --buckets 16 --index-dims 8" +
                                data + " --dir " + dir + "/cluster");
  EXPECT_EQ(in_rc, 0) << in;
  return ctl;
}

// Stops a cluster `mrlctl up` started, however the test ends.
struct DownOnExit {
  std::string command;
  ~DownOnExit() { RunCapture(command); }
};

// Live cluster changes: `add-group` of a new shard, `rebalance --dry-run` shows a plan onto it
// and starts nothing, `rebalance --wait` runs the plan to DONE, and `moves --all --json` lists
// every move DONE.
TEST(Mrlctl, AddGroupThenRebalanceDryRunStartsNothingAndWaitFinishesEveryMove) {
  const std::string dir = test_util::TempDir("mrlctl_rebalance");
  const std::string ctl = UpWithCollection(dir, 2, 4000);
  const std::string cl = " --dir " + dir + "/cluster";
  const DownOnExit down{ctl + "down" + cl};
  test_util::DaemonProcess extra("shard2", MRL_SHARD_BIN,
                                 {"--data-dir", dir + "/shard2", "--port", "0"}, dir);
  extra.Start();
  auto [arc, added] =
      RunCapture(ctl + "add-group --shard shard2=127.0.0.1:" + std::to_string(extra.port()) + cl);
  ASSERT_EQ(arc, 0) << added;
  EXPECT_NE(added.find("added group 2 (shard2=127.0.0.1:"), std::string::npos) << added;
  EXPECT_NE(added.find("shard map epoch "), std::string::npos) << added;

  // (a) The dry run: one line per planned move onto group 2 and a total; no move recorded.
  auto [drc, dry] = RunCapture(ctl + "rebalance --dry-run" + cl);
  std::printf("%s", dry.c_str());
  ASSERT_EQ(drc, 0) << dry;
  size_t planned = 0;
  std::istringstream lines(dry);
  for (std::string line; std::getline(lines, line);) {
    if (line.rfind("  c bucket ", 0) == 0) {
      ++planned;
      EXPECT_NE(line.find(" -> 2, "), std::string::npos) << line;
      EXPECT_NE(line.find(" points"), std::string::npos) << line;
    }
  }
  EXPECT_GE(planned, 3u) << dry;  // 16 buckets over 3 groups: about 5 move
  EXPECT_NE(dry.find("total: " + std::to_string(planned) + " moves, "), std::string::npos) << dry;
  EXPECT_NE(dry.find("dry run: nothing started"), std::string::npos) << dry;
  auto [mrc, none] = RunCapture(ctl + "moves --all --json" + cl);
  ASSERT_EQ(mrc, 0) << none;
  EXPECT_EQ(nlohmann::json::parse(none)["moves"].size(), 0u) << none;

  // (b) The plan for real, waited for.
  const auto t0 = std::chrono::steady_clock::now();
  auto [wrc, waited] = RunCapture(ctl + "rebalance --wait" + cl);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("%s(rebalance --wait took %.1f s)\n", waited.c_str(), s);
  ASSERT_EQ(wrc, 0) << waited;
  EXPECT_NE(waited.find("started "), std::string::npos) << waited;
  EXPECT_NE(waited.find(" moves done in "), std::string::npos) << waited;
  auto [lrc, listed] = RunCapture(ctl + "moves --all --json" + cl);
  ASSERT_EQ(lrc, 0) << listed;
  const nlohmann::json moves = nlohmann::json::parse(listed)["moves"];
  ASSERT_GE(moves.size(), 3u) << listed;
  for (const nlohmann::json& m : moves) {
    EXPECT_EQ(m["phase"], "DONE") << m.dump();
    EXPECT_EQ(m["target_group"], 2) << m.dump();
  }
  // The table: nothing active by default; with --all a row per move.
  auto [trc, table] = RunCapture(ctl + "moves" + cl);
  EXPECT_EQ(trc, 0) << table;
  EXPECT_NE(table.find("0 active moves"), std::string::npos) << table;
  auto [arc2, all] = RunCapture(ctl + "moves --all" + cl);
  std::printf("%s", all.c_str());
  EXPECT_NE(all.find(std::to_string(moves.size()) + " in all"), std::string::npos) << all;
  EXPECT_NE(all.find("->2"), std::string::npos) << all;

  // One bucket back by hand, then the group drained (the rest back) and retired.
  const std::string bucket = moves[0]["bucket"].dump();
  auto [orc, one] =
      RunCapture(ctl + "move --collection c --bucket " + bucket + " --to 0 --wait" + cl);
  std::printf("%s", one.c_str());
  EXPECT_EQ(orc, 0) << one;
  EXPECT_NE(one.find("all 1 move done in "), std::string::npos) << one;
  auto [rrc, drained] = RunCapture(ctl + "drain --group 2 --remove" + cl);
  std::printf("%s", drained.c_str());
  EXPECT_EQ(rrc, 0) << drained;
  EXPECT_NE(drained.find("total: " + std::to_string(moves.size() - 1) + " moves, "),
            std::string::npos)
      << drained;
  EXPECT_NE(drained.find("retired group 2; shard map epoch "), std::string::npos) << drained;
  auto [erc, empty] = RunCapture(ctl + "drain --group 2 --dry-run" + cl);
  EXPECT_EQ(erc, 1) << empty;
  EXPECT_NE(empty.find("group 2 is retired"), std::string::npos) << empty;
}

// Refusals are the coordinator's clear message on stderr and exit status 1.
TEST(Mrlctl, RefusedClusterChangesPrintAClearErrorAndExit1) {
  const std::string dir = test_util::TempDir("mrlctl_refusals");
  const std::string ctl = UpWithCollection(dir, 1, 200);
  const std::string cl = " --dir " + dir + "/cluster";
  const DownOnExit down{ctl + "down" + cl};
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"move --collection c --bucket 3 --to 0", "bucket 3 of 'c' already lives on group 0"},
      {"drain --group 0", "group 0 is the last group: nowhere to drain it to"},
      {"abort-move --id no-such-move", "no move 'no-such-move'"},
      {"remove-group --group 0", "group 0 is the last group of a cluster with collections"},
  };
  for (const auto& [args, message] : cases) {
    const auto [rc, out] = RunCapture(ctl + args + cl);
    std::printf("mrlctl %s -> exit %d: %s", args.c_str(), rc, out.c_str());
    EXPECT_EQ(rc, 1) << args << ": " << out;
    EXPECT_NE(out.find("mrlctl: "), std::string::npos) << out;
    EXPECT_NE(out.find(message), std::string::npos) << args << ": " << out;
  }
  auto [mrc, none] = RunCapture(ctl + "moves --all --json" + cl);
  EXPECT_EQ(mrc, 0) << none;
  EXPECT_EQ(nlohmann::json::parse(none)["moves"].size(), 0u) << none;
}

// The collection verbs and search over a 2-shard cluster: `collection create` prints the stored
// spec, `describe` splits its buckets over both groups, `search` finds a stored point first with
// the plan and stage timings, `status` shows each group's buckets and the (empty) moves, and
// `status --json` holds the raw replies; `collection drop` is the coordinator's answer.
TEST(Mrlctl, CollectionCreateDescribeSearchStatusAndDrop) {
  const std::string dir = test_util::TempDir("mrlctl_collection");
  const std::string ctl = UpWithCollection(dir, 2, 300);  // collection "c": 16-d, 16 buckets
  const std::string cl = " --dir " + dir + "/cluster";
  const DownOnExit down{ctl + "down" + cl};

  auto [crc, created] = RunCapture(ctl + "collection create --collection e --dim 32 --storage fp32 "
                                         "--index-dims 8 --buckets 8" + cl);
  std::printf("%s", created.c_str());
  ASSERT_EQ(crc, 0) << created;
  EXPECT_NE(created.find("created collection e: dim 32, fp32, cosine, 8 buckets"),
            std::string::npos) << created;
  auto [brc, bad] = RunCapture(ctl + "collection create --collection f --dim 32 --storage fp8" + cl);
  EXPECT_NE(brc, 0) << bad;

  auto [drc, described] = RunCapture(ctl + "collection describe --collection e" + cl);
  std::printf("%s", described.c_str());
  ASSERT_EQ(drc, 0) << described;
  EXPECT_NE(described.find("indexes: hnsw over 8 dims"), std::string::npos) << described;
  EXPECT_NE(described.find("group 0: 4 buckets"), std::string::npos) << described;
  EXPECT_NE(described.find("group 1: 4 buckets"), std::string::npos) << described;
  auto [nrc, unknown] = RunCapture(ctl + "collection describe --collection nope" + cl);
  EXPECT_EQ(nrc, 1) << unknown;

  // Point 1 of "c" (UpWithCollection's first row) as the query: it is its own nearest.
  std::mt19937 rng(11);  // UpWithCollection's draws: row 0 first
  std::normal_distribution<float> g;
  std::vector<float> db(16);
  for (float& x : db) x = g(rng);
  std::string vec;
  for (int j = 0; j < 16; ++j) {
    if (j > 0) vec += ",";
    vec += std::to_string(db[j]);
  }
  for (const std::string plan : {"", " --plan exact", " --plan 8:50:16", " --plan funnel:8x50,16x5"}) {
    auto [src, found] = RunCapture(ctl + "search --collection c --k 5 --vector " + vec + plan + cl);
    std::printf("%s", found.c_str());
    ASSERT_EQ(src, 0) << plan << ": " << found;
    EXPECT_NE(found.find("5 hits"), std::string::npos) << found;
    EXPECT_NE(found.find("  1  id 1  score "), std::string::npos) << plan << ": " << found;
    EXPECT_NE(found.find("coverage 1.000"), std::string::npos) << found;
  }
  auto [trc, timed] = RunCapture(ctl + "search --collection c --vector " + vec + cl);
  EXPECT_NE(timed.find("timing: rerank "), std::string::npos) << timed;
  EXPECT_NE(timed.find("plan: adaptive"), std::string::npos) << timed;
  auto [jrc, js] = RunCapture(ctl + "search --collection c --k 3 --json --vector " + vec + cl);
  ASSERT_EQ(jrc, 0) << js;
  const nlohmann::json reply = nlohmann::json::parse(js);
  EXPECT_EQ(reply["results"][0].size(), 3u) << js;
  EXPECT_EQ(reply["results"][0][0]["id"], 1) << js;
  auto [wrc, wrong] = RunCapture(ctl + "search --collection c --vector 0.1,0.2" + cl);
  EXPECT_EQ(wrc, 1) << wrong;
  auto [prc, badplan] = RunCapture(ctl + "search --collection c --plan 8:x:16 --vector " + vec + cl);
  EXPECT_EQ(prc, 1) << badplan;
  EXPECT_NE(badplan.find("'x' is not a positive integer"), std::string::npos) << badplan;

  auto [strc, status] = RunCapture(ctl + "status" + cl);
  std::printf("%s", status.c_str());
  ASSERT_EQ(strc, 0) << status;
  EXPECT_NE(status.find("  group 0: shard0; c: 8 of 16 buckets; e: 4 of 8 buckets"),
            std::string::npos) << status;
  EXPECT_NE(status.find("  group 1: shard1; c: 8 of 16 buckets; e: 4 of 8 buckets"),
            std::string::npos) << status;
  EXPECT_NE(status.find("moves: 0 active moves"), std::string::npos) << status;
  // Each shard's figures: vectors held, bytes on disk, memory, request rate.
  for (const char* figure : {" vectors, ", " MiB on disk, RAM ", " requests/s (mean over "}) {
    EXPECT_NE(status.find(figure), std::string::npos) << figure << " missing in:\n" << status;
  }
  auto [sjrc, sj] = RunCapture(ctl + "status --json" + cl);
  ASSERT_EQ(sjrc, 0) << sj;
  const nlohmann::json st = nlohmann::json::parse(sj);
  EXPECT_EQ(st["cluster"]["groups"].size(), 2u) << sj;
  EXPECT_EQ(st["collections"]["collections"].size(), 2u) << sj;
  EXPECT_TRUE(st["meta"].is_object()) << sj;
  EXPECT_TRUE(st["moves"]["moves"].is_array()) << sj;

  // Dropping a collection: gone from the coordinator (describe and search answer 404) and from
  // every shard; a second drop is a 404, not a success.
  auto [xrc, dropped] = RunCapture(ctl + "collection drop --collection e" + cl);
  std::printf("%s", dropped.c_str());
  EXPECT_EQ(xrc, 0) << dropped;
  EXPECT_NE(dropped.find("dropped collection e"), std::string::npos) << dropped;
  auto [arc, after] = RunCapture(ctl + "collection describe --collection e" + cl);
  EXPECT_EQ(arc, 1) << after;
  EXPECT_NE(after.find("404"), std::string::npos) << after;
  auto [src, searched] = RunCapture(ctl + "search --collection e --vector 1,2,3,4" + cl);
  EXPECT_EQ(src, 1) << searched;
  auto [again, twice] = RunCapture(ctl + "collection drop --collection e" + cl);
  EXPECT_EQ(again, 1) << twice;
  EXPECT_NE(twice.find("unknown collection 'e'"), std::string::npos) << twice;
}

}  // namespace
}  // namespace mrl
