// mrlctl as an operator runs it: up (2 shards + coordinator), ingest from .npy files, eval (every
// plan through the coordinator, HTTP and binary API), down. Checks the figures it writes.
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
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
  for (auto& c : centres) c = g(rng);
  auto make = [&](int rows, std::vector<float>* v, std::vector<int64_t>* labels) {
    for (int i = 0; i < rows; ++i) {
      const int c = i % classes;
      labels->push_back(c);
      for (int j = 0; j < d; ++j) v->push_back(centres[c * d + j] + 0.5f * g(rng));
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
  EXPECT_EQ(run("eval --collection c --queries " + dir + "/q.npy --query-labels " + dir + "/ql.npy --db-ids " + dir +
                "/ids.npy --db-labels " + dir + "/dbl.npy --concurrency 1 4 --json " + dir + "/eval.json" + cl),
            0)
      << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(run("down" + cl), 0);
  const nlohmann::json r = nlohmann::json::parse(test_util::Slurp(dir + "/eval.json"), nullptr, false);
  ASSERT_TRUE(r.is_object()) << test_util::Slurp(dir + "/out.log");
  EXPECT_EQ(r["queries"], nq);
  ASSERT_GE(r["plans"].size(), 7u);
  EXPECT_EQ(r["plans"][0]["recall_at_10"], 1.0);      // exact against itself
  EXPECT_GT(r["plans"][0]["map_at_10"].get<double>(), 90.0);  // well-separated classes
  EXPECT_GE(r["plans"][1]["recall_at_10"].get<double>(), 0.9);
  ASSERT_EQ(r["concurrency_binary"].size(), 2u);
  EXPECT_GE(r["concurrency_binary"][0]["recall_at_10"].get<double>(), 0.9);
}

}  // namespace
}  // namespace mrl
