// A local etcd cluster on loopback ports (etcd-server's /usr/bin/etcd): for the tests and for
// `mrlctl up --meta etcd`. Each member keeps its data in DIR/<name>, logs to DIR/<name>.log and
// can be killed and restarted with the same name, ports and data (as a member that crashed and
// came back). Optionally with TLS on its client URLs (certificates made in DIR/tls with the
// openssl CLI) and with etcd's authentication on (user root, its password in DIR/root.password).
// Needs the etcd-server package (and openssl for TLS); nothing else of the project needs etcd.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "meta/etcd_store.h"

namespace mrl::ops {

struct LocalEtcdOptions {
  int members = 3;
  double timeout_s = 60;  // for every member to answer and one to lead
  // https on the client URLs (peer URLs stay plain): a CA, a server certificate for 127.0.0.1 and
  // a client certificate are made in DIR/tls, and the members require a client certificate
  // signed by that CA (--client-cert-auth).
  bool tls = false;
  // etcd's authentication on: user root (role root) with a random password, kept in
  // DIR/root.password (mode 0600).
  bool auth = false;
  int auth_token_ttl_s = 0;  // --auth-token-ttl: how long a simple token lives unused (0: 300 s)
};

// The PEM files WriteTestCertificates made.
struct TestCertificates {
  std::string ca, server_cert, server_key, client_cert, client_key;
};
// Makes a new CA in `dir` and, signed by it, a server certificate (IP SAN 127.0.0.1 only, so
// "localhost" does not match it; usable as a client certificate too, as etcd's gateway presents it
// to its own gRPC server) and a client certificate without a CN (etcd 3.4's gateway refuses a
// client certificate that has one), with the openssl CLI (P-256 keys, 10 years). For tests only.
Result<TestCertificates> WriteTestCertificates(const std::string& dir);

// The etcd binary: $MRL_ETCD_BIN, else /usr/bin/etcd; NotFound naming the package otherwise.
Result<std::string> FindEtcd();

class LocalEtcd {
 public:
  // Starts `members` members and waits (up to timeout_s) until each answers and one leads.
  static Result<std::unique_ptr<LocalEtcd>> Start(const std::string& dir, int members = 3,
                                                  double timeout_s = 60);
  // The same with TLS and/or authentication as `options` says (auth is enabled once a member
  // leads, through the gateway: user add, role add, grant, auth enable).
  static Result<std::unique_ptr<LocalEtcd>> Start(const std::string& dir,
                                                  const LocalEtcdOptions& options);
  ~LocalEtcd();  // SIGKILLs the members still running (their data stays in dir)

  int size() const { return static_cast<int>(members_.size()); }
  // "etcd://127.0.0.1:P1,127.0.0.1:P2,.../<prefix>" (prefix without its leading '/'), with TLS
  // "?ca=DIR/tls/ca.pem&cert=DIR/tls/client.pem&key=DIR/tls/client.key", with auth
  // "user=root&password_file=DIR/root.password".
  std::string Url(const std::string& prefix = "mrl") const;
  std::string endpoint(int i) const;
  const LocalEtcdOptions& options() const { return options_; }
  // With TLS: the cluster's CA, server and client certificates.
  const TestCertificates& certificates() const { return certs_; }
  // With auth: the file holding root's password.
  std::string password_file() const;

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
  LocalEtcd(std::string dir, std::string binary, LocalEtcdOptions options)
      : dir_(std::move(dir)), binary_(std::move(binary)), options_(std::move(options)) {}
  Status Spawn(size_t i, bool initial);
  Status WaitReady(size_t i, double timeout_s) const;
  Status EnableAuth(double timeout_s);
  // A store's options for `endpoints`: TLS files as the cluster needs, the user when auth is on
  // and with_user (status and readiness need none: they answer without a quorum).
  meta::EtcdOptions StoreOptions(std::vector<std::string> endpoints, int request_ms, int retry_ms,
                                 bool with_user) const;

  const std::string dir_, binary_;
  const LocalEtcdOptions options_;
  TestCertificates certs_;
  bool auth_on_ = false;
  std::vector<Member> members_;
  std::string initial_cluster_;
};

}  // namespace mrl::ops
