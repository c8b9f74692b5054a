// The shard's epoch fence (ShardService::drained_epoch, reported as Stats.map_epoch): a write
// admitted under an older shard-map epoch holds the reported epoch back until it has been
// applied. The move executor drops a bucket from its old group (CLEANUP) and starts a copy (after
// DUAL_WRITE) once the shards report the new epoch; without the fence a write that passed the
// epoch check just before the map changed could land after the drop and leave an orphan copy
// (the intermittent "stored 1220 vs live 1200" of MoveCrash under TSan).
//
// The engine is the real RocksDB engine; GatedEngine only holds one Upsert (or Delete) mid-call
// so the interleaving is deterministic.
#include <gtest/gtest.h>

#include <condition_variable>
#include <functional>
#include <future>
#include <mutex>
#include <thread>

#include "common/protocol.h"
#include "shard/engine.h"
#include "shard/service.h"
#include "tests/test_util.h"

namespace mrl::shard {
namespace {

class GatedEngine : public Engine {
 public:
  explicit GatedEngine(std::unique_ptr<Engine> inner) : inner_(std::move(inner)) {}

  // The next Upsert or Delete waits inside the engine until Release().
  void Arm() {
    std::lock_guard lock(mu_);
    armed_ = true;
    entered_ = false;
    released_ = false;
  }
  void WaitEntered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Release() {
    std::lock_guard lock(mu_);
    released_ = true;
    cv_.notify_all();
  }

  Status CreateCollection(const CollectionSpec& spec) override {
    return inner_->CreateCollection(spec);
  }
  Result<CollectionSpec> DescribeCollection(const std::string& name) const override {
    return inner_->DescribeCollection(name);
  }
  std::vector<CollectionSpec> ListCollections() const override { return inner_->ListCollections(); }
  Status DropCollection(const std::string& name) override { return inner_->DropCollection(name); }
  Status Upsert(const std::string& collection, std::span<const PointView> points,
                WriteCounts* counts) override {
    Hold();
    return inner_->Upsert(collection, points, counts);
  }
  Status Delete(const std::string& collection, std::span<const uint64_t> ids,
                std::span<const uint64_t> versions, WriteCounts* counts) override {
    Hold();
    return inner_->Delete(collection, ids, versions, counts);
  }
  Result<std::vector<std::optional<StoredPoint>>> Get(const std::string& collection,
                                                      std::span<const uint64_t> ids,
                                                      bool with_vector) const override {
    return inner_->Get(collection, ids, with_vector);
  }
  Result<std::vector<Candidate>> Shortlist(const std::string& collection,
                                           std::span<const float> query, int32_t k, int32_t ef,
                                           bool exact) const override {
    return inner_->Shortlist(collection, query, k, ef, exact);
  }
  Result<std::vector<Candidate>> Rerank(const std::string& collection, std::span<const float> query,
                                        std::span<const uint64_t> ids, int32_t k) const override {
    return inner_->Rerank(collection, query, ids, k);
  }
  Result<std::vector<Candidate>> Search(const std::string& collection, std::span<const float> query,
                                        std::span<const SearchStage> stages, int32_t ef,
                                        bool exact) const override {
    return inner_->Search(collection, query, stages, ef, exact);
  }
  Result<ScanPage> ScanBucket(const std::string& collection, uint32_t bucket,
                              std::optional<uint64_t> after, int32_t limit,
                              uint64_t min_version) const override {
    return inner_->ScanBucket(collection, bucket, after, limit, min_version);
  }
  Result<BucketFigures> BucketChecksum(const std::string& collection,
                                       uint32_t bucket) const override {
    return inner_->BucketChecksum(collection, bucket);
  }
  Status DropBucket(const std::string& collection, uint32_t bucket) override {
    return inner_->DropBucket(collection, bucket);
  }
  Status PurgeTombstones(const std::string& collection, uint32_t bucket) override {
    return inner_->PurgeTombstones(collection, bucket);
  }
  EngineStats Stats() const override { return inner_->Stats(); }
  Status Checkpoint() override { return inner_->Checkpoint(); }
  Status EvictRows(const std::string& collection) override { return inner_->EvictRows(collection); }

 private:
  void Hold() {
    std::unique_lock lock(mu_);
    if (!armed_) return;
    armed_ = false;
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }

  std::unique_ptr<Engine> inner_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false, entered_ = false, released_ = false;
};

constexpr int kDim = 8;

class ShardEpochFence : public ::testing::Test {
 protected:
  void SetUp() override {
    EngineOptions o;
    o.data_dir = test_util::TempDir("epoch_fence");
    o.verbose = false;
    o.threads = 1;
    auto e = Engine::Open(o);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    engine_ = std::make_unique<GatedEngine>(std::move(e.value()));
    service_ = std::make_unique<ShardService>(*engine_);
    CollectionSpec spec;
    spec.name = "c";
    spec.dim = kDim;
    spec.nesting = {kDim};
    spec.num_buckets = 4;
    ASSERT_TRUE(engine_->CreateCollection(spec).ok());
  }

  Result<std::vector<uint8_t>> Call(wire::MessageType type, const std::vector<uint8_t>& body,
                                    uint32_t epoch) {
    rpc::RequestContext ctx;
    ctx.epoch = epoch;
    return service_->Handle(type, body, ctx);
  }
  static std::vector<uint8_t> UpsertBody(uint64_t id) {
    wire::UpsertRequestT req;
    req.collection = "c";
    req.dims = kDim;
    req.ids = {id};
    req.vectors.assign(kDim, 0.5f);
    return wire::PackBody(req);
  }
  static std::vector<uint8_t> DeleteBody(uint64_t id) {
    wire::DeleteRequestT req;
    req.collection = "c";
    req.ids = {id};
    return wire::PackBody(req);
  }
  // The epoch a Stats answer reports (map_epoch), asked with `epoch` stamped (0: not stamped).
  uint32_t ReportedEpoch(uint32_t epoch = 0) {
    auto r = Call(wire::MessageType::StatsRequest, wire::PackBody(wire::StatsRequestT{}), epoch);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    if (!r.ok()) return UINT32_MAX;
    return wire::RootAs<wire::StatsResponse>(*r)->map_epoch();
  }

  std::unique_ptr<GatedEngine> engine_;
  std::unique_ptr<ShardService> service_;
};

void ExpectHeldBackWhileInFlight(GatedEngine* engine,
                                 const std::function<Result<std::vector<uint8_t>>()>& write,
                                 const std::function<uint32_t(uint32_t)>& reported,
                                 uint32_t old_epoch) {
  engine->Arm();
  auto in_flight = std::async(std::launch::async, write);
  engine->WaitEntered();
  // The map moves on: a request stamped with the next epoch raises the shard's epoch...
  EXPECT_EQ(reported(old_epoch + 1), old_epoch)
      << "Stats claimed the new epoch while a write routed by the old one was still being applied";
  // ...and only the in-flight write holds the report back.
  EXPECT_EQ(reported(0), old_epoch);
  engine->Release();
  auto r = in_flight.get();
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(reported(0), old_epoch + 1) << "the drained write still holds the epoch back";
}

TEST_F(ShardEpochFence, AWriteInFlightHoldsTheReportedEpochBackUntilApplied) {
  EXPECT_EQ(ReportedEpoch(5), 5u);
  ExpectHeldBackWhileInFlight(
      engine_.get(), [&] { return Call(wire::MessageType::UpsertRequest, UpsertBody(1), 5); },
      [&](uint32_t e) { return ReportedEpoch(e); }, 5);
  // A write routed by the old map after the raise is refused before anything runs.
  auto stale = Call(wire::MessageType::UpsertRequest, UpsertBody(2), 5);
  ASSERT_FALSE(stale.ok());
  EXPECT_EQ(stale.status().code(), Status::Code::kAborted) << stale.status().ToString();
  auto got = engine_->Get("c", std::vector<uint64_t>{1, 2}, false);
  ASSERT_TRUE(got.ok());
  EXPECT_TRUE((*got)[0].has_value()) << "the admitted write was applied";
  EXPECT_FALSE((*got)[1].has_value()) << "the stale write was refused";

  // Deletes are fenced the same way.
  ExpectHeldBackWhileInFlight(
      engine_.get(), [&] { return Call(wire::MessageType::DeleteRequest, DeleteBody(1), 6); },
      [&](uint32_t e) { return ReportedEpoch(e); }, 6);
}

TEST_F(ShardEpochFence, UnstampedAndReadRequestsDoNotHoldTheEpoch) {
  EXPECT_EQ(ReportedEpoch(3), 3u);
  // An unstamped write (an operator's direct call, no map) is not routed by any epoch.
  engine_->Arm();
  auto unstamped = std::async(
      std::launch::async, [&] { return Call(wire::MessageType::UpsertRequest, UpsertBody(7), 0); });
  engine_->WaitEntered();
  EXPECT_EQ(ReportedEpoch(4), 4u);
  engine_->Release();
  EXPECT_TRUE(unstamped.get().ok());
  // A failed stamped write (wrong dims) is uncounted too.
  wire::UpsertRequestT bad;
  bad.collection = "c";
  bad.dims = kDim + 1;
  bad.ids = {9};
  bad.vectors.assign(kDim + 1, 0.5f);
  EXPECT_FALSE(Call(wire::MessageType::UpsertRequest, wire::PackBody(bad), 4).ok());
  EXPECT_EQ(ReportedEpoch(5), 5u);
}

}  // namespace
}  // namespace mrl::shard
