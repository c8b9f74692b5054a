#include "ops/eval.h"

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <numeric>
#include <random>
#include <thread>
#include <unordered_map>

#include "common/atomic_file.h"
#include "common/exact_search.h"
#include "common/npy.h"
#include "common/retrieval_metrics.h"
#include "ops/embeddings_file.h"
#include "ops/http_client.h"
#include "ops/ticker.h"
#include "rpc/client.h"

namespace mrl::ops {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

struct PlanRun {
  std::vector<std::vector<uint64_t>> hits;
  std::vector<double> latency_ms;
  double wall_s = 0;
};

// Runs queries 0..n-1 on `concurrency` threads. make_worker() is called once per thread and
// returns that thread's query function (which owns its connection); it returns the hit ids of
// query i. The first error stops every thread and is the answer.
using QueryFn = std::function<Result<std::vector<uint64_t>>(size_t)>;
// `done`, when given, counts the queries answered (for a Ticker).
Result<PlanRun> RunConcurrently(size_t n, int concurrency,
                                const std::function<Result<QueryFn>()>& make_worker,
                                std::atomic<size_t>* done = nullptr) {
  PlanRun r;
  r.hits.resize(n);
  r.latency_ms.resize(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  Status error;
  std::mutex error_mu;
  auto fail = [&](const Status& st) {
    std::lock_guard<std::mutex> lock(error_mu);
    if (error.ok()) error = st;
    failed = true;
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&] {
      auto query = make_worker();
      if (!query.ok()) return fail(query.status());
      for (size_t i = next++; i < n && !failed; i = next++) {
        const auto s = Clock::now();
        auto hits = query.value()(i);
        if (!hits.ok()) return fail(hits.status().WithContext("query " + std::to_string(i)));
        r.hits[i] = std::move(hits).value();
        r.latency_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        if (done) ++*done;
      }
    });
  }
  for (auto& t : workers) t.join();
  if (failed) return error.WithContext("search failed");
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

// Every query through the coordinator's HTTP API, one keep-alive connection per thread.
Result<PlanRun> RunQueries(const std::string& url, const std::string& token,
                           const std::string& collection, const std::vector<float>& q, int64_t d,
                           const json& plan, int k, int concurrency,
                           std::atomic<size_t>* done = nullptr) {
  return RunConcurrently(
      q.size() / static_cast<size_t>(d), concurrency,
      [&]() -> Result<QueryFn> {
        auto c = std::make_shared<HttpClient>(url, token);
        // The body's fixed part once; per query only the vector, each float in its shortest
        // form that reads back as the same float (std::to_chars): nlohmann writes a float as a
        // 17-digit double (~44 KB for 2048 dims), which cost this client more than the search.
        json fixed = plan;
        fixed["k"] = k;
        std::string head = fixed.dump();
        head.pop_back();  // the closing brace
        head += head.size() > 1 ? ",\"vector\":[" : "\"vector\":[";
        return QueryFn([&, c, head](size_t i) -> Result<std::vector<uint64_t>> {
          std::string body = head;
          body.reserve(head.size() + static_cast<size_t>(d) * 16 + 2);
          char buf[32];
          for (int64_t j = 0; j < d; ++j) {
            const auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), q[i * d + j]);
            if (j > 0) body += ',';
            body.append(buf, end);
          }
          body += "]}";
          auto answer = c->CallJson(http::verb::post, "/v1/collections/" + collection + "/search",
                                    body, "search");
          if (!answer.ok()) return answer.status();
          std::vector<uint64_t> hits;
          try {
            for (const json& h : answer.value().at("results").at(0))
              hits.push_back(h.at("id").get<uint64_t>());
          } catch (const json::exception& e) {
            return Status::Corruption(std::string("search answer: ") + e.what());
          }
          return hits;
        });
      },
      done);
}

// The same through the coordinator's binary API: one connection per thread, the plan as stages.
Result<PlanRun> RunQueriesBinary(const std::string& address, const std::string& collection,
                                 const std::vector<float>& q, int64_t d,
                                 const std::vector<std::pair<int32_t, int32_t>>& stages,
                                 int concurrency, std::atomic<size_t>* done = nullptr) {
  return RunConcurrently(
      q.size() / static_cast<size_t>(d), concurrency,
      [&]() -> Result<QueryFn> {
        auto options = BinaryClientOptions(address);
        if (!options.ok()) return options.status();
        auto c = std::make_shared<rpc::RpcClient>(options.value());
        auto req = std::make_shared<wire::SearchRequestT>();
        req->collection = collection;
        req->dims = static_cast<int32_t>(d);
        for (const auto& [dims, k] : stages) req->stages.emplace_back(dims, k);
        return QueryFn([&, c, req](size_t i) -> Result<std::vector<uint64_t>> {
          req->queries.assign(q.begin() + static_cast<std::ptrdiff_t>(i * d),
                              q.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
          auto res = c->Call(*req, 10000);
          if (!res.ok()) return res.status();
          if (res->results.empty() || !res->results[0])
            return Status::Corruption("a search answer without results");
          std::vector<uint64_t> hits;
          for (const auto& h : res->results[0]->candidates) hits.push_back(h.id());
          return hits;
        });
      },
      done);
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty()
             ? 0
             : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

}  // namespace

Status Eval(const EvalArgs& a, const json& stamp) {
  const auto t_start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t_start).count(); };
  auto qa = ReadEmbeddings(a.queries);
  if (!qa.ok()) return qa.status();
  const int64_t d = qa->dims;
  std::vector<float> q = std::move(qa->data);
  const int64_t n = std::min<int64_t>(qa->rows, a.limit > 0 ? a.limit : qa->rows);
  q.resize(static_cast<size_t>(n * d));
  const int k = a.k;
  auto qlabels_read = ReadNpyLabels(a.query_labels);
  if (!qlabels_read.ok()) return qlabels_read.status();
  const std::vector<int64_t> qlabels = std::move(qlabels_read).value();
  if (static_cast<int64_t>(qlabels.size()) < n)
    return Status::InvalidArgument(a.query_labels + ": fewer labels than queries");
  std::unordered_map<uint64_t, int64_t> label_of;
  std::vector<uint64_t> db_ids;
  {
    auto dl_read = ReadNpyLabels(a.db_labels);
    if (!dl_read.ok()) return dl_read.status();
    const std::vector<int64_t>& dl = dl_read.value();
    auto ida = ReadIds(a.db_ids, static_cast<int64_t>(dl.size()));
    if (!ida.ok()) return ida.status().WithContext("--db-ids must match --db-labels");
    db_ids = std::move(ida).value();
    for (size_t i = 0; i < dl.size(); ++i) label_of[db_ids[i]] = dl[i];
  }
  // Ground truth: full-d fp32 cosine over the original vectors.
  std::vector<std::vector<uint64_t>> truth;
  if (!a.latency_only && !a.truth.empty()) {
    // Precomputed truth (e.g. FAISS IndexFlatIP over the normalised fp32 vectors): at 1M x 2048
    // the scan below costs minutes that a BLAS scan elsewhere has already spent.
    auto ta = ReadNpy(a.truth);
    if (!ta.ok()) return ta.status();
    const NpyArray& t = ta.value();
    if (t.shape.size() != 2 || t.shape[0] < n || t.shape[1] < k ||
        (t.dtype != NpyDtype::kInt64 && t.dtype != NpyDtype::kUInt64)) {
      return Status::InvalidArgument(
          a.truth + ": expected int64 or uint64 ids [>= " + std::to_string(n) + ", >= " +
          std::to_string(k) + "] (the exact top-k database ids of each query, best first)");
    }
    std::unordered_map<uint64_t, bool> known;
    for (uint64_t id : db_ids) known[id] = true;
    truth.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) {
      for (int64_t j = 0; j < k; ++j) {
        const uint64_t id = static_cast<uint64_t>(t.as<int64_t>()[i * t.shape[1] + j]);
        if (!known.count(id)) {
          return Status::InvalidArgument(a.truth + ": query " + std::to_string(i) +
                                         " names id " + std::to_string(id) +
                                         ", which is not in --db-ids");
        }
        truth[static_cast<size_t>(i)].push_back(id);
      }
    }
    std::printf("[eval %6.1fs] exact ground truth read from %s (%lld queries x top %d)\n",
                elapsed(), a.truth.c_str(), static_cast<long long>(n), k);
  } else if (!a.latency_only) {
    if (a.db_embeddings.empty()) {
      return Status::InvalidArgument(
          "recall@k needs --db-embeddings (the original vectors: the ground truth is full-d "
          "fp32 cosine over them) or --truth; or pass --latency-only");
    }
    auto dba = ReadEmbeddings(a.db_embeddings);
    if (!dba.ok()) return dba.status();
    if (dba->dims != d || static_cast<size_t>(dba->rows) != db_ids.size()) {
      return Status::InvalidArgument(a.db_embeddings + ": expected [" +
                                     std::to_string(db_ids.size()) + ", " + std::to_string(d) +
                                     "] (the rows of --db-ids)");
    }
    const std::vector<float>& db = dba->data;
    std::printf(
        "[eval %6.1fs] exact ground truth: %lld queries x %zu points x %lld dims, fp32 cosine\n",
        elapsed(), static_cast<long long>(n), db_ids.size(), static_cast<long long>(d));
    std::fflush(stdout);
    const Ticker ticker(t_start, [] { return std::string("exact ground truth: still scanning"); });
    const auto rows =
        ExactCosineTopK(db.data(), db_ids.size(), q.data(), static_cast<size_t>(n),
                        static_cast<size_t>(d), static_cast<size_t>(k),
                        static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    truth.resize(rows.size());
    for (size_t i = 0; i < rows.size(); ++i) {
      for (uint32_t r : rows[i]) truth[i].push_back(db_ids[r]);
    }
    std::printf("[eval %6.1fs] ground truth done\n", elapsed());
  }
  struct Score {
    double map = -1, recall = -1;  // -1: not measured
  };
  auto score = [&](const std::vector<std::vector<uint64_t>>& hits) {
    Score s;
    if (a.latency_only) return s;
    RetrievalScorer scorer(static_cast<size_t>(k));
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < static_cast<int64_t>(hits.size()); ++i) {  // --exact-limit: fewer
      const auto& h = hits[static_cast<size_t>(i)];
      labels.clear();
      for (uint64_t id : h) {
        auto it = label_of.find(id);
        labels.push_back(it == label_of.end() ? std::numeric_limits<int64_t>::min() : it->second);
      }
      scorer.AddLabels(labels, qlabels[static_cast<size_t>(i)]);
      scorer.AddRecall(h, truth[static_cast<size_t>(i)]);
    }
    s.map = 100 * scorer.map_at_k();
    s.recall = scorer.recall_at_k();
    return s;
  };

  const json paper = {{"plan", {{"shortlist_dims", 16}, {"shortlist_k", 200}, {"rerank_dims", d}}}};
  // Warm-up: connections, the shards' block caches and indexes, before anything is timed.
  if (a.warmup > 0) {
    std::vector<float> wq(q.begin(), q.begin() + std::min<int64_t>(n, a.warmup) * d);
    auto warm = RunQueries(a.url, a.token, a.collection, wq, d, paper, k, 1);
    if (!warm.ok()) return warm.status().WithContext("warm-up");
    std::printf("[eval %6.1fs] warm-up: %lld queries of the paper's plan (untimed)\n", elapsed(),
                static_cast<long long>(std::min<int64_t>(n, a.warmup)));
  }
  json budgets = {{"fast", "-"}, {"balanced", "-"}, {"exact", "-"}};
  const bool want_budgets =
      a.plans.empty() || std::any_of(a.plans.begin(), a.plans.end(), [](const std::string& p) {
        return p.rfind("budget_", 0) == 0;
      });
  if (!a.latency_only && want_budgets) {
    std::printf("[eval %6.1fs] calibrating the budgets (coordinator, 200 sampled points)\n",
                elapsed());
    std::fflush(stdout);
    HttpClient c(a.url, a.token);
    const auto cal_start = Clock::now();
    const Ticker ticker(t_start, [cal_start] {
      return "calibrating: waiting for the coordinator (" +
             std::to_string(static_cast<int>(
                 std::chrono::duration<double>(Clock::now() - cal_start).count())) +
             " s)";
    });
    auto cal = c.CallJson(http::verb::post, "/v1/collections/" + a.collection + "/calibrate",
                          json{{"sample", 200}, {"k", k}}.dump(), "calibrate");
    if (!cal.ok()) return cal.status();
    for (const char* b : {"fast", "balanced", "exact"}) {
      if (!cal->contains("budgets") || !(*cal)["budgets"].contains(b) ||
          !(*cal)["budgets"][b].is_string()) {
        return Status::Corruption(std::string("calibrate: the answer names no '") + b + "' budget");
      }
      budgets[b] = (*cal)["budgets"][b];
    }
  }
  // The paper-shaped funnel over the nesting dims below d: 16/200 -> 32/100 -> 64/50 -> 128/25 ->
  // d/k.
  json funnel = json::array();
  std::string funnel_name = "funnel";
  for (auto [dims, kk] :
       std::vector<std::pair<int64_t, int>>{{16, 200}, {32, 100}, {64, 50}, {128, 25}}) {
    if (dims >= d) break;
    funnel.push_back({dims, kk});
    funnel_name += " " + std::to_string(dims) + "/" + std::to_string(kk) + " ->";
  }
  funnel.push_back({d, k});
  funnel_name += " d/" + std::to_string(k);
  // An exact query scans every stored vector (~2 s at 1M x 2048 on 2 cores, over the
  // coordinator's 2 s default deadline): exact plans carry a deadline of their own.
  constexpr uint32_t kExactDeadlineMs = 300000;
  std::vector<std::pair<std::string, json>> plans = {
      {"exact " + std::to_string(d) + "-d scan (stored vectors)",
       {{"exact", true}, {"deadline_ms", kExactDeadlineMs}}},
      {"adaptive Ds=16 K=200 Dr=d (paper)", paper},
      {"adaptive, one trip",
       {{"plan", {{"shortlist_dims", 16}, {"shortlist_k", 200}, {"rerank_dims", d}}},
        {"one_trip", true}}},
      {funnel_name, {{"funnel", funnel}}},
      {"budget fast (" + budgets["fast"].get<std::string>() + ")", {{"budget", "fast"}}},
      {"budget balanced (" + budgets["balanced"].get<std::string>() + ")",
       {{"budget", "balanced"}}},
      {"budget exact (" + budgets["exact"].get<std::string>() + ")",
       {{"budget", "exact"}, {"deadline_ms", kExactDeadlineMs}}},
  };
  if (a.latency_only) plans.clear();  // no exact pass, no calibration: latency and QPS only
  if (!a.plans.empty()) {  // --plans: keep the named ones (first word of the plan's name)
    std::vector<std::pair<std::string, json>> kept;
    for (auto& p : plans) {
      const std::string first = p.first.substr(0, p.first.find(' '));
      const std::string key = p.first.find("(paper)") != std::string::npos    ? "paper"
                              : p.first.find("one trip") != std::string::npos ? "one_trip"
                              : first == "budget"
                                  ? "budget_" + p.first.substr(7, p.first.find(' ', 7) - 7)
                                  : first;
      if (std::find(a.plans.begin(), a.plans.end(), key) != a.plans.end())
        kept.push_back(std::move(p));
    }
    plans = std::move(kept);
  }
  // Plans run in a shuffled order (seeded, in the report) so no plan always runs first or
  // right after another; the table keeps the order above.
  std::vector<size_t> order(plans.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(a.seed));
  // The calibrated "exact" budget normally is the exact plan itself ("exact: exact"): rather than
  // scan everything twice (the slowest row, ~11 QPS on 2 cores at 60k x 2048), it runs last, on
  // the first kSamePlanCheck queries, and when its answers are the exact scan's, id for id, the
  // row says so and carries the exact scan's figures (marked "same_as"); otherwise it runs whole.
  constexpr int64_t kSamePlanCheck = 50;
  size_t exact_row = plans.size(), same_plan_row = plans.size();
  for (size_t i = 0; i < plans.size(); ++i) {
    if (plans[i].first.rfind("exact ", 0) == 0) exact_row = i;
    if (plans[i].first.rfind("budget exact", 0) == 0 &&
        budgets["exact"].get<std::string>() == "exact: exact") {
      same_plan_row = i;
    }
  }
  if (exact_row < plans.size() && same_plan_row < plans.size()) {
    order.erase(std::find(order.begin(), order.end(), same_plan_row));
    order.push_back(same_plan_row);
  } else {
    same_plan_row = plans.size();
  }
  std::vector<json> rows(plans.size());
  std::vector<std::vector<uint64_t>> exact_hits;
  for (size_t oi = 0; oi < order.size(); ++oi) {
    // Not a structured binding: a lambda below captures `plan` (clang 14, the TSan build's
    // compiler, cannot capture bindings).
    const auto& name = plans[order[oi]].first;
    const auto& plan = plans[order[oi]].second;
    if (order[oi] == same_plan_row) {
      // The exact plan ran on the first min(n, --exact-limit) queries: check on those.
      const int64_t m = std::min<int64_t>(static_cast<int64_t>(exact_hits.size()), kSamePlanCheck);
      std::printf(
          "[eval %6.1fs] plan %zu/%zu: %s: the exact plan again: checking its answers on "
          "%lld queries against the exact scan's\n",
          elapsed(), oi + 1, plans.size(), name.c_str(), static_cast<long long>(m));
      std::vector<float> head(q.begin(), q.begin() + m * d);
      auto check = RunQueries(a.url, a.token, a.collection, head, d, plan, k, 1);
      if (!check.ok()) return check.status().WithContext(name);
      bool same = m > 0;
      for (int64_t i = 0; i < m; ++i) {
        same = same && check->hits[static_cast<size_t>(i)] == exact_hits[static_cast<size_t>(i)];
      }
      if (same) {
        json row = rows[exact_row];
        row["plan"] = name;
        row["same_as"] = plans[exact_row].first;
        row["checked_identical_queries"] = m;
        row["run_order"] = oi;
        rows[order[oi]] = row;
        continue;
      }
      std::printf("[eval %6.1fs] %s: answers differ from the exact scan's: running it whole\n",
                  elapsed(), name.c_str());
    }
    // --exact-limit: an exact scan through the coordinator reads every stored vector (about a
    // second per query at 1M x 2048 on 2 cores): it runs on the first queries only.
    const bool is_exact = order[oi] == exact_row || order[oi] == same_plan_row ||
                          (plan.contains("exact") && plan["exact"] == true);
    const int64_t nq = is_exact && a.exact_limit > 0 ? std::min<int64_t>(n, a.exact_limit) : n;
    std::printf("[eval %6.1fs] plan %zu/%zu: %s (%lld queries)\n", elapsed(), oi + 1, plans.size(),
                name.c_str(), static_cast<long long>(nq));
    std::fflush(stdout);
    std::atomic<size_t> done{0};
    auto run = [&] {
      const Ticker ticker(t_start, [&, oi, nq] {
        return "plan " + std::to_string(oi + 1) + "/" + std::to_string(plans.size()) + ": " +
               std::to_string(done.load()) + "/" + std::to_string(nq) + " queries";
      });
      if (nq == n) return RunQueries(a.url, a.token, a.collection, q, d, plan, k, 1, &done);
      const std::vector<float> head(q.begin(), q.begin() + nq * d);
      return RunQueries(a.url, a.token, a.collection, head, d, plan, k, 1, &done);
    }();
    if (!run.ok()) return run.status().WithContext(name);
    const PlanRun& r = run.value();
    const Score sc = score(r.hits);  // outside the timed loop
    if (order[oi] == exact_row) exact_hits = r.hits;
    rows[order[oi]] = {{"plan", name},
                       {"map_at_10", sc.map},
                       {"recall_at_10", sc.recall},
                       {"p50_ms", Percentile(r.latency_ms, 0.5)},
                       {"p99_ms", Percentile(r.latency_ms, 0.99)},
                       {"qps_c1", static_cast<double>(nq) / r.wall_s},
                       {"queries", nq},
                       {"run_order", oi}};
  }
  // The ground truth's own mAP@10: full-d fp32 cosine, the figure the plans are held to.
  json truth_row;
  if (!a.latency_only) {
    const Score ts = score(truth);
    truth_row = {{"plan", "ground truth: exact full-d fp32 cosine (client side)"},
                 {"map_at_10", ts.map},
                 {"recall_at_10", ts.recall},
                 {"source", a.truth.empty() ? "common/exact_search.h over --db-embeddings"
                                            : "--truth " + a.truth}};
    std::printf("\n%s: mAP@10 %.2f\n", truth_row["plan"].get<std::string>().c_str(), ts.map);
  }
  json report = json::array();
  if (!plans.empty()) {
    std::printf("\n%-62s %8s %9s %8s %8s %8s\n", "plan (queries through the coordinator)", "mAP@10",
                "recall@10", "p50 ms", "p99 ms", "QPS");
  }
  for (const json& row : rows) {
    std::printf("%-62s %8.2f %9.3f %8.2f %8.2f %8.0f\n", row["plan"].get<std::string>().c_str(),
                row["map_at_10"].get<double>(), row["recall_at_10"].get<double>(),
                row["p50_ms"].get<double>(), row["p99_ms"].get<double>(),
                row["qps_c1"].get<double>());
    if (row.contains("same_as")) {
      std::printf("%-62s\n", ("  = " + row["same_as"].get<std::string>() + ": the same plan, " +
                              "answers identical on the first " +
                              std::to_string(row["checked_identical_queries"].get<int64_t>()) +
                              " queries; figures above are that row's")
                                 .c_str());
    }
    report.push_back(row);
  }
  std::printf("\nthroughput of the paper's plan by client concurrency:\n");
  json conc = json::array();
  for (int cc : a.concurrency) {
    std::atomic<size_t> done{0};
    auto run = [&] {
      const Ticker ticker(t_start, [&, cc] {
        return "concurrency " + std::to_string(cc) + ": " + std::to_string(done.load()) + "/" +
               std::to_string(n) + " queries";
      });
      return RunQueries(a.url, a.token, a.collection, q, d, paper, k, cc, &done);
    }();
    if (!run.ok()) return run.status().WithContext("concurrency " + std::to_string(cc));
    const PlanRun& r = run.value();
    const Score sc = score(r.hits);
    std::printf("  concurrency %3d: %8.0f QPS, p50 %.2f ms, p99 %.2f ms\n", cc, n / r.wall_s,
                Percentile(r.latency_ms, 0.5), Percentile(r.latency_ms, 0.99));
    conc.push_back({{"concurrency", cc},
                    {"qps", n / r.wall_s},
                    {"p50_ms", Percentile(r.latency_ms, 0.5)},
                    {"p99_ms", Percentile(r.latency_ms, 0.99)},
                    {"recall_at_10", sc.recall}});
  }
  json conc_binary = json::array();
  if (!a.binary.empty()) {
    std::printf("\nthe same through the binary API (%s):\n", a.binary.c_str());
    for (int cc : a.concurrency) {
      std::atomic<size_t> done{0};
      auto run = [&] {
        const Ticker ticker(t_start, [&, cc] {
          return "binary API, concurrency " + std::to_string(cc) + ": " +
                 std::to_string(done.load()) + "/" + std::to_string(n) + " queries";
        });
        return RunQueriesBinary(a.binary, a.collection, q, d,
                                {{16, 200}, {static_cast<int32_t>(d), k}}, cc, &done);
      }();
      if (!run.ok())
        return run.status().WithContext("binary API, concurrency " + std::to_string(cc));
      const PlanRun& r = run.value();
      const Score sc = score(r.hits);
      std::printf("  concurrency %3d: %8.0f QPS, p50 %.2f ms, p99 %.2f ms, recall@10 %.3f\n", cc,
                  n / r.wall_s, Percentile(r.latency_ms, 0.5), Percentile(r.latency_ms, 0.99),
                  sc.recall);
      conc_binary.push_back({{"concurrency", cc},
                             {"qps", n / r.wall_s},
                             {"p50_ms", Percentile(r.latency_ms, 0.5)},
                             {"p99_ms", Percentile(r.latency_ms, 0.99)},
                             {"recall_at_10", sc.recall}});
    }
  }
  std::printf("[eval %6.1fs] done\n", elapsed());
  if (!a.json_out.empty()) {
    const json out = {
        {"provenance", stamp},
        {"queries", n},
        {"k", k},
        {"metrics",
         {{"map_at_10",
           "AP@k as the MRL paper's code: precision at each label hit among the top k, "
           "summed, divided by k (common/retrieval_metrics.h); percent"},
          {"recall_at_10",
           "|top-k ∩ truth top-k| / k; truth = full-d fp32 cosine over the original "
           "vectors (--db-embeddings, common/exact_search.h)"}}},
        {"plan_order_seed", a.seed},
        {"truth", truth_row},
        {"exact_limit", a.exact_limit},
        {"plans", report},
        {"concurrency", conc},
        {"concurrency_binary", conc_binary}};
    MRL_RETURN_IF_ERROR(WriteFileAtomic(a.json_out, out.dump(2)));
  }
  return Status::Ok();
}

}  // namespace mrl::ops
