// The coordinator with real mrl-shard processes on loopback, driven over HTTP by curl (a real
// client): exact search equals brute force, calibrated budgets reach their recall, a dead shard
// gives a partial answer with the right coverage within the deadline, replication 2 survives a
// dead shard, and bad requests get 4xx while the server keeps serving.
#include <gtest/gtest.h>

#include <cstring>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>

#include "common/atomic_file.h"
#include "common/retrieval_metrics.h"
#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"
#include "tests/daemon_process.h"
#include "tests/test_util.h"

namespace mrl {
namespace {

using json = nlohmann::json;
using namespace e2e;  // NOLINT: the fixture's helpers
using test_util::DaemonProcess;
using test_util::TempDir;

TEST(CoordinatorE2E, ExactAdaptiveBudgetsPartialAnswersAndBadInput) {
  Cluster c("e2e3", 3, 1);
  const std::vector<float> data = MakeData(kPoints, 1);
  c.CreateAndLoad(data);
  const std::vector<float> queries = MakeData(40, 2);

  // Exact through the coordinator == brute force over all points (one shard's view of all).
  for (int q = 0; q < 20; ++q) {
    const float* qv = &queries[static_cast<size_t>(q) * kDim];
    HttpResult r = Curl("POST", c.Url("/v1/collections/emb/search"),
                        json{{"vector", VectorJson(qv)}, {"k", 10}, {"exact", true}}.dump(), Cluster::kRead);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(Ids(r.Json()["results"][0]), BruteForceCosine(data, qv, 10)) << "query " << q;
    EXPECT_EQ(r.Json()["coverage"].get<double>(), 1.0);
  }

  // Adaptive (the paper's Ds=16, K=200, Dr=d), one trip, and every calibrated budget, each held
  // to its own target on queries the calibration never saw: fast >= 0.90, balanced >= 0.99, and
  // exact is the exact plan (brute force's answer, id for id).
  HttpResult cal = Curl("POST", c.Url("/v1/collections/emb/calibrate"), json{{"sample", 100}, {"k", 10}}.dump(), Cluster::kAdmin);
  ASSERT_EQ(cal.status, 200) << cal.body;
  std::printf("calibrated budgets: %s\n", cal.Json()["budgets"].dump().c_str());
  EXPECT_NE(cal.Json()["budgets"]["exact"].get<std::string>().find("exact"), std::string::npos) << cal.body;
  const std::vector<std::pair<std::string, double>> modes = {
      {"adaptive", 0.95}, {"one_trip", 0.95}, {"fast", 0.90}, {"balanced", 0.99}, {"exact", 1.0},
      {"default", 0.99}};  // no plan named: the calibrated balanced budget
  for (const auto& [mode, target] : modes) {
    double recall = 0;
    int identical = 0;
    for (int q = 0; q < 40; ++q) {
      const float* qv = &queries[static_cast<size_t>(q) * kDim];
      json req = {{"vector", VectorJson(qv)}, {"k", 10}};
      if (mode == "adaptive") req["plan"] = {{"shortlist_dims", 16}, {"shortlist_k", 200}, {"rerank_dims", kDim}};
      if (mode == "one_trip") req["one_trip"] = true;
      if (mode == "fast" || mode == "balanced" || mode == "exact") req["budget"] = mode;
      HttpResult r = Curl("POST", c.Url("/v1/collections/emb/search"), req.dump(), Cluster::kRead);
      ASSERT_EQ(r.status, 200) << r.body;
      if (mode == "default") {
        EXPECT_EQ(r.Json()["plan"].get<std::string>().rfind("balanced", 0), 0u) << r.body;
      }
      const auto got = Ids(r.Json()["results"][0]);
      const auto truth = BruteForceCosine(data, qv, 10);
      identical += got == truth;
      recall += RecallAtK(got, truth, 10);
    }
    std::printf("%-9s recall@10 %.4f on 40 held-out queries (target %.2f)\n", mode.c_str(), recall / 40, target);
    EXPECT_GE(recall / 40, target) << mode;
    if (mode == "exact") EXPECT_EQ(identical, 40);
  }

  // Points: get with payload, delete, never returned again.
  HttpResult g = Curl("POST", c.Url("/v1/collections/emb/points/get"), json{{"ids", {3, 10, 999999}}}.dump(), Cluster::kRead);
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_TRUE(g.Json()["points"][0]["found"].get<bool>());
  EXPECT_EQ(g.Json()["points"][1]["payload"]["row"], 1);
  EXPECT_FALSE(g.Json()["points"][2]["found"].get<bool>());
  const float* q0 = &queries[0];
  const uint64_t top = BruteForceCosine(data, q0, 1)[0];
  ASSERT_EQ(Curl("POST", c.Url("/v1/collections/emb/points/delete"), json{{"ids", {top}}}.dump(), Cluster::kAdmin).status, 200);
  HttpResult after = Curl("POST", c.Url("/v1/collections/emb/search"), json{{"vector", VectorJson(q0)}, {"k", 10}, {"exact", true}}.dump(), Cluster::kRead);
  ASSERT_EQ(after.status, 200) << after.body;
  const auto after_ids = Ids(after.Json()["results"][0]);
  EXPECT_EQ(after_ids.size(), 10u);
  for (uint64_t id : after_ids) EXPECT_NE(id, top);
  // The rest of the answer is brute force's top 11 without the deleted point.
  std::vector<uint64_t> expect = BruteForceCosine(data, q0, 11);
  expect.erase(expect.begin());
  EXPECT_EQ(after_ids, expect);

  // Bad input: 4xx with a message; the server keeps serving.
  const std::string search = c.Url("/v1/collections/emb/search");
  struct Bad { std::string url, body, token; int status; std::string needle; };
  const std::vector<Bad> bad = {
      {search, "{\"vector\": [1, 2", Cluster::kRead, 400, "malformed JSON"},
      {search, json{{"vector", {1.0, 2.0}}, {"k", 10}}.dump(), Cluster::kRead, 400, "dims"},
      {search, json{{"vector", VectorJson(q0)}, {"k", 0}}.dump(), Cluster::kRead, 400, "'k'"},
      {search, json{{"vector", VectorJson(q0)}, {"k", 100000000}}.dump(), Cluster::kRead, 400, "'k'"},
      {c.Url("/v1/collections/nope/search"), json{{"vector", VectorJson(q0)}, {"k", 10}}.dump(), Cluster::kRead, 404, "unknown collection"},
      {search, json{{"vector", VectorJson(q0)}, {"k", 10}}.dump(), "", 401, "missing token"},
      {search, json{{"vector", VectorJson(q0)}, {"k", 10}}.dump(), "wrong", 401, "wrong token"},
      {c.Url("/v1/collections/emb/points"), json{{"points", json::array()}}.dump(), Cluster::kRead, 403, "read-only"},
  };
  for (const Bad& b : bad) {
    HttpResult r = Curl("POST", b.url, b.body, b.token);
    EXPECT_EQ(r.status, b.status) << b.body.substr(0, 80) << " -> " << r.body;
    EXPECT_NE(r.body.find(b.needle), std::string::npos) << r.body;
  }
  EXPECT_EQ(Curl("GET", c.Url("/healthz")).status, 200);
  EXPECT_NE(Curl("GET", c.Url("/metrics")).body.find("mrl_coordinator_stage_latency_seconds_bucket"), std::string::npos);

  // A dead shard with no replica: partial answers covering the other 2/3 of the buckets,
  // within the deadline.
  c.shard(2).Kill(SIGKILL);
  const auto t0 = std::chrono::steady_clock::now();
  HttpResult part = Curl("POST", search, json{{"vector", VectorJson(q0)}, {"k", 10}, {"deadline_ms", 1500}}.dump(), Cluster::kRead);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(part.status, 200) << part.body;
  EXPECT_TRUE(part.Json()["partial"].get<bool>());
  EXPECT_NEAR(part.Json()["coverage"].get<double>(), 2.0 / 3.0, 0.01);
  EXPECT_EQ(part.Json()["results"][0].size(), 10u);
  EXPECT_LT(secs, 3.0);
}

// Issue 22 item 1: a plain ANN collection (its one index at full d) answers a default search
// with one stage, and on a small set that stage's answer is brute force's top-k.
TEST(CoordinatorE2E, AFullDimIndexAnswersADefaultSearchInOneStage) {
  Cluster c("e2e_plain", 2, 1);
  constexpr int kSmall = 600;
  const std::vector<float> data = MakeData(kSmall, 11);
  c.CreateAndLoad(data, kDim, kSmall);
  const std::vector<float> queries = MakeData(20, 12);
  for (int q = 0; q < 20; ++q) {
    const float* qv = &queries[static_cast<size_t>(q) * kDim];
    HttpResult r = Curl("POST", c.Url("/v1/collections/emb/search"),
                        json{{"vector", VectorJson(qv)}, {"k", 10}}.dump(), Cluster::kRead);
    ASSERT_EQ(r.status, 200) << r.body;
    const json j = r.Json();
    EXPECT_NE(j["plan"].get<std::string>().find("one-stage"), std::string::npos) << r.body;
    EXPECT_EQ(Ids(j["results"][0]), BruteForceCosine(data, qv, 10, kSmall)) << "query " << q;
  }
}

TEST(CoordinatorE2E, ReplicationTwoGivesFullAnswersWithAShardDead) {
  Cluster c("e2e_rep", 4, 2);
  const std::vector<float> data = MakeData(kPoints, 3);
  c.CreateAndLoad(data);
  const std::vector<float> queries = MakeData(10, 4);
  c.shard(1).Kill(SIGKILL);
  for (int q = 0; q < 10; ++q) {
    const float* qv = &queries[static_cast<size_t>(q) * kDim];
    HttpResult r = Curl("POST", c.Url("/v1/collections/emb/search"),
                        json{{"vector", VectorJson(qv)}, {"k", 10}, {"exact", true}}.dump(), Cluster::kRead);
    ASSERT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.Json()["coverage"].get<double>(), 1.0);
    EXPECT_EQ(Ids(r.Json()["results"][0]), BruteForceCosine(data, qv, 10)) << "query " << q;
  }
  // Writes go on: the dead member is taken out of its group's in-sync set (issue 20 item 4)
  // before the write is acknowledged without it, and the map says so.
  json pts = json::array();
  for (int i = 0; i < 20; ++i) pts.push_back({{"id", 100000 + i}, {"vector", VectorJson(&data[0])}});  // both groups
  HttpResult w = Curl("PUT", c.Url("/v1/collections/emb/points"), json{{"points", pts}}.dump(), Cluster::kAdmin);
  EXPECT_EQ(w.status, 200) << w.body;
  const json map = Curl("GET", c.Url("/v1/cluster"), "", Cluster::kRead).Json();
  EXPECT_EQ(map["groups"][0], json({"s0"})) << map.dump();
  EXPECT_EQ(map["out_of_sync"]["0"], json({"s1"})) << map.dump();
  EXPECT_EQ(Curl("GET", c.Url("/healthz")).status, 200);

  // With --min-in-sync 2 a group left with one in-sync member refuses writes: 503 naming it.
  Cluster strict("e2e_rep_min", 2, 2, {}, {"--min-in-sync", "2"});
  strict.CreateAndLoad(data, 16, 500);
  strict.shard(1).Kill(SIGKILL);
  for (int attempt = 0; attempt < 2; ++attempt) {
    w = Curl("PUT", strict.Url("/v1/collections/emb/points"), json{{"points", pts}}.dump(), Cluster::kAdmin);
    EXPECT_EQ(w.status, 503) << w.body;
    EXPECT_NE(w.body.find("group 0"), std::string::npos) << w.body;
    EXPECT_NE(w.body.find("--min-in-sync 2"), std::string::npos) << w.body;
    std::printf("write %d with s1 dead at --min-in-sync 2: %d %s\n", attempt, w.status, w.body.c_str());
  }
}

// A shard whose disk is above its watermark (here: a min-free mark no disk meets) refuses
// writes with 507 InsufficientStorage naming it; once the coordinator has seen that, a batch
// touching it is refused before any shard writes any of it; deletes, reads and searches go on.
TEST(CoordinatorE2E, AShardAboveItsDiskWatermarkGets507AndBatchesToItAreRefusedWhole) {
  Cluster c("e2e_disk", 2, 1, {{}, {"--disk-min-free-mb", "1099511627776"}});
  HttpResult r = Curl("PUT", c.Url("/v1/collections/emb"),
                      json{{"dim", kDim}, {"storage", "fp32"}, {"num_buckets", 256},
                           {"indexes", {{{"dims", 16}, {"kind", "hnsw"}}}}}.dump(),
                      Cluster::kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  const std::vector<float> data = MakeData(80, 5);
  auto batch = [&](int first, int n) {
    json pts = json::array();
    for (int i = first; i < first + n; ++i) {
      pts.push_back({{"id", i}, {"vector", VectorJson(&data[static_cast<size_t>(i % 80) * kDim])}});
    }
    return json{{"points", pts}}.dump();
  };
  HttpResult first = Curl("PUT", c.Url("/v1/collections/emb/points"), batch(0, 40), Cluster::kAdmin);
  ASSERT_EQ(first.status, 507) << first.body;
  EXPECT_EQ(first.Json()["code"], "InsufficientStorage");
  EXPECT_NE(first.body.find("shard 's1'"), std::string::npos) << first.body;
  EXPECT_NE(first.body.find("bytes free of"), std::string::npos) << first.body;
  // Now known: the next batch is refused before s0 writes its share of it.
  HttpResult second = Curl("PUT", c.Url("/v1/collections/emb/points"), batch(1000, 40), Cluster::kAdmin);
  ASSERT_EQ(second.status, 507) << second.body;
  EXPECT_NE(second.body.find("nothing of this batch was written"), std::string::npos) << second.body;
  json ids = json::array();
  for (int i = 1000; i < 1040; ++i) ids.push_back(i);
  HttpResult got = Curl("POST", c.Url("/v1/collections/emb/points/get"), json{{"ids", ids}}.dump(), Cluster::kRead);
  ASSERT_EQ(got.status, 200) << got.body;
  const json got_json = got.Json();  // iterate a named value, not a temporary's member
  for (const json& p : got_json["points"]) EXPECT_FALSE(p["found"].get<bool>()) << p.dump();
  // Deletes, searches and metrics go on.
  HttpResult del = Curl("POST", c.Url("/v1/collections/emb/points/delete"), json{{"ids", {0, 1, 2}}}.dump(),
                        Cluster::kAdmin);
  EXPECT_EQ(del.status, 200) << del.body;
  HttpResult s = Curl("POST", c.Url("/v1/collections/emb/search"),
                      json{{"vector", VectorJson(&data[0])}, {"k", 5}, {"exact", true}}.dump(), Cluster::kRead);
  EXPECT_EQ(s.status, 200) << s.body;
  HttpResult m = Curl("GET", c.Url("/metrics"));
  EXPECT_NE(m.body.find("mrl_coordinator_shard_refusing_writes{shard=\"s1\"} 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("mrl_coordinator_shard_refusing_writes{shard=\"s0\"} 0"), std::string::npos) << m.body;
  // Each shard's own disk and store state, asked of it at scrape time.
  EXPECT_NE(m.body.find("mrl_shard_refusing_writes{shard=\"s1\"} 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("mrl_shard_refusing_writes{shard=\"s0\"} 0"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("mrl_shard_up{shard=\"s1\"} 1"), std::string::npos) << m.body;
  EXPECT_NE(m.body.find("mrl_shard_store_failed{shard=\"s1\"} 0"), std::string::npos) << m.body;
  const size_t fb = m.body.find("mrl_shard_fs_free_bytes{shard=\"s0\"} ");
  ASSERT_NE(fb, std::string::npos) << m.body;
  EXPECT_GT(std::stoull(m.body.substr(fb + std::strlen("mrl_shard_fs_free_bytes{shard=\"s0\"} "))), 0u);
  EXPECT_EQ(m.body.find("mrl_shard_write_refusals_total{shard=\"s1\"} 0\n"), std::string::npos)
      << m.body;  // s1 refused writes
}

uint64_t EpochOf(const std::string& cluster_url);

// The binary API (FlatBuffers frames, rpc::RpcClient as the client): exact search equals brute
// force, an adaptive plan equals the same plan over HTTP, upserts are visible over HTTP with
// their payload, and bad requests get typed errors on a connection that keeps serving.
TEST(CoordinatorE2E, BinaryApiSearchesUpsertsAndAnswersBadRequestsWithTypedErrors) {
  Cluster c("e2e_bin", 2, 1);
  const std::vector<float> data = MakeData(kPoints, 7);
  c.CreateAndLoad(data);
  rpc::ClientOptions o;
  o.port = c.BinaryPort();
  rpc::RpcClient client(o);
  const std::vector<float> queries = MakeData(5, 8);
  for (int q = 0; q < 5; ++q) {
    const float* qv = &queries[static_cast<size_t>(q) * kDim];
    wire::SearchRequestT req;
    req.collection = "emb";
    req.dims = kDim;
    req.queries.assign(qv, qv + kDim);
    req.stages.emplace_back(kDim, 10);
    req.exact = true;
    auto r = client.Call(req, 10000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->results.size(), 1u);
    std::vector<uint64_t> got;
    for (const auto& h : r->results[0]->candidates) got.push_back(h.id());
    EXPECT_EQ(got, BruteForceCosine(data, qv, 10)) << "query " << q;
    EXPECT_EQ(r->coverage, 1.0);
    // The paper-shaped plan: the same answer as over HTTP.
    req.exact = false;
    req.stages = {wire::SearchStage(16, 200), wire::SearchStage(kDim, 10)};
    r = client.Call(req, 10000);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    got.clear();
    for (const auto& h : r->results[0]->candidates) got.push_back(h.id());
    HttpResult h = Curl("POST", c.Url("/v1/collections/emb/search"),
                        json{{"vector", VectorJson(qv)}, {"k", 10},
                             {"plan", {{"shortlist_dims", 16}, {"shortlist_k", 200}, {"rerank_dims", kDim}}}}.dump(),
                        Cluster::kRead);
    ASSERT_EQ(h.status, 200) << h.body;
    EXPECT_EQ(got, Ids(h.Json()["results"][0])) << "query " << q;
  }

  // An upsert through the binary API, read back over HTTP with its payload.
  wire::UpsertRequestT up;
  up.collection = "emb";
  up.dims = kDim;
  up.ids = {999999};
  up.vectors.assign(data.begin(), data.begin() + kDim);
  auto payload = std::make_unique<wire::PayloadT>();
  const std::string text = R"({"tag":"binary"})";
  payload->data.assign(text.begin(), text.end());
  up.payloads.push_back(std::move(payload));
  auto ur = client.Call(up, 10000);
  ASSERT_TRUE(ur.ok()) << ur.status().ToString();
  HttpResult g = Curl("POST", c.Url("/v1/collections/emb/points/get"), json{{"ids", {999999}}}.dump(), Cluster::kRead);
  ASSERT_EQ(g.status, 200) << g.body;
  EXPECT_EQ(g.Json()["points"][0]["payload"]["tag"], "binary") << g.body;
  // ... and search answers carry payloads on request.
  HttpResult sp = Curl("POST", c.Url("/v1/collections/emb/search"),
                       json{{"vector", VectorJson(&data[0])}, {"k", 2}, {"exact", true}, {"with_payload", true}}.dump(),
                       Cluster::kRead);
  ASSERT_EQ(sp.status, 200) << sp.body;
  bool saw = false;
  const json answer = sp.Json();
  for (const json& hit : answer["results"][0]) saw |= hit.contains("payload") && hit["payload"].value("tag", "") == "binary";
  EXPECT_TRUE(saw) << sp.body;

  // Bad requests: typed errors, and the connection keeps serving.
  wire::SearchRequestT bad;
  bad.collection = "emb";
  bad.dims = 64;
  bad.queries.assign(64, 0.5f);
  bad.stages.emplace_back(64, 10);
  auto br = client.Call(bad, 5000);
  ASSERT_FALSE(br.ok());
  EXPECT_EQ(br.status().code(), Status::Code::kInvalidArgument) << br.status().ToString();
  bad.collection = "nope";
  br = client.Call(bad, 5000);
  ASSERT_FALSE(br.ok());
  EXPECT_EQ(br.status().code(), Status::Code::kNotFound) << br.status().ToString();
  bad.collection = "emb";
  bad.dims = kDim;
  bad.queries.assign(kDim, 0.5f);
  bad.stages = {wire::SearchStage(16, 0)};
  br = client.Call(bad, 5000);
  ASSERT_FALSE(br.ok());
  bad.stages = {wire::SearchStage(kDim, 5000)};  // k above --max-k
  br = client.Call(bad, 5000);
  ASSERT_FALSE(br.ok());
  EXPECT_EQ(br.status().code(), Status::Code::kOutOfRange) << br.status().ToString();
  wire::ShortlistRequestT internal;  // shard-internal: not served by the coordinator
  internal.collection = "emb";
  internal.dims = 16;
  internal.queries.assign(16, 0.5f);
  internal.k = 10;
  auto ir = client.Call(internal, 5000);
  ASSERT_FALSE(ir.ok());
  EXPECT_EQ(ir.status().code(), Status::Code::kInvalidArgument) << ir.status().ToString();
  auto stats = client.Call(wire::StatsRequestT{}, 5000);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_EQ(stats->map_epoch, EpochOf(c.Url("/v1/cluster")));
  EXPECT_GE(stats->connections_open, 1u);
}

// HTTPS: with a certificate the API is served over TLS only; curl verifies the server against
// the self-signed certificate; plain HTTP to that port gets no answer; a bad key refuses to start.
TEST(CoordinatorE2E, TlsServesHttpsOnlyAndRefusesABadKey) {
  const std::string dir = TempDir("e2e_tls");
  const std::string cert = dir + "/cert.pem", key = dir + "/key.pem";
  const std::string gen = "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 "
                          "-addext subjectAltName=IP:127.0.0.1 -keyout " + key + " -out " + cert + " 2>/dev/null";
  ASSERT_EQ(std::system(gen.c_str()), 0) << gen;
  ASSERT_TRUE(WriteFileAtomic(dir + "/admin", "admin-secret-1\n").ok());
  ASSERT_TRUE(WriteFileAtomic(dir + "/read", "reader-secret-2\n").ok());
  DaemonProcess coord("coord", MRL_COORDINATOR_BIN,
                      {"--data-dir", dir + "/coord", "--port", "0", "--tls-cert-file", cert, "--tls-key-file", key,
                       "--admin-token-file", dir + "/admin", "--read-token-file", dir + "/read"},
                      dir);
  coord.Start();
  const std::string https = "https://127.0.0.1:" + std::to_string(coord.port());
  HttpResult r = Curl("GET", https + "/healthz", "", "", "--cacert " + cert);
  EXPECT_EQ(r.status, 200) << r.body;
  r = Curl("GET", https + "/v1/collections", "", Cluster::kAdmin, "--cacert " + cert);
  EXPECT_EQ(r.status, 200) << r.body;
  r = Curl("GET", https + "/v1/collections", "", "wrong-token", "--cacert " + cert);
  EXPECT_EQ(r.status, 401) << r.body;
  // Without the CA the client refuses the server; plain HTTP gets no HTTP answer.
  EXPECT_EQ(Curl("GET", https + "/healthz").status, 0);
  EXPECT_EQ(Curl("GET", "http://127.0.0.1:" + std::to_string(coord.port()) + "/healthz").status, 0);
  // Still serving after those.
  EXPECT_EQ(Curl("GET", https + "/healthz", "", "", "--cacert " + cert).status, 200);
  EXPECT_NE(coord.Log().find("listening on https://"), std::string::npos) << coord.Log();
  coord.Kill(SIGTERM);

  // A key that is not a key: a clear error and exit code, no half-started server.
  ASSERT_TRUE(WriteFileAtomic(dir + "/bad.pem", "not a key\n").ok());
  const std::string cmd = std::string(MRL_COORDINATOR_BIN) + " --data-dir " + dir + "/coord2 --port 0 --tls-cert-file " +
                          cert + " --tls-key-file " + dir + "/bad.pem > " + dir + "/bad.log 2>&1";
  const int rc = std::system(cmd.c_str());
  EXPECT_NE(rc, 0);
  EXPECT_NE(test_util::Slurp(dir + "/bad.log").find("TLS key"), std::string::npos) << test_util::Slurp(dir + "/bad.log");
}

uint64_t EpochOf(const std::string& cluster_url) {
  HttpResult r = Curl("GET", cluster_url, "", Cluster::kAdmin);
  EXPECT_EQ(r.status, 200) << r.body;
  return r.Json().value("epoch", uint64_t{0});
}

Result<wire::StatsResponseT> ShardStats(const DaemonProcess& shard, uint32_t epoch) {
  rpc::ClientOptions o;
  o.port = shard.port();
  rpc::RpcClient client(o);
  client.set_epoch(epoch);
  return client.Call(wire::StatsRequestT{}, 5000);
}

// Two coordinators over one cluster: the follower reads the owner's state files. Every request
// to a shard carries the map epoch; once the owner changes the map and the shards have seen the
// new epoch, they refuse the follower's older stamp, and the follower reloads and answers.
TEST(CoordinatorE2E, ShardsRefuseAStaleMapEpochAndTheFollowerRefreshes) {
  Cluster c("e2e_epoch", 2, 1);
  const std::vector<float> data = MakeData(kPoints, 5);
  c.CreateAndLoad(data);
  const uint64_t e0 = EpochOf(c.Url("/v1/cluster"));
  ASSERT_GT(e0, 0u);
  DaemonProcess follower("follower", MRL_COORDINATOR_BIN,
                         {"--data-dir", c.dir() + "/coord", "--port", "0", "--follow", "--admin-token-file",
                          c.dir() + "/admin", "--read-token-file", c.dir() + "/read"},
                         c.dir());
  follower.Start();
  const std::string furl = "http://127.0.0.1:" + std::to_string(follower.port());
  // What each process was built from: the coordinator's build-info gauge, each shard's Stats.
  const std::string build_metrics = Curl("GET", c.Url("/metrics")).body;
  EXPECT_NE(build_metrics.find("mrl_build_info{program=\"mrl-coordinator\",version=\""),
            std::string::npos)
      << build_metrics.substr(0, 2000);
  EXPECT_NE(build_metrics.find("flatbuffers=\""), std::string::npos);
  for (int s = 0; s < 2; ++s) {
    auto st = ShardStats(c.shard(s), 0);
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_NE(st->version.find("RocksDB "), std::string::npos) << st->version;
    EXPECT_NE(st->version.find("(git "), std::string::npos) << st->version;
  }
  const std::vector<float> queries = MakeData(3, 6);
  const json search = json{{"vector", VectorJson(&queries[0])}, {"k", 10}, {"exact", true}};
  HttpResult r = Curl("POST", furl + "/v1/collections/emb/search", search.dump(), Cluster::kRead);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Ids(r.Json()["results"][0]), BruteForceCosine(data, &queries[0], 10));

  // The follower does not change cluster state.
  r = Curl("PUT", furl + "/v1/collections/other", json{{"dim", kDim}}.dump(), Cluster::kAdmin);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_NE(r.body.find("follows"), std::string::npos) << r.body;

  // The owner places a second collection (epoch + 1) and queries it: both shards see the epoch.
  r = Curl("PUT", c.Url("/v1/collections/other"), json{{"dim", kDim}, {"num_buckets", 256}}.dump(),
           Cluster::kAdmin);
  ASSERT_EQ(r.status, 200) << r.body;
  const uint64_t e1 = EpochOf(c.Url("/v1/cluster"));
  ASSERT_EQ(e1, e0 + 1);
  r = Curl("POST", c.Url("/v1/collections/other/search"),
           json{{"vector", VectorJson(&queries[0])}, {"k", 5}, {"exact", true}}.dump(), Cluster::kRead);
  ASSERT_EQ(r.status, 200) << r.body;
  for (int s = 0; s < 2; ++s) {
    auto stats = ShardStats(c.shard(s), 0);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->map_epoch, e1);
    // A request stamped with the old epoch is refused with a typed error, nothing run.
    auto stale = ShardStats(c.shard(s), static_cast<uint32_t>(e0));
    ASSERT_FALSE(stale.ok());
    EXPECT_EQ(stale.status().code(), Status::Code::kAborted) << stale.status().ToString();
  }

  // The follower still routes by e0: refused, reloads e1 from the owner's files, answers.
  EXPECT_EQ(EpochOf(furl + "/v1/cluster"), e0);
  r = Curl("POST", furl + "/v1/collections/emb/search", search.dump(), Cluster::kRead);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Ids(r.Json()["results"][0]), BruteForceCosine(data, &queries[0], 10));
  EXPECT_EQ(EpochOf(furl + "/v1/cluster"), e1);
  HttpResult metrics = Curl("GET", furl + "/metrics", "", Cluster::kAdmin);
  EXPECT_NE(metrics.body.find("mrl_coordinator_map_refreshes_total 1"), std::string::npos) << metrics.body;

  // A shard remembers the newest epoch across a restart.
  ASSERT_EQ(c.shard(0).Kill(SIGTERM), 0);
  c.shard(0).Start();
  auto after = ShardStats(c.shard(0), static_cast<uint32_t>(e0));
  ASSERT_FALSE(after.ok());
  EXPECT_EQ(after.status().code(), Status::Code::kAborted);
  follower.Kill(SIGTERM);
}

}  // namespace
}  // namespace mrl
