// mrlctl: the operator's CLI.
//   mrlctl up     --dir D [--shards 2] [--replication 1] [--port 0]   start a local cluster
//   mrlctl down   --dir D                                             stop it (SIGTERM, drain)
//   mrlctl status --url URL                                           health, shard map, collections
//   mrlctl ingest --url URL --collection C --embeddings E.npy [--ids I.npy] [--labels L.npy]
//   mrlctl eval   --url URL --collection C --queries Q.npy --query-labels L.npy   (plans, recall, mAP, latency)
// The local cluster's processes, ports and URL are kept in D/cluster.json.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <cmath>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <unordered_map>
#include <atomic>
#include <limits>
#include <mutex>
#include <numeric>
#include <random>

#include "common/atomic_file.h"
#include "common/exact_search.h"
#include "common/npy.h"
#include "common/process.h"
#include "common/provenance.h"
#include "common/retrieval_metrics.h"
#include "rpc/client.h"

namespace {

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

struct Url {
  std::string host = "127.0.0.1", port = "8080";
};
Url ParseUrl(const std::string& url) {
  Url u;
  std::string rest = url.substr(url.find("://") == std::string::npos ? 0 : url.find("://") + 3);
  if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  const size_t colon = rest.rfind(':');
  u.host = rest.substr(0, colon);
  if (colon != std::string::npos) u.port = rest.substr(colon + 1);
  return u;
}

// One keep-alive HTTP connection (reconnects on failure).
class HttpClient {
 public:
  HttpClient(std::string url, std::string token) : url_(ParseUrl(url)), token_(std::move(token)) {}
  // (status, body); status 0 when the server cannot be reached.
  std::pair<int, std::string> Call(http::verb verb, const std::string& path, const std::string& body) {
    for (int attempt = 0; attempt < 2; ++attempt) {
      try {
        if (!stream_) {
          stream_ = std::make_unique<beast::tcp_stream>(io_);
          asio::ip::tcp::resolver resolver(io_);
          stream_->connect(resolver.resolve(url_.host, url_.port));
        }
        http::request<http::string_body> req{verb, path, 11};
        req.set(http::field::host, url_.host);
        req.set(http::field::content_type, "application/json");
        if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
        req.keep_alive(true);
        req.body() = body;
        req.prepare_payload();
        http::write(*stream_, req);
        beast::flat_buffer buf;
        http::response_parser<http::string_body> parser;
        parser.body_limit(1ull << 30);
        http::read(*stream_, buf, parser);
        auto res = parser.release();
        if (!res.keep_alive()) stream_.reset();
        return {static_cast<int>(res.result_int()), res.body()};
      } catch (const std::exception&) {
        stream_.reset();
      }
    }
    return {0, "cannot reach " + url_.host + ":" + url_.port};
  }

 private:
  Url url_;
  std::string token_;
  asio::io_context io_;
  std::unique_ptr<beast::tcp_stream> stream_;
};

std::string SelfDir() { return fs::read_symlink("/proc/self/exe").parent_path().string(); }

// The daemons of a local cluster outlive mrlctl (their own session) and append to their logs.
pid_t Spawn(const std::vector<std::string>& args, const std::string& log) {
  auto pid = mrl::SpawnProcess(args, log, {.append_log = true, .new_session = true});
  if (!pid.ok()) throw std::runtime_error(pid.status().ToString());
  return pid.value();
}

int WaitPort(const std::string& port_file, pid_t pid, const std::string& log, double timeout_s) {
  auto port = mrl::WaitForPortFile(port_file, pid, log, timeout_s);
  if (!port.ok()) throw std::runtime_error(port.status().ToString());
  return port.value();
}

int Up(const std::string& dir, int shards, int replication, int port, const std::string& bin_dir) {
  const std::string root = bin_dir.empty() ? SelfDir() + "/.." : bin_dir;
  const std::string shard_bin = root + "/shard/mrl-shard", coord_bin = root + "/coordinator/mrl-coordinator";
  if (fs::exists(dir + "/cluster.json")) {
    std::cerr << "mrlctl: " << dir << "/cluster.json exists: the cluster is up (mrlctl down first)\n";
    return 2;
  }
  fs::create_directories(dir + "/logs");
  json state = {{"shards", json::array()}};
  std::vector<std::string> coord_args = {coord_bin, "--data-dir", dir + "/coordinator", "--port",
                                         std::to_string(port), "--port-file", dir + "/coordinator.port",
                                         "--binary-port", "0", "--binary-port-file", dir + "/coordinator.bport",
                                         "--replication", std::to_string(replication)};
  for (int s = 0; s < shards; ++s) {
    const std::string id = "shard" + std::to_string(s), log = dir + "/logs/" + id + ".log";
    const std::string pf = dir + "/" + id + ".port";
    fs::remove(pf);
    pid_t pid = Spawn({shard_bin, "--data-dir", dir + "/" + id, "--port", "0", "--port-file", pf}, log);
    const int p = WaitPort(pf, pid, log, 600);
    std::cout << "[mrlctl] " << id << " pid " << pid << " on 127.0.0.1:" << p << std::endl;
    state["shards"].push_back({{"id", id}, {"pid", pid}, {"port", p}});
    coord_args.push_back("--shard");
    coord_args.push_back(id + "=127.0.0.1:" + std::to_string(p));
  }
  fs::remove(dir + "/coordinator.port");
  fs::remove(dir + "/coordinator.bport");
  const std::string clog = dir + "/logs/coordinator.log";
  pid_t cpid = Spawn(coord_args, clog);
  const int cport = WaitPort(dir + "/coordinator.port", cpid, clog, 60);
  const int bport = WaitPort(dir + "/coordinator.bport", cpid, clog, 60);
  state["coordinator"] = {{"pid", cpid}, {"port", cport}, {"binary_port", bport}};
  state["url"] = "http://127.0.0.1:" + std::to_string(cport);
  state["binary"] = "127.0.0.1:" + std::to_string(bport);
  mrl::Status st = mrl::WriteFileAtomic(dir + "/cluster.json", state.dump(2));
  if (!st.ok()) throw std::runtime_error(st.ToString());
  std::cout << "[mrlctl] coordinator pid " << cpid << " at " << state["url"].get<std::string>() << std::endl;
  return 0;
}

int Down(const std::string& dir) {
  auto text = mrl::ReadFile(dir + "/cluster.json");
  if (!text.ok()) {
    std::cerr << "mrlctl: no cluster in " << dir << "\n";
    return 2;
  }
  const json state = json::parse(text.value());
  std::vector<pid_t> pids = {state["coordinator"]["pid"].get<pid_t>()};
  for (const json& s : state["shards"]) pids.push_back(s["pid"].get<pid_t>());
  for (pid_t p : pids) {
    if (kill(p, SIGTERM) != 0) continue;
    // Not our child: poll until it is gone (graceful drain, then checkpoint).
    for (int i = 0; i < 1200 && kill(p, 0) == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (kill(p, 0) == 0) {
      std::cerr << "[mrlctl] pid " << p << " did not stop in 60 s; killing\n";
      kill(p, SIGKILL);
    }
    std::cout << "[mrlctl] stopped pid " << p << std::endl;
  }
  fs::remove(dir + "/cluster.json");
  return 0;
}

std::string UrlFrom(const std::string& url, const std::string& dir) {
  if (!url.empty()) return url;
  auto text = mrl::ReadFile(dir + "/cluster.json");
  if (!text.ok()) throw std::runtime_error("give --url or --dir of a cluster started with mrlctl up");
  return json::parse(text.value())["url"].get<std::string>();
}

// The coordinator's binary API address ("host:port"): --binary, else the --dir cluster's (when
// no --url was given), else empty.
std::string BinaryFrom(const std::string& binary, const std::string& url, const std::string& dir) {
  if (!binary.empty() || !url.empty()) return binary;
  auto text = mrl::ReadFile(dir + "/cluster.json");
  if (!text.ok()) return "";
  const json state = json::parse(text.value(), nullptr, false);
  return state.is_object() && state.contains("binary") ? state["binary"].get<std::string>() : "";
}

mrl::rpc::ClientOptions ClientFor(const std::string& address) {
  mrl::rpc::ClientOptions o;
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("--binary wants host:port, got '" + address + "'");
  o.host = address.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(address.substr(colon + 1)));
  return o;
}

int Status(HttpClient& c) {
  auto [hs, hb] = c.Call(http::verb::get, "/healthz", "");
  std::cout << "coordinator: " << (hs == 200 ? "healthy" : "DOWN (" + hb + ")") << "\n";
  if (hs != 200) return 1;
  auto [ms, mb] = c.Call(http::verb::get, "/v1/cluster", "");
  if (ms == 200) {
    const json m = json::parse(mb);
    std::cout << "shard map epoch " << m["epoch"] << ", " << m["groups"].size() << " replica groups\n";
    for (const json& s : m["shards"]) std::cout << "  " << s["id"].get<std::string>() << " " << s["address"].get<std::string>() << "\n";
  }
  auto [cs, cb] = c.Call(http::verb::get, "/v1/collections", "");
  if (cs != 200) std::cout << "collections: HTTP " << cs << " " << cb << "\n";
  if (cs == 200) {
    const json parsed = json::parse(cb);
    for (const json& col : parsed["collections"]) {
      std::cout << "collection " << col["name"].get<std::string>() << ": dim " << col["dim"] << ", "
                << col["storage"].get<std::string>() << ", " << col["metric"].get<std::string>() << "\n";
    }
  }
  return 0;
}

std::vector<float> AsFloats(const mrl::NpyArray& a) {
  std::vector<float> out(static_cast<size_t>(a.numel()));
  if (a.dtype == mrl::NpyDtype::kFloat32) {
    std::copy_n(a.as<float>(), out.size(), out.begin());
  } else if (a.dtype == mrl::NpyDtype::kFloat16) {
    const uint16_t* h = a.as<uint16_t>();
    for (size_t i = 0; i < out.size(); ++i) {
      const uint32_t sign = (h[i] & 0x8000u) << 16, exp = (h[i] >> 10) & 0x1f, man = h[i] & 0x3ff;
      uint32_t bits;
      if (exp == 0) {
        const float f = std::ldexp(static_cast<float>(man), -24);
        std::memcpy(&bits, &f, 4);
        bits |= sign;
      } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
      } else {
        bits = sign | ((exp + 112) << 23) | (man << 13);
      }
      std::memcpy(&out[i], &bits, 4);
    }
  } else {
    throw std::runtime_error("embeddings must be float32 or float16 .npy");
  }
  return out;
}

int Ingest(HttpClient& c, const std::string& binary, const std::string& collection, const std::string& emb_path,
           const std::string& ids_path, const std::string& labels_path, int batch, bool create,
           int index_dims, const std::string& storage) {
  auto emb = mrl::ReadNpy(emb_path);
  if (!emb.ok()) throw std::runtime_error(emb.status().ToString());
  if (emb->shape.size() != 2) throw std::runtime_error(emb_path + ": expected [N, d]");
  const int64_t n = emb->shape[0], d = emb->shape[1];
  const std::vector<float> v = AsFloats(emb.value());
  std::vector<int64_t> labels;
  if (!labels_path.empty()) labels = mrl::ReadNpyLabels(labels_path).value();
  std::vector<uint64_t> ids(static_cast<size_t>(n));
  if (!ids_path.empty()) {
    auto a = mrl::ReadNpy(ids_path);
    if (!a.ok() || a->numel() != n) throw std::runtime_error(ids_path + ": need N ids");
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = a->as<uint64_t>()[i];
  } else {
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
  }
  if (create) {
    json spec = {{"dim", d}, {"storage", storage}, {"indexes", {{{"dims", index_dims}, {"kind", "hnsw"}}}}};
    auto [s, b] = c.Call(http::verb::put, "/v1/collections/" + collection, spec.dump());
    if (s != 200) throw std::runtime_error("create collection: HTTP " + std::to_string(s) + " " + b);
  }
  const auto t0 = Clock::now();
  auto progress = [&](int64_t done) {
    const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
    std::cout << "[mrlctl] ingested " << done << " / " << n << " (" << static_cast<int>(done / sec) << " points/s"
              << (binary.empty() ? ", HTTP/JSON" : ", binary API") << ")" << std::endl;
  };
  if (!binary.empty()) {
    // Raw floats in FlatBuffers frames, up to 4 batches in flight on one connection.
    mrl::rpc::RpcClient client(ClientFor(binary));
    std::deque<std::pair<int64_t, std::future<mrl::Result<mrl::wire::UpsertResponseT>>>> inflight;
    auto wait_one = [&] {
      auto r = inflight.front().second.get();
      if (!r.ok()) throw std::runtime_error("upsert at row " + std::to_string(inflight.front().first) + ": " + r.status().ToString());
      inflight.pop_front();
    };
    for (int64_t start = 0; start < n; start += batch) {
      const int64_t end = std::min(n, start + batch);
      mrl::wire::UpsertRequestT req;
      req.collection = collection;
      req.dims = static_cast<int32_t>(d);
      req.ids.assign(ids.begin() + start, ids.begin() + end);
      req.vectors.assign(v.begin() + start * d, v.begin() + end * d);
      if (!labels.empty()) {
        for (int64_t i = start; i < end; ++i) {
          auto pl = std::make_unique<mrl::wire::PayloadT>();
          const std::string text = json{{"label", labels[static_cast<size_t>(i)]}}.dump();
          pl->data.assign(text.begin(), text.end());
          req.payloads.push_back(std::move(pl));
        }
      }
      if (inflight.size() >= 4) wait_one();
      inflight.emplace_back(start, client.CallFuture(req, 60000));
      if ((start / batch) % 20 == 0) progress(start);
    }
    while (!inflight.empty()) wait_one();
    progress(n);
    return 0;
  }
  for (int64_t start = 0; start < n; start += batch) {
    json pts = json::array();
    for (int64_t i = start; i < std::min(n, start + batch); ++i) {
      json p = {{"id", ids[static_cast<size_t>(i)]},
                {"vector", std::vector<float>(v.begin() + i * d, v.begin() + (i + 1) * d)}};
      if (!labels.empty()) p["payload"] = {{"label", labels[static_cast<size_t>(i)]}};
      pts.push_back(std::move(p));
    }
    auto [s, b] = c.Call(http::verb::put, "/v1/collections/" + collection + "/points", json{{"points", pts}}.dump());
    if (s != 200) throw std::runtime_error("upsert at row " + std::to_string(start) + ": HTTP " + std::to_string(s) + " " + b);
    const int64_t done = std::min(n, start + batch);
    if ((start / batch) % 20 == 0 || done == n) {
      const double sec = std::chrono::duration<double>(Clock::now() - t0).count();
      std::cout << "[mrlctl] ingested " << done << " / " << n << " (" << static_cast<int>(done / sec) << " points/s)" << std::endl;
    }
  }
  return 0;
}

struct PlanRun {
  std::vector<std::vector<uint64_t>> hits;
  std::vector<double> latency_ms;
  double wall_s = 0;
};

// Runs queries 0..n-1 on `concurrency` threads. make_worker() is called once per thread and
// returns that thread's query function (which owns its connection); it returns the hit ids of
// query i or throws.
using QueryFn = std::function<std::vector<uint64_t>(size_t)>;
PlanRun RunConcurrently(size_t n, int concurrency, const std::function<QueryFn()>& make_worker) {
  PlanRun r;
  r.hits.resize(n);
  r.latency_ms.resize(n);
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::string error;
  std::mutex error_mu;
  const auto t0 = Clock::now();
  std::vector<std::thread> workers;
  for (int w = 0; w < concurrency; ++w) {
    workers.emplace_back([&] {
      try {
        QueryFn query = make_worker();
        for (size_t i = next++; i < n && !failed; i = next++) {
          const auto s = Clock::now();
          r.hits[i] = query(i);
          r.latency_ms[i] = std::chrono::duration<double, std::milli>(Clock::now() - s).count();
        }
      } catch (const std::exception& e) {
        std::lock_guard<std::mutex> lock(error_mu);
        error = e.what();
        failed = true;
      }
    });
  }
  for (auto& t : workers) t.join();
  if (failed) throw std::runtime_error("search failed: " + error);
  r.wall_s = std::chrono::duration<double>(Clock::now() - t0).count();
  return r;
}

// Every query through the coordinator's HTTP API, one keep-alive connection per thread.
PlanRun RunQueries(const std::string& url, const std::string& token, const std::string& collection,
                   const std::vector<float>& q, int64_t d, const json& plan, int k, int concurrency) {
  return RunConcurrently(q.size() / static_cast<size_t>(d), concurrency, [&]() -> QueryFn {
    auto c = std::make_shared<HttpClient>(url, token);
    return [&, c](size_t i) {
      json req = plan;
      req["k"] = k;
      req["vector"] = std::vector<float>(q.begin() + static_cast<std::ptrdiff_t>(i * d),
                                         q.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
      auto [status, body] = c->Call(http::verb::post, "/v1/collections/" + collection + "/search", req.dump());
      if (status != 200) throw std::runtime_error("HTTP " + std::to_string(status) + " " + body);
      const json answer = json::parse(body);
      std::vector<uint64_t> hits;
      for (const json& h : answer["results"][0]) hits.push_back(h["id"].get<uint64_t>());
      return hits;
    };
  });
}

// The same through the coordinator's binary API: one connection per thread, the plan as stages.
PlanRun RunQueriesBinary(const std::string& address, const std::string& collection, const std::vector<float>& q,
                         int64_t d, const std::vector<std::pair<int32_t, int32_t>>& stages, int concurrency) {
  return RunConcurrently(q.size() / static_cast<size_t>(d), concurrency, [&]() -> QueryFn {
    auto c = std::make_shared<mrl::rpc::RpcClient>(ClientFor(address));
    auto req = std::make_shared<mrl::wire::SearchRequestT>();
    req->collection = collection;
    req->dims = static_cast<int32_t>(d);
    for (const auto& [dims, k] : stages) req->stages.emplace_back(dims, k);
    return [&, c, req](size_t i) {
      req->queries.assign(q.begin() + static_cast<std::ptrdiff_t>(i * d), q.begin() + static_cast<std::ptrdiff_t>((i + 1) * d));
      auto res = c->Call(*req, 10000);
      if (!res.ok()) throw std::runtime_error(res.status().ToString());
      std::vector<uint64_t> hits;
      for (const auto& h : res->results.at(0)->candidates) hits.push_back(h.id());
      return hits;
    };
  });
}

double Percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[std::min(v.size() - 1, static_cast<size_t>(p * static_cast<double>(v.size())))];
}

// mAP@k by class label and recall@k against the ground truth, both as common/retrieval_metrics.h
// defines them (the MRL paper's AP@k: precisions at the hits summed, divided by k). The truth is
// full-d fp32 cosine over the original vectors (--db-embeddings, common/exact_search.h): the
// same truth shard_bench uses (FAISS IndexFlatIP over the same normalised vectors), so the
// recall columns of mrlctl eval, e2e.md and shard.md compare.
struct EvalArgs {
  std::string url, binary, token, collection, queries, query_labels, db_embeddings, db_ids, db_labels, json_out;
  int k = 10, limit = 0, warmup = 100;
  unsigned seed = 1;
  std::vector<int> concurrency;
  bool latency_only = false;
  std::vector<std::string> plans;  // empty: every plan
};

int Eval(const EvalArgs& a, const json& stamp) {
  const auto t_start = Clock::now();
  auto elapsed = [&] { return std::chrono::duration<double>(Clock::now() - t_start).count(); };
  auto qa = mrl::ReadNpy(a.queries);
  if (!qa.ok()) throw std::runtime_error(qa.status().ToString());
  if (qa->shape.size() != 2) throw std::runtime_error(a.queries + ": expected a 2-D array [Q, d]");
  const int64_t d = qa->shape[1];
  std::vector<float> q = AsFloats(qa.value());
  const int64_t n = std::min<int64_t>(qa->shape[0], a.limit > 0 ? a.limit : qa->shape[0]);
  q.resize(static_cast<size_t>(n * d));
  const int k = a.k;
  const std::vector<int64_t> qlabels = mrl::ReadNpyLabels(a.query_labels).value();
  if (static_cast<int64_t>(qlabels.size()) < n) throw std::runtime_error(a.query_labels + ": fewer labels than queries");
  std::unordered_map<uint64_t, int64_t> label_of;
  std::vector<uint64_t> db_ids;
  {
    const std::vector<int64_t> dl = mrl::ReadNpyLabels(a.db_labels).value();
    auto ida = mrl::ReadNpy(a.db_ids);
    if (!ida.ok()) throw std::runtime_error(ida.status().ToString());
    if (ida->shape.empty() || static_cast<size_t>(ida->shape[0]) != dl.size()) {
      throw std::runtime_error(a.db_ids + " and " + a.db_labels + " differ in length");
    }
    db_ids.assign(ida->as<uint64_t>(), ida->as<uint64_t>() + dl.size());
    for (size_t i = 0; i < dl.size(); ++i) label_of[db_ids[i]] = dl[i];
  }
  // Ground truth: full-d fp32 cosine over the original vectors.
  std::vector<std::vector<uint64_t>> truth;
  if (!a.latency_only) {
    if (a.db_embeddings.empty()) {
      throw std::runtime_error("recall@k needs --db-embeddings (the original vectors: the ground truth is full-d fp32 "
                               "cosine over them); or pass --latency-only");
    }
    auto dba = mrl::ReadNpy(a.db_embeddings);
    if (!dba.ok()) throw std::runtime_error(dba.status().ToString());
    if (dba->shape.size() != 2 || dba->shape[1] != d || static_cast<size_t>(dba->shape[0]) != db_ids.size()) {
      throw std::runtime_error(a.db_embeddings + ": expected [" + std::to_string(db_ids.size()) + ", " +
                               std::to_string(d) + "] (the rows of --db-ids)");
    }
    const std::vector<float> db = AsFloats(dba.value());
    std::printf("[eval %6.1fs] exact ground truth: %lld queries x %zu points x %lld dims, fp32 cosine\n", elapsed(),
                static_cast<long long>(n), db_ids.size(), static_cast<long long>(d));
    std::fflush(stdout);
    const auto rows = mrl::ExactCosineTopK(db.data(), db_ids.size(), q.data(), static_cast<size_t>(n),
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
    mrl::RetrievalScorer scorer(static_cast<size_t>(k));
    std::vector<int64_t> labels;
    for (int64_t i = 0; i < n; ++i) {
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
    RunQueries(a.url, a.token, a.collection, wq, d, paper, k, 1);
    std::printf("[eval %6.1fs] warm-up: %lld queries of the paper's plan (untimed)\n", elapsed(),
                static_cast<long long>(std::min<int64_t>(n, a.warmup)));
  }
  json budgets = {{"fast", "-"}, {"balanced", "-"}, {"exact", "-"}};
  const bool want_budgets =
      a.plans.empty() || std::any_of(a.plans.begin(), a.plans.end(), [](const std::string& p) {
        return p.rfind("budget_", 0) == 0;
      });
  if (!a.latency_only && want_budgets) {
    std::printf("[eval %6.1fs] calibrating the budgets (coordinator, 200 sampled points)\n", elapsed());
    std::fflush(stdout);
    HttpClient c(a.url, a.token);
    auto [cs, cb] = c.Call(http::verb::post, "/v1/collections/" + a.collection + "/calibrate",
                           json{{"sample", 200}, {"k", k}}.dump());
    if (cs != 200) throw std::runtime_error("calibrate: HTTP " + std::to_string(cs) + " " + cb);
    budgets = json::parse(cb)["budgets"];
  }
  // The paper-shaped funnel over the nesting dims below d: 16/200 -> 32/100 -> 64/50 -> 128/25 -> d/k.
  json funnel = json::array();
  std::string funnel_name = "funnel";
  for (auto [dims, kk] : std::vector<std::pair<int64_t, int>>{{16, 200}, {32, 100}, {64, 50}, {128, 25}}) {
    if (dims >= d) break;
    funnel.push_back({dims, kk});
    funnel_name += " " + std::to_string(dims) + "/" + std::to_string(kk) + " ->";
  }
  funnel.push_back({d, k});
  funnel_name += " d/" + std::to_string(k);
  std::vector<std::pair<std::string, json>> plans = {
      {"exact " + std::to_string(d) + "-d scan (stored vectors)", {{"exact", true}}},
      {"adaptive Ds=16 K=200 Dr=d (paper)", paper},
      {"adaptive, one trip", {{"plan", {{"shortlist_dims", 16}, {"shortlist_k", 200}, {"rerank_dims", d}}}, {"one_trip", true}}},
      {funnel_name, {{"funnel", funnel}}},
      {"budget fast (" + budgets["fast"].get<std::string>() + ")", {{"budget", "fast"}}},
      {"budget balanced (" + budgets["balanced"].get<std::string>() + ")", {{"budget", "balanced"}}},
      {"budget exact (" + budgets["exact"].get<std::string>() + ")", {{"budget", "exact"}}},
  };
  if (a.latency_only) plans.clear();  // no exact pass, no calibration: latency and QPS only
  if (!a.plans.empty()) {  // --plans: keep the named ones (first word of the plan's name)
    std::vector<std::pair<std::string, json>> kept;
    for (auto& p : plans) {
      const std::string first = p.first.substr(0, p.first.find(' '));
      const std::string key = p.first.find("(paper)") != std::string::npos ? "paper"
                              : p.first.find("one trip") != std::string::npos ? "one_trip"
                              : first == "budget" ? "budget_" + p.first.substr(7, p.first.find(' ', 7) - 7)
                                                  : first;
      if (std::find(a.plans.begin(), a.plans.end(), key) != a.plans.end()) kept.push_back(std::move(p));
    }
    plans = std::move(kept);
  }
  // Plans run in a shuffled order (seeded, in the report) so no plan always runs first or
  // right after another; the table keeps the order above.
  std::vector<size_t> order(plans.size());
  std::iota(order.begin(), order.end(), 0);
  std::shuffle(order.begin(), order.end(), std::mt19937(a.seed));
  std::vector<json> rows(plans.size());
  for (size_t oi = 0; oi < order.size(); ++oi) {
    const auto& [name, plan] = plans[order[oi]];
    std::printf("[eval %6.1fs] plan %zu/%zu: %s (%lld queries)\n", elapsed(), oi + 1, plans.size(), name.c_str(),
                static_cast<long long>(n));
    std::fflush(stdout);
    PlanRun r = RunQueries(a.url, a.token, a.collection, q, d, plan, k, 1);
    const Score sc = score(r.hits);  // outside the timed loop
    rows[order[oi]] = {{"plan", name}, {"map_at_10", sc.map}, {"recall_at_10", sc.recall},
                       {"p50_ms", Percentile(r.latency_ms, 0.5)}, {"p99_ms", Percentile(r.latency_ms, 0.99)},
                       {"qps_c1", n / r.wall_s}, {"run_order", oi}};
  }
  json report = json::array();
  if (!plans.empty()) {
    std::printf("\n%-62s %8s %9s %8s %8s %8s\n", "plan (queries through the coordinator)", "mAP@10", "recall@10",
                "p50 ms", "p99 ms", "QPS");
  }
  for (const json& row : rows) {
    std::printf("%-62s %8.2f %9.3f %8.2f %8.2f %8.0f\n", row["plan"].get<std::string>().c_str(),
                row["map_at_10"].get<double>(), row["recall_at_10"].get<double>(), row["p50_ms"].get<double>(),
                row["p99_ms"].get<double>(), row["qps_c1"].get<double>());
    report.push_back(row);
  }
  std::printf("\nthroughput of the paper's plan by client concurrency:\n");
  json conc = json::array();
  for (int cc : a.concurrency) {
    PlanRun r = RunQueries(a.url, a.token, a.collection, q, d, paper, k, cc);
    const Score sc = score(r.hits);
    std::printf("  concurrency %3d: %8.0f QPS, p50 %.2f ms, p99 %.2f ms\n", cc, n / r.wall_s,
                Percentile(r.latency_ms, 0.5), Percentile(r.latency_ms, 0.99));
    conc.push_back({{"concurrency", cc}, {"qps", n / r.wall_s}, {"p50_ms", Percentile(r.latency_ms, 0.5)},
                    {"p99_ms", Percentile(r.latency_ms, 0.99)}, {"recall_at_10", sc.recall}});
  }
  json conc_binary = json::array();
  if (!a.binary.empty()) {
    std::printf("\nthe same through the binary API (%s):\n", a.binary.c_str());
    for (int cc : a.concurrency) {
      PlanRun r = RunQueriesBinary(a.binary, a.collection, q, d, {{16, 200}, {static_cast<int32_t>(d), k}}, cc);
      const Score sc = score(r.hits);
      std::printf("  concurrency %3d: %8.0f QPS, p50 %.2f ms, p99 %.2f ms, recall@10 %.3f\n", cc, n / r.wall_s,
                  Percentile(r.latency_ms, 0.5), Percentile(r.latency_ms, 0.99), sc.recall);
      conc_binary.push_back({{"concurrency", cc}, {"qps", n / r.wall_s}, {"p50_ms", Percentile(r.latency_ms, 0.5)},
                             {"p99_ms", Percentile(r.latency_ms, 0.99)}, {"recall_at_10", sc.recall}});
    }
  }
  std::printf("[eval %6.1fs] done\n", elapsed());
  if (!a.json_out.empty()) {
    const json out = {{"provenance", stamp},
                      {"queries", n},
                      {"k", k},
                      {"metrics",
                       {{"map_at_10", "AP@k as the MRL paper's code: precision at each label hit among the top k, "
                                      "summed, divided by k (common/retrieval_metrics.h); percent"},
                        {"recall_at_10", "|top-k ∩ truth top-k| / k; truth = full-d fp32 cosine over the original "
                                         "vectors (--db-embeddings, common/exact_search.h)"}}},
                      {"plan_order_seed", a.seed},
                      {"plans", report},
                      {"concurrency", conc},
                      {"concurrency_binary", conc_binary}};
    mrl::Status st = mrl::WriteFileAtomic(a.json_out, out.dump(2));
    if (!st.ok()) throw std::runtime_error(st.ToString());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mrlctl: operate an MRL serving cluster"};
  app.require_subcommand(1);
  std::string dir = "runs/cluster", url, token, bin_dir, collection = "embeddings";
  int shards = 2, replication = 1, port = 0, batch = 500, index_dims = 16;
  auto* up = app.add_subcommand("up", "Start a local cluster (shards + coordinator) in --dir");
  up->add_option("--dir", dir);
  up->add_option("--shards", shards);
  up->add_option("--replication", replication);
  up->add_option("--port", port, "Coordinator HTTP port (0: any)");
  up->add_option("--bin-dir", bin_dir, "Build directory holding shard/ and coordinator/");
  auto* down = app.add_subcommand("down", "Stop the local cluster in --dir");
  down->add_option("--dir", dir);
  auto* status = app.add_subcommand("status", "Health, shard map and collections");
  auto* ingest = app.add_subcommand("ingest", "Upsert embeddings from .npy files");
  std::string emb, ids, labels, storage = "fp16";
  bool create = false;
  ingest->add_option("--embeddings", emb)->required();
  ingest->add_option("--ids", ids);
  ingest->add_option("--labels", labels, "Stored as payload {\"label\": ...}");
  ingest->add_option("--batch", batch);
  bool http_only = false;
  std::string binary;
  ingest->add_flag("--http", http_only, "Send points as HTTP/JSON even when the binary API is up");
  ingest->add_flag("--create", create, "Create the collection first");
  ingest->add_option("--index-dims", index_dims, "With --create: low-d index prefix");
  ingest->add_option("--storage", storage, "With --create: fp32 | fp16 | int8");
  for (auto* sub : {status, ingest}) {
    sub->add_option("--binary", binary, "Coordinator binary API host:port (default: --dir's cluster)");
    sub->add_option("--url", url, "Coordinator URL (default: --dir's cluster)");
    sub->add_option("--dir", dir);
    sub->add_option("--token", token, "API token");
  }
  ingest->add_option("--collection", collection);
  auto* eval = app.add_subcommand("eval", "Run test queries through the coordinator: mAP@10, recall@10, latency, QPS per plan");
  EvalArgs ea;
  ea.concurrency = {1, 8, 32};
  eval->add_option("--queries", ea.queries)->required();
  eval->add_option("--query-labels", ea.query_labels)->required();
  eval->add_option("--db-embeddings", ea.db_embeddings,
                   "The database's original vectors [N, d] (rows of --db-ids): the exact ground truth for recall");
  eval->add_option("--db-ids", ea.db_ids)->required();
  eval->add_option("--db-labels", ea.db_labels)->required();
  eval->add_option("--k", ea.k);
  eval->add_option("--limit", ea.limit, "Use the first N queries");
  eval->add_option("--warmup", ea.warmup, "Untimed queries of the paper's plan before timing");
  eval->add_option("--seed", ea.seed, "Seed of the shuffled plan order");
  eval->add_option("--plans", ea.plans,
                   "Only these plans: exact, paper, one_trip, funnel, budget_fast, budget_balanced, budget_exact "
                   "(default: all; without a budget_ plan no calibration runs)");
  eval->add_option("--concurrency", ea.concurrency);
  eval->add_option("--json", ea.json_out, "Write the figures here");
  eval->add_option("--collection", collection);
  eval->add_option("--url", url);
  eval->add_option("--dir", dir);
  eval->add_option("--token", token);
  eval->add_option("--binary", binary, "Coordinator binary API host:port (default: --dir's cluster)");
  eval->add_flag("--latency-only", ea.latency_only,
                 "Only the paper's plan by concurrency (no exact pass, calibration or recall): for large collections");
  CLI11_PARSE(app, argc, argv);
  try {
    if (up->parsed()) return Up(dir, shards, replication, port, bin_dir);
    if (down->parsed()) return Down(dir);
    HttpClient client(UrlFrom(url, dir), token);
    if (status->parsed()) return Status(client);
    if (ingest->parsed()) {
      return Ingest(client, http_only ? "" : BinaryFrom(binary, url, dir), collection, emb, ids, labels, batch, create,
                    index_dims, storage);
    }
    if (eval->parsed()) {
      ea.url = UrlFrom(url, dir);
      ea.binary = BinaryFrom(binary, url, dir);
      ea.token = token;
      ea.collection = collection;
      return Eval(ea, mrl::Provenance(argc, argv));
    }
  } catch (const std::exception& e) {
    std::cerr << "mrlctl: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
