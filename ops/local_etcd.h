// A local etcd cluster on loopback ports (etcd-server's /usr/bin/etcd): for the tests and for
// `mrlctl up --meta etcd`. Each member keeps its data in DIR/<name>, logs to DIR/<name>.log and
// can be killed and restarted with the same name, ports and data (as a member that crashed and
// came back). Needs the etcd-server package; nothing else of the project needs etcd.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::ops {

// The etcd binary: $MRL_ETCD_BIN, else /usr/bin/etcd; NotFound naming the package otherwise.
Result<std::string> FindEtcd();

class LocalEtcd {
 public:
  // Starts `members` members and waits (up to timeout_s) until each answers and one leads.
  static Result<std::unique_ptr<LocalEtcd>> Start(const std::string& dir, int members = 3,
                                                  double timeout_s = 60);
  ~LocalEtcd();  // SIGKILLs the members still running (their data stays in dir)

  int size() const { return static_cast<int>(members_.size()); }
  // "etcd://127.0.0.1:P1,127.0.0.1:P2,.../<prefix>" (prefix without its leading '/').
  std::string Url(const std::string& prefix = "mrl") const;
  std::string endpoint(int i) const;

  // Sends `sig` to member i; SIGKILL and SIGTERM also wait for its exit.
  Status Signal(int i, int sig);
  // Starts member i again (same name, ports, data dir) and waits until it answers (timeout_s
  // <= 0: does not wait; a member alone cannot answer while a quorum is down: restart the others,
  // then AwaitReady).
  Status Restart(int i, double timeout_s = 30);
  // Waits until every running member answers.
  Status AwaitReady(double timeout_s = 30) const;
  bool running(int i) const { return members_[static_cast<size_t>(i)].pid > 0; }
  // The member that leads now (-1 if none answers or none leads).
  int Leader() const;
  // Leaves the members running past this object (`mrlctl up`): their pids, for `mrlctl down`.
  std::vector<pid_t> Detach();

 private:
  struct Member {
    std::string name;
    int client_port = 0, peer_port = 0;
    pid_t pid = -1;
    int starts = 0;
  };
  LocalEtcd(std::string dir, std::string binary)
      : dir_(std::move(dir)), binary_(std::move(binary)) {}
  Status Spawn(size_t i, bool initial);
  Status WaitReady(size_t i, double timeout_s) const;

  const std::string dir_, binary_;
  std::vector<Member> members_;
  std::string initial_cluster_;
};

}  // namespace mrl::ops
