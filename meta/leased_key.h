// A key kept alive under its own lease: a component's registration in the metadata store (a
// shard's `shards/<id>`), which vanishes by itself when the component dies or is cut off for
// longer than the TTL, and is removed at once when it stops cleanly (Release revokes the lease).
//
// A background thread grants a lease, puts the key under it and keeps the lease alive every
// TTL/3. It never gives up and never exits the process: a store that cannot be reached is
// retried (with backoff up to TTL/3); a lease found expired (KeepAlive NotFound: the component
// was paused or the store was away past the TTL) is replaced by a new one and the key put again.
// The value is asked of `value()` at every tick and put again when it changed (a shard going
// read-only or draining), or at once on Update().
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "common/status.h"
#include "meta/store.h"

namespace mrl::meta {

// The ids of a cluster's members (coordinators, shards) as they appear in keys:
// [A-Za-z0-9_.:-]{1,64}.
bool ValidMemberId(const std::string& id);
// `prefix` + 12 random hex digits ("coord-3fa9...", "shard-07bc...").
std::string RandomMemberId(const std::string& prefix);

struct LeasedKeyOptions {
  std::string key;        // e.g. "shards/shard-1a2b3c"
  int ttl_s = 10;         // the lease's TTL: how long a dead holder's key outlives it
  std::string log_name;   // log lines start with "<log_name>: " (stderr)
};

class LeasedKey {
 public:
  // REQUIRES: store outlives this object; ttl_s >= 1. Starts registering at once (in the
  // background: a store that is away at start is not an error).
  LeasedKey(Store* store, LeasedKeyOptions options, std::function<std::string()> value);
  // Stops the thread without revoking: the key lives until its TTL (as after a crash). Call
  // Release first for a clean stop.
  ~LeasedKey();

  // Re-reads value() and puts it now if it changed (returns before the put is done).
  void Update();
  // Stops the thread, puts the current value when it changed, then revokes the lease so the key
  // is deleted at once. Each store call is bounded by the store's own retry budget (etcd: 5 s);
  // a failure leaves the key to its TTL and is returned. Idempotent.
  Status Release();

  struct State {
    bool registered = false;  // the key is in the store under a live lease (as last known)
    int64_t lease = 0;
    uint64_t registrations = 0;  // puts under a new lease (1 + lease losses recovered)
    std::string last_error;
  };
  State state() const;

 private:
  void Loop();
  // One grant + put; true when registered.
  bool Register(const std::string& value);

  Store* const store_;
  const LeasedKeyOptions opt_;
  const std::function<std::string()> value_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false, update_now_ = false;
  State state_;
  std::string put_value_;  // the value last put under the current lease
  std::thread thread_;
};

}  // namespace mrl::meta
