// multihost_bench (issue 16): the serving path and the trainer's all-reduce across "hosts" that
// are network namespaces of this machine (tests/netns_lab.h: veth pairs on a bridge), against
// the same on loopback, in one invocation.
//
// Serving: 2 mrl-shard processes and one mrl-coordinator (replication 1), each in a host of its
// own bound to its address (netns) or all on 127.0.0.1 (loopback); N random points of d dims, an
// HNSW index at Ds dims, searches (Ds, 100) then (d, 10) through the coordinator's binary API from
// this process: one client in sequence (p50, p99) and C clients for S seconds (QPS).
// All-reduce: mpirun -np 2 allreduce_bench, ranks in two namespaces over TCP (ops/netns-rsh) vs
// one host's shared memory (btl vader) and one host's loopback TCP.
// Writes every figure and its provenance to --json (render: bench/multihost_report.py).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <sys/wait.h>
#include <thread>
#include <vector>

#include "common/process.h"
#include "common/provenance.h"
#include "rpc/client.h"
#include "tests/netns_lab.h"

namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

[[noreturn]] void Die(const std::string& why) {
  std::fprintf(stderr, "multihost_bench: %s\n", why.c_str());
  std::exit(1);
}

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

struct Daemon {
  pid_t pid = -1;
  std::string address;
};

// Starts `binary args` (inside lab host `host` when lab is given), bound to `ip`.
Daemon Start(const mrl::test_util::NetnsLab* lab, int host, const std::string& ip,
             std::vector<std::string> argv, const std::string& dir, const std::string& name) {
  const std::string port_file = dir + "/" + name + ".port", log = dir + "/" + name + ".log";
  argv.insert(argv.end(), {"--host", ip, "--port", "0", "--port-file", port_file});
  if (lab) argv = lab->Inside(host, argv);
  auto pid = mrl::SpawnProcess(argv, log);
  if (!pid.ok()) Die(pid.status().ToString());
  auto port = mrl::WaitForPortFile(port_file, *pid, log, 60);
  if (!port.ok()) Die(name + ": " + port.status().ToString());
  return {*pid, ip + ":" + std::to_string(*port)};
}

json Serving(const std::string& bin_dir, const std::string& dir, const mrl::test_util::NetnsLab* lab,
             int n, int d, int ds, int sequential, int clients, double seconds) {
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto ip = [&](int host) { return lab ? lab->address(host) : std::string("127.0.0.1"); };
  std::vector<Daemon> daemons;
  for (int s = 0; s < 2; ++s) {
    daemons.push_back(Start(lab, s + 1, ip(s + 1),
                            {bin_dir + "/shard/mrl-shard", "--data-dir", dir + "/s" + std::to_string(s),
                             "--threads", "1", "--block-cache-mb", "64"},
                            dir, "s" + std::to_string(s)));
  }
  const std::string bport_file = dir + "/coord.bport";
  Daemon coord = Start(lab, 3, ip(3),
                       {bin_dir + "/coordinator/mrl-coordinator", "--data-dir", dir + "/coord", "--binary-port",
                        "0", "--binary-port-file", bport_file, "--shard", "s0=" + daemons[0].address,
                        "--shard", "s1=" + daemons[1].address},
                       dir, "coord");
  daemons.push_back(coord);
  for (int i = 0; i < 200 && !std::filesystem::exists(bport_file); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  mrl::rpc::ClientOptions co;
  co.host = ip(3);
  co.port = static_cast<uint16_t>(std::stoi([&] { std::ifstream f(bport_file); std::string s; f >> s; return s; }()));
  mrl::rpc::RpcClient admin(co);
  const std::string url = "http://" + coord.address;
  const std::string spec = json{{"dim", d}, {"storage", "fp32"}, {"num_buckets", 64},
                                {"indexes", {{{"dims", ds}, {"kind", "hnsw"}}}}}.dump();
  const std::string cmd = "curl -sf -X PUT -H 'Content-Type: application/json' --data-binary '" + spec + "' " +
                          url + "/v1/collections/emb > /dev/null";
  if (std::system(cmd.c_str()) != 0) Die("creating the collection at " + url);
  const std::vector<float> data = RandomRows(static_cast<size_t>(n), d, 1);
  for (int start = 0; start < n; start += 1000) {
    mrl::wire::UpsertRequestT req;
    req.collection = "emb";
    req.dims = d;
    for (int i = start; i < std::min(n, start + 1000); ++i) req.ids.push_back(static_cast<uint64_t>(i));
    req.vectors.assign(data.begin() + static_cast<ptrdiff_t>(start) * d,
                       data.begin() + static_cast<ptrdiff_t>(start + static_cast<int>(req.ids.size())) * d);
    auto r = admin.Call(req, 120000);
    if (!r.ok()) Die("ingest: " + r.status().ToString());
  }
  const std::vector<float> queries = RandomRows(1000, d, 2);
  auto search = [&](mrl::rpc::RpcClient& client, size_t q) {
    mrl::wire::SearchRequestT req;
    req.collection = "emb";
    req.dims = d;
    req.queries.assign(queries.begin() + static_cast<ptrdiff_t>(q) * d, queries.begin() + static_cast<ptrdiff_t>(q + 1) * d);
    req.stages.emplace_back(ds, 100);
    req.stages.emplace_back(d, 10);
    return client.Call(req, 10000);
  };
  for (size_t i = 0; i < 1000; ++i) {  // warm-up: every query once
    if (!search(admin, i).ok()) Die("warm-up search failed");
  }
  std::vector<double> ms;
  for (int i = 0; i < sequential; ++i) {
    const auto t0 = Clock::now();
    if (!search(admin, static_cast<size_t>(i) % 1000).ok()) Die("search failed");
    ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t0).count());
  }
  std::atomic<uint64_t> done{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c) {
    threads.emplace_back([&, c] {
      mrl::rpc::RpcClient client(co);
      for (size_t i = static_cast<size_t>(c) * 97; !stop; ++i) {
        (search(client, i % 1000).ok() ? done : failed) += 1;
      }
    });
  }
  const auto t0 = Clock::now();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (auto& t : threads) t.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
  for (const Daemon& dm : daemons) kill(dm.pid, SIGKILL);
  for (const Daemon& dm : daemons) waitpid(dm.pid, nullptr, 0);
  std::fprintf(stderr, "%s: c1 p50 %.3f ms p99 %.3f ms; c%d %.0f QPS\n", lab ? "netns" : "loopback",
               Quantile(ms, 0.5), Quantile(ms, 0.99), clients, static_cast<double>(done) / elapsed);
  return {{"where", lab ? "netns" : "loopback"}, {"coordinator", coord.address},
          {"shards", {daemons[0].address, daemons[1].address}}, {"sequential_searches", ms.size()},
          {"p50_ms", Quantile(ms, 0.5)}, {"p99_ms", Quantile(ms, 0.99)}, {"max_ms", Quantile(ms, 1.0)},
          {"clients", clients}, {"qps", static_cast<double>(done) / elapsed}, {"failed", failed.load()},
          {"seconds", elapsed}};
}

// Runs `cmd`; its output (stdout and stderr).
std::string Output(const std::string& cmd) {
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  if (!p) Die("cannot run " + cmd);
  std::string out;
  char buf[4096];
  for (size_t got; (got = fread(buf, 1, sizeof(buf), p)) > 0;) out.append(buf, got);
  if (pclose(p) != 0) Die("`" + cmd + "` failed:\n" + out);
  return out;
}

// allreduce_bench's table: size MB -> busbw GB/s (and time ms).
json ParseAllReduce(const std::string& out) {
  json rows = json::array();
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    double mb, ms, alg, bus, bound, of;
    if (std::sscanf(line.c_str(), " %lf %lf %lf %lf %lf %lf%%", &mb, &ms, &alg, &bus, &bound, &of) == 6) {
      rows.push_back({{"size_mb", mb}, {"time_ms", ms}, {"algbw_gbs", alg}, {"busbw_gbs", bus}});
    }
  }
  return rows;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"multihost_bench: serving and all-reduce across network-namespace hosts vs loopback"};
  std::string bin_dir = "build", src_dir = ".", dir = "/tmp/mrl_multihost_bench", out;
  int n = 60000, d = 256, ds = 32, sequential = 2000, clients = 8;
  double seconds = 10;
  int rounds = 2;
  app.add_option("--rounds", rounds, "rounds of (loopback, across hosts); the first warms the machine up");
  app.add_option("--bin-dir", bin_dir, "build directory");
  app.add_option("--src-dir", src_dir, "source tree (ops/netns-rsh)");
  app.add_option("--dir", dir, "scratch directory (removed first)");
  app.add_option("--points", n);
  app.add_option("--dim", d);
  app.add_option("--index-dims", ds);
  app.add_option("--sequential", sequential, "searches by one client (latency)");
  app.add_option("--clients", clients, "concurrent clients (QPS)");
  app.add_option("--seconds", seconds, "how long the concurrent clients run");
  app.add_option("--json", out, "write every figure, with its provenance, here")->required();
  CLI11_PARSE(app, argc, argv);
  const std::string why = mrl::test_util::NetnsLab::Unavailable();
  if (!why.empty()) Die("no network namespaces here: " + why);
  const json stamp = mrl::Provenance(argc, argv);
  json j;
  j["provenance"] = stamp;
  j["setup"] = {{"points", n}, {"dim", d}, {"index_dims", ds}, {"shards", 2}, {"replication", 1},
                {"search", "binary API; stages (" + std::to_string(ds) + ", 100) then (" + std::to_string(d) + ", 10)"},
                {"sequential", sequential}, {"clients", clients}, {"seconds", seconds}, {"rounds", rounds}};
  {
    mrl::test_util::NetnsLab lab(3);
    for (int round = 0; round < rounds; ++round) {
      for (bool across : {false, true}) {
        json r = across ? Serving(bin_dir, dir + "/netns", &lab, n, d, ds, sequential, clients, seconds)
                        : Serving(bin_dir, dir + "/loopback", nullptr, n, d, ds, sequential, clients, seconds);
        r["round"] = round + 1;
        j["serving"].push_back(r);
      }
    }
  }
  const std::string mpi = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np 2 --bind-to none ";
  const std::string ar = bin_dir + "/bench/allreduce_bench 1 4 25 100";
  {
    mrl::test_util::NetnsLab lab(2);
    const std::string subnet = lab.address(1).substr(0, lab.address(1).rfind('.')) + ".0/24";
    const std::string across = mpi + "-H " + lab.ns(1) + "," + lab.ns(2) + " --mca plm_rsh_agent " + src_dir +
                               "/ops/netns-rsh --mca plm_rsh_no_tree_spawn 1 --mca btl self,tcp --mca btl_tcp_if_include " +
                               subnet + " --mca oob_tcp_if_include " + subnet + " " + ar;
    const std::string out_ns = Output(across);
    j["allreduce"].push_back({{"where", "two namespace hosts, TCP over veth"}, {"command", across}, {"rows", ParseAllReduce(out_ns)}, {"output", out_ns}});
  }
  for (const auto& [where, btl] : {std::pair<std::string, std::string>{"one host, shared memory (vader)", "self,vader"},
                                   {"one host, TCP over loopback", "self,tcp --mca btl_tcp_if_include lo"}}) {
    const std::string cmd = mpi + "--oversubscribe --mca btl " + btl + " " + ar;
    const std::string o = Output(cmd);
    j["allreduce"].push_back({{"where", where}, {"command", cmd}, {"rows", ParseAllReduce(o)}, {"output", o}});
  }
  std::ofstream f(out);
  f << j.dump(1) << "\n";
  if (!f) Die("cannot write " + out);
  std::printf("wrote %s\n%s\n", out.c_str(), mrl::ProvenanceLine(stamp).c_str());
  return 0;
}
