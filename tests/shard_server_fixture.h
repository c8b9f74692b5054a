// Helpers of the mrl-shard process tests (shard_server_test.cc, shard_server_protocol_test.cc):
// the ShardProcess launcher, data, brute-force scoring, the ShardServerTest fixture.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <numeric>
#include <random>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "common/frame.h"
#include "common/protocol.h"
#include "rpc/client.h"
#include "shard/config.h"
#include "test_util.h"
#include "tests/daemon_process.h"

extern char** environ;

namespace mrl {
// Named (not unnamed): gtest needs the fixture class to be one class in every test file.
namespace shard_server_testing {


namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr int kDim = 256;
constexpr int kLowDim = 32;
#if defined(__SANITIZE_THREAD__)
// Under ThreadSanitizer (5-15x slower, hnswlib's inner loops instrumented) a 10k-point HNSW
// ingest outlasts the client deadlines; the concurrency behaviour under test needs far fewer.
constexpr int kPoints = 2000;
#else
constexpr int kPoints = 10000;
#endif

using test_util::Slurp;

// One mrl-shard process (a DaemonProcess started anew, on the same data dir, for every Start).
class ShardProcess {
 public:
  ShardProcess(std::string dir, std::vector<std::string> extra = {})
      : dir_(std::move(dir)), extra_(std::move(extra)) {}

  // port 0: the OS chooses.
  void Start(uint16_t port = 0) {
    ++starts_;
    std::vector<std::string> args = {
        "--data-dir", dir_ + "/data",     "--port", std::to_string(port), "--threads",
        "2",          "--block-cache-mb", "32"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    proc_ = std::make_unique<test_util::DaemonProcess>("shard" + std::to_string(starts_),
                                                       MRL_SHARD_BIN, args, dir_);
    proc_->Start();
  }
  // SIGTERM and wait: the exit status (0 after a graceful shutdown).
  int Terminate() { return proc_->Kill(SIGTERM); }
  // SIGTERM now; WaitExit() collects the exit status.
  void SendTerm() { proc_->Signal(SIGTERM); }
  int WaitExit() { return proc_->Wait(); }
  void Kill9() { proc_->Kill(SIGKILL); }

  uint16_t port() const { return proc_->port(); }
  std::string Log() const { return proc_->Log(); }

  std::unique_ptr<rpc::RpcClient> Client(std::string secret = "") const {
    rpc::ClientOptions o;
    o.port = port();
    o.auth_secret = std::move(secret);
    return std::make_unique<rpc::RpcClient>(o);
  }

 private:
  std::string dir_;
  std::vector<std::string> extra_;
  int starts_ = 0;
  std::unique_ptr<test_util::DaemonProcess> proc_;
};

// Deterministic data: point i's vector and a set of queries.
inline std::vector<float> RandomVectors(size_t n, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(n * dim);
  for (auto& x : v) x = g(rng);
  return v;
}

// Cosine on the first `m` coordinates, as the engine scores it.
inline double Cosine(const float* a, const float* b, int m) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < m; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// Brute-force top-k ids among `ids` (vectors[j] belongs to ids[j]) at `m` dims.
inline std::vector<uint64_t> BruteForce(const float* q, const std::vector<uint64_t>& ids,
                                 const std::vector<float>& vectors, int m, size_t k) {
  std::vector<std::pair<double, uint64_t>> s(ids.size());
  for (size_t j = 0; j < ids.size(); ++j) s[j] = {Cosine(q, &vectors[j * kDim], m), ids[j]};
  k = std::min(k, s.size());
  std::partial_sort(s.begin(), s.begin() + k, s.end(),
                    [](auto& a, auto& b) { return a.first > b.first; });
  std::vector<uint64_t> out;
  for (size_t i = 0; i < k; ++i) out.push_back(s[i].second);
  return out;
}

inline std::vector<uint64_t> Ids(const wire::CandidateListT& l) {
  std::vector<uint64_t> out;
  for (const auto& c : l.candidates) out.push_back(c.id());
  return out;
}

inline wire::CreateCollectionRequestT CollectionRequest(const std::string& name,
                                                 wire::IndexKind kind = wire::IndexKind::Hnsw) {
  wire::CreateCollectionRequestT req;
  req.spec = std::make_unique<wire::CollectionSpecT>();
  req.spec->name = name;
  req.spec->dim = kDim;
  req.spec->nesting = {kLowDim, 64, 128, kDim};
  req.spec->metric = wire::Metric::Cosine;
  req.spec->storage = wire::StorageType::Fp32;
  req.spec->num_buckets = 64;
  auto idx = std::make_unique<wire::IndexSpecT>();
  idx->dims = kLowDim;
  idx->kind = kind;
  idx->hnsw_m = 16;
  idx->ef_construction = 200;
  idx->ef_search = 128;
  req.spec->indexes.push_back(std::move(idx));
  return req;
}

inline wire::UpsertRequestT UpsertOf(const std::string& collection, const std::vector<uint64_t>& ids,
                              const float* vectors) {
  wire::UpsertRequestT req;
  req.collection = collection;
  req.dims = kDim;
  req.ids = ids;
  req.vectors.assign(vectors, vectors + ids.size() * kDim);
  return req;
}

// Creates `name` and upserts points 0..n-1 (id i = i), pipelining the batches.
inline void Load(rpc::RpcClient& client, const std::string& name, const std::vector<float>& data, size_t n,
          wire::IndexKind kind = wire::IndexKind::Hnsw) {
  auto created = client.Call(CollectionRequest(name, kind));
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  std::vector<std::future<Result<wire::UpsertResponseT>>> acks;
  for (size_t start = 0; start < n; start += 1000) {
    std::vector<uint64_t> ids(std::min<size_t>(1000, n - start));
    std::iota(ids.begin(), ids.end(), start);
    acks.push_back(client.CallFuture(UpsertOf(name, ids, &data[start * kDim])));
  }
  for (auto& a : acks) {
    auto r = a.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
  }
}

inline wire::ShortlistRequestT ShortlistOf(const std::string& collection, const std::vector<float>& qs,
                                    size_t nq, int k, bool exact, int ef = 0) {
  wire::ShortlistRequestT req;
  req.collection = collection;
  req.dims = kLowDim;
  req.queries.resize(nq * kLowDim);
  for (size_t i = 0; i < nq; ++i) {
    std::copy_n(&qs[i * kDim], kLowDim, &req.queries[i * kLowDim]);
  }
  req.k = k;
  req.exact = exact;
  req.ef = ef;
  return req;
}

class ShardServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = test_util::TempDir(std::string("shard_server_") +
                              ::testing::UnitTest::GetInstance()->current_test_info()->name());
  }
  void TearDown() override {
    shard_.reset();
    if (!HasFailure()) fs::remove_all(dir_);
  }
  void StartShard(std::vector<std::string> extra = {}) {
    shard_ = std::make_unique<ShardProcess>(dir_, std::move(extra));
    shard_->Start();
  }
  static const std::vector<float>& Data() {
    static const std::vector<float> d = RandomVectors(kPoints, kDim, 1);
    return d;
  }
  static const std::vector<uint64_t>& AllIds() {
    static const std::vector<uint64_t> ids = [] {
      std::vector<uint64_t> v(kPoints);
      std::iota(v.begin(), v.end(), 0);
      return v;
    }();
    return ids;
  }
  std::string dir_;
  std::unique_ptr<ShardProcess> shard_;
};

inline uint64_t IndexSize(const wire::StatsResponseT& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c->name == name && !c->indexes.empty()) return c->indexes[0]->size;
  }
  return 0;
}
inline uint64_t PointCount(const wire::StatsResponseT& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c->name == name) return c->points;
  }
  return 0;
}

}  // namespace shard_server_testing
}  // namespace mrl
