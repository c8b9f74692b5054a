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
  const std::string ctl = std::string(MRL_MRLCTL_BIN) + " ";
  const std::string cl = " --dir " + dir + "/cluster";
  auto run = [&](const std::string& args) {
    const std::string cmd = ctl + args + " >> " + dir + "/out.log 2>&1";
    return std::system(cmd.c_str());
  };
  ASSERT_EQ(run("up --shards 2" + cl), 0) << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(run("ingest --collection c --create --index-dims 16 --storage fp16 --embeddings " + dir +
                "/db.npy --ids " + dir + "/ids.npy --labels " + dir + "/dbl.npy" + cl),
            0)
      << test_util::Slurp(dir + "/out.log");
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
  EXPECT_EQ(run("down" + cl), 0);
  const nlohmann::json r = nlohmann::json::parse(test_util::Slurp(dir + "/eval.json"), nullptr, false);
  ASSERT_TRUE(r.is_object()) << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(r["queries"], nq);
  ASSERT_TRUE(r["provenance"].is_object());
  EXPECT_FALSE(r["provenance"]["commit"].get<std::string>().empty());
  EXPECT_NE(r["provenance"]["command"].get<std::string>().find("eval --collection c"), std::string::npos);
  EXPECT_GE(r["provenance"]["machine"]["cores"].get<int>(), 1);

  // The expected figures, computed here independently of mrlctl: the exact fp32 cosine top-10 of
  // each query by a plain loop, and the paper's AP@10 of those neighbours' labels.
  auto norm = [&](const float* v) {
    double s = 0;
    for (int j = 0; j < d; ++j) s += double(v[j]) * v[j];
    return std::sqrt(s);
  };
  double expected_map = 0, hits_normalised_map = 0;
  for (int i = 0; i < nq; ++i) {
    std::vector<std::pair<double, int>> sc;
    const double qn = norm(&q[i * d]);
    for (int r = 0; r < n; ++r) {
      double dot = 0;
      for (int j = 0; j < d; ++j) dot += double(q[i * d + j]) * db[r * d + j];
      sc.push_back({-dot / (qn * norm(&db[r * d])), r});
    }
    std::partial_sort(sc.begin(), sc.begin() + 10, sc.end());
    double hits = 0, ap = 0;
    for (int p = 0; p < 10; ++p) {
      if (dbl[sc[p].second] == ql[i]) ap += ++hits / (p + 1);
    }
    expected_map += ap / 10;
    hits_normalised_map += hits > 0 ? ap / hits : 0;
  }
  expected_map = 100 * expected_map / nq;
  hits_normalised_map = 100 * hits_normalised_map / nq;
  std::printf("independent mAP@10: paper's %.2f, hits-normalised %.2f; mrlctl exact %.2f, paper plan %.2f\n",
              expected_map, hits_normalised_map, r["plans"][0]["map_at_10"].get<double>(),
              r["plans"][1]["map_at_10"].get<double>());

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
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  std::string out;
  char buf[4096];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, got);
  const int st = pclose(p);
  return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, out};
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

}  // namespace
}  // namespace mrl
