#include "ops/local_etcd.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "common/atomic_file.h"
#include "common/process.h"
#include "meta/etcd_store.h"

namespace mrl::ops {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// A port the OS considers free now (bound to 127.0.0.1:0 and released).
Result<int> FreePort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return Status::IoError("socket");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof(a);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    return Status::IoError("bind to a free port");
  }
  const int port = ntohs(a.sin_port);
  ::close(fd);
  return port;
}

}  // namespace

Result<std::string> FindEtcd() {
  if (const char* env = std::getenv("MRL_ETCD_BIN"); env != nullptr && *env != '\0') {
    if (::access(env, X_OK) == 0) return std::string(env);
    return Status::NotFound(std::string("MRL_ETCD_BIN='") + env + "' is not executable");
  }
  for (const char* p : {"/usr/bin/etcd", "/usr/local/bin/etcd"}) {
    if (::access(p, X_OK) == 0) return std::string(p);
  }
  return Status::NotFound("no etcd binary: install Debian's etcd-server (ops/setup.sh --tests)");
}

Result<std::unique_ptr<LocalEtcd>> LocalEtcd::Start(const std::string& dir, int members,
                                                    double timeout_s) {
  if (members < 1) return Status::InvalidArgument("an etcd cluster needs at least one member");
  auto bin = FindEtcd();
  if (!bin.ok()) return bin.status();
  MRL_RETURN_IF_ERROR(EnsureWritableDir(dir));
  std::unique_ptr<LocalEtcd> e(new LocalEtcd(dir, bin.value()));
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = "etcd" + std::to_string(i);
    auto c = FreePort();
    auto p = FreePort();
    if (!c.ok()) return c.status();
    if (!p.ok()) return p.status();
    m.client_port = c.value();
    m.peer_port = p.value();
    e->initial_cluster_ +=
        (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    e->members_.push_back(m);
  }
  for (size_t i = 0; i < e->members_.size(); ++i) MRL_RETURN_IF_ERROR(e->Spawn(i, true));
  for (size_t i = 0; i < e->members_.size(); ++i) MRL_RETURN_IF_ERROR(e->WaitReady(i, timeout_s));
  // One member leads: a linearizable read succeeds.
  auto store =
      meta::EtcdStore::Open({{e->endpoint(0)}, "/", 2000, static_cast<int>(timeout_s * 1000)});
  if (!store.ok()) return store.status();
  auto r = store.value()->Get("__local_etcd_ready");
  if (!r.ok()) return r.status().WithContext("etcd cluster in " + dir + " has no leader");
  return e;
}

LocalEtcd::~LocalEtcd() {
  for (auto& m : members_) {
    if (m.pid > 0) {
      ::kill(m.pid, SIGKILL);
      WaitForExit(m.pid);
    }
  }
}

std::vector<pid_t> LocalEtcd::Detach() {
  std::vector<pid_t> pids;
  for (auto& m : members_) {
    if (m.pid > 0) pids.push_back(m.pid);
    m.pid = -1;
  }
  return pids;
}

std::string LocalEtcd::endpoint(int i) const {
  return "127.0.0.1:" + std::to_string(members_[static_cast<size_t>(i)].client_port);
}

std::string LocalEtcd::Url(const std::string& prefix) const {
  std::string url = "etcd://";
  for (int i = 0; i < size(); ++i) url += (i ? "," : "") + endpoint(i);
  return url + "/" + prefix;
}

Status LocalEtcd::Spawn(size_t i, bool initial) {
  Member& m = members_[i];
  ++m.starts;
  const std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
  const std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  std::vector<std::string> argv = {binary_,
                                   "--name",
                                   m.name,
                                   "--data-dir",
                                   (fs::path(dir_) / m.name).string(),
                                   "--listen-client-urls",
                                   client,
                                   "--advertise-client-urls",
                                   client,
                                   "--listen-peer-urls",
                                   peer,
                                   "--initial-advertise-peer-urls",
                                   peer,
                                   "--initial-cluster",
                                   initial_cluster_,
                                   "--initial-cluster-token",
                                   "mrl-local-etcd",
                                   "--initial-cluster-state",
                                   initial ? "new" : "existing",
                                   "--logger",
                                   "zap",
                                   "--log-level",
                                   "warn"};
  SpawnOptions so;
  so.append_log = !initial;
  auto pid = SpawnProcess(argv, (fs::path(dir_) / (m.name + ".log")).string(), so);
  if (!pid.ok()) return pid.status().WithContext("starting " + m.name);
  m.pid = pid.value();
  return Status::Ok();
}

Status LocalEtcd::WaitReady(size_t i, double timeout_s) const {
  const Member& m = members_[i];
  auto store = meta::EtcdStore::Open({{endpoint(static_cast<int>(i))}, "/", 1000, 1000});
  if (!store.ok()) return store.status();
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  Status last;
  while (Clock::now() < deadline) {
    if (m.pid <= 0 || ::kill(m.pid, 0) != 0) {
      return Status::FailedPrecondition(m.name + " exited; see " + dir_ + "/" + m.name + ".log");
    }
    auto a = store.value()->Exchange(0, "/v3/maintenance/status", "{}", 1000);
    if (a.ok()) return Status::Ok();
    last = a.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::DeadlineExceeded(m.name + " did not answer in " + std::to_string(timeout_s) +
                                  " s: " + last.ToString());
}

Status LocalEtcd::Signal(int i, int sig) {
  Member& m = members_[static_cast<size_t>(i)];
  if (m.pid <= 0) return Status::FailedPrecondition(m.name + " is not running");
  if (::kill(m.pid, sig) != 0) return Status::IoError("kill " + m.name);
  if (sig == SIGKILL || sig == SIGTERM) {
    WaitForExit(m.pid);
    m.pid = -1;
  }
  return Status::Ok();
}

Status LocalEtcd::Restart(int i, double timeout_s) {
  if (running(i))
    return Status::FailedPrecondition(members_[static_cast<size_t>(i)].name + " runs");
  MRL_RETURN_IF_ERROR(Spawn(static_cast<size_t>(i), false));
  if (timeout_s <= 0) return Status::Ok();
  return WaitReady(static_cast<size_t>(i), timeout_s);
}

Status LocalEtcd::AwaitReady(double timeout_s) const {
  for (size_t i = 0; i < members_.size(); ++i) {
    if (members_[i].pid > 0) MRL_RETURN_IF_ERROR(WaitReady(i, timeout_s));
  }
  return Status::Ok();
}

int LocalEtcd::Leader() const {
  std::vector<std::string> eps;
  for (int i = 0; i < size(); ++i) eps.push_back(endpoint(i));
  auto store = meta::EtcdStore::Open({eps, "/", 1000, 1000});
  if (!store.ok()) return -1;
  const auto members = store.value()->Members();
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].leader) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace mrl::ops
