// shard_bench: adaptive retrieval through the shard engine (low-d HNSW shortlist + full-d
// rerank from RocksDB) against what a user would otherwise pick, in one run on the same data:
// hnswlib HNSW over the full d (ef sweep) and FAISS IndexFlatIP (exact). Single-threaded query
// latency, recall@10 against exact full-d cosine, mAP@10 by label when labels are given, build
// times, RAM and disk per vector. Prints a markdown table and the command that reproduces it.
//
//   shard_bench --make-synthetic /tmp/syn --n 20000 --d 512 --nq 200
//   shard_bench --db /tmp/syn/db.npy --queries /tmp/syn/queries.npy
//       --db-labels /tmp/syn/db_labels.npy --query-labels /tmp/syn/query_labels.npy
#include <faiss/IndexFlat.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/distance.h"
#include "common/provenance.h"
#include "common/retrieval_metrics.h"
#include "bench/bench_util.h"
#include "common/npy.h"
#include "common/vector_codec.h"
#include "shard/engine.h"
#include "shard/low_d_index.h"

namespace {

using namespace mrl;
using namespace mrl::shard;
using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

[[noreturn]] void Die(const std::string& m) { mrl::bench::Die("shard_bench", m); }

std::vector<float> LoadMatrix(const std::string& path, int64_t* n, int64_t* d) {
  return mrl::bench::LoadMatrix("shard_bench", path, n, d);
}

Status MakeSynthetic(const std::string& dir, int64_t n, int64_t d, int64_t nq, int classes) {
  std::filesystem::create_directories(dir);
  std::mt19937 rng(1234);
  std::normal_distribution<float> g(0.0f, 1.0f);
  // MRL-like: early coordinates carry more of the class signal than late ones.
  std::vector<float> scale(d);
  for (int64_t j = 0; j < d; ++j) scale[j] = 1.0f / std::sqrt(1.0f + j / 8.0f);
  std::vector<float> centers(static_cast<size_t>(classes * d));
  for (auto& x : centers) x = g(rng);
  auto make = [&](int64_t rows, std::vector<float>* x, std::vector<int64_t>* y) {
    x->resize(rows * d);
    y->resize(rows);
    std::uniform_int_distribution<int> pick(0, classes - 1);
    for (int64_t i = 0; i < rows; ++i) {
      const int c = pick(rng);
      (*y)[i] = c;
      for (int64_t j = 0; j < d; ++j) {
        (*x)[i * d + j] = scale[j] * (centers[c * d + j] + 3.0f * g(rng));
      }
    }
  };
  std::vector<float> x, q;
  std::vector<int64_t> y, qy;
  make(n, &x, &y);
  make(nq, &q, &qy);
  MRL_RETURN_IF_ERROR(WriteNpy(dir + "/db.npy", NpyDtype::kFloat32, {n, d}, x.data()));
  MRL_RETURN_IF_ERROR(WriteNpy(dir + "/queries.npy", NpyDtype::kFloat32, {nq, d}, q.data()));
  MRL_RETURN_IF_ERROR(WriteNpy(dir + "/db_labels.npy", NpyDtype::kInt64, {n}, y.data()));
  MRL_RETURN_IF_ERROR(WriteNpy(dir + "/query_labels.npy", NpyDtype::kInt64, {nq}, qy.data()));
  return Status::Ok();
}

struct Row {
  std::string method, plan;
  double recall = 0, map = -1, qps = 0, p50_ms = 0, p99_ms = 0;
  std::string note;
  int run_order = 0;  // position in the (shuffled) order the rows were measured in
  int32_t ds = 0;     // engine rows: the shortlist's dims (whose index the plan uses)
  bool int8 = false;  // engine rows: the shortlist's index holds int8 vectors
};

struct Eval {
  const std::vector<std::vector<uint64_t>>* truth;  // exact top-10 row ids per query
  const std::vector<int64_t>* db_labels;            // may be empty
  const std::vector<int64_t>* query_labels;
  size_t k;
};

// Queries of each plan's warm-up pass (--warmup-queries; 0: every query, so the timed pass finds
// what a steady state would hold: the index, the rows its queries read, the branch predictors).
size_t g_warmup_queries = 0;

// Runs `search(qi, out)` for every query, single-threaded: a warm-up pass (g_warmup_queries, or
// `warmup` when >= 0), then the timed pass, which only stores the answers; they are scored
// afterwards with common/retrieval_metrics.h (recall@k against the exact truth, the paper's
// mAP@k by label). `before_timing` (if any) runs between the two passes (e.g. evicting the rows
// file).
Row Measure(const std::string& method, const std::string& plan, size_t nq, const Eval& ev,
            const std::function<void(size_t, std::vector<int64_t>*)>& search,
            const std::function<void()>& before_timing = nullptr, int64_t warmup = -1) {
  std::vector<int64_t> got;
  const size_t warm = warmup >= 0 ? static_cast<size_t>(warmup)
                      : g_warmup_queries == 0 ? nq
                                              : g_warmup_queries;
  for (size_t qi = 0; qi < std::min(nq, warm); ++qi) search(qi, &got);  // warm-up
  if (before_timing) before_timing();
  std::vector<double> lat(nq);
  std::vector<std::vector<int64_t>> answers(nq);
  const auto t0 = Clock::now();
  for (size_t qi = 0; qi < nq; ++qi) {
    const auto a = Clock::now();
    search(qi, &answers[qi]);
    lat[qi] = Seconds(a, Clock::now()) * 1e3;
  }
  const double total = Seconds(t0, Clock::now());
  RetrievalScorer scorer(ev.k);
  std::vector<uint64_t> ids;
  std::vector<int64_t> labels;
  for (size_t qi = 0; qi < nq; ++qi) {
    ids.assign(answers[qi].begin(), answers[qi].end());
    scorer.AddRecall(ids, (*ev.truth)[qi]);
    if (!ev.db_labels->empty()) {
      labels.clear();
      for (int64_t row : answers[qi]) labels.push_back((*ev.db_labels)[static_cast<size_t>(row)]);
      scorer.AddLabels(labels, (*ev.query_labels)[qi]);
    }
  }
  std::sort(lat.begin(), lat.end());
  Row r;
  r.method = method;
  r.plan = plan;
  r.recall = scorer.recall_at_k();
  r.map = ev.db_labels->empty() ? -1 : scorer.map_at_k();
  r.qps = nq / total;
  r.p50_ms = lat[nq / 2];
  r.p99_ms = lat[std::min(nq - 1, (nq * 99) / 100)];
  std::fprintf(stderr, "  %-28s %-40s recall@10 %.3f  %.0f QPS\n", method.c_str(), plan.c_str(),
               r.recall, r.qps);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"shard_bench: MRL adaptive retrieval through the shard engine vs hnswlib and FAISS"};
  std::string synthetic_dir, db_path, q_path, dbl_path, ql_path, data_dir, truth_out;
  int64_t syn_n = 20000, syn_d = 512, syn_nq = 200;
  int syn_classes = 100;
  std::vector<int32_t> shortlist_dims = {16, 32, 64, 128};
  std::vector<int32_t> Ks = {50, 100, 200};
  int32_t k = 10, hnsw_m = 16, ef_construction = 100, engine_ef = 0;
  size_t faiss_queries = 100, block_cache_mb = 256;
  std::vector<int32_t> ef_sweep = {10, 20, 40, 80, 160, 320, 640};
  size_t max_queries = 1000;
  bool skip_hnsw_full = false, no_sync = false, keep = false, reuse = false, mmap_reads = false,
       compare_mmap = false, rocksdb_rerank = false, compare_rerank = false, cold = false,
       int8_index = false, compare_int8 = false;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  app.add_option("--make-synthetic", synthetic_dir, "write db/queries/labels .npy here and exit");
  app.add_option("--n", syn_n, "synthetic: database size");
  app.add_option("--d", syn_d, "synthetic: dimension");
  app.add_option("--nq", syn_nq, "synthetic: queries");
  app.add_option("--classes", syn_classes, "synthetic: classes");
  app.add_option("--db", db_path, "database vectors [N, d] float32/float16 .npy");
  app.add_option("--queries", q_path, "query vectors [Q, d] .npy");
  app.add_option("--db-labels", dbl_path, "database labels [N] .npy (for mAP@10)");
  app.add_option("--query-labels", ql_path, "query labels [Q] .npy (for mAP@10)");
  app.add_option("--data-dir", data_dir, "engine data directory (default: a temporary one)");
  app.add_option("--shortlist-dims", shortlist_dims, "Ds values with an HNSW index");
  app.add_option("--K", Ks, "shortlist sizes to sweep (each Ds with each K)");
  app.add_option("--hnsw-m", hnsw_m);
  app.add_option("--ef-construction", ef_construction);
  app.add_option("--engine-ef", engine_ef, "shortlist beam (0: max(64, K))");
  app.add_option("--ef-sweep", ef_sweep, "ef values for full-d hnswlib");
  app.add_option("--max-queries", max_queries);
  app.add_option("--threads", threads, "threads for index builds (queries are single-threaded)");
  app.add_flag("--skip-hnsw-full", skip_hnsw_full, "skip the full-d hnswlib baseline");
  app.add_flag("--no-sync", no_sync, "ingest with sync_writes = false");
  app.add_flag("--keep", keep, "keep the engine data directory");
  app.add_flag("--reuse", reuse,
               "reopen the engine in --data-dir if it holds the same N points (skips ingest)");
  app.add_option("--faiss-queries", faiss_queries,
                 "queries for the FAISS exact row (one query at a time scans N x d)");
  app.add_option("--block-cache-mb", block_cache_mb, "engine RocksDB block cache");
  app.add_flag("--mmap-reads", mmap_reads, "engine reads SST files through mmap");
  app.add_flag("--compare-mmap", compare_mmap, "rerun the Ds x K grid with the other read path");
  app.add_flag("--rocksdb-rerank", rocksdb_rerank,
               "rerank from RocksDB lookups instead of the engine's rows file");
  app.add_flag("--int8", int8_index, "the engine's low-d HNSW indexes hold int8 vectors");
  app.add_flag("--compare-int8", compare_int8,
               "also ingest the vectors into a second collection whose low-d indexes hold the "
               "other type (int8 / fp32), build those indexes alone too, and run its Ds x K grid");
  app.add_flag("--cold", cold,
               "also run the Ds x K grid on a cold rows file (evicted from the page cache before "
               "each cell), without and with readahead of a rerank's rows");
  app.add_flag("--compare-rerank", compare_rerank,
               "rerun the Ds x K grid reranking from the other source (rows file / RocksDB)");
  std::string json_out;
  unsigned grid_seed = 1;
  app.add_option("--json", json_out, "write every figure, with its provenance, here");
  app.add_option("--truth-out", truth_out,
                 "write the exact truth here: .npy int64 [queries, k], each query's full-d fp32 "
                 "cosine top-k database rows, best first (mrlctl eval --truth, after mapping rows "
                 "to ids)");
  app.add_option("--seed", grid_seed, "seed of the shuffled Ds x K grid order");
  app.add_option("--warmup-queries", g_warmup_queries,
                 "queries of each plan's warm-up pass (0: all; FAISS exact always 3)");
  CLI11_PARSE(app, argc, argv);
  const nlohmann::json stamp = Provenance(argc, argv);

  std::string command;
  for (int i = 0; i < argc; ++i) command += (i ? " " : "") + std::string(argv[i]);

  if (!synthetic_dir.empty()) {
    Status st = MakeSynthetic(synthetic_dir, syn_n, syn_d, syn_nq, syn_classes);
    if (!st.ok()) Die(st.ToString());
    std::printf("wrote %s/{db,queries,db_labels,query_labels}.npy (%lld x %lld, %lld queries)\n",
                synthetic_dir.c_str(), (long long)syn_n, (long long)syn_d, (long long)syn_nq);
    return 0;
  }
  if (db_path.empty() || q_path.empty()) Die("--db and --queries are required");

  int64_t n = 0, d = 0, nq = 0, qd = 0;
  std::vector<float> db = LoadMatrix(db_path, &n, &d);
  std::vector<float> queries = LoadMatrix(q_path, &nq, &qd);
  if (qd != d) Die("queries and database differ in d");
  nq = std::min<int64_t>(nq, static_cast<int64_t>(max_queries));
  std::vector<int64_t> db_labels, query_labels;
  if (!dbl_path.empty() && !ql_path.empty()) {
    auto a = ReadNpyLabels(dbl_path);
    auto b = ReadNpyLabels(ql_path);
    if (!a.ok() || !b.ok()) Die("cannot read labels");
    db_labels = std::move(a.value());
    query_labels = std::move(b.value());
    if (static_cast<int64_t>(db_labels.size()) != n ||
        static_cast<int64_t>(query_labels.size()) < nq) {
      Die("label counts do not match the vectors");
    }
  }
  std::vector<int32_t> nesting;
  for (int32_t m = 8; m < d; m *= 2) nesting.push_back(m);
  nesting.push_back(static_cast<int32_t>(d));
  std::vector<int32_t> ds_list;
  for (int32_t ds : shortlist_dims) {
    if (std::binary_search(nesting.begin(), nesting.end(), ds) && ds < d) ds_list.push_back(ds);
  }
  std::fprintf(stderr, "shard_bench: N=%lld d=%lld queries=%lld kernels=%s/%s\n", (long long)n,
               (long long)d, (long long)nq, DistanceKernelName(), HalfKernelName());

  // ---- engine: ingest ------------------------------------------------------------------
  const bool temp_dir = data_dir.empty();
  if (temp_dir) {
    data_dir =
        (std::filesystem::temp_directory_path() / ("mrl_shard_bench_" + std::to_string(::getpid())))
            .string();
  }
  if (!reuse) std::filesystem::remove_all(data_dir);
  EngineOptions eo;
  eo.data_dir = data_dir;
  eo.sync_writes = !no_sync;
  eo.block_cache_mb = block_cache_mb;
  eo.mmap_reads = mmap_reads;
  eo.rerank_rows = !rocksdb_rerank;
  eo.threads = threads;
  eo.verbose = true;
  auto opened = Engine::Open(eo);
  if (!opened.ok()) Die(opened.status().ToString());
  std::unique_ptr<Engine> engine = std::move(opened.value());
  CollectionSpec spec;
  spec.name = "bench";
  spec.dim = static_cast<int32_t>(d);
  spec.nesting = nesting;
  spec.metric = Metric::kCosine;
  spec.storage = StorageType::kFp16;
  for (int32_t ds : ds_list) {
    IndexSpec ix;
    ix.dims = ds;
    ix.kind = IndexKind::kHnsw;
    ix.hnsw_m = hnsw_m;
    ix.ef_construction = ef_construction;
    ix.ef_search = 64;
    ix.int8 = int8_index;
    spec.indexes.push_back(ix);
  }
  bool reused = false;
  if (reuse) {
    const EngineStats before = engine->Stats();
    for (const auto& c : before.collections) {
      if (c.name == "bench" && c.points == static_cast<uint64_t>(n)) reused = true;
    }
    if (reused) {
      auto have = engine->DescribeCollection("bench");
      if (!have.ok() || have->dim != spec.dim || have->indexes.size() != spec.indexes.size()) {
        Die("--reuse: the collection in " + data_dir + " has another spec; drop --reuse");
      }
      std::fprintf(stderr, "reusing the %lld points in %s (no ingest)\n", (long long)n,
                   data_dir.c_str());
    } else {
      std::fprintf(stderr, "--reuse: %s does not hold %lld points; ingesting\n", data_dir.c_str(),
                   (long long)n);
      engine.reset();
      std::filesystem::remove_all(data_dir);
      opened = Engine::Open(eo);
      if (!opened.ok()) Die(opened.status().ToString());
      engine = std::move(opened.value());
    }
  }
  if (!reused) {
    if (Status st = engine->CreateCollection(spec); !st.ok()) Die(st.ToString());
  }
  const auto ingest0 = Clock::now();
  for (int64_t start = reused ? n : 0; start < n; start += 1000) {
    const int64_t end = std::min(n, start + 1000);
    std::vector<PointView> pts;
    for (int64_t i = start; i < end; ++i) {
      pts.push_back(PointView{static_cast<uint64_t>(i),
                              std::span<const float>(&db[i * d], static_cast<size_t>(d)), ""});
    }
    if (Status st = engine->Upsert("bench", pts); !st.ok()) Die(st.ToString());
    if ((start / 1000) % 100 == 99) {
      std::fprintf(stderr, "  ingested %lld / %lld\n", (long long)end, (long long)n);
    }
  }
  const double ingest_s = Seconds(ingest0, Clock::now());
  const auto cp0 = Clock::now();
  if (Status st = engine->Checkpoint(); !st.ok()) Die(st.ToString());
  const double checkpoint_s = Seconds(cp0, Clock::now());
  engine.reset();
  const auto open0 = Clock::now();
  eo.verbose = false;
  opened = Engine::Open(eo);
  if (!opened.ok()) Die(opened.status().ToString());
  engine = std::move(opened.value());
  const double reopen_s = Seconds(open0, Clock::now());
  const EngineStats stats = engine->Stats();

  // ---- exact ground truth and FAISS (normalised vectors, inner product = cosine) ---------
  for (int64_t i = 0; i < n; ++i) NormalizeInPlace(&db[i * d], static_cast<size_t>(d));
  std::vector<float> qn(queries.begin(), queries.begin() + nq * d);
  for (int64_t i = 0; i < nq; ++i) NormalizeInPlace(&qn[i * d], static_cast<size_t>(d));
  const auto f0 = Clock::now();
  faiss::IndexFlatIP flat(d);
  flat.add(n, db.data());
  // FAISS keeps its own copy: drop ours (1M x 2048 floats is 8 GB) and build from FAISS's.
  std::vector<float>().swap(db);
  const float* xb = flat.get_xb();
  const double faiss_build_s = Seconds(f0, Clock::now());
  // The ground truth: full-d fp32 cosine over the original vectors (FAISS IndexFlatIP over the
  // normalised copies: the same truth as mrlctl eval's common/exact_search.h).
  std::vector<std::vector<uint64_t>> truth(nq);
  {
    std::vector<float> dist(nq * k);
    std::vector<faiss::Index::idx_t> labels(nq * k);
    flat.search(nq, qn.data(), k, dist.data(), labels.data());
    for (int64_t i = 0; i < nq; ++i)
      truth[i].assign(labels.begin() + i * k, labels.begin() + (i + 1) * k);
    if (!truth_out.empty()) {
      std::vector<int64_t> rows64(labels.begin(), labels.end());
      if (Status st = WriteNpy(truth_out, NpyDtype::kInt64, {nq, static_cast<int64_t>(k)},
                               rows64.data());
          !st.ok()) {
        Die("--truth-out: " + st.ToString());
      }
      std::fprintf(stderr, "wrote the exact truth (%lld x %d rows) to %s\n", (long long)nq, k,
                   truth_out.c_str());
    }
  }
  Eval ev{&truth, &db_labels, &query_labels, static_cast<size_t>(k)};
  std::vector<Row> rows;

  // ---- engine plans ----------------------------------------------------------------------
  std::fprintf(stderr, "queries (single thread):\n");
  auto rerank_name = [&] {
    return std::string(eo.rerank_rows ? "rows-file rerank" : "RocksDB rerank");
  };
  std::string method = "shard engine (one trip, " + rerank_name() + ")";
  std::string coll = "bench";      // the collection the engine rows query
  bool coll_int8 = int8_index;     // whether its low-d indexes hold int8 vectors
  std::function<void()> before_timing;  // between each plan's warm-up and its timed pass
  auto run_search = [&](const std::string& plan, std::vector<SearchStage> stages, bool exact) {
    rows.push_back(
        Measure(method, plan, nq, ev, [&](size_t qi, std::vector<int64_t>* out) {
          auto r = engine->Search(coll, std::span<const float>(&queries[qi * d], d), stages,
                                  engine_ef, exact);
          if (!r.ok()) Die(r.status().ToString());
          out->clear();
          for (const auto& c : *r) out->push_back(static_cast<int64_t>(c.id));
        }, before_timing));
    rows.back().ds = stages.front().dims;
    rows.back().int8 = coll_int8;
  };
  const int32_t K = *std::max_element(Ks.begin(), Ks.end());
  // The Ds x K grid runs in a shuffled order (seeded, recorded): no cell always runs first, on a
  // cold cache, or right after another. The table lists it in grid order.
  auto run_grid = [&] {
    std::vector<std::pair<int32_t, int32_t>> grid;
    for (int32_t ds : ds_list) {
      for (int32_t kk : Ks) grid.emplace_back(ds, kk);
    }
    std::vector<size_t> order(grid.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::shuffle(order.begin(), order.end(), std::mt19937(grid_seed));
    const size_t first = rows.size();
    std::vector<Row> measured(grid.size());
    for (size_t oi = 0; oi < order.size(); ++oi) {
      const auto [ds, kk] = grid[order[oi]];
      run_search(
          "Ds=" + std::to_string(ds) + " K=" + std::to_string(kk) + " -> Dr=" + std::to_string(d),
          {{ds, kk}, {static_cast<int32_t>(d), k}}, false);
      measured[order[oi]] = rows.back();
      measured[order[oi]].run_order = static_cast<int>(oi);
      rows.pop_back();
    }
    rows.resize(first);
    rows.insert(rows.end(), measured.begin(), measured.end());
  };
  run_grid();
  if (!ds_list.empty()) {
    const int32_t ds = ds_list.front();
    rows.push_back(Measure(
        "shard engine (two calls)",
        "Shortlist(Ds=" + std::to_string(ds) + ", K=" + std::to_string(K) +
            ") + Rerank(Dr=" + std::to_string(d) + ")",
        nq, ev, [&](size_t qi, std::vector<int64_t>* out) {
          auto sl = engine->Shortlist("bench", std::span<const float>(&queries[qi * d], ds), K,
                                      engine_ef);
          if (!sl.ok()) Die(sl.status().ToString());
          std::vector<uint64_t> ids;
          for (const auto& c : *sl) ids.push_back(c.id);
          auto rr = engine->Rerank("bench", std::span<const float>(&queries[qi * d], d), ids, k);
          if (!rr.ok()) Die(rr.status().ToString());
          out->clear();
          for (const auto& c : *rr) out->push_back(static_cast<int64_t>(c.id));
        }));
    rows.back().ds = ds;
    rows.back().int8 = coll_int8;
    // Funnel: dims double from Ds, K halves from K; the last stage is full d with k.
    std::vector<SearchStage> funnel;
    int32_t kk = K;
    for (int32_t m = ds; m < d; m *= 2) {
      if (!std::binary_search(nesting.begin(), nesting.end(), m)) continue;
      funnel.push_back({m, std::max(kk, k)});
      kk /= 2;
    }
    funnel.push_back({static_cast<int32_t>(d), k});
    std::string desc = "funnel";
    for (const auto& s : funnel) desc += " " + std::to_string(s.dims) + ":" + std::to_string(s.k);
    run_search(desc, funnel, false);
    run_search("Ds=" + std::to_string(ds) + " K=" + std::to_string(K) +
                   " -> Dr=" + std::to_string(d) + ", exact shortlist",
               {{ds, K}, {static_cast<int32_t>(d), k}}, true);
  }

  // ---- the engine's low-d indexes built on their own, as hnswlib full d is below -----------
  // (the engine builds them during ingest, interleaved with RocksDB writes, so ingest time alone
  // does not say what an index costs to build). Same library, M, ef_construction and threads.
  struct LowBuild {
    int32_t ds;
    bool int8;
    double seconds, bytes_per_vector;
  };
  std::vector<LowBuild> low_builds;
  {
    std::vector<uint64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(i);
    for (int32_t ds : ds_list) {
      std::vector<float> prefix(static_cast<size_t>(n) * ds);
      for (int64_t i = 0; i < n; ++i) {
        std::copy_n(xb + i * d, ds, &prefix[i * ds]);
        NormalizeInPlace(&prefix[i * ds], static_cast<size_t>(ds));
      }
      for (bool i8 : compare_int8 ? std::vector<bool>{int8_index, !int8_index}
                                  : std::vector<bool>{int8_index}) {
        IndexSpec ix;
        ix.dims = ds;
        ix.kind = IndexKind::kHnsw;
        ix.hnsw_m = hnsw_m;
        ix.ef_construction = ef_construction;
        ix.int8 = i8;
        const auto b0 = Clock::now();
        auto index = MakeLowDIndex(ix, IndexMetric::kInnerProduct, static_cast<size_t>(n));
        index->AddBulk(ids, prefix.data(), threads);
        low_builds.push_back({ds, i8, Seconds(b0, Clock::now()),
                              static_cast<double>(index->memory_bytes()) / n});
        std::fprintf(stderr, "  built HNSW Ds=%d%s alone in %.1f s\n", ds, i8 ? " (int8)" : "",
                     low_builds.back().seconds);
      }
    }
  }

  // ---- the grid on a cold rows file: evicted from the page cache after each cell's warm-up,
  // right before its timed pass, without and with readahead of a rerank's rows --------------
  if (cold && eo.rerank_rows) {
    for (bool readahead : {false, true}) {
      engine.reset();
      eo.rows_readahead = readahead;
      opened = Engine::Open(eo);
      if (!opened.ok()) Die(opened.status().ToString());
      engine = std::move(opened.value());
      method = std::string("shard engine (one trip, rows-file rerank, cold rows") +
               (readahead ? ", readahead)" : ")");
      before_timing = [&] {
        if (Status st = engine->EvictRows("bench"); !st.ok()) Die(st.ToString());
      };
      run_grid();
      before_timing = nullptr;
    }
    eo.rows_readahead = false;
    engine.reset();
    opened = Engine::Open(eo);
    if (!opened.ok()) Die(opened.status().ToString());
    engine = std::move(opened.value());
    method = "shard engine (one trip, " + rerank_name() + ")";
  }

  // ---- the A/B of the low-d index's vector type: the same points in a second collection whose
  // indexes hold the other type (int8 with a per-dim scale / fp32), the same grid on it ------------
  if (compare_int8) {
    CollectionSpec other = spec;
    other.name = "bench_other_index";
    for (IndexSpec& ix : other.indexes) ix.int8 = !int8_index;
    bool have = false;
    for (const auto& c : engine->Stats().collections) {
      have |= reuse && c.name == other.name && c.points == static_cast<uint64_t>(n);
    }
    if (!have) {
      (void)engine->DropCollection(other.name);  // NotFound when it was never made
      if (Status st = engine->CreateCollection(other); !st.ok()) Die(st.ToString());
      std::fprintf(stderr, "ingesting %lld points into '%s' (%s low-d indexes)\n", (long long)n,
                   other.name.c_str(), int8_index ? "fp32" : "int8");
      // The normalised copies in FAISS: the same points for cosine.
      for (int64_t start = 0; start < n; start += 1000) {
        const int64_t end = std::min(n, start + 1000);
        std::vector<PointView> pts;
        for (int64_t i = start; i < end; ++i) {
          pts.push_back(PointView{static_cast<uint64_t>(i),
                                  std::span<const float>(xb + i * d, static_cast<size_t>(d)), ""});
        }
        if (Status st = engine->Upsert(other.name, pts); !st.ok()) Die(st.ToString());
      }
      if (Status st = engine->Checkpoint(); !st.ok()) Die(st.ToString());
    }
    coll = other.name;
    coll_int8 = !int8_index;
    method = "shard engine (one trip, " + rerank_name() + (coll_int8 ? ", int8 index)" : ", fp32 index)");
    run_grid();
    coll = "bench";
    coll_int8 = int8_index;
    method = "shard engine (one trip, " + rerank_name() + ")";
  }

  // ---- the same grid reranking from the other source (rows file vs RocksDB lookups) ----------
  if (compare_rerank) {
    engine.reset();
    eo.rerank_rows = rocksdb_rerank;
    opened = Engine::Open(eo);
    if (!opened.ok()) Die(opened.status().ToString());
    engine = std::move(opened.value());
    method = "shard engine (one trip, " + rerank_name() + ")";
    run_grid();
    eo.rerank_rows = !rocksdb_rerank;
  }

  // ---- the same grid with the other read path (pread + block cache vs mmap) -----------------
  if (compare_mmap) {
    engine.reset();
    eo.mmap_reads = !mmap_reads;
    opened = Engine::Open(eo);
    if (!opened.ok()) Die(opened.status().ToString());
    engine = std::move(opened.value());
    method = std::string("shard engine (one trip, ") + (eo.mmap_reads ? "mmap reads)" : "pread reads)");
    run_grid();
  }

  // ---- hnswlib over the full d --------------------------------------------------------------
  double hnsw_build_s = 0, hnsw_mem = 0;
  int32_t cheapest_ef = -1;
  if (!skip_hnsw_full) {
    IndexSpec full;
    full.dims = static_cast<int32_t>(d);
    full.kind = IndexKind::kHnsw;
    full.hnsw_m = hnsw_m;
    full.ef_construction = ef_construction;
    const auto h0 = Clock::now();
    auto index = MakeLowDIndex(full, IndexMetric::kInnerProduct, static_cast<size_t>(n));
    std::vector<uint64_t> ids(n);
    for (int64_t i = 0; i < n; ++i) ids[i] = static_cast<uint64_t>(i);
    index->AddBulk(ids, xb, threads);
    hnsw_build_s = Seconds(h0, Clock::now());
    hnsw_mem = static_cast<double>(index->memory_bytes()) / n;
    std::vector<Candidate> res;
    for (int32_t ef : ef_sweep) {
      Row r = Measure("hnswlib HNSW, full d", "ef=" + std::to_string(ef), nq, ev,
                      [&](size_t qi, std::vector<int64_t>* out) {
                        index->Search(&qn[qi * d], k, ef, false, &res);
                        out->clear();
                        for (const auto& c : res) out->push_back(static_cast<int64_t>(c.id));
                      });
      if (cheapest_ef < 0 && r.recall >= 0.95) {
        cheapest_ef = ef;
        r.note = "cheapest ef with recall@10 >= 0.95";
      }
      rows.push_back(r);
    }
  }

  // ---- FAISS exact -------------------------------------------------------------------------
  {
    std::vector<float> dist(k);
    std::vector<faiss::Index::idx_t> labels(k);
    const size_t fq = std::min<size_t>(nq, faiss_queries);
    rows.push_back(Measure("FAISS IndexFlatIP (exact)",
                           "full d, one query per call (first " + std::to_string(fq) + " queries)",
                           fq, ev,
                           [&](size_t qi, std::vector<int64_t>* out) {
                             flat.search(1, &qn[qi * d], k, dist.data(), labels.data());
                             out->assign(labels.begin(), labels.end());
                           },
                           nullptr, /*warmup=*/3));  // a full pass would cost minutes at 1M
  }

  // ---- the issue 13 comparison: the fastest engine plan at recall@10 >= 0.95 against hnswlib
  // full d at its cheapest ef reaching it (QPS), their resident index RAM and build time ----------
  const Row* hnsw_best = nullptr;
  for (const Row& r : rows) {
    if (r.method == "hnswlib HNSW, full d" && r.plan == "ef=" + std::to_string(cheapest_ef)) {
      hnsw_best = &r;
    }
  }
  auto collection_stats = [&](const EngineStats& es, const std::string& name) {
    for (const auto& c : es.collections) {
      if (c.name == name) return c;
    }
    Die("no engine stats for collection " + name);
    return EngineStats::Collection{};
  };
  const EngineStats::Collection cstats = collection_stats(stats, "bench");
  const EngineStats now_stats = engine->Stats();
  // The fastest engine row at recall@10 >= 0.95 among those `pick` accepts, with its index's RAM
  // and build time (built alone with capacity N, like hnswlib full d; the engine's live index
  // grows by doubling: its slack is reported beside) and the ratios to hnswlib full d.
  auto summarize = [&](const std::function<bool(const Row&)>& pick, const Row** best_out) {
    const Row* best = nullptr;
    for (const Row& r : rows) {
      if (r.method.rfind("shard engine", 0) == 0 && pick(r) && r.recall >= 0.95 &&
          (!best || r.qps > best->qps)) {
        best = &r;
      }
    }
    *best_out = best;
    nlohmann::json sm;
    if (!best) return sm;
    double low_ram = -1, low_build = -1, live_ram = -1;
    const auto live = best->int8 == int8_index ? cstats
                                               : collection_stats(now_stats, "bench_other_index");
    for (const auto& ix : live.indexes) {
      if (ix.dims == best->ds) live_ram = static_cast<double>(ix.memory_bytes) / n;
    }
    for (const auto& b : low_builds) {
      if (b.ds == best->ds && b.int8 == best->int8) {
        low_build = b.seconds;
        low_ram = b.bytes_per_vector;
      }
    }
    sm["best_engine_plan"] = {{"method", best->method}, {"plan", best->plan},
                              {"recall_at_10", best->recall}, {"qps", best->qps},
                              {"p50_ms", best->p50_ms}, {"p99_ms", best->p99_ms},
                              {"shortlist_dims", best->ds}, {"int8_index", best->int8},
                              {"index_ram_bytes_per_vector", low_ram},
                              {"index_build_s", low_build},
                              {"live_engine_index_ram_bytes_per_vector", live_ram}};
    if (hnsw_best) {
      sm["hnswlib_full_d"] = {{"ef", cheapest_ef}, {"recall_at_10", hnsw_best->recall},
                              {"qps", hnsw_best->qps}, {"p50_ms", hnsw_best->p50_ms},
                              {"ram_bytes_per_vector", hnsw_mem}, {"build_s", hnsw_build_s}};
      sm["qps_ratio"] = best->qps / hnsw_best->qps;
      sm["ram_ratio_hnsw_over_engine_index"] = low_ram > 0 ? hnsw_mem / low_ram : -1.0;
      sm["build_ratio_hnsw_over_engine_index"] = low_build > 0 ? hnsw_build_s / low_build : -1.0;
    }
    sm["rows_file"] = {
        {"disk_bytes_per_vector", static_cast<double>(cstats.rows.file_bytes) / n},
        {"page_cache_bytes_per_vector_at_reopen", static_cast<double>(cstats.rows.resident_bytes) / n},
        {"id_table_ram_bytes_per_vector", static_cast<double>(cstats.rows.table_bytes) / n}};
    return sm;
  };
  const Row* best = nullptr;
  nlohmann::json summary = summarize([](const Row&) { return true; }, &best);
  if (compare_int8) {
    for (bool i8 : {false, true}) {
      const Row* b = nullptr;
      summary["by_index_type"][i8 ? "int8" : "fp32"] =
          summarize([i8](const Row& r) { return r.int8 == i8; }, &b);
    }
  }

  // ---- report --------------------------------------------------------------------------------
  std::printf(
      "\n## shard_bench: N=%lld, d=%lld, %lld queries, k=%d (cosine; engine stores fp16)\n\n",
      (long long)n, (long long)d, (long long)nq, k);
  std::printf("| method | plan | recall@10 | mAP@10 | QPS | p50 ms | p99 ms | note |\n");
  std::printf("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n");
  for (const auto& r : rows) {
    char map[32];
    if (r.map < 0) {
      std::snprintf(map, sizeof(map), "-");
    } else {
      std::snprintf(map, sizeof(map), "%.4f", r.map);
    }
    std::printf("| %s | %s | %.4f | %s | %.0f | %.3f | %.3f | %s |\n", r.method.c_str(),
                r.plan.c_str(), r.recall, map, r.qps, r.p50_ms, r.p99_ms, r.note.c_str());
  }
  std::printf("\n| component | build | RAM bytes/vector | disk bytes/vector |\n");
  std::printf("| --- | ---: | ---: | ---: |\n");
  const auto& cs = cstats;
  char ingest_desc[160];
  if (reused) {
    std::snprintf(ingest_desc, sizeof(ingest_desc), "reused data dir (ingest not run)");
  } else {
    std::snprintf(ingest_desc, sizeof(ingest_desc), "ingest %.1f s (%.0f vec/s)", ingest_s,
                  n / ingest_s);
  }
  std::printf(
      "| shard engine: RocksDB (fp16 vectors) + %zu HNSW indexes | %s, "
      "checkpoint %.1f s, reopen %.2f s | - | %.0f |\n",
      cs.indexes.size(), ingest_desc, checkpoint_s, reopen_s,
      static_cast<double>(stats.disk_bytes) / n);
  if (cs.rows.file_bytes > 0) {
    std::printf("| engine rerank rows file (fp16, mmap; in page cache at reopen: %.0f B/vector) | "
                "(in ingest)%s | %.0f (id tables) | %.0f |\n",
                static_cast<double>(cs.rows.resident_bytes) / n,
                cs.rows.loaded ? ", loaded at reopen" : "",
                static_cast<double>(cs.rows.table_bytes) / n,
                static_cast<double>(cs.rows.file_bytes) / n);
  }
  for (const auto& ix : cs.indexes) {
    std::printf("| engine HNSW index Ds=%d (M=%d%s) | (in ingest)%s | %.0f | - |\n", ix.dims, hnsw_m,
                int8_index ? ", int8" : "",
                ix.loaded ? ", loaded at reopen" : "", static_cast<double>(ix.memory_bytes) / n);
  }
  for (const auto& b : low_builds) {
    std::printf("| HNSW Ds=%d (M=%d, efc=%d%s) built alone from the prefixes | %.1f s | %.0f | - |\n",
                b.ds, hnsw_m, ef_construction, b.int8 ? ", int8" : "", b.seconds,
                b.bytes_per_vector);
  }
  if (!skip_hnsw_full) {
    std::printf("| hnswlib HNSW full d=%lld (M=%d, efc=%d) | %.1f s | %.0f | - |\n", (long long)d,
                hnsw_m, ef_construction, hnsw_build_s, hnsw_mem);
  }
  std::printf("| FAISS IndexFlatIP full d | %.2f s | %.0f | - |\n", faiss_build_s, 4.0 * d);
  std::printf("\nengine: block cache %zu MB, mmap reads %s.\n", block_cache_mb,
              mmap_reads ? "on" : "off");
  std::printf("\nbuild threads: %d; kernels: %s, %s; queries single-threaded.\n", threads,
              DistanceKernelName(), HalfKernelName());
  if (best) {
    std::printf("\nfastest engine plan at recall@10 >= 0.95: %s, %s: recall %.4f, %.0f QPS, p50 %.3f ms, "
                "p99 %.3f ms; its Ds=%d index %.0f B/vector, built alone in %.1f s\n",
                best->method.c_str(), best->plan.c_str(), best->recall, best->qps, best->p50_ms,
                best->p99_ms, best->ds, summary["best_engine_plan"]["index_ram_bytes_per_vector"].get<double>(),
                summary["best_engine_plan"]["index_build_s"].get<double>());
    if (hnsw_best) {
      std::printf("hnswlib full d at its cheapest ef reaching 0.95 (ef=%d): recall %.4f, %.0f QPS, "
                  "%.0f B/vector, built in %.1f s\n",
                  cheapest_ef, hnsw_best->recall, hnsw_best->qps, hnsw_mem, hnsw_build_s);
      std::printf("ratios (targets: QPS >= 2, RAM >= 30, build >= 10): QPS %.2fx, index RAM %.1fx "
                  "smaller, build %.1fx faster\n",
                  summary["qps_ratio"].get<double>(),
                  summary["ram_ratio_hnsw_over_engine_index"].get<double>(),
                  summary["build_ratio_hnsw_over_engine_index"].get<double>());
    }
  } else {
    std::printf("\nno engine plan reached recall@10 >= 0.95\n");
  }
  std::printf("reproduce: `%s`\n", command.c_str());
  std::printf("%s\n", ProvenanceLine(stamp).c_str());
  if (!json_out.empty()) {
    nlohmann::json j;
    j["provenance"] = stamp;
    j["n"] = n;
    j["d"] = d;
    j["queries"] = nq;
    j["k"] = k;
    j["grid_seed"] = grid_seed;
    j["warmup_queries"] = g_warmup_queries == 0 ? nq : static_cast<int64_t>(g_warmup_queries);
    j["truth"] = "full-d fp32 cosine over the original vectors (FAISS IndexFlatIP, normalised)";
    j["metrics"] = {{"recall", "|top-k ∩ truth top-k| / k (common/retrieval_metrics.h)"},
                    {"map", "AP@k as the MRL paper's code: precisions at the label hits summed / k"}};
    j["kernels"] = {DistanceKernelName(), HalfKernelName()};
    j["build_threads"] = threads;
    j["block_cache_mb"] = block_cache_mb;
    j["mmap_reads"] = mmap_reads;
    j["int8_index"] = int8_index;
    j["compare_int8"] = compare_int8;
    for (const auto& r : rows) {
      j["rows"].push_back({{"method", r.method}, {"plan", r.plan}, {"recall_at_10", r.recall},
                           {"map_at_10", r.map}, {"qps", r.qps}, {"p50_ms", r.p50_ms},
                           {"p99_ms", r.p99_ms}, {"note", r.note}, {"run_order", r.run_order},
                           {"shortlist_dims", r.ds}, {"int8_index", r.int8}});
    }
    j["engine"] = {{"reused", reused},
                   {"ingest_s", reused ? -1.0 : ingest_s},
                   {"checkpoint_s", checkpoint_s},
                   {"reopen_s", reopen_s},
                   {"disk_bytes_per_vector", static_cast<double>(stats.disk_bytes) / n},
                   {"rerank_rows", !rocksdb_rerank},
                   {"rows", {{"file_bytes_per_vector", static_cast<double>(cs.rows.file_bytes) / n},
                             {"resident_bytes_per_vector_at_reopen",
                              static_cast<double>(cs.rows.resident_bytes) / n},
                             {"table_ram_bytes_per_vector",
                              static_cast<double>(cs.rows.table_bytes) / n},
                             {"loaded_at_reopen", cs.rows.loaded}}}};
    for (const auto& ix : cs.indexes) {
      j["engine"]["indexes"].push_back(
          {{"dims", ix.dims}, {"ram_bytes_per_vector", static_cast<double>(ix.memory_bytes) / n}});
    }
    for (const auto& b : low_builds) {
      j["low_d_builds"].push_back({{"dims", b.ds}, {"int8", b.int8}, {"seconds", b.seconds},
                                   {"ram_bytes_per_vector", b.bytes_per_vector}});
    }
    if (!skip_hnsw_full) {
      j["hnsw_full"] = {{"build_s", hnsw_build_s}, {"ram_bytes_per_vector", hnsw_mem}, {"m", hnsw_m},
                        {"ef_construction", ef_construction}, {"cheapest_ef_recall_095", cheapest_ef}};
    }
    j["faiss_flat"] = {{"build_s", faiss_build_s}, {"ram_bytes_per_vector", 4.0 * d}};
    j["summary"] = summary;
    std::ofstream out(json_out);
    out << j.dump(1) << "\n";
    if (!out) Die("cannot write " + json_out);
  }

  engine.reset();
  if (temp_dir && !keep) std::filesystem::remove_all(data_dir);
  return 0;
}
