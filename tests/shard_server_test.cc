// Integration tests through the real mrl-shard binary: started on a loopback port chosen by the
// OS (--port 0 --port-file), driven with rpc::RpcClient and with raw sockets.
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
namespace {

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
std::vector<float> RandomVectors(size_t n, int dim, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> v(n * dim);
  for (auto& x : v) x = g(rng);
  return v;
}

// Cosine on the first `m` coordinates, as the engine scores it.
double Cosine(const float* a, const float* b, int m) {
  double ab = 0, aa = 0, bb = 0;
  for (int i = 0; i < m; ++i) {
    ab += double(a[i]) * b[i];
    aa += double(a[i]) * a[i];
    bb += double(b[i]) * b[i];
  }
  return ab / std::sqrt(aa * bb);
}

// Brute-force top-k ids among `ids` (vectors[j] belongs to ids[j]) at `m` dims.
std::vector<uint64_t> BruteForce(const float* q, const std::vector<uint64_t>& ids,
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

std::vector<uint64_t> Ids(const wire::CandidateListT& l) {
  std::vector<uint64_t> out;
  for (const auto& c : l.candidates) out.push_back(c.id());
  return out;
}

wire::CreateCollectionRequestT CollectionRequest(const std::string& name,
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

wire::UpsertRequestT UpsertOf(const std::string& collection, const std::vector<uint64_t>& ids,
                              const float* vectors) {
  wire::UpsertRequestT req;
  req.collection = collection;
  req.dims = kDim;
  req.ids = ids;
  req.vectors.assign(vectors, vectors + ids.size() * kDim);
  return req;
}

// Creates `name` and upserts points 0..n-1 (id i = i), pipelining the batches.
void Load(rpc::RpcClient& client, const std::string& name, const std::vector<float>& data, size_t n,
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

wire::ShortlistRequestT ShortlistOf(const std::string& collection, const std::vector<float>& qs,
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

TEST_F(ShardServerTest, ExactShortlistRerankAndSearchEqualBruteForce) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints, wire::IndexKind::Exact);  // an exact low-d index
  constexpr size_t kQueries = 16;
  constexpr int kShort = 100, kFinal = 10;
  const auto qs = RandomVectors(kQueries, kDim, 2);

  auto sl = client->Call(ShortlistOf("c", qs, kQueries, kShort, /*exact=*/false));
  ASSERT_TRUE(sl.ok()) << sl.status().ToString();
  // The full scan (exact = true) agrees with the exact index.
  auto scan = client->Call(ShortlistOf("c", qs, kQueries, kShort, /*exact=*/true));
  ASSERT_TRUE(scan.ok()) << scan.status().ToString();
  ASSERT_EQ(sl->results.size(), kQueries);
  wire::RerankRequestT rr;
  rr.collection = "c";
  rr.dims = kDim;
  rr.queries = qs;
  rr.k = kFinal;
  for (size_t i = 0; i < kQueries; ++i) {
    const float* q = &qs[i * kDim];
    const auto want = BruteForce(q, AllIds(), Data(), kLowDim, kShort);
    ASSERT_EQ(Ids(*sl->results[i]), want) << "query " << i;
    ASSERT_EQ(Ids(*scan->results[i]), want) << "query " << i;
    for (const auto& c : sl->results[i]->candidates) {
      EXPECT_NEAR(c.score(), Cosine(q, &Data()[c.id() * kDim], kLowDim), 1e-4);
    }
    auto list = std::make_unique<wire::IdListT>();
    list->ids = want;
    rr.id_lists.push_back(std::move(list));
  }
  auto re = client->Call(rr);
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  wire::SearchRequestT se;
  se.collection = "c";
  se.dims = kDim;
  se.queries = qs;
  se.stages = {wire::SearchStage(kLowDim, kShort), wire::SearchStage(kDim, kFinal)};
  auto sr = client->Call(se);
  ASSERT_TRUE(sr.ok()) << sr.status().ToString();
  for (size_t i = 0; i < kQueries; ++i) {
    const float* q = &qs[i * kDim];
    std::vector<float> shortlisted;
    for (uint64_t id : rr.id_lists[i]->ids) {
      shortlisted.insert(shortlisted.end(), &Data()[id * kDim], &Data()[id * kDim] + kDim);
    }
    const auto want = BruteForce(q, rr.id_lists[i]->ids, shortlisted, kDim, kFinal);
    EXPECT_EQ(Ids(*re->results[i]), want) << "rerank, query " << i;
    EXPECT_EQ(Ids(*sr->results[i]), want) << "one-trip search, query " << i;
  }
}

TEST_F(ShardServerTest, HnswShortlistRecallAtTenIsAtLeast95Percent) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  constexpr size_t kQueries = 100;
  const auto qs = RandomVectors(kQueries, kDim, 3);
  auto sl = client->Call(ShortlistOf("c", qs, kQueries, 10, /*exact=*/false, /*ef=*/200));
  ASSERT_TRUE(sl.ok()) << sl.status().ToString();
  size_t hits = 0;
  for (size_t i = 0; i < kQueries; ++i) {
    const auto want = BruteForce(&qs[i * kDim], AllIds(), Data(), kLowDim, 10);
    const auto got = Ids(*sl->results[i]);
    for (uint64_t id : got) hits += std::count(want.begin(), want.end(), id);
  }
  const double recall = double(hits) / (kQueries * 10);
  std::cout << "HNSW recall@10 at " << kLowDim << " dims: " << recall << "\n";
  EXPECT_GE(recall, 0.95);
}

TEST_F(ShardServerTest, DeletedIdsNeverComeBack) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(4, kDim, 4);
  // Delete every id the first shortlist returned: the best matches, so they would come back.
  auto before = client->Call(ShortlistOf("c", qs, 4, 20, true));
  ASSERT_TRUE(before.ok());
  wire::DeleteRequestT del;
  del.collection = "c";
  for (const auto& l : before->results) {
    for (uint64_t id : Ids(*l)) del.ids.push_back(id);
  }
  ASSERT_TRUE(client->Call(del).ok());
  const std::set<uint64_t> deleted(del.ids.begin(), del.ids.end());
  for (bool exact : {true, false}) {
    auto after = client->Call(ShortlistOf("c", qs, 4, 200, exact, 300));
    ASSERT_TRUE(after.ok());
    for (const auto& l : after->results) {
      EXPECT_EQ(l->candidates.size(), 200u);
      for (uint64_t id : Ids(*l)) EXPECT_FALSE(deleted.count(id)) << id << " exact=" << exact;
    }
  }
  wire::RerankRequestT rr;
  rr.collection = "c";
  rr.dims = kDim;
  rr.queries.assign(qs.begin(), qs.begin() + kDim);
  rr.id_lists.push_back(std::make_unique<wire::IdListT>());
  rr.id_lists[0]->ids = del.ids;
  rr.id_lists[0]->ids.push_back(kPoints - 1);  // one live id
  auto re = client->Call(rr);
  ASSERT_TRUE(re.ok());
  EXPECT_EQ(Ids(*re->results[0]), std::vector<uint64_t>{kPoints - 1});
  wire::GetRequestT get;
  get.collection = "c";
  get.ids = del.ids;
  auto got = client->Call(get);
  ASSERT_TRUE(got.ok());
  for (const auto& p : got->points) EXPECT_FALSE(p->found) << p->id;
  wire::SearchRequestT se;
  se.collection = "c";
  se.dims = kDim;
  se.queries = qs;
  se.stages = {wire::SearchStage(kLowDim, 100), wire::SearchStage(kDim, 10)};
  auto sr = client->Call(se);
  ASSERT_TRUE(sr.ok());
  for (const auto& l : sr->results) {
    for (uint64_t id : Ids(*l)) EXPECT_FALSE(deleted.count(id)) << id;
  }
}

uint64_t IndexSize(const wire::StatsResponseT& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c->name == name && !c->indexes.empty()) return c->indexes[0]->size;
  }
  return 0;
}
uint64_t PointCount(const wire::StatsResponseT& s, const std::string& name) {
  for (const auto& c : s.collections) {
    if (c->name == name) return c->points;
  }
  return 0;
}

TEST_F(ShardServerTest, GracefulRestartLoadsThePersistedIndex) {
  StartShard();
  const auto qs = RandomVectors(8, kDim, 5);
  std::vector<std::vector<uint64_t>> before;
  {
    auto client = shard_->Client();
    Load(*client, "c", Data(), kPoints);
    auto sl = client->Call(ShortlistOf("c", qs, 8, 10, false));
    ASSERT_TRUE(sl.ok());
    for (const auto& l : sl->results) before.push_back(Ids(*l));
  }
  ASSERT_EQ(shard_->Terminate(), 0) << shard_->Log();
  EXPECT_NE(shard_->Log().find("checkpointed"), std::string::npos) << shard_->Log();
  shard_->Start();
  const std::string log = shard_->Log();
  EXPECT_NE(log.find("collection c: 10000 points, index dims=32 size=10000"), std::string::npos)
      << log;
  EXPECT_NE(log.find("(loaded from disk)"), std::string::npos) << log;
  auto client = shard_->Client();
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), uint64_t(kPoints));
  EXPECT_EQ(IndexSize(*stats, "c"), uint64_t(kPoints));
  ASSERT_EQ(stats->collections.size(), 1u);
  ASSERT_EQ(stats->collections[0]->indexes.size(), 1u);
  EXPECT_TRUE(stats->collections[0]->indexes[0]->loaded) << "index rebuilt instead of loaded";
  auto sl = client->Call(ShortlistOf("c", qs, 8, 10, false));
  ASSERT_TRUE(sl.ok());
  for (size_t i = 0; i < before.size(); ++i) EXPECT_EQ(Ids(*sl->results[i]), before[i]);
}

TEST_F(ShardServerTest, KillNineLosesNoAcknowledgedUpsert) {
  StartShard();
  {
    auto client = shard_->Client();
    ASSERT_TRUE(client->Call(CollectionRequest("c")).ok());
  }
  constexpr size_t kBatch = 20;
  const auto data = RandomVectors(20000, kDim, 6);  // point id i has data[i]
  std::mutex mu;
  std::vector<uint64_t> acked;
  std::atomic<size_t> sent{0};
  std::thread writer([&] {
    auto client = shard_->Client();
    for (size_t start = 0; start + kBatch <= 20000; start += kBatch) {
      std::vector<uint64_t> ids(kBatch);
      std::iota(ids.begin(), ids.end(), start);
      sent = start + kBatch;
      auto r = client->Call(UpsertOf("c", ids, &data[start * kDim]), 5000);
      if (!r.ok()) return;  // the server is gone
      std::lock_guard<std::mutex> lock(mu);
      acked.insert(acked.end(), ids.begin(), ids.end());
    }
  });
  const auto until = std::chrono::steady_clock::now() + 30s;
  while (std::chrono::steady_clock::now() < until) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (acked.size() >= 3000) break;
    }
    std::this_thread::sleep_for(5ms);
  }
  shard_->Kill9();
  writer.join();
  ASSERT_GE(acked.size(), 1000u);
  shard_->Start();
  auto client = shard_->Client();
  // Every acknowledged point is there with its vector.
  std::vector<uint64_t> present;
  std::vector<float> present_vectors;
  std::set<uint64_t> acked_set(acked.begin(), acked.end());
  for (size_t start = 0; start < sent.load(); start += 1000) {
    wire::GetRequestT get;
    get.collection = "c";
    get.with_vector = true;
    for (size_t id = start; id < std::min(sent.load(), start + 1000); ++id) get.ids.push_back(id);
    auto got = client->Call(get);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    for (const auto& p : got->points) {
      if (acked_set.count(p->id)) {
        ASSERT_TRUE(p->found) << "acknowledged id " << p->id << " lost";
      }
      if (!p->found) continue;
      ASSERT_EQ(p->vector.size(), size_t(kDim));
      ASSERT_TRUE(std::equal(p->vector.begin(), p->vector.end(), &data[p->id * kDim]));
      present.push_back(p->id);
      present_vectors.insert(present_vectors.end(), p->vector.begin(), p->vector.end());
    }
  }
  std::cout << acked.size() << " acknowledged, " << present.size() << " present after kill -9\n";
  // The index agrees with RocksDB.
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), present.size());
  EXPECT_EQ(IndexSize(*stats, "c"), present.size());
  const auto qs = RandomVectors(4, kDim, 7);
  auto sl = client->Call(ShortlistOf("c", qs, 4, 50, true));
  ASSERT_TRUE(sl.ok());
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(Ids(*sl->results[i]),
              BruteForce(&qs[i * kDim], present, present_vectors, kLowDim, 50));
  }
  // The HNSW index holds nothing RocksDB does not.
  const std::set<uint64_t> present_set(present.begin(), present.end());
  auto hn = client->Call(ShortlistOf("c", qs, 4, 200, false, 300));
  ASSERT_TRUE(hn.ok());
  for (const auto& l : hn->results) {
    EXPECT_EQ(l->candidates.size(), std::min<size_t>(200, present.size()));
    for (uint64_t id : Ids(*l)) EXPECT_TRUE(present_set.count(id)) << id;
  }
}

// ---- Raw sockets: what a broken or hostile peer can send ----------------------------------

class RawConn {
 public:
  explicit RawConn(uint16_t port) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    timeval tv{10, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  }
  ~RawConn() { close(fd_); }
  void Send(const std::vector<uint8_t>& b) {
    ASSERT_EQ(send(fd_, b.data(), b.size(), MSG_NOSIGNAL), ssize_t(b.size()));
  }
  void ShutdownWrite() { shutdown(fd_, SHUT_WR); }
  // The next frame, or nullopt on EOF/error.
  std::optional<wire::Frame> Read() {
    while (true) {
      if (auto f = dec_.Next()) return f;
      uint8_t buf[4096];
      const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
      if (n <= 0) return std::nullopt;
      dec_.Append(std::span<const uint8_t>(buf, n));
    }
  }
  // The next frame must be an Error with `code` for request `id`, its message containing `says`.
  void ExpectError(wire::ErrorCode code, uint64_t id, const std::string& says = "") {
    auto f = Read();
    ASSERT_TRUE(f) << "connection closed instead of an error";
    std::string why;
    ASSERT_EQ(wire::CheckFrame(f->header, f->body, &why), wire::ErrorCode::Ok) << why;
    ASSERT_EQ(f->header.type, uint16_t(wire::MessageType::Error));
    EXPECT_EQ(f->header.request_id, id);
    EXPECT_EQ(wire::RootAs<wire::Error>(f->body)->code(), code)
        << wire::EnumNameErrorCode(wire::RootAs<wire::Error>(f->body)->code()) << ": "
        << wire::RootAs<wire::Error>(f->body)->message()->str();
    const auto* message = wire::RootAs<wire::Error>(f->body)->message();
    EXPECT_NE((message ? message->str() : "").find(says), std::string::npos)
        << "message lacks '" << says << "'";
  }
  void ExpectClosed() { EXPECT_FALSE(Read()) << "connection should be closed"; }
  void ExpectPong(uint64_t id) {
    auto f = Read();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->header.type, uint16_t(wire::MessageType::PingResponse));
    EXPECT_EQ(f->header.request_id, id);
  }

 private:
  int fd_ = -1;
  wire::FrameDecoder dec_;
};

TEST_F(ShardServerTest, MalformedFramesGetTypedErrorsWhileOtherClientsAreServed) {
  StartShard({"--max-frame-bytes", "1048576"});
  auto client = shard_->Client();
  Load(*client, "c", Data(), 2000);
  const auto qs = RandomVectors(2, kDim, 8);
  auto reference = client->Call(ShortlistOf("c", qs, 2, 10, true));
  ASSERT_TRUE(reference.ok());
  // A well-behaved client keeps querying during the abuse and must always get the same answer.
  std::atomic<bool> stop{false};
  std::atomic<int> good{0}, bad{0};
  std::thread steady([&] {
    while (!stop) {
      auto r = client->Call(ShortlistOf("c", qs, 2, 10, true));
      if (r.ok() && Ids(*r->results[0]) == Ids(*reference->results[0])) {
        ++good;
      } else {
        ++bad;
      }
    }
  });
  // Wait for the steady client's first answer (on a loaded machine its thread may start late),
  // then count the answers it gets from the start of the abuse on.
  auto wait_for_good = [&](int more_than) {
    const auto until = std::chrono::steady_clock::now() + 30s;
    while (good.load() <= more_than && bad.load() == 0 &&
           std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(1ms);
    }
  };
  wait_for_good(0);
  const int good_before = good.load();

  {  // Random bytes: BadFrame, then closed.
    RawConn c(shard_->port());
    std::mt19937 rng(9);
    std::vector<uint8_t> junk(1000);
    for (auto& b : junk) b = static_cast<uint8_t>(rng());
    junk[0] = 'X';
    c.Send(junk);
    c.ExpectError(wire::ErrorCode::BadFrame, 0, "bad magic");
    c.ExpectClosed();
  }
  {  // A length above --max-frame-bytes: FrameTooLarge for that request id, then closed.
    RawConn c(shard_->port());
    wire::FrameHeader h;
    h.type = uint16_t(wire::MessageType::UpsertRequest);
    h.request_id = 31;
    h.body_length = 2u << 20;
    std::vector<uint8_t> hb(wire::kHeaderSize);
    wire::EncodeHeader(h, hb.data());
    c.Send(hb);
    c.ExpectError(wire::ErrorCode::FrameTooLarge, 31, "exceeds the limit of 1048576");
    c.ExpectClosed();
  }
  {  // Wrong version, unknown type, garbage body, a response sent as a request: a typed error
     // each, and the same connection keeps working.
    RawConn c(shard_->port());
    auto ping = wire::PackFrame(wire::PingRequestT{}, 1);
    auto v2 = ping;
    v2[4] = 2;  // version
    c.Send(v2);
    c.ExpectError(wire::ErrorCode::UnsupportedVersion, 1, "protocol version 2 not supported");
    wire::FrameHeader h;
    h.type = 999;
    h.request_id = 2;
    c.Send(wire::EncodeFrame(h, std::vector<uint8_t>(16, 1)));
    c.ExpectError(wire::ErrorCode::UnknownMessageType, 2, "message type 999");
    h.type = uint16_t(wire::MessageType::ShortlistRequest);
    h.request_id = 3;
    c.Send(wire::EncodeFrame(h, std::vector<uint8_t>(64, 0xEE)));
    c.ExpectError(wire::ErrorCode::BadFrame, 3);
    h.type = uint16_t(wire::MessageType::PingResponse);
    h.request_id = 4;
    c.Send(wire::EncodeFrame(h, wire::PackBody(wire::PingResponseT{})));
    c.ExpectError(wire::ErrorCode::UnknownMessageType, 4, "is not a request");
    auto body = wire::PackBody(ShortlistOf("c", qs, 1, 10, true));
    body.resize(body.size() / 2);  // truncated body with a consistent length
    h.type = uint16_t(wire::MessageType::ShortlistRequest);
    h.request_id = 5;
    c.Send(wire::EncodeFrame(h, body));
    c.ExpectError(wire::ErrorCode::BadFrame, 5);
    c.Send(wire::PackFrame(wire::PingRequestT{}, 6));
    c.ExpectPong(6);
  }
  {  // A frame cut short by the peer closing: no answer possible, nothing breaks.
    RawConn c(shard_->port());
    auto f = wire::PackFrame(ShortlistOf("c", qs, 1, 10, true), 7);
    c.Send(std::vector<uint8_t>(f.begin(), f.end() - 10));
    c.ShutdownWrite();
    c.ExpectClosed();
  }
  {  // Many random frames with valid headers and random bodies on one connection.
    RawConn c(shard_->port());
    std::mt19937 rng(10);
    for (uint64_t id = 100; id < 150; ++id) {
      wire::FrameHeader h;
      h.type = uint16_t(1 + rng() % 28);
      h.request_id = id;
      std::vector<uint8_t> body(rng() % 200);
      for (auto& b : body) b = static_cast<uint8_t>(rng());
      c.Send(wire::EncodeFrame(h, body));
      auto r = c.Read();
      ASSERT_TRUE(r) << "connection dropped on frame " << id;
      EXPECT_EQ(r->header.request_id, id);
    }
    c.Send(wire::PackFrame(wire::PingRequestT{}, 200));
    c.ExpectPong(200);
  }
  wait_for_good(good_before);
  stop = true;
  steady.join();
  EXPECT_GT(good_before, 0);
  EXPECT_GT(good.load(), good_before);
  EXPECT_EQ(bad.load(), 0);
  auto after = client->Call(ShortlistOf("c", qs, 2, 10, true));
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(Ids(*after->results[1]), Ids(*reference->results[1]));
}

TEST_F(ShardServerTest, SharedSecretIsRequiredWhenConfigured) {
  const std::string secret_file = dir_ + "/secret";
  std::ofstream(secret_file) << "s3cret\n";
  StartShard({"--auth-secret-file", secret_file});
  {
    auto c = shard_->Client();
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  }
  {
    auto c = shard_->Client("wrong");
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_EQ(r.status().code(), Status::Code::kUnauthenticated) << r.status().ToString();
  }
  {
    auto c = shard_->Client("s3cret");
    auto r = c->Call(wire::PingRequestT{});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(c->Call(CollectionRequest("c")).ok());
  }
  {  // Raw: a request before AuthRequest gets Unauthenticated and the connection is closed.
    RawConn c(shard_->port());
    c.Send(wire::PackFrame(wire::StatsRequestT{}, 5));
    c.ExpectError(wire::ErrorCode::Unauthenticated, 5);
    c.ExpectClosed();
  }
}

TEST_F(ShardServerTest, BadRequestsGetTypedErrorsAndWriteNothing) {
  StartShard({"--max-k", "500", "--max-batch", "100", "--max-queries", "8"});
  auto client = shard_->Client();
  Load(*client, "c", Data(), 100);
  // Each bad request gets the exact code, and a message that says what was wrong.
  auto expect = [](const auto& r, Status::Code code, const std::string& says, const char* what) {
    ASSERT_FALSE(r.ok()) << what << ": accepted";
    EXPECT_EQ(r.status().code(), code) << what << ": " << r.status().ToString();
    EXPECT_NE(r.status().message().find(says), std::string::npos)
        << what << ": message lacks '" << says << "': " << r.status().ToString();
  };
  std::vector<uint64_t> ids = {5000, 5001, 5002};
  std::vector<float> vecs(3 * kDim, 0.5f);
  {  // NaN and Inf reject the whole batch.
    for (float bad : {std::nanf(""), INFINITY}) {
      auto v = vecs;
      v[2 * kDim + 7] = bad;
      expect(client->Call(UpsertOf("c", ids, v.data())), Status::Code::kInvalidArgument,
             "point 5002: vector contains NaN or Inf", "nan");
    }
  }
  {  // Wrong dimension (consistent with itself, not with the collection).
    wire::UpsertRequestT up;
    up.collection = "c";
    up.dims = 128;
    up.ids = ids;
    up.vectors.assign(3 * 128, 0.5f);
    expect(client->Call(up), Status::Code::kInvalidArgument,
           "vector has 128 floats, collection 'c' has dim 256", "wrong dim");
    up.dims = kDim;  // and vectors that do not match ids * dims
    expect(client->Call(up), Status::Code::kInvalidArgument, "vectors must hold len(ids) * dims",
           "short vectors");
  }
  wire::GetRequestT get;
  get.collection = "c";
  get.ids = ids;
  auto got = client->Call(get);
  ASSERT_TRUE(got.ok());
  for (const auto& p : got->points) EXPECT_FALSE(p->found) << "partial write of " << p->id;
  {  // Batch beyond --max-batch.
    std::vector<uint64_t> many(101);
    std::iota(many.begin(), many.end(), 6000);
    std::vector<float> mv(101 * kDim, 0.25f);
    expect(client->Call(UpsertOf("c", many, mv.data())), Status::Code::kOutOfRange,
           "upsert batch of 101 points exceeds max_batch 100", "batch over the limit");
    get.ids = {6000, 6100};
    auto none = client->Call(get);
    ASSERT_TRUE(none.ok());
    for (const auto& p : none->points) EXPECT_FALSE(p->found) << "partial write of " << p->id;
  }
  const auto qs = RandomVectors(9, kDim, 11);
  expect(client->Call(UpsertOf("nope", ids, vecs.data())), Status::Code::kNotFound,
         "unknown collection 'nope'", "unknown");
  expect(client->Call(ShortlistOf("nope", qs, 1, 10, true)), Status::Code::kNotFound,
         "unknown collection 'nope'", "unknown collection");
  expect(client->Call(ShortlistOf("c", qs, 1, 501, true)), Status::Code::kOutOfRange,
         "k = 501 exceeds max_k 500", "k over max-k");
  expect(client->Call(ShortlistOf("c", qs, 1, 0, true)), Status::Code::kInvalidArgument,
         "k = 0 must be >= 1", "k = 0");
  expect(client->Call(ShortlistOf("c", qs, 9, 10, true)), Status::Code::kOutOfRange,
         "at most 8 queries per request (got 9)", "queries over max-queries");
  {
    auto sl = ShortlistOf("c", qs, 1, 10, true);
    sl.dims = 33;  // not a nesting dim
    sl.queries.push_back(0);
    expect(client->Call(sl), Status::Code::kInvalidArgument, "33 dims, which is not a nesting dim",
           "dims not in nesting");
    sl.queries.push_back(0);  // not a multiple of dims
    expect(client->Call(sl), Status::Code::kInvalidArgument, "queries must hold n * dims floats",
           "ragged queries");
    auto nan = ShortlistOf("c", qs, 1, 10, true);
    nan.queries[3] = std::nanf("");
    expect(client->Call(nan), Status::Code::kInvalidArgument, "query contains NaN or Inf",
           "NaN query");
  }
  // The server still answers.
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(PointCount(*stats, "c"), 100u);
}

TEST_F(ShardServerTest, ManyPipelinedRequestsOnOneConnectionAndStats) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), 3000);
  const auto qs = RandomVectors(1, kDim, 12);
  const auto want = Ids(*client->Call(ShortlistOf("c", qs, 1, 10, true))->results[0]);
  std::vector<std::future<Result<wire::ShortlistResponseT>>> calls;
  std::vector<std::future<Result<wire::GetResponseT>>> gets;
  const std::string collection = "c";
  for (int i = 0; i < 300; ++i) {
    calls.push_back(client->CallFuture(ShortlistOf("c", qs, 1, 10, true)));
    wire::GetRequestT g;
    g.collection = collection;
    g.ids = {uint64_t(i)};
    gets.push_back(client->CallFuture(g));
  }
  for (auto& c : calls) {
    auto r = c.get();
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ(Ids(*r->results[0]), want);
  }
  for (int i = 0; i < 300; ++i) {
    auto r = gets[i].get();
    ASSERT_TRUE(r.ok());
    EXPECT_EQ(r->points[0]->id, uint64_t(i));
    EXPECT_TRUE(r->points[0]->found);
  }
  auto stats = client->Call(wire::StatsRequestT{});
  ASSERT_TRUE(stats.ok());
  uint64_t shortlists = 0, bucket_total = 0;
  for (const auto& r : stats->requests) {
    if (r->type == wire::MessageType::ShortlistRequest) {
      shortlists = r->count;
      for (uint64_t b : r->buckets_us) bucket_total += b;
    }
  }
  EXPECT_EQ(shortlists, 301u);
  EXPECT_EQ(bucket_total, 301u);
  EXPECT_EQ(PointCount(*stats, "c"), 3000u);
  EXPECT_GT(stats->disk_bytes, 0u);
  EXPECT_GE(stats->connections_open, 1u);
}

TEST_F(ShardServerTest, DeadlineExceededIsReportedAndTheClientRecovers) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(64, kDim, 13);
  // Queue heavy exact searches, then one with a 1 ms deadline behind them.
  std::vector<std::future<Result<wire::ShortlistResponseT>>> heavy;
  for (int i = 0; i < 8; ++i)
    heavy.push_back(client->CallFuture(ShortlistOf("c", qs, 64, 100, true)));
  auto late = client->Call(ShortlistOf("c", qs, 1, 10, true), 1);
  EXPECT_EQ(late.status().code(), Status::Code::kDeadlineExceeded) << late.status().ToString();
  for (auto& h : heavy) EXPECT_TRUE(h.get().ok());
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST_F(ShardServerTest, SigtermFinishesTheRequestsInFlight) {
  StartShard();
  auto client = shard_->Client();
  Load(*client, "c", Data(), kPoints);
  const auto qs = RandomVectors(64, kDim, 14);
  // Exact scans of 64 queries over 10000 points each, pipelined on one connection: the shard's
  // 2 worker threads take them a pair at a time, so the later ones are still running or queued
  // while the first answers come back.
  constexpr size_t kHeavy = 8;
  std::vector<std::future<Result<wire::ShortlistResponseT>>> heavy;
  for (size_t i = 0; i < kHeavy; ++i) {
    heavy.push_back(client->CallFuture(ShortlistOf("c", qs, 64, 100, true)));
  }
  auto answered = [&] {
    size_t n = 0;
    for (auto& h : heavy) n += h.wait_for(0s) == std::future_status::ready;
    return n;
  };
  // A first answer: the shard has received the requests (all written before it) and is working.
  const auto until = std::chrono::steady_clock::now() + 60s;
  while (answered() == 0 && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(1ms);
  }
  ASSERT_GT(answered(), 0u) << "no answer within 60 s";
  shard_->SendTerm();
  const auto term_at = std::chrono::steady_clock::now();
  // Not answered now, so not answered when SIGTERM was sent: these were in flight.
  const size_t in_flight = kHeavy - answered();
  // A request sent after SIGTERM: answered, or refused cleanly; never left without an answer.
  auto late = client->CallFuture(ShortlistOf("c", qs, 1, 10, true), 30000);
  EXPECT_EQ(shard_->WaitExit(), 0) << shard_->Log();
  const double drain_ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - term_at).count();
  std::cout << in_flight << " of " << kHeavy << " requests unanswered at SIGTERM; the shard exited "
            << drain_ms << " ms later\n";
  ASSERT_GE(in_flight, 1u) << "all answered before SIGTERM: the drain was not exercised";
  for (size_t i = 0; i < kHeavy; ++i) {
    auto r = heavy[i].get();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.status().ToString();
    EXPECT_EQ(r->results.size(), 64u);
    for (const auto& l : r->results) EXPECT_EQ(l->candidates.size(), 100u);
  }
  auto l = late.get();
  EXPECT_TRUE(l.ok() || l.status().code() == Status::Code::kUnavailable) << l.status().ToString();
  EXPECT_NE(shard_->Log().find("draining"), std::string::npos) << shard_->Log();
}

TEST_F(ShardServerTest, AFloodFromAPeerThatDoesNotReadIsThrottledNotDropped) {
  StartShard({"--max-in-flight-per-connection", "4"});
  RawConn c(shard_->port());
  std::vector<uint8_t> flood;
  for (uint64_t id = 1; id <= 2000; ++id) {
    auto f = wire::PackFrame(wire::PingRequestT{}, id);
    flood.insert(flood.end(), f.begin(), f.end());
  }
  c.Send(flood);  // 64 KB: fits the socket buffers while the server stops reading
  for (uint64_t id = 1; id <= 2000; ++id) {
    auto f = c.Read();
    ASSERT_TRUE(f) << "answer " << id << " missing";
    EXPECT_EQ(f->header.type, uint16_t(wire::MessageType::PingResponse));
  }
}

TEST_F(ShardServerTest, ConnectionsBeyondTheLimitAreRefusedWithOverloaded) {
  StartShard({"--max-connections", "1"});
  auto client = shard_->Client();
  ASSERT_TRUE(client->Call(wire::PingRequestT{}).ok());
  {
    RawConn extra(shard_->port());
    extra.ExpectError(wire::ErrorCode::Overloaded, 0);
    extra.ExpectClosed();
  }
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST_F(ShardServerTest, ClientReconnectsAfterTheServerRestarts) {
  StartShard();
  auto client = shard_->Client();
  ASSERT_TRUE(client->Call(wire::PingRequestT{}).ok());
  const uint16_t port = shard_->port();
  ASSERT_EQ(shard_->Terminate(), 0);
  EXPECT_EQ(client->Call(wire::PingRequestT{}).status().code(), Status::Code::kUnavailable);
  shard_->Start(port);  // same port, so the same client can find it again
  EXPECT_TRUE(client->Call(wire::PingRequestT{}).ok());
}

TEST(ShardConfigTest, FileOverridesDefaultsAndRejectsUnknownKeys) {
  const std::string dir = test_util::TempDir("shard_config");
  std::ofstream(dir + "/a.json") << R"({"port": 9, "sync_writes": false, "host": "0.0.0.0"})";
  shard::ShardConfig cfg;
  ASSERT_TRUE(shard::LoadConfigFile(dir + "/a.json", &cfg).ok());
  EXPECT_EQ(cfg.port, 9);
  EXPECT_FALSE(cfg.sync_writes);
  EXPECT_EQ(cfg.host, "0.0.0.0");
  EXPECT_EQ(cfg.max_k, 10000);
  std::ofstream(dir + "/b.json") << R"({"prot": 9})";
  EXPECT_EQ(shard::LoadConfigFile(dir + "/b.json", &cfg).code(), Status::Code::kInvalidArgument);
  std::ofstream(dir + "/c.json") << R"({"port": "x"})";
  EXPECT_EQ(shard::LoadConfigFile(dir + "/c.json", &cfg).code(), Status::Code::kInvalidArgument);
  EXPECT_NE(shard::ConfigToJson(cfg).find("\"max_frame_bytes\""), std::string::npos);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace mrl
