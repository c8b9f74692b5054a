// engine_qps: the in-process shard engine's latency and throughput for one query plan, with N
// query threads calling Engine directly (no sockets, no coordinator). It is the baseline that
// bench/e2e.sh sets the coordinator's figures against: same vectors, same plan, same cores.
//
//   engine_qps --db db.npy --ids ids.npy --queries q.npy --ds 16 --K 200 --threads 1,8,32
//
// Prints one line per thread count (QPS, p50, p99) and, with --json, writes them.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include "bench/bench_util.h"
#include "common/npy.h"
#include "common/provenance.h"
#include "common/vector_codec.h"
#include "shard/engine.h"

namespace {

using namespace mrl;
using namespace mrl::shard;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& m) { mrl::bench::Die("engine_qps", m); }

std::vector<float> LoadMatrix(const std::string& path, int64_t* n, int64_t* d) {
  return mrl::bench::LoadMatrix("engine_qps", path, n, d);
}

double Pct(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * v.size()))];
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"engine_qps: in-process shard engine latency and QPS for one plan"};
  std::string db_path, ids_path, q_path, data_dir, json_out;
  int32_t ds = 16, K = 200, k = 10, dr = 0;
  std::vector<int> threads = {1, 8, 32};
  size_t limit = 0;
  bool two_calls = false, reuse = false;
  app.add_option("--db", db_path, "database vectors [N, d] .npy")->required();
  app.add_option("--ids", ids_path, "database ids [N] .npy (default: row numbers)");
  app.add_option("--queries", q_path, "query vectors [Q, d] .npy")->required();
  app.add_option("--data-dir", data_dir, "engine data directory (default: a temporary one)");
  app.add_option("--ds", ds, "shortlist dims (an HNSW index is built over them)");
  app.add_option("--K", K, "shortlist size");
  app.add_option("--dr", dr, "rerank dims (0: full d)");
  app.add_option("--k", k, "answers per query");
  app.add_option("--threads", threads, "query threads to measure")->delimiter(',');
  app.add_option("--limit", limit, "use the first N queries");
  app.add_flag("--two-calls", two_calls, "Shortlist then Rerank (the coordinator's path) "
                                         "instead of one Search call");
  app.add_option("--json", json_out, "write the figures here");
  app.add_flag("--reuse", reuse,
               "use the collection 'bench' already in --data-dir when it holds N points (e.g. shard_bench "
               "--keep's), instead of loading the vectors again");
  CLI11_PARSE(app, argc, argv);
  const nlohmann::json stamp = Provenance(argc, argv);
  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);

  int64_t n = 0, d = 0, nq = 0, qd = 0;
  std::vector<float> db = LoadMatrix(db_path, &n, &d);
  std::vector<float> q = LoadMatrix(q_path, &nq, &qd);
  if (qd != d) Die("queries and database differ in d");
  if (limit > 0) nq = std::min<int64_t>(nq, static_cast<int64_t>(limit));
  if (dr == 0) dr = static_cast<int32_t>(d);
  std::vector<uint64_t> ids(n);
  if (!ids_path.empty()) {
    auto a = ReadNpy(ids_path);
    if (!a.ok()) Die(a.status().ToString());
    if (a->shape.size() != 1 || a->shape[0] != n) Die("ids must be [N]");
    if (a->dtype == NpyDtype::kInt64) {
      for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(a->as<int64_t>()[i]);
    } else if (a->dtype == NpyDtype::kUInt64) {
      for (int64_t i = 0; i < n; ++i) ids[i] = a->as<uint64_t>()[i];
    } else {
      Die("ids must be int64 or uint64");
    }
  } else {
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(i);
  }

  const bool temp_dir = data_dir.empty();
  if (temp_dir) {
    data_dir = (std::filesystem::temp_directory_path() /
                ("mrl_engine_qps_" + std::to_string(::getpid())))
                   .string();
  }
  if (!reuse) std::filesystem::remove_all(data_dir);
  EngineOptions eo;
  eo.data_dir = data_dir;
  eo.sync_writes = false;  // bulk load of a benchmark; the figures measured are reads
  eo.verbose = false;
  auto opened = Engine::Open(eo);
  if (!opened.ok()) Die(opened.status().ToString());
  std::unique_ptr<Engine> engine = std::move(opened.value());
  CollectionSpec spec;
  spec.name = "bench";
  spec.dim = static_cast<int32_t>(d);
  for (int32_t m = 8; m < d; m *= 2) spec.nesting.push_back(m);
  spec.nesting.push_back(static_cast<int32_t>(d));
  spec.storage = StorageType::kFp16;
  IndexSpec ix;
  ix.dims = ds;
  spec.indexes.push_back(ix);
  bool reused = false;
  for (const auto& c : engine->Stats().collections) {
    if (reuse && c.name == "bench" && c.points == static_cast<uint64_t>(n)) reused = true;
  }
  if (reuse && !reused) Die("--reuse: " + data_dir + " holds no collection 'bench' of " + std::to_string(n) + " points");
  if (!reused) {
    if (Status st = engine->CreateCollection(spec); !st.ok()) Die(st.ToString());
  }
  for (int64_t start = reused ? n : 0; start < n; start += 1000) {
    std::vector<PointView> pts;
    for (int64_t i = start; i < std::min(n, start + 1000); ++i) {
      pts.push_back(PointView{ids[i], std::span<const float>(&db[i * d], d), ""});
    }
    if (Status st = engine->Upsert("bench", pts); !st.ok()) Die(st.ToString());
  }
  std::vector<float>().swap(db);
  std::fprintf(stderr, "engine_qps: %lld points of d=%lld loaded; %lld queries\n", (long long)n,
               (long long)d, (long long)nq);

  const std::vector<SearchStage> stages = {{ds, K}, {dr, k}};
  auto one = [&](int64_t qi) {
    const std::span<const float> query(&q[qi * d], static_cast<size_t>(d));
    if (!two_calls) {
      auto r = engine->Search("bench", query, stages);
      if (!r.ok()) Die(r.status().ToString());
      return;
    }
    auto sl = engine->Shortlist("bench", query.first(ds), K);
    if (!sl.ok()) Die(sl.status().ToString());
    std::vector<uint64_t> cand;
    for (const auto& c : *sl) cand.push_back(c.id);
    auto rr = engine->Rerank("bench", query.first(dr), cand, k);
    if (!rr.ok()) Die(rr.status().ToString());
  };
  // Warm-up: one untimed pass over every query, so the first thread count measured finds the
  // index and the rows its queries read where a steady state would hold them.
  for (int64_t qi = 0; qi < nq; ++qi) one(qi);

  nlohmann::json rows = nlohmann::json::array();
  for (int t : threads) {
    std::vector<double> lat(nq);
    std::atomic<int64_t> next{0};
    const auto t0 = Clock::now();
    std::vector<std::thread> pool;
    for (int w = 0; w < t; ++w) {
      pool.emplace_back([&] {
        for (int64_t i = next++; i < nq; i = next++) {
          const auto a = Clock::now();
          one(i);
          lat[i] = std::chrono::duration<double, std::milli>(Clock::now() - a).count();
        }
      });
    }
    for (auto& th : pool) th.join();
    const double wall = std::chrono::duration<double>(Clock::now() - t0).count();
    const double qps = nq / wall, p50 = Pct(lat, 0.5), p99 = Pct(lat, 0.99);
    std::printf("in-process engine, %s, Ds=%d K=%d Dr=%d, %3d threads: %8.0f QPS, p50 %.3f ms, "
                "p99 %.3f ms\n",
                two_calls ? "Shortlist+Rerank" : "one Search call", ds, K, dr, t, qps, p50, p99);
    rows.push_back({{"threads", t}, {"qps", qps}, {"p50_ms", p50}, {"p99_ms", p99}});
  }
  std::printf("reproduce: `%s`\n", command.c_str());
  if (!json_out.empty()) {
    std::ofstream(json_out) << nlohmann::json{{"provenance", stamp},
                                              {"points", n},
                                              {"queries", nq},
                                              {"plan", {{"ds", ds}, {"K", K}, {"dr", dr}}},
                                              {"two_calls", two_calls},
                                              {"cores", std::thread::hardware_concurrency()},
                                              {"rows", rows}}
                                   .dump(2);
  }
  engine.reset();
  if (temp_dir && !reuse) std::filesystem::remove_all(data_dir);
  return 0;
}
