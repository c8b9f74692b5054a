// failover_bench: searches and writes per second around a silent shard (issue 20), with hedging
// off and on, on a real local cluster (mrlctl up's launcher: 4 mrl-shard processes in 2 replica
// groups and one mrl-coordinator on loopback).
//
// For each setting: ingest N random points of d dims, then one searcher (sequential searches
// through the binary API) and one writer (batches of upserts) run for before + stopped + after
// seconds; after `before` s the member of group 0 that served the most calls is stopped
// (SIGSTOP: its sockets stay open, nothing answers) and after `stopped` more seconds resumed
// (SIGCONT). Per second: searches, p50 / p99 / max latency, the lowest coverage, failed searches,
// acknowledged and failed writes, and where the stopped member stands in its group (in sync, out
// of sync, catching up: issue 20 items 4-5); after SIGCONT, when its catch-up started and ended,
// and its rate. The JSON holds every figure and its provenance; render it with
// bench/failover_report.py.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <sys/wait.h>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "common/provenance.h"
#include "ops/http_client.h"
#include "ops/local_cluster.h"
#include "rpc/client.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "failover_bench: %s\n", why.c_str());
  std::exit(1);
}

struct Event {
  double t;          // seconds since the load started
  double ms;         // latency
  double coverage;   // searches
  bool ok;
};

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

std::vector<float> RandomRows(size_t n, int d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(n * static_cast<size_t>(d));
  for (float& x : v) x = g(rng);
  return v;
}

json RunOne(const std::string& bin_dir, const std::string& dir, bool hedge, int n, int d,
            int index_dims, double before_s, double stopped_s, double after_s, uint32_t deadline_ms) {
  std::filesystem::remove_all(dir);
  mrl::ops::UpOptions up;
  up.dir = dir;
  up.shards = 4;
  up.replication = 2;
  up.bin_dir = bin_dir;
  up.coordinator_args = {"--hedge", hedge ? "true" : "false", "--deadline-ms",
                         std::to_string(deadline_ms)};
  if (mrl::Status st = mrl::ops::Up(up); !st.ok()) Die(st.ToString());
  std::ifstream cf(dir + "/cluster.json");
  const json cluster = json::parse(cf);
  mrl::ops::HttpClient admin(cluster["url"].get<std::string>(), "");
  auto made = admin.CallJson(
      http::verb::put, "/v1/collections/emb",
      json{{"dim", d}, {"storage", "fp32"}, {"num_buckets", 64},
           {"indexes", {{{"dims", index_dims}, {"kind", "hnsw"}}}}}.dump(),
      "create collection");
  if (!made.ok()) Die(made.status().ToString());

  mrl::rpc::ClientOptions co;
  const std::string binary = cluster["binary"].get<std::string>();
  co.host = binary.substr(0, binary.rfind(':'));
  co.port = static_cast<uint16_t>(std::stoi(binary.substr(binary.rfind(':') + 1)));
  const std::vector<float> data = RandomRows(static_cast<size_t>(n), d, 1);
  {
    mrl::rpc::RpcClient client(co);
    for (int start = 0; start < n; start += 1000) {
      mrl::wire::UpsertRequestT req;
      req.collection = "emb";
      req.dims = d;
      for (int i = start; i < std::min(n, start + 1000); ++i) req.ids.push_back(static_cast<uint64_t>(i));
      req.vectors.assign(data.begin() + static_cast<ptrdiff_t>(start) * d,
                         data.begin() + static_cast<ptrdiff_t>(start + static_cast<int>(req.ids.size())) * d);
      auto r = client.Call(req, 60000);
      if (!r.ok()) Die("ingest: " + r.status().ToString());
    }
  }
  const std::vector<float> queries = RandomRows(200, d, 2);
  auto search = [&](mrl::rpc::RpcClient& client, size_t q) {
    mrl::wire::SearchRequestT req;
    req.collection = "emb";
    req.dims = d;
    req.queries.assign(queries.begin() + static_cast<ptrdiff_t>(q) * d,
                       queries.begin() + static_cast<ptrdiff_t>(q + 1) * d);
    req.stages.emplace_back(index_dims, 100);
    req.stages.emplace_back(d, 10);
    return client.Call(req, 10000);
  };
  // Warm-up: every query once, then as many again (latency samples for the hedge delays).
  mrl::rpc::RpcClient sclient(co);
  for (size_t i = 0; i < 400; ++i) {
    auto r = search(sclient, i % 200);
    if (!r.ok()) Die("warm-up search: " + r.status().ToString());
  }
  // The member of group 0 the coordinator has sent the most calls: the one searches rely on.
  auto health = admin.CallJson(http::verb::get, "/v1/shards/health", "", "shard health");
  if (!health.ok()) Die(health.status().ToString());
  const json map = admin.CallJson(http::verb::get, "/v1/cluster", "", "map").value();
  std::string victim;
  uint64_t most = 0;
  for (const json& s : health.value()["shards"]) {
    bool in_group0 = false;
    for (const json& m : map["groups"][0]) in_group0 |= m == s["shard"];
    if (in_group0 && (victim.empty() || s["calls"].get<uint64_t>() > most)) {
      victim = s["shard"].get<std::string>();
      most = s["calls"].get<uint64_t>();
    }
  }
  pid_t victim_pid = -1;
  for (const json& s : cluster["shards"]) {
    if (s["id"] == victim) victim_pid = s["pid"].get<pid_t>();
  }
  if (victim_pid <= 0) Die("no pid for shard " + victim);

  std::mutex mu;
  std::vector<Event> searches, writes;
  std::atomic<bool> stop{false};
  const auto t0 = Clock::now();
  auto since = [&](Clock::time_point t) { return std::chrono::duration<double>(t - t0).count(); };
  std::thread searcher([&] {
    for (size_t i = 0; !stop; ++i) {
      const auto a = Clock::now();
      auto r = search(sclient, i % 200);
      const auto b = Clock::now();
      std::lock_guard lock(mu);
      searches.push_back({since(a), std::chrono::duration<double, std::milli>(b - a).count(),
                          r.ok() ? r->coverage : 0.0, r.ok()});
    }
  });
  // The stopped member's place in its group, every 100 ms, and the catch-up's progress.
  struct MemberSample {
    double t;
    std::string state;  // serving, out_of_sync, catching_up
    uint64_t points = 0;
    double seconds = 0;
  };
  std::vector<MemberSample> member;
  std::thread watcher([&] {
    mrl::ops::HttpClient c(cluster["url"].get<std::string>(), "");
    while (!stop) {
      const auto at = Clock::now();
      auto m = c.CallJson(http::verb::get, "/v1/cluster", "", "map");
      auto f = c.CallJson(http::verb::get, "/v1/cluster/fills", "", "fills");
      if (m.ok() && f.ok()) {
        MemberSample s{since(at), "serving"};
        const json out = m->value("out_of_sync", json::object());
        for (const auto& [g, ids] : out.items()) {
          for (const json& id : ids) if (id == victim) s.state = "out_of_sync";
        }
        for (const json& fill : f->at("fills")) {
          if (fill["shard"] != victim) continue;
          s.state = "catching_up";
          s.points = fill.value("points_copied", uint64_t{0});
          s.seconds = fill.value("seconds", 0.0);
        }
        std::lock_guard lock(mu);
        member.push_back(s);
      }
      std::this_thread::sleep_until(at + std::chrono::milliseconds(100));
    }
  });
  std::thread writer([&] {
    mrl::rpc::RpcClient wclient(co);
    const std::vector<float> rows = RandomRows(100, d, 3);
    for (uint64_t b = 0; !stop; ++b) {
      mrl::wire::UpsertRequestT req;
      req.collection = "emb";
      req.dims = d;
      for (uint64_t i = 0; i < 100; ++i) req.ids.push_back(1000000 + (b % 50) * 100 + i);
      req.vectors = rows;
      const auto a = Clock::now();
      auto r = wclient.Call(req, 10000);
      const auto e = Clock::now();
      std::lock_guard lock(mu);
      writes.push_back({since(a), std::chrono::duration<double, std::milli>(e - a).count(), 0, r.ok()});
    }
  });
  std::this_thread::sleep_for(std::chrono::duration<double>(before_s));
  const double stopped_at = since(Clock::now());
  kill(victim_pid, SIGSTOP);
  std::this_thread::sleep_for(std::chrono::duration<double>(stopped_s));
  const double resumed_at = since(Clock::now());
  kill(victim_pid, SIGCONT);
  std::this_thread::sleep_for(std::chrono::duration<double>(after_s));
  stop = true;
  searcher.join();
  writer.join();
  watcher.join();
  auto metrics = admin.Call(http::verb::get, "/metrics", "");
  auto metric = [&](const std::string& name) {
    const size_t at = metrics.body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics.body.substr(at + name.size() + 2));
  };
  const double hedges = metric("mrl_coordinator_hedges_total");
  const double hedgeable = metric("mrl_coordinator_hedgeable_calls_total");
  // The daemons are this process's children (mrlctl down would wait on zombies): stop and reap.
  std::vector<pid_t> pids = {cluster["coordinator"]["pid"].get<pid_t>()};
  for (const json& s : cluster["shards"]) pids.push_back(s["pid"].get<pid_t>());
  for (pid_t p : pids) kill(p, SIGKILL);
  for (pid_t p : pids) waitpid(p, nullptr, 0);

  json seconds = json::array();
  const int total = static_cast<int>(before_s + stopped_s + after_s + 0.999);
  for (int s = 0; s < total; ++s) {
    std::vector<double> ms;
    double lowest = 1.0;
    int failed = 0, acked = 0, wfailed = 0;
    for (const Event& e : searches) {
      if (e.t < s || e.t >= s + 1) continue;
      ms.push_back(e.ms);
      if (!e.ok) ++failed;
      lowest = std::min(lowest, e.ok ? e.coverage : 0.0);
    }
    for (const Event& e : writes) {
      if (e.t + e.ms / 1e3 < s || e.t + e.ms / 1e3 >= s + 1) continue;  // by completion time
      (e.ok ? acked : wfailed) += 1;
    }
    std::string state;  // the member's states seen during the second
    for (const MemberSample& m : member) {
      if (m.t < s || m.t >= s + 1) continue;
      if (state.find(m.state) == std::string::npos) state += (state.empty() ? "" : ",") + m.state;
    }
    seconds.push_back({{"second", s}, {"member", state}, {"searches", ms.size()}, {"p50_ms", Quantile(ms, 0.5)},
                       {"p99_ms", Quantile(ms, 0.99)}, {"max_ms", Quantile(ms, 1.0)},
                       {"lowest_coverage", ms.empty() ? -1.0 : lowest}, {"failed_searches", failed},
                       {"writes_acked", acked * 100}, {"writes_failed", wfailed * 100}});
  }
  // While stopped: every search that was running at some moment between the stop and the
  // resume (one sent just before the stop meets it too).
  std::vector<double> during;
  double stopped_lowest = 1.0;
  int stopped_failed = 0;
  for (const Event& e : searches) {
    if (e.t + e.ms / 1e3 < stopped_at || e.t >= resumed_at) continue;
    during.push_back(e.ms);
    stopped_lowest = std::min(stopped_lowest, e.ok ? e.coverage : 0.0);
    stopped_failed += e.ok ? 0 : 1;
  }
  int stopped_acked = 0, stopped_wfailed = 0;
  for (const Event& e : writes) {
    const double end = e.t + e.ms / 1e3;
    if (end < stopped_at || end >= resumed_at) continue;
    (e.ok ? stopped_acked : stopped_wfailed) += 100;
  }
  std::vector<double> healthy;
  for (const Event& e : searches) {
    if (e.t < stopped_at) healthy.push_back(e.ms);
  }
  // The catch-up: from the first sample that saw it to the first that saw the member serve again.
  double out_at = -1, catch_up_from = -1, catch_up_to = -1;
  uint64_t catch_up_points = 0;
  double catch_up_seconds = 0;
  for (const MemberSample& m : member) {
    if (m.state == "out_of_sync" && out_at < 0) out_at = m.t;
    if (m.state == "catching_up") {
      if (catch_up_from < 0) catch_up_from = m.t;
      catch_up_points = std::max(catch_up_points, m.points);
      catch_up_seconds = std::max(catch_up_seconds, m.seconds);
    }
    if (m.state == "serving" && catch_up_from >= 0 && catch_up_to < 0) catch_up_to = m.t;
  }
  std::fprintf(stderr, "hedge %s: stopped %s at %.1f s, resumed at %.1f s; %zu searches\n",
               hedge ? "on" : "off", victim.c_str(), stopped_at, resumed_at, searches.size());
  return {{"hedge", hedge},
          {"stopped_shard", victim},
          {"stopped_at_s", stopped_at},
          {"resumed_at_s", resumed_at},
          {"healthy_p99_ms", Quantile(healthy, 0.99)},
          {"stopped_p99_ms", Quantile(during, 0.99)},
          {"stopped_max_ms", Quantile(during, 1.0)},
          {"stopped_searches", during.size()},
          {"stopped_lowest_coverage", stopped_lowest},
          {"stopped_failed_searches", stopped_failed},
          {"stopped_writes_acked", stopped_acked},
          {"stopped_writes_failed", stopped_wfailed},
          {"out_of_sync_at_s", out_at},
          {"catch_up_started_at_s", catch_up_from},
          {"serving_again_at_s", catch_up_to},
          {"catch_up_points_copied", catch_up_points},
          {"catch_up_copy_seconds", catch_up_seconds},
          {"catch_up_points_per_s", catch_up_seconds > 0 ? catch_up_points / catch_up_seconds : -1.0},
          {"hedges", hedges},
          {"hedgeable_calls", hedgeable},
          {"seconds", seconds}};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"failover_bench: searches and writes per second around a silent shard, hedging off and on"};
  std::string bin_dir = "build", dir = "/tmp/mrl_failover_bench", out;
  int n = 20000, d = 256, index_dims = 32;
  double before_s = 5, stopped_s = 10, after_s = 10;
  uint32_t deadline_ms = 1000;
  app.add_option("--bin-dir", bin_dir, "build directory with shard/ and coordinator/");
  app.add_option("--dir", dir, "the clusters' home (removed first)");
  app.add_option("--points", n);
  app.add_option("--dim", d);
  app.add_option("--index-dims", index_dims, "the low-d HNSW index; searches: (Ds, 100) then (d, 10)");
  app.add_option("--before-s", before_s);
  app.add_option("--stopped-s", stopped_s);
  app.add_option("--after-s", after_s);
  app.add_option("--deadline-ms", deadline_ms, "the coordinator's default deadline");
  app.add_option("--json", out, "write every figure, with its provenance, here")->required();
  CLI11_PARSE(app, argc, argv);
  const json stamp = mrl::Provenance(argc, argv);
  json j;
  j["provenance"] = stamp;
  j["setup"] = {{"shards", 4}, {"replication", 2}, {"points", n}, {"dim", d},
                {"index_dims", index_dims}, {"deadline_ms", deadline_ms},
                {"search", "binary API, one client, sequential; stages (" + std::to_string(index_dims) +
                               ", 100) then (" + std::to_string(d) + ", 10)"},
                {"writes", "one client, sequential upserts of 100 points (5000 ids rewritten in turn); "
                           "acknowledged by every in-sync replica (defaults: --out-of-sync-after-ms 2000, "
                           "--catch-up-margin-ms 60000, --min-in-sync 1)"},
                {"before_s", before_s}, {"stopped_s", stopped_s}, {"after_s", after_s}};
  for (bool hedge : {false, true}) {
    j["runs"].push_back(RunOne(bin_dir, dir + (hedge ? "/hedge_on" : "/hedge_off"), hedge, n, d,
                               index_dims, before_s, stopped_s, after_s, deadline_ms));
  }
  std::ofstream f(out);
  f << j.dump(1) << "\n";
  if (!f) Die("cannot write " + out);
  std::printf("wrote %s\n%s\n", out.c_str(), mrl::ProvenanceLine(stamp).c_str());
  return 0;
}
