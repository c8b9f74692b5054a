// What the coordinator's end-to-end tests share: a cluster of real mrl-shard processes and one
// mrl-coordinator on loopback (Cluster), curl as the HTTP client, Matryoshka-like data and a
// brute-force cosine truth. Include from one test file per binary (definitions are inline).
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "common/atomic_file.h"
#include "tests/daemon_process.h"
#include "tests/netns_lab.h"
#include "tests/test_util.h"

namespace mrl::e2e {

using json = nlohmann::json;
using test_util::DaemonProcess;
using test_util::TempDir;

constexpr int kDim = 128;
constexpr int kPoints = 4000;

struct HttpResult {
  int status = 0;
  std::string body;
  json Json() const { return json::parse(body, nullptr, false); }
};

inline HttpResult Curl(const std::string& method, const std::string& url, const std::string& body = "",
                const std::string& token = "", const std::string& curl_options = "") {
  // One directory per process (made once), one file per call: safe from several threads.
  static const std::string dir = TempDir("curl");
  static std::atomic<int> n{0};
  const std::string file = dir + "/body" + std::to_string(n++);
  EXPECT_TRUE(WriteFileAtomic(file, body).ok());
  std::string cmd = "curl -s -S " + curl_options + " -X " + method + " -H 'Content-Type: application/json'";
  if (!token.empty()) cmd += " -H 'Authorization: Bearer " + token + "'";
  if (!body.empty()) cmd += " --data-binary @" + file;
  cmd += " -w '\\n%{http_code}' '" + url + "'";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[65536];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), p)) > 0) out.append(buf, got);
  pclose(p);
  HttpResult r;
  const size_t nl = out.rfind('\n');
  if (nl == std::string::npos) return r;
  r.status = std::atoi(out.c_str() + nl + 1);
  r.body = out.substr(0, nl);
  return r;
}

// Matryoshka-like data: coordinate i has scale 1/(1 + i/4), around 40 cluster centres, so
// low-d prefixes carry most of the similarity.
inline std::vector<float> MakeData(int n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> centres(40 * kDim);
  for (auto& c : centres) c = g(rng);
  std::vector<float> v(static_cast<size_t>(n) * kDim);
  for (int i = 0; i < n; ++i) {
    const int c = static_cast<int>(rng() % 40);
    for (int d = 0; d < kDim; ++d) {
      const float scale = 1.0f / (1.0f + d / 4.0f);
      v[static_cast<size_t>(i) * kDim + d] = scale * (centres[c * kDim + d] + 0.6f * g(rng));
    }
  }
  return v;
}

inline std::vector<uint64_t> BruteForceCosine(const std::vector<float>& db, const float* q, int k,
                                       int n = kPoints) {
  std::vector<std::pair<double, uint64_t>> s;
  double qq = 0;
  for (int d = 0; d < kDim; ++d) qq += double(q[d]) * q[d];
  for (int i = 0; i < n; ++i) {
    const float* x = &db[static_cast<size_t>(i) * kDim];
    double xq = 0, xx = 0;
    for (int d = 0; d < kDim; ++d) {
      xq += double(x[d]) * q[d];
      xx += double(x[d]) * x[d];
    }
    s.push_back({-xq / std::sqrt(xx * qq), static_cast<uint64_t>(i) * 7 + 3});
  }
  std::partial_sort(s.begin(), s.begin() + k, s.end());
  std::vector<uint64_t> ids;
  for (int i = 0; i < k; ++i) ids.push_back(s[static_cast<size_t>(i)].second);
  return ids;
}

inline json VectorJson(const float* v) { return json(std::vector<float>(v, v + kDim)); }

class Cluster {
 public:
  // shard_args[s]: extra flags of shard s.
  // coord_args: extra flags of the coordinator.
  // lab: hosts of a multi-host network (netns_lab.h, at least shards + 1): shard s runs in host
  // s + 1 and the coordinator in host shards + 1, each bound to its host's address, with the
  // shared secret between them on. Null: everything on 127.0.0.1.
  Cluster(const std::string& name, int shards, int replication,
          const std::vector<std::vector<std::string>>& shard_args = {},
          const std::vector<std::string>& coord_args = {},
          const test_util::NetnsLab* lab = nullptr)
      : dir_(TempDir(name)), lab_(lab) {
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/admin", "admin-secret-1\n").ok());
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/read", "reader-secret-2\n").ok());
    EXPECT_TRUE(WriteFileAtomic(dir_ + "/shard-secret", "shard-secret-3\n").ok());
    for (int s = 0; s < shards; ++s) {
      shards_.push_back(Daemon("s" + std::to_string(s), MRL_SHARD_BIN, ShardArgs(s, shard_args), s + 1));
      shards_.back()->Start();
    }
    std::vector<std::string> args = {"--data-dir", dir_ + "/coord", "--port", "0",
                                     "--admin-token-file", dir_ + "/admin", "--read-token-file",
                                     dir_ + "/read", "--replication", std::to_string(replication),
                                     "--threads", "4", "--binary-port", "0", "--binary-port-file",
                                     dir_ + "/coord.bport"};
    for (int s = 0; s < shards; ++s) {
      args.push_back("--shard");
      args.push_back("s" + std::to_string(s) + "=" + shards_[static_cast<size_t>(s)]->address());
    }
    args.insert(args.end(), coord_args.begin(), coord_args.end());
    if (lab_) {
      args.insert(args.end(), {"--host", lab_->address(shards + 1), "--shard-secret-file", dir_ + "/shard-secret"});
    }
    coord_ = Daemon("coord", MRL_COORDINATOR_BIN, args, shards + 1);
    coord_->Start();
  }
  // A daemon run on 127.0.0.1, or inside lab host `host` bound to its address.
  std::unique_ptr<DaemonProcess> Daemon(const std::string& name, const std::string& binary,
                                        std::vector<std::string> args, int host) const {
    if (!lab_) return std::make_unique<DaemonProcess>(name, binary, std::move(args), dir_);
    args.insert(args.begin(), binary);
    std::vector<std::string> argv = lab_->Inside(host, std::move(args));
    const std::string ip = argv.front();
    argv.erase(argv.begin());
    auto d = std::make_unique<DaemonProcess>(name, ip, std::move(argv), dir_);
    d->set_host(lab_->address(host));
    return d;
  }
  // Starts one more shard (not in the map: add it with POST /v1/cluster/groups); its index.
  int AddShard() {
    const int s = static_cast<int>(shards_.size());
    shards_.push_back(std::make_unique<DaemonProcess>("s" + std::to_string(s), MRL_SHARD_BIN,
                                                      ShardArgs(s, {}), dir_));
    shards_.back()->Start();
    return s;
  }
  std::vector<std::string> ShardArgs(int s, const std::vector<std::vector<std::string>>& extra) const {
    std::vector<std::string> a = {"--data-dir", dir_ + "/s" + std::to_string(s), "--port", "0",
                                  "--threads", "1", "--block-cache-mb", "16"};
    if (lab_) {
      a.insert(a.end(), {"--host", lab_->address(s + 1), "--auth-secret-file", dir_ + "/shard-secret"});
    }
    if (static_cast<size_t>(s) < extra.size()) a.insert(a.end(), extra[s].begin(), extra[s].end());
    return a;
  }
  std::string Url(const std::string& path) const {
    return "http://" + coord_->host() + ":" + std::to_string(coord_->port()) + path;
  }
  DaemonProcess& shard(int i) { return *shards_[static_cast<size_t>(i)]; }
  const std::string& dir() const { return dir_; }
  // The coordinator's binary API port (written just after the HTTP port file).
  uint16_t BinaryPort() const {
    const std::string f = dir_ + "/coord.bport";
    for (int i = 0; i < 500 && !std::filesystem::exists(f); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return static_cast<uint16_t>(std::stoi(test_util::Slurp(f)));
  }
  DaemonProcess& coord() { return *coord_; }

  // Collection "emb": the first n points of `data`, one HNSW index over `index_dims`.
  void CreateAndLoad(const std::vector<float>& data, int index_dims = 16, int n = kPoints) {
    HttpResult r = Curl("PUT", Url("/v1/collections/emb"),
                        json{{"dim", kDim}, {"storage", "fp32"}, {"num_buckets", 256},
                             {"indexes", {{{"dims", index_dims}, {"kind", "hnsw"}}}}}.dump(),
                        kAdmin);
    ASSERT_EQ(r.status, 200) << r.body;
    for (int start = 0; start < n; start += 500) {
      json pts = json::array();
      for (int i = start; i < std::min(n, start + 500); ++i) {
        pts.push_back({{"id", static_cast<uint64_t>(i) * 7 + 3},
                       {"vector", VectorJson(&data[static_cast<size_t>(i) * kDim])},
                       {"payload", {{"row", i}}}});
      }
      // A generous deadline: 500 points into HNSW with fsync'ed writes can outlast the 2 s
      // default under ASan on 2 busy cores, and a timed-out shard is marked down for 2 s.
      r = Curl("PUT", Url("/v1/collections/emb/points"),
               json{{"points", pts}, {"deadline_ms", 30000}}.dump(), kAdmin);
      ASSERT_EQ(r.status, 200) << r.body;
    }
  }

  static constexpr const char* kAdmin = "admin-secret-1";
  static constexpr const char* kRead = "reader-secret-2";

 private:
  std::string dir_;
  const test_util::NetnsLab* lab_ = nullptr;
  std::vector<std::unique_ptr<DaemonProcess>> shards_;
  std::unique_ptr<DaemonProcess> coord_;
};

inline std::vector<uint64_t> Ids(const json& hits) {
  std::vector<uint64_t> ids;
  for (const json& h : hits) ids.push_back(h["id"].get<uint64_t>());
  return ids;
}
}  // namespace mrl::e2e
