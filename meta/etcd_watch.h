// EtcdStore's watch (internal to meta/): a thread reading /v3/watch's stream (one JSON message per
// line), reconnecting on any endpoint from the revision after the last one delivered, with the
// store's transport (http or https) and token.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "meta/etcd_http.h"
#include "meta/store.h"

namespace mrl::meta {

class EtcdStore;

class EtcdWatch final : public Watch {
 public:
  // REQUIRES: `store` outlives the watch.
  EtcdWatch(EtcdStore* store, std::string prefix, int64_t after, WatchCallback cb);
  ~EtcdWatch() override;

 private:
  void Loop();
  bool Stopped();
  // One connection's stream, until it ends or fails.
  Status StreamOnce(size_t endpoint);
  // Handles one stream message; OutOfRange once the watch ended (compacted, callback told),
  // Unauthenticated when etcd refused the token (`cancel_reason`) or, without credentials, the
  // call (then the watch ended, callback told).
  Status OnMessage(const std::string& endpoint, const nlohmann::json& m);
  // Ends the watch with `st` (callback told).
  void End(const Status& st);

  EtcdStore* const store_;
  const std::string prefix_;
  int64_t next_;  // the first revision not yet delivered (watch thread only)
  const WatchCallback cb_;
  bool ended_ = false;     // watch thread only
  bool warned_ = false;    // watch thread only
  bool streamed_ = false;  // watch thread only: the current stream handled a message
  etcd_http::StreamCancel cancel_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  std::thread thread_;
};

}  // namespace mrl::meta
