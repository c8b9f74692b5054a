// What the metadata store tests share (meta_store_test.cc, meta_store_security_test.cc): a
// watch's deliveries collected, and the etcd clusters started once per test binary.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "meta/store.h"
#include "ops/local_etcd.h"
#include "tests/test_util.h"

namespace mrl::meta::store_test {

using Clock = std::chrono::steady_clock;

// Collects a watch's deliveries.
struct Events {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<WatchEvent> got;
  std::vector<int64_t> batch_revisions;  // one per delivery
  Status error;
  WatchCallback Callback() {
    return [this](const Status& st, const std::vector<WatchEvent>& evs) {
      std::lock_guard<std::mutex> lock(mu);
      if (!st.ok()) error = st;
      for (const WatchEvent& e : evs) got.push_back(e);
      if (!evs.empty()) batch_revisions.push_back(evs.front().kv.mod_revision);
      cv.notify_all();
    };
  }
  // Waits until `n` events arrived (or an error); false on timeout.
  bool WaitFor(size_t n, double seconds = 10) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::duration<double>(seconds),
                       [&] { return got.size() >= n || !error.ok(); });
  }
  bool WaitForError(double seconds = 10) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::duration<double>(seconds), [&] { return !error.ok(); });
  }
};

// The etcd cluster is shared by every etcd test of this binary (starting one takes ~2 s).
inline ops::LocalEtcd* SharedEtcd() {
  static std::unique_ptr<ops::LocalEtcd> etcd = [] {
    auto e = ops::LocalEtcd::Start(test_util::TempDir("etcd"), 3, 60);
    if (!e.ok()) {
      ADD_FAILURE() << "cannot start a local etcd cluster: " << e.status().ToString();
      return std::unique_ptr<ops::LocalEtcd>();
    }
    return std::move(e).value();
  }();
  return etcd.get();
}

// The TLS + auth cluster, shared the same way: https with client certificates, user root, and
// simple tokens that expire after 2 s unused, so the suite renews tokens as it goes.
constexpr int kTokenTtlS = 2;
inline ops::LocalEtcd* SharedSecureEtcd() {
  static std::unique_ptr<ops::LocalEtcd> etcd = [] {
    ops::LocalEtcdOptions o;
    o.members = 3;
    o.tls = true;
    o.auth = true;
    o.auth_token_ttl_s = kTokenTtlS;
    const auto t0 = Clock::now();
    auto e = ops::LocalEtcd::Start(test_util::TempDir("etcd_secure"), o);
    if (!e.ok()) {
      ADD_FAILURE() << "cannot start a local etcd cluster with TLS and auth: "
                    << e.status().ToString();
      return std::unique_ptr<ops::LocalEtcd>();
    }
    std::printf("[meta etcd_tls_auth] 3 members with TLS + auth up in %.1f s\n",
                std::chrono::duration<double>(Clock::now() - t0).count());
    return std::move(e).value();
  }();
  return etcd.get();
}

}  // namespace mrl::meta::store_test
