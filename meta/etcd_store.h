// The metadata store on etcd (3.4+), through its v3 JSON gateway (POST /v3/kv/range, kv/txn,
// lease/grant, lease/keepalive, lease/revoke, and the streaming /v3/watch): keys and values are
// base64 in JSON, int64s are strings. Boost.Beast HTTP/1.1, keep-alive connections.
//
// Failover: a call goes to the endpoint that answered last; on a transport error, a timeout or
// etcd's "unavailable" (no leader, leader changed) it moves to the next endpoint, with backoff
// (50 ms doubling to 500 ms) until retry_ms has passed, then returns Unavailable. A retried write
// may have been applied once already: a guarded Txn then reports succeeded = false (its compare
// no longer holds), so callers re-read after a failed compare, never assume.
// A watch reconnects by itself (any endpoint, from the revision after the last one delivered)
// for as long as it lives; it ends only when etcd has compacted that revision (OutOfRange).
// Every key is stored under `prefix`; callers see keys without it.
// Not yet: TLS and user/password authentication.
#pragma once

#include <atomic>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "meta/store.h"

namespace mrl::meta {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "host:port"
  std::string prefix = "/mrl/";
  int request_timeout_ms = 2000;  // one HTTP exchange
  int retry_ms = 5000;            // one call, over every endpoint and retry
};
// "etcd://h1:p1,h2:p2/prefix" -> options (prefix "/mrl/" when absent; a trailing '/' added).
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
  std::string Describe() const override;

  // Each endpoint's /v3/maintenance/status (for mrlctl status): healthy, leader.
  std::vector<EtcdMember> Members();

  const EtcdOptions& options() const { return options_; }
  // HTTP exchanges of KV and lease calls so far, retries included (not watches, not Members).
  uint64_t exchanges() const { return exchanges_.load(); }

  // One exchange with one endpoint: the parsed JSON answer, or the error (internal; public for
  // the watch thread).
  Result<nlohmann::json> Exchange(size_t endpoint, const std::string& path, const std::string& body,
                                  int timeout_ms);

 private:
  explicit EtcdStore(EtcdOptions options) : options_(std::move(options)) {}
  // POST with failover and retry (see the header comment).
  Result<nlohmann::json> Call(const std::string& path, const nlohmann::json& body);
  ReadResult ToRead(const nlohmann::json& answer) const;
  KeyValue ToKeyValue(const nlohmann::json& kv) const;

  const EtcdOptions options_;
  std::atomic<size_t> current_{0};  // the endpoint that answered last
  std::atomic<uint64_t> exchanges_{0};
};

}  // namespace mrl::meta
