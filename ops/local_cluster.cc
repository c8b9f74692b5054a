#include "ops/local_cluster.h"

#include <signal.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "common/atomic_file.h"
#include "common/process.h"
#include "ops/local_etcd.h"

namespace mrl::ops {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string SelfDir() { return fs::read_symlink("/proc/self/exe").parent_path().string(); }

// A daemon of its own session appending to its log; its port once it has written the port file.
Result<std::pair<pid_t, int>> Start(const std::vector<std::string>& args, const std::string& log,
                                    const std::string& port_file, double timeout_s) {
  std::error_code ec;
  fs::remove(port_file, ec);
  auto pid = SpawnProcess(args, log, {.append_log = true, .new_session = true});
  if (!pid.ok()) return pid.status();
  auto port = WaitForPortFile(port_file, pid.value(), log, timeout_s);
  if (!port.ok()) return port.status();
  return std::make_pair(pid.value(), port.value());
}

Result<json> ReadClusterFile(const std::string& dir) {
  auto text = ReadFile(dir + "/cluster.json");
  if (!text.ok()) {
    return Status::NotFound("'" + dir + "' has no cluster (no " + dir +
                            "/cluster.json): start one with mrlctl up --dir " + dir +
                            ", or give --url of a running coordinator");
  }
  json state = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (!state.is_object())
    return Status::Corruption("'" + dir + "/cluster.json' is not a JSON object");
  return state;
}

}  // namespace

Status Up(const UpOptions& o) {
  const std::string root = o.bin_dir.empty() ? SelfDir() + "/.." : o.bin_dir;
  const std::string shard_bin = root + "/shard/mrl-shard",
                    coord_bin = root + "/coordinator/mrl-coordinator";
  if (o.shards < 1 || o.replication < 1 || o.shards % o.replication != 0) {
    return Status::InvalidArgument(std::to_string(o.shards) +
                                   " shards do not form replica groups of " +
                                   std::to_string(o.replication));
  }
  if (fs::exists(o.dir + "/cluster.json")) {  // (one without a coordinator: a failed up)
    return Status::FailedPrecondition(
        o.dir + "/cluster.json exists: the cluster is up (mrlctl down first)");
  }
  std::error_code ec;
  fs::create_directories(o.dir + "/logs", ec);
  if (ec) return Status::IoError("cannot create '" + o.dir + "/logs': " + ec.message());
  json state = {{"shards", json::array()}, {"etcd_pids", json::array()}};
  std::string meta_url = o.meta;
  if (o.meta == "etcd") {
    std::cout << "[mrlctl] starting a local 3-member etcd cluster in " << o.dir << "/etcd"
              << std::endl;
    auto etcd = LocalEtcd::Start(o.dir + "/etcd", 3, 60);
    if (!etcd.ok()) return etcd.status().WithContext("mrlctl up --meta etcd");
    meta_url = etcd.value()->Url("mrl");
    for (pid_t p : etcd.value()->Detach()) state["etcd_pids"].push_back(p);
    std::cout << "[mrlctl] etcd at " << meta_url << std::endl;
    // Written now: a failure below still leaves `mrlctl down` able to stop the members.
    MRL_RETURN_IF_ERROR(WriteFileAtomic(o.dir + "/cluster.json", state.dump(2)));
  } else if (!o.meta.empty() && o.meta.rfind("etcd://", 0) != 0) {
    return Status::InvalidArgument("--meta '" + o.meta + "': want etcd or etcd://host:port,...");
  }
  state["meta"] = meta_url.empty() ? "embedded" : meta_url;
  std::vector<std::string> coord_args = {coord_bin,
                                         "--data-dir",
                                         o.dir + "/coordinator",
                                         "--port",
                                         std::to_string(o.port),
                                         "--port-file",
                                         o.dir + "/coordinator.port",
                                         "--binary-port",
                                         "0",
                                         "--binary-port-file",
                                         o.dir + "/coordinator.bport",
                                         "--replication",
                                         std::to_string(o.replication)};
  coord_args.insert(coord_args.end(), o.coordinator_args.begin(), o.coordinator_args.end());
  if (!meta_url.empty()) {
    coord_args.push_back("--meta");
    coord_args.push_back(meta_url);
    coord_args.push_back("--coordinator-id");
    coord_args.push_back("coordinator0");
  }
  for (int s = 0; s < o.shards; ++s) {
    const std::string id = "shard" + std::to_string(s), log = o.dir + "/logs/" + id + ".log";
    std::vector<std::string> shard_args = {shard_bin, "--data-dir", o.dir + "/" + id, "--port",
                                           "0", "--port-file", o.dir + "/" + id + ".port"};
    if (!meta_url.empty()) {  // each shard registers under its own lease (docs/metadata.md)
      for (const std::string& a : {std::string("--meta"), meta_url, std::string("--shard-id"), id})
        shard_args.push_back(a);
    }
    auto started = Start(shard_args, log, o.dir + "/" + id + ".port", 600);
    if (!started.ok()) return started.status().WithContext(id);
    const auto [pid, port] = started.value();
    std::cout << "[mrlctl] " << id << " pid " << pid << " on 127.0.0.1:" << port << std::endl;
    state["shards"].push_back({{"id", id}, {"pid", pid}, {"port", port}});
    coord_args.push_back("--shard");
    coord_args.push_back(id + "=127.0.0.1:" + std::to_string(port));
  }
  const std::string clog = o.dir + "/logs/coordinator.log";
  fs::remove(o.dir + "/coordinator.bport", ec);
  auto coord = Start(coord_args, clog, o.dir + "/coordinator.port", 60);
  if (!coord.ok()) return coord.status().WithContext("coordinator");
  const auto [cpid, cport] = coord.value();
  auto bport = WaitForPortFile(o.dir + "/coordinator.bport", cpid, clog, 60);
  if (!bport.ok()) return bport.status().WithContext("coordinator binary API");
  state["coordinator"] = {{"pid", cpid}, {"port", cport}, {"binary_port", bport.value()}};
  state["url"] = "http://127.0.0.1:" + std::to_string(cport);
  state["binary"] = "127.0.0.1:" + std::to_string(bport.value());
  MRL_RETURN_IF_ERROR(WriteFileAtomic(o.dir + "/cluster.json", state.dump(2)));
  std::cout << "[mrlctl] coordinator pid " << cpid << " at " << state["url"].get<std::string>()
            << std::endl;
  return Status::Ok();
}

Status Down(const std::string& dir) {
  auto state = ReadClusterFile(dir);
  if (!state.ok()) return state.status();
  std::vector<pid_t> pids;
  try {
    if (state.value().contains("coordinator"))
      pids.push_back(state.value()["coordinator"]["pid"].get<pid_t>());
    for (const json& s : state.value()["shards"]) pids.push_back(s["pid"].get<pid_t>());
    // etcd last: the coordinator resigns its session on the way out.
    for (const json& p : state.value().value("etcd_pids", json::array())) pids.push_back(p.get<pid_t>());
  } catch (const json::exception& e) {
    return Status::Corruption("'" + dir + "/cluster.json': " + e.what());
  }
  for (pid_t p : pids) {
    if (kill(p, SIGTERM) != 0) continue;
    // Not our child: poll until it is gone (graceful drain, then checkpoint).
    for (int i = 0; i < 1200 && kill(p, 0) == 0; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (kill(p, 0) == 0) {
      std::cerr << "[mrlctl] pid " << p << " did not stop in 60 s; killing\n";
      kill(p, SIGKILL);
    }
    std::cout << "[mrlctl] stopped pid " << p << std::endl;
  }
  std::error_code ec;
  fs::remove(dir + "/cluster.json", ec);
  return Status::Ok();
}

Result<std::string> CoordinatorUrl(const std::string& url, const std::string& dir) {
  if (!url.empty()) return url;
  if (dir.empty()) {
    return Status::InvalidArgument("give --url, or --dir of a cluster started with mrlctl up");
  }
  auto state = ReadClusterFile(dir);
  if (!state.ok()) return state.status();
  if (!state.value().contains("url") || !state.value()["url"].is_string()) {
    return Status::Corruption("'" + dir + "/cluster.json' names no coordinator url");
  }
  return state.value()["url"].get<std::string>();
}

std::string CoordinatorBinary(const std::string& binary, const std::string& url,
                              const std::string& dir) {
  if (!binary.empty() || !url.empty()) return binary;
  auto state = ReadClusterFile(dir);
  if (!state.ok() || !state.value().contains("binary") || !state.value()["binary"].is_string())
    return "";
  return state.value()["binary"].get<std::string>();
}

}  // namespace mrl::ops
