// The metadata store on etcd (3.4+), through its v3 JSON gateway (POST /v3/kv/range, kv/txn,
// lease/grant, lease/keepalive, lease/revoke, and the streaming /v3/watch): keys and values are
// base64 in JSON, int64s are strings. Boost.Beast HTTP/1.1 or HTTPS, keep-alive connections.
//
// Failover: a call goes to the endpoint that answered last; on a transport or TLS error, a
// timeout or etcd's "unavailable" (no leader, leader changed) it moves to the next endpoint, with
// backoff (50 ms doubling to 500 ms) until retry_ms has passed, then returns Unavailable. A
// retried write may have been applied once already: a guarded Txn then reports succeeded = false
// (its compare no longer holds), so callers re-read after a failed compare, never assume.
// A watch reconnects by itself (any endpoint, from the revision after the last one delivered)
// for as long as it lives; it ends only when etcd has compacted that revision (OutOfRange) or
// refuses the store's credentials (Unauthenticated).
// Every key is stored under `prefix`; callers see keys without it.
//
// TLS: https to every endpoint; the server's certificate must chain to a CA of ca_file and carry
// the endpoint's host as a DNS or IP SAN; a client certificate is presented when given.
// Authentication (etcd's auth enabled): the store asks /v3/auth/authenticate for a token once and
// sends it as the Authorization header of every call and watch; a token etcd no longer accepts
// (a simple token unused for --auth-token-ttl, or older than an auth change) is renewed once per
// call, transparently. A refused user or password is Unauthenticated at once, never retried.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "meta/store.h"

namespace mrl::meta::etcd_http {
class Client;  // meta/etcd_http.h (keeps Boost.Beast and OpenSSL out of this header)
}

namespace mrl::meta {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "host:port"
  std::string prefix = "/mrl/";
  int request_timeout_ms = 2000;  // one HTTP exchange
  int retry_ms = 5000;            // one call, over every endpoint and retry
  // TLS: https instead of http (any of the files below turns it on at Open). ca_file: the PEM
  // CA(s) the servers' certificates must chain to ("": the system's CA store); cert_file +
  // key_file: the client certificate (etcd's --client-cert-auth), both or neither.
  bool tls = false;
  std::string ca_file, cert_file, key_file;
  // etcd's authentication: the user, and the file its password is read from at Open (one line;
  // a trailing newline is not part of it). Both or neither.
  std::string user, password_file;
};
// "etcd://h1:p1,h2:p2/prefix?param=value&..." -> options (prefix "/mrl/" when absent; a trailing
// '/' added). Parameters (values percent-decoded): ca=FILE, cert=FILE, key=FILE (each implies
// TLS), tls=1|0, user=NAME, password_file=FILE. InvalidArgument naming an unknown parameter, a
// password given in the URL, or one of a pair (cert/key, user/password_file) without the other.
Result<EtcdOptions> ParseEtcdUrl(const std::string& url);

struct EtcdMember {
  std::string endpoint;
  bool healthy = false;
  bool leader = false;
  std::string error;  // when not healthy
  int64_t raft_term = 0;
};

class EtcdStore final : public Store {
 public:
  // Does not contact etcd: a store that is away at start is not an error (calls fail, retry).
  static Result<std::unique_ptr<EtcdStore>> Open(EtcdOptions options);
  ~EtcdStore() override;

  Result<ReadResult> Get(const std::string& key) override;
  Result<ReadResult> GetPrefix(const std::string& prefix) override;
  Result<TxnResult> Txn(const std::vector<Compare>& compares, const std::vector<Op>& then,
                        const std::vector<Op>& otherwise) override;
  Result<int64_t> GrantLease(int64_t ttl_s) override;
  Status KeepAlive(int64_t lease) override;
  Status RevokeLease(int64_t lease) override;
  Result<std::unique_ptr<Watch>> WatchPrefix(const std::string& prefix, int64_t after_revision,
                                             WatchCallback callback) override;
  // "etcd h1:p1,h2:p2 prefix /mrl/ tls on (ca /etc/etcd/ca.pem) user root": TLS on or off and
  // the user; never the password.
  std::string Describe() const override;

  // Each endpoint's /v3/maintenance/status (for mrlctl status): healthy, leader. Sends the token
  // the store holds, if any; never asks for one (that needs a quorum; the status does not).
  std::vector<EtcdMember> Members();

  const EtcdOptions& options() const { return options_; }
  // HTTP exchanges of KV and lease calls so far, retries included (not watches, not Members,
  // not authentications).
  uint64_t exchanges() const { return exchanges_.load(); }
  // Tokens obtained from etcd so far (the first one, then one per renewal).
  uint64_t authentications() const { return authentications_.load(); }

  // One exchange with one endpoint (authenticated when a user is set, its token renewed once if
  // etcd rejects it): the parsed JSON answer, or the error. For tests and tools (compaction,
  // status, auth setup); KV calls go through the store's methods.
  Result<nlohmann::json> Exchange(size_t endpoint, const std::string& path, const std::string& body,
                                  int timeout_ms);

 private:
  friend class EtcdWatch;
  EtcdStore(EtcdOptions options, std::shared_ptr<etcd_http::Client> client, std::string password)
      : options_(std::move(options)), client_(std::move(client)), password_(std::move(password)) {}
  // POST with failover and retry (see the header comment).
  Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body);
  // One POST and its answer, with `token` as the Authorization; *token_rejected (when not null)
  // says etcd refused the token itself (expired, or older than an auth change).
  Result<nlohmann::json> ExchangeOnce(size_t endpoint, const std::string& path,
                                      const std::string& body, const std::string& token,
                                      int timeout_ms, bool* token_rejected);
  // The token to send ("" without a user): the one held, else a new one from `endpoint`.
  // Unavailable when that endpoint cannot answer (fail over); Unauthenticated when etcd refuses
  // the user or password.
  Result<std::string> Token(size_t endpoint, int timeout_ms);
  // Forgets `token` (if still the one held) so that the next Token() asks for a new one.
  void ForgetToken(const std::string& token);
  // Unauthenticated, saying what to configure, when etcd's message `why` refuses a call for want
  // of credentials (no user given) or of a permission (the user's); else Ok.
  Status AuthRefusal(const std::string& endpoint, const std::string& why) const;
  ReadResult ToRead(const nlohmann::json& answer) const;
  KeyValue ToKeyValue(const nlohmann::json& kv) const;

  const EtcdOptions options_;
  const std::shared_ptr<etcd_http::Client> client_;
  const std::string password_;      // never logged, never in Describe()
  std::atomic<size_t> current_{0};  // the endpoint that answered last
  std::atomic<uint64_t> exchanges_{0};
  std::atomic<uint64_t> authentications_{0};
  // Held while a token is asked for, so that callers that all find the token stale wait for one
  // new token instead of each asking for their own.
  std::mutex auth_mu_;
  std::string token_;  // guarded by auth_mu_ ("": none yet, or forgotten)
};

// Whether an etcd error message says the token itself was refused (renew it and retry), as
// opposed to the user lacking a permission.
bool IsTokenRejection(const std::string& message);

}  // namespace mrl::meta
