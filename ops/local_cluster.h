// mrlctl's local cluster: `up` starts N shards and a coordinator as daemons of their own session
// (they outlive mrlctl), waits for each one's port file, and records pids, ports and URLs in
// <dir>/cluster.json; `down` stops them (SIGTERM: drain and checkpoint; SIGKILL after 60 s).
// Processes are started by common/process.h, the launcher the tests use too.
#pragma once

#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::ops {

struct UpOptions {
  std::string dir;  // the cluster's home: data, logs, cluster.json
  int shards = 2;
  int replication = 1;  // shards per replica group
  int port = 0;         // coordinator HTTP port; 0: the OS picks
  std::string bin_dir;  // build directory with shard/ and coordinator/; empty: mrlctl's own
  // The cluster state's store: "" = the coordinator's embedded one; "etcd" = a local 3-member
  // etcd cluster started in dir/etcd (needs etcd-server); "etcd://..." = that etcd.
  std::string meta;
  std::vector<std::string> coordinator_args;  // extra flags of the coordinator
};

Status Up(const UpOptions& options);
Status Down(const std::string& dir);

// The coordinator URL: `url` when given, else the one in <dir>/cluster.json.
Result<std::string> CoordinatorUrl(const std::string& url, const std::string& dir);
// Its binary API "host:port": `binary` when given; else, when no `url` was given, the one in
// <dir>/cluster.json; else empty (HTTP only).
std::string CoordinatorBinary(const std::string& binary, const std::string& url,
                              const std::string& dir);

}  // namespace mrl::ops
