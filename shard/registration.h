// The shard's registration in the metadata store: `shards/<id>` = {"id", "address", "state",
// "version", "pid", "started_unix_ms"} under the shard's own lease (meta::LeasedKey), so a
// coordinator sees which shards are alive and in what state, and a dead or cut-off shard's key
// vanishes after the TTL (a clean stop deletes it at once). States: "serving", "read_only"
// (above its disk watermark, or RocksDB refused a write), "draining" (SIGTERM received).
// Registration is optional (`--meta etcd://...`) and never on the serving path: a store that is
// away delays the registration, never a request, and never stops the shard.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

#include "common/status.h"
#include "meta/leased_key.h"
#include "meta/store.h"

namespace mrl::shard {

inline const std::string kShardsPrefix = "shards/";  // + id (docs/metadata.md)

struct RegistrationOptions {
  std::string meta_url;  // etcd://h:p,.../prefix (a shared store; the embedded file is refused)
  std::string id;        // the shard's id (ResolveShardId)
  std::string address;   // host:port the coordinators reach this shard at
  std::string version;   // build summary
  int ttl_s = 10;
};

// The configured id, else the one kept in data_dir/shard_id (created on the first start as
// "shard-<12 hex>", so a shard keeps its identity across restarts and port changes).
// InvalidArgument for an id outside [A-Za-z0-9_.:-]{1,64}.
Result<std::string> ResolveShardId(const std::string& configured, const std::string& data_dir);

class ShardRegistration {
 public:
  // `read_only` is asked at every keep-alive tick (the engine's disk and store state).
  // InvalidArgument for a URL that is not a shared store; the store is not contacted here.
  static Result<std::unique_ptr<ShardRegistration>> Start(RegistrationOptions options,
                                                          std::function<bool()> read_only);
  ~ShardRegistration();

  const std::string& key() const { return key_; }
  std::string Describe() const { return store_->Describe(); }
  // The state the key carries from now on: "draining" (put at once).
  void SetDraining();
  // Deletes the key now (revokes the lease).
  Status Release();

 private:
  ShardRegistration() = default;
  std::string Value() const;

  RegistrationOptions opt_;
  std::string key_;
  int64_t started_unix_ms_ = 0;
  std::function<bool()> read_only_;
  std::atomic<bool> draining_{false};
  std::unique_ptr<meta::Store> store_;
  std::unique_ptr<meta::LeasedKey> leased_;  // destroyed before store_
};

}  // namespace mrl::shard
