// Query and write load against a running cluster, for the live-change tests (rebalance, replica
// fill): one thread searches without pause, another upserts new ids, re-upserts (a newer
// version) and deletes, recording what was acknowledged; then every acknowledged write is read
// back at its latest version and every acknowledged delete is checked absent.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/coordinator_e2e_fixture.h"

namespace mrl::e2e {

constexpr uint64_t kWriterBase = 1'000'000'000;

// A writer's vector: near a basis direction of the high coordinates, where MakeData's points are
// small, so no write ever enters a base query's top 10 (the "unchanged data" check stays exact).
inline std::vector<float> WriterVector(uint64_t id, uint32_t generation) {
  std::vector<float> v(kDim, 0.0f);
  v[64 + id % 64] = 1.0f;
  v[64 + (id / 64) % 64] += 0.001f * static_cast<float>(generation + 1);
  v[0] = 1e-4f * static_cast<float>(generation);
  return v;
}

// Reads `expect` (id -> generation of its last acknowledged upsert; -1: deleted) back through
// the coordinator: each deleted id absent, each other found with vector `vec(id, generation)`.
// The number of live ids read.
inline size_t CheckReadBack(Cluster& c, const std::map<uint64_t, int>& expect,
                            const std::function<std::vector<float>(uint64_t, int)>& vec) {
  std::vector<uint64_t> ids;
  for (const auto& [id, g] : expect) ids.push_back(id);
  size_t live = 0;
  for (size_t at = 0; at < ids.size(); at += 500) {
    const std::vector<uint64_t> part(
        ids.begin() + static_cast<std::ptrdiff_t>(at),
        ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + 500)));
    HttpResult r = Curl("POST", c.Url("/v1/collections/emb/points/get"),
                        json{{"ids", part}, {"with_vector", true}}.dump(), Cluster::kRead);
    if (r.status != 200) {
      ADD_FAILURE() << "reading back: " << r.status << " " << r.body;
      return live;
    }
    const json pts = r.Json()["points"];
    for (size_t i = 0; i < part.size(); ++i) {
      const int g = expect.at(part[i]);
      if (g < 0) {
        EXPECT_FALSE(pts[i]["found"].get<bool>()) << "deleted id " << part[i] << " is back";
        continue;
      }
      ++live;
      if (!pts[i]["found"].get<bool>()) {
        ADD_FAILURE() << "acknowledged id " << part[i] << " is lost";
        continue;
      }
      EXPECT_EQ(pts[i]["vector"].get<std::vector<float>>(), vec(part[i], g))
          << "id " << part[i] << " is not at its latest version " << g;
    }
  }
  return live;
}

// The exact top 10 ids of each of `queries` (n x kDim) over "emb".
inline std::vector<std::vector<uint64_t>> ExactAnswers(Cluster& c, const std::vector<float>& queries) {
  std::vector<std::vector<uint64_t>> out;
  for (size_t q = 0; q < queries.size() / kDim; ++q) {
    HttpResult a = Curl("POST", c.Url("/v1/collections/emb/search"),
                        json{{"vector", VectorJson(&queries[q * kDim])},
                             {"k", 10}, {"exact", true}, {"deadline_ms", 30000}}.dump(),
                        Cluster::kRead);
    EXPECT_EQ(a.status, 200) << a.body;
    out.push_back(a.status == 200 ? Ids(a.Json()["results"][0]) : std::vector<uint64_t>{});
  }
  return out;
}

class LiveLoad {
 public:
  // Searches `queries` (n x kDim) and writes from now until Stop.
  LiveLoad(Cluster& c, std::vector<float> queries) : c_(c), queries_(std::move(queries)) {
    searcher_ = std::thread([this] { Search(); });
    writer_ = std::thread([this] { Write(); });
  }
  ~LiveLoad() { Stop(); }

  void Stop() {
    stop_ = true;
    if (searcher_.joinable()) searcher_.join();
    if (writer_.joinable()) writer_.join();
  }

  // Stops, prints what ran, and expects queries to have run with none failed or partial and no
  // write failed; then reads every write whose last attempt was acknowledged back (CheckReadBack).
  void StopAndCheck(Cluster& c) {
    Stop();
    std::printf("under load: %s\n", Summary().c_str());
    EXPECT_GT(queries(), 0u);
    EXPECT_EQ(failed_queries(), 0u) << first_failure();
    EXPECT_EQ(failed_writes(), 0u) << first_failure();
    const std::map<uint64_t, int> certain = CertainAcked();
    const size_t live = CheckReadBack(c, certain, [](uint64_t id, int g) {
      return WriterVector(id, static_cast<uint32_t>(g));
    });
    std::printf("read back %zu acknowledged writer ids (%zu live)\n", certain.size(), live);
  }

  // After Stop: one line of what ran, with query latency percentiles.
  std::string Summary() const {
    std::vector<double> ms = query_ms_;
    std::sort(ms.begin(), ms.end());
    char line[256];
    std::snprintf(line, sizeof(line),
                  "%llu queries (%llu failed or partial), p50 %.1f ms, p99 %.1f ms; %llu write "
                  "requests (%llu failed)",
                  static_cast<unsigned long long>(queries_done_.load()),
                  static_cast<unsigned long long>(failed_queries_.load()),
                  ms.empty() ? 0 : ms[ms.size() / 2], ms.empty() ? 0 : ms[ms.size() * 99 / 100],
                  static_cast<unsigned long long>(writes_.load()),
                  static_cast<unsigned long long>(failed_writes_.load()));
    return line;
  }
  uint64_t queries() const { return queries_done_; }
  uint64_t failed_queries() const { return failed_queries_; }
  uint64_t failed_writes() const { return failed_writes_; }
  const std::string& first_failure() const { return first_failure_; }
  // After Stop: the writer's ids whose last write was acknowledged (generation, -1: deleted),
  // and those whose last write failed (in an unknown state).
  const std::map<uint64_t, int>& acked() const { return acked_; }
  const std::set<uint64_t>& uncertain() const { return uncertain_; }
  std::map<uint64_t, int> CertainAcked() const {
    std::map<uint64_t, int> out;
    for (const auto& [id, g] : acked_) {
      if (!uncertain_.count(id)) out[id] = g;
    }
    return out;
  }

 private:
  using Clock = std::chrono::steady_clock;

  void Search() {
    std::mt19937_64 rng(5);
    const size_t n = queries_.size() / kDim;
    while (!stop_) {
      const size_t q = rng() % n;
      const auto t = Clock::now();
      HttpResult a = Curl("POST", c_.Url("/v1/collections/emb/search"),
                          json{{"vector", VectorJson(&queries_[q * kDim])},
                               {"k", 10}, {"deadline_ms", 10000}}.dump(),
                          Cluster::kRead);
      ++queries_done_;
      const bool ok = a.status == 200 && !a.Json().value("partial", true);
      std::lock_guard<std::mutex> lock(mu_);
      query_ms_.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
      if (!ok) {
        ++failed_queries_;
        if (first_failure_.empty()) first_failure_ = std::to_string(a.status) + " " + a.body;
      }
    }
  }

  void Write() {
    std::mt19937_64 rng(6);
    uint64_t next = 0;
    std::map<uint64_t, uint32_t> generation;
    while (!stop_) {
      // Mostly new ids, some re-upserts (a newer version) and some deletes of earlier ids.
      const uint64_t pick = rng() % 10;
      std::vector<uint64_t> ids;
      bool del = false;
      if (pick < 6 || next < 50) {
        for (int i = 0; i < 20; ++i) ids.push_back(kWriterBase + next++);
      } else {
        for (int i = 0; i < 10; ++i) ids.push_back(kWriterBase + rng() % next);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        del = pick >= 8;
      }
      HttpResult a;
      if (del) {
        a = Curl("POST", c_.Url("/v1/collections/emb/points/delete"),
                 json{{"ids", ids}, {"deadline_ms", 10000}}.dump(), Cluster::kAdmin);
      } else {
        json pts = json::array();
        for (uint64_t id : ids) {
          const uint32_t g = generation.count(id) ? generation[id] + 1 : 0;
          generation[id] = g;
          pts.push_back({{"id", id}, {"vector", WriterVector(id, g)}});
        }
        a = Curl("PUT", c_.Url("/v1/collections/emb/points"),
                 json{{"points", pts}, {"deadline_ms", 10000}}.dump(), Cluster::kAdmin);
      }
      ++writes_;
      std::lock_guard<std::mutex> lock(mu_);
      for (uint64_t id : ids) {
        if (a.status == 200) {
          acked_[id] = del ? -1 : static_cast<int>(generation[id]);
          uncertain_.erase(id);
        } else {
          uncertain_.insert(id);
        }
      }
      if (a.status != 200) {
        ++failed_writes_;
        if (first_failure_.empty()) first_failure_ = std::to_string(a.status) + " " + a.body;
      }
      // A steady stream, not a flood: on 2 cores a flood starves the change it is meant to meet.
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }

  Cluster& c_;
  const std::vector<float> queries_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> queries_done_{0}, failed_queries_{0}, writes_{0}, failed_writes_{0};
  std::mutex mu_;
  std::string first_failure_;
  std::map<uint64_t, int> acked_;
  std::set<uint64_t> uncertain_;
  std::vector<double> query_ms_;
  std::thread searcher_, writer_;
};

}  // namespace mrl::e2e
