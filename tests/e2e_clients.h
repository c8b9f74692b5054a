// Clients of the coordinator's binary API for the end-to-end tests of silent and cut-off hosts
// (silent_host_e2e_test.cc, multihost_e2e_test.cc): an exact search with its latency and
// coverage, and a writer that upserts new points and deletes loaded ones until stopped,
// remembering what was acknowledged.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rpc/client.h"
#include "tests/coordinator_e2e_fixture.h"

namespace mrl::e2e {

using Clock = std::chrono::steady_clock;

struct Answer {
  std::vector<uint64_t> ids;
  double coverage = 0;
  double ms = 0;
  Status status;
};

inline Answer ExactSearch(rpc::RpcClient& client, const float* q) {
  wire::SearchRequestT req;
  req.collection = "emb";
  req.dims = kDim;
  req.queries.assign(q, q + kDim);
  req.stages.emplace_back(kDim, 10);
  req.exact = true;
  Answer a;
  const auto t0 = Clock::now();
  auto r = client.Call(req, 10000);  // the coordinator applies its own --deadline-ms
  a.ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  a.status = r.status();
  if (!r.ok()) return a;
  a.coverage = r->coverage;
  if (!r->results.empty() && r->results[0]) {
    for (const auto& h : r->results[0]->candidates) a.ids.push_back(h.id());
  }
  return a;
}

inline double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())))];
}

// A point written while a member is away: random, so its own exact search finds it first.
inline std::vector<float> AwayVector(uint64_t id) {
  std::mt19937_64 rng(id);
  std::normal_distribution<float> g;
  std::vector<float> v(kDim);
  for (float& x : v) x = g(rng);
  return v;
}

// Upserts batches of new points and deletes a few of them through the coordinator's binary
// API until stopped; remembers what was acknowledged and when each batch failed.
class Writer {
 public:
  Writer(uint16_t port, uint64_t first_id, std::string host = "127.0.0.1")
      : host_(std::move(host)), next_id_(first_id) {
    thread_ = std::thread([this, port] { Run(port); });
  }
  ~Writer() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  std::set<uint64_t> acked_upserts, acked_deletes;
  std::vector<std::pair<Clock::time_point, bool>> outcomes;  // (time, acknowledged)
  std::string first_error;

 private:
  void Run(uint16_t port) {
    rpc::ClientOptions o;
    o.host = host_;
    o.port = port;
    rpc::RpcClient client(o);
    while (!stop_) {
      wire::UpsertRequestT up;
      up.collection = "emb";
      up.dims = kDim;
      std::vector<uint64_t> ids;
      for (int i = 0; i < 10; ++i) {
        const uint64_t id = next_id_++;
        ids.push_back(id);
        up.ids.push_back(id);
        const auto v = AwayVector(id);
        up.vectors.insert(up.vectors.end(), v.begin(), v.end());
      }
      auto r = client.Call(up, 5000);
      const auto now = Clock::now();
      outcomes.emplace_back(now, r.ok());
      if (r.ok()) {
        acked_upserts.insert(ids.begin(), ids.end());
      } else if (first_error.empty()) {
        first_error = r.status().ToString();
      }
      if (outcomes.size() % 5 == 0 && !acked_upserts.empty()) {
        // Deletes one of its own acknowledged points (the loaded ones stay: searches over them
        // keep their brute-force answers). Unacknowledged, it may or may not have applied.
        const uint64_t id = *acked_upserts.begin();
        acked_upserts.erase(acked_upserts.begin());
        wire::DeleteRequestT del;
        del.collection = "emb";
        del.ids = {id};
        auto d = client.Call(del, 5000);
        outcomes.emplace_back(Clock::now(), d.ok());
        if (d.ok()) acked_deletes.insert(id);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(40));
    }
  }
  std::string host_;
  uint64_t next_id_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace mrl::e2e
