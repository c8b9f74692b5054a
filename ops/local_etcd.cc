#include "ops/local_etcd.h"

#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <random>
#include <thread>

#include "common/atomic_file.h"
#include "common/process.h"
#include "meta/etcd_store.h"

namespace mrl::ops {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

// `n` distinct ports the OS considers free now: all bound to 127.0.0.1:0 at once, then
// released. (One at a time, a port released by one pick could come back from the next: a member's
// client port equal to another's peer port, seen as etcd answering "404 page not found".)
Result<std::vector<int>> FreePorts(int n) {
  std::vector<int> fds, ports;
  Status st;
  for (int i = 0; i < n && st.ok(); ++i) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) {
      st = Status::IoError("socket");
      break;
    }
    fds.push_back(fd);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      st = Status::IoError("bind to a free port");
      break;
    }
    ports.push_back(ntohs(a.sin_port));
  }
  for (int fd : fds) ::close(fd);
  if (!st.ok()) return st;
  return ports;
}

// %-escapes what a URL's parameter value cannot hold as is (paths stay readable).
std::string UrlValue(const std::string& s) {
  static const char* hex = "0123456789ABCDEF";
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (std::isalnum(c) || c == '/' || c == '-' || c == '_' || c == '.' || c == '~') {
      out += ch;
    } else {
      out += '%';
      out += hex[c >> 4];
      out += hex[c & 15];
    }
  }
  return out;
}

// Runs the openssl CLI with `args`; its output goes to dir/openssl.log.
Status RunOpenssl(const std::string& dir, const std::vector<std::string>& args) {
  std::string bin;
  for (const char* p : {"/usr/bin/openssl", "/usr/local/bin/openssl"}) {
    if (::access(p, X_OK) == 0) {
      bin = p;
      break;
    }
  }
  if (bin.empty()) return Status::NotFound("no openssl binary: install Debian's openssl");
  std::vector<std::string> argv = {bin};
  argv.insert(argv.end(), args.begin(), args.end());
  SpawnOptions so;
  so.append_log = true;
  const std::string log = (fs::path(dir) / "openssl.log").string();
  auto pid = SpawnProcess(argv, log, so);
  if (!pid.ok()) return pid.status().WithContext("openssl");
  if (const int rc = WaitForExit(pid.value()); rc != 0) {
    return Status::FailedPrecondition("openssl " + args[0] + " exited with " + std::to_string(rc) +
                                      "; see " + log);
  }
  return Status::Ok();
}

constexpr char kOpensslConfig[] = R"([req]
distinguished_name = dn
prompt = no
[dn]
[ca_ext]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[server_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1
authorityKeyIdentifier = keyid
[client_ext]
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature
extendedKeyUsage = clientAuth
authorityKeyIdentifier = keyid
)";

}  // namespace

Result<TestCertificates> WriteTestCertificates(const std::string& dir) {
  MRL_RETURN_IF_ERROR(EnsureWritableDir(dir));
  auto path = [&](const char* name) { return (fs::path(dir) / name).string(); };
  const std::string cnf = path("openssl.cnf");
  MRL_RETURN_IF_ERROR(WriteFileAtomic(cnf, kOpensslConfig));
  const std::vector<std::string> key = {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                                        "-nodes"};
  auto concat = [](std::vector<std::string> a, const std::vector<std::string>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  TestCertificates t{path("ca.pem"), path("server.pem"), path("server.key"), path("client.pem"),
                     path("client.key")};
  MRL_RETURN_IF_ERROR(
      RunOpenssl(dir, concat(concat({"req", "-x509", "-new"}, key),
                             {"-keyout", path("ca.key"), "-out", t.ca, "-days", "3650", "-subj",
                              "/CN=mrl-local-etcd-ca", "-config", cnf, "-extensions", "ca_ext"})));
  struct Leaf {
    std::string cert, key, subject, ext, serial;
  };
  for (const Leaf& leaf :
       {Leaf{t.server_cert, t.server_key, "/CN=mrl-local-etcd", "server_ext", "2"},
        Leaf{t.client_cert, t.client_key, "/O=mrl-local-etcd/OU=client", "client_ext", "3"}}) {
    const std::string csr = leaf.cert + ".csr";
    MRL_RETURN_IF_ERROR(RunOpenssl(
        dir, concat(concat({"req", "-new"}, key),
                    {"-keyout", leaf.key, "-out", csr, "-subj", leaf.subject, "-config", cnf})));
    MRL_RETURN_IF_ERROR(
        RunOpenssl(dir, {"x509", "-req", "-in", csr, "-CA", t.ca, "-CAkey", path("ca.key"),
                         "-set_serial", leaf.serial, "-days", "3650", "-out", leaf.cert, "-extfile",
                         cnf, "-extensions", leaf.ext}));
  }
  return t;
}

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
  LocalEtcdOptions o;
  o.members = members;
  o.timeout_s = timeout_s;
  return Start(dir, o);
}

Result<std::unique_ptr<LocalEtcd>> LocalEtcd::Start(const std::string& dir,
                                                    const LocalEtcdOptions& options) {
  const int members = options.members;
  const double timeout_s = options.timeout_s;
  if (members < 1) return Status::InvalidArgument("an etcd cluster needs at least one member");
  auto bin = FindEtcd();
  if (!bin.ok()) return bin.status();
  MRL_RETURN_IF_ERROR(EnsureWritableDir(dir));
  std::unique_ptr<LocalEtcd> e(new LocalEtcd(dir, bin.value(), options));
  if (options.tls) {
    auto certs = WriteTestCertificates((fs::path(dir) / "tls").string());
    if (!certs.ok()) return certs.status().WithContext("etcd TLS certificates in " + dir);
    e->certs_ = std::move(certs).value();
  }
  auto ports = FreePorts(2 * members);
  if (!ports.ok()) return ports.status();
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = "etcd" + std::to_string(i);
    m.client_port = ports.value()[static_cast<size_t>(2 * i)];
    m.peer_port = ports.value()[static_cast<size_t>(2 * i + 1)];
    e->initial_cluster_ +=
        (i ? "," : "") + m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    e->members_.push_back(m);
  }
  for (size_t i = 0; i < e->members_.size(); ++i) MRL_RETURN_IF_ERROR(e->Spawn(i, true));
  for (size_t i = 0; i < e->members_.size(); ++i) MRL_RETURN_IF_ERROR(e->WaitReady(i, timeout_s));
  // One member leads: a linearizable read succeeds.
  auto store = meta::EtcdStore::Open(
      e->StoreOptions({e->endpoint(0)}, 2000, static_cast<int>(timeout_s * 1000), false));
  if (!store.ok()) return store.status();
  auto r = store.value()->Get("__local_etcd_ready");
  if (!r.ok()) return r.status().WithContext("etcd cluster in " + dir + " has no leader");
  if (options.auth) MRL_RETURN_IF_ERROR(e->EnableAuth(timeout_s));
  return e;
}

meta::EtcdOptions LocalEtcd::StoreOptions(std::vector<std::string> endpoints, int request_ms,
                                          int retry_ms, bool with_user) const {
  meta::EtcdOptions o;
  o.endpoints = std::move(endpoints);
  o.prefix = "/";
  o.request_timeout_ms = request_ms;
  o.retry_ms = retry_ms;
  if (options_.tls) {
    o.tls = true;
    o.ca_file = certs_.ca;
    o.cert_file = certs_.client_cert;
    o.key_file = certs_.client_key;
  }
  if (auth_on_ && with_user) {
    o.user = "root";
    o.password_file = password_file();
  }
  return o;
}

std::string LocalEtcd::password_file() const { return (fs::path(dir_) / "root.password").string(); }

Status LocalEtcd::EnableAuth(double timeout_s) {
  std::random_device rd;
  std::string password;
  for (int i = 0; i < 24; ++i) password += "0123456789abcdef"[rd() % 16];
  MRL_RETURN_IF_ERROR(WriteFileAtomic(password_file(), password + "\n"));
  ::chmod(password_file().c_str(), 0600);
  auto store = meta::EtcdStore::Open(StoreOptions({endpoint(0)}, 2000, 2000, false));
  if (!store.ok()) return store.status();
  const std::vector<std::pair<std::string, nlohmann::json>> steps = {
      {"/v3/auth/user/add", {{"name", "root"}, {"password", password}}},
      {"/v3/auth/role/add", {{"name", "root"}}},
      {"/v3/auth/user/grant", {{"user", "root"}, {"role", "root"}}},
      {"/v3/auth/enable", nlohmann::json::object()}};
  const auto deadline = Clock::now() + std::chrono::duration<double>(timeout_s);
  for (const auto& [path, body] : steps) {
    for (;;) {
      auto a = store.value()->Exchange(0, path, body.dump(), 2000);
      // A retried step that was applied the first time: "already exists".
      if (a.ok() || a.status().message().find("already exist") != std::string::npos) break;
      if (a.status().code() != Status::Code::kUnavailable || Clock::now() > deadline) {
        return a.status().WithContext("enabling etcd auth (" + path + ")");
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }
  auth_on_ = true;
  // The credentials work: root reads.
  std::vector<std::string> eps;
  for (int i = 0; i < size(); ++i) eps.push_back(endpoint(i));
  auto root =
      meta::EtcdStore::Open(StoreOptions(eps, 2000, static_cast<int>(timeout_s * 1000), true));
  if (!root.ok()) return root.status();
  auto r = root.value()->Get("__local_etcd_ready");
  return r.ok() ? Status::Ok() : r.status().WithContext("etcd auth enabled, but root cannot read");
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
  url += "/" + prefix;
  std::vector<std::pair<std::string, std::string>> params;
  if (options_.tls) {
    params.insert(params.end(),
                  {{"ca", certs_.ca}, {"cert", certs_.client_cert}, {"key", certs_.client_key}});
  }
  if (auth_on_) params.insert(params.end(), {{"user", "root"}, {"password_file", password_file()}});
  for (size_t i = 0; i < params.size(); ++i) {
    url.append(i == 0 ? "?" : "&").append(params[i].first).append("=");
    url.append(UrlValue(params[i].second));
  }
  return url;
}

Status LocalEtcd::Spawn(size_t i, bool initial) {
  Member& m = members_[i];
  ++m.starts;
  const std::string client =
      (options_.tls ? "https://127.0.0.1:" : "http://127.0.0.1:") + std::to_string(m.client_port);
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
  if (options_.tls) {
    argv.insert(argv.end(), {"--cert-file", certs_.server_cert, "--key-file", certs_.server_key,
                             "--trusted-ca-file", certs_.ca, "--client-cert-auth"});
  }
  if (options_.auth_token_ttl_s > 0) {
    argv.insert(argv.end(), {"--auth-token-ttl", std::to_string(options_.auth_token_ttl_s)});
  }
  SpawnOptions so;
  so.append_log = !initial;
  auto pid = SpawnProcess(argv, (fs::path(dir_) / (m.name + ".log")).string(), so);
  if (!pid.ok()) return pid.status().WithContext("starting " + m.name);
  m.pid = pid.value();
  return Status::Ok();
}

Status LocalEtcd::WaitReady(size_t i, double timeout_s) const {
  const Member& m = members_[i];
  auto store =
      meta::EtcdStore::Open(StoreOptions({endpoint(static_cast<int>(i))}, 1000, 1000, false));
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
  auto store = meta::EtcdStore::Open(StoreOptions(eps, 1000, 1000, false));
  if (!store.ok()) return -1;
  const auto members = store.value()->Members();
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i].leader) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace mrl::ops
