// Engine::Open and the implementation behind engine.h: validation, the write path (one
// WriteBatch per call, then the in-RAM indexes), the read paths (index shortlist, exact scans,
// MultiGet rerank), bucket scans for rebalancing, checkpoints and index rebuilds at start-up.
#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <shared_mutex>
#include <thread>
#include <unordered_set>

#include "common/atomic_file.h"
#include "common/distance.h"
#include "shard/engine.h"
#include "shard/low_d_index.h"
#include "shard/storage.h"

namespace mrl::shard {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr size_t kMaxStages = 16;

struct IndexState {
  IndexSpec spec;
  std::unique_ptr<LowDIndex> index;
  std::atomic<uint64_t> sequence{0};
  bool loaded = false;  // loaded from a persisted file at Open, not rebuilt
};

struct CollectionState {
  CollectionState(uint32_t id_, CollectionSpec spec_)
      : id(id_), spec(std::move(spec_)), codec(spec.storage, spec.dim) {}

  const uint32_t id;
  const CollectionSpec spec;
  const ValueCodec codec;

  // Serialises writes so that RocksDB's order of this collection's batches is the order in
  // which the indexes apply them.
  std::mutex write_mu;
  uint64_t generation = 0;  // guarded by write_mu; mirrors the "generation/<id>" meta key
  bool dropped = false;     // guarded by write_mu
  std::atomic<uint64_t> points{0};
  std::vector<std::unique_ptr<IndexState>> indexes;  // fixed once the state is published

  const IndexState* FindIndex(int32_t dims) const {
    for (const auto& ix : indexes) {
      if (ix->spec.dims == dims) return ix.get();
    }
    return nullptr;
  }
  int32_t MaxIndexDims() const {
    int32_t m = 0;
    for (const auto& ix : indexes) m = std::max(m, ix->spec.dims);
    return m;
  }
  bool IsNestingDim(int32_t dims) const {
    return std::binary_search(spec.nesting.begin(), spec.nesting.end(), dims);
  }
  IndexMetric index_metric() const {
    return spec.metric == Metric::kL2 ? IndexMetric::kL2 : IndexMetric::kInnerProduct;
  }
};

std::string IndexFileStem(uint32_t cid, int32_t dims) {
  return "c" + std::to_string(cid) + "_d" + std::to_string(dims) + "_g";
}
std::string IndexFileName(uint32_t cid, const IndexSpec& spec, uint64_t generation) {
  return IndexFileStem(cid, spec.dims) + std::to_string(generation) +
         (spec.kind == IndexKind::kHnsw ? ".hnsw" : ".exact");
}

// Prepares a query or stored prefix for scoring: cosine scores the normalised prefix.
inline void PrepareForMetric(Metric metric, float* v, size_t n) {
  if (metric == Metric::kCosine) NormalizeInPlace(v, n);
}

inline float ScorePrepared(Metric metric, const float* q, const float* x, size_t n) {
  return metric == Metric::kL2 ? -L2Sq(q, x, n) : Dot(q, x, n);
}

Status CheckFinite(std::span<const float> v, const std::string& what) {
  if (!AllFinite(v.data(), v.size())) {
    return Status::InvalidArgument(what + " contains NaN or Inf");
  }
  return Status::Ok();
}

// Per-thread scratch buffers so that the read paths allocate nothing per candidate.
struct Scratch {
  std::vector<float> query;
  std::vector<float> vec;
  std::vector<float> matrix;
  std::vector<uint64_t> ids;
  std::vector<PointKey> keys;
  std::vector<rocksdb::Slice> key_slices;
  std::vector<rocksdb::PinnableSlice> values;
  std::vector<rocksdb::Status> statuses;
  std::vector<Candidate> heap;
  std::vector<Candidate> cands;
};
Scratch& TlsScratch() {
  thread_local Scratch s;
  return s;
}

// PinnableSlices pin RocksDB blocks and memtables: release them when a read is done, never
// later (a thread's scratch outlives any one DB).
class UnpinOnExit {
 public:
  explicit UnpinOnExit(Scratch* s) : s_(s) {}
  ~UnpinOnExit() {
    for (auto& v : s_->values) v.Reset();
  }

 private:
  Scratch* s_;
};

class EngineImpl final : public Engine {
 public:
  explicit EngineImpl(EngineOptions options) : options_(std::move(options)) {
    if (options_.threads <= 0) {
      options_.threads = std::max(1u, std::thread::hardware_concurrency());
    }
  }

  Status Init() {
    MRL_RETURN_IF_ERROR(EnsureWritableDir(options_.data_dir));
    index_dir_ = (fs::path(options_.data_dir) / "index").string();
    MRL_RETURN_IF_ERROR(EnsureWritableDir(index_dir_));
    auto st = Storage::Open((fs::path(options_.data_dir) / "db").string(), options_.block_cache_mb,
                            options_.sync_writes, options_.mmap_reads);
    if (!st.ok()) return st.status();
    storage_ = std::move(st.value());

    std::unique_ptr<rocksdb::Iterator> it(
        storage_->db->NewIterator(rocksdb::ReadOptions(), storage_->meta));
    std::vector<std::pair<uint32_t, CollectionSpec>> found;
    for (it->Seek(std::string(kCollectionMetaPrefix)); it->Valid(); it->Next()) {
      if (!it->key().starts_with(
              rocksdb::Slice(kCollectionMetaPrefix.data(), kCollectionMetaPrefix.size()))) {
        break;
      }
      uint32_t cid = 0;
      CollectionSpec spec;
      MRL_RETURN_IF_ERROR(DecodeCollectionRecord(it->value().ToStringView(), &cid, &spec));
      found.emplace_back(cid, std::move(spec));
    }
    MRL_RETURN_IF_ERROR(FromRocks(it->status(), "reading collection metadata"));
    it.reset();

    std::unordered_set<std::string> keep_files;
    for (auto& [cid, spec] : found) {
      auto state = std::make_shared<CollectionState>(cid, spec);
      std::string gen_bytes;
      rocksdb::Status s = storage_->db->Get(rocksdb::ReadOptions(), storage_->meta,
                                            GenerationMetaKey(cid), &gen_bytes);
      if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading generation");
      state->generation = s.ok() ? DecodeU64(gen_bytes) : 0;
      MRL_RETURN_IF_ERROR(OpenIndexes(state.get(), &keep_files));
      collections_[spec.name] = std::move(state);
    }
    RemoveIndexFilesExcept(keep_files, /*cid_prefix=*/"");
    return Status::Ok();
  }

  // ---- collections ------------------------------------------------------------------------

  Status CreateCollection(const CollectionSpec& spec) override {
    MRL_RETURN_IF_ERROR(ValidateCollectionSpec(spec));
    std::lock_guard admin(admin_mu_);
    {
      std::shared_lock lock(mu_);
      auto it = collections_.find(spec.name);
      if (it != collections_.end()) {
        if (it->second->spec == spec) return Status::Ok();
        return Status::FailedPrecondition("collection '" + spec.name +
                                          "' already exists with another spec");
      }
    }
    std::string next_bytes;
    rocksdb::Status s = storage_->db->Get(rocksdb::ReadOptions(), storage_->meta,
                                          std::string(kNextCollectionIdKey), &next_bytes);
    if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading next collection id");
    uint32_t cid = 1;
    if (s.ok() && next_bytes.size() == 4) std::memcpy(&cid, next_bytes.data(), 4);
    const uint32_t next = cid + 1;
    rocksdb::WriteBatch batch;
    batch.Put(storage_->meta, CollectionMetaKey(spec.name), EncodeCollectionRecord(cid, spec));
    batch.Put(storage_->meta, GenerationMetaKey(cid), EncodeU64(0));
    batch.Put(storage_->meta, std::string(kNextCollectionIdKey),
              rocksdb::Slice(reinterpret_cast<const char*>(&next), 4));
    rocksdb::WriteOptions wo = storage_->write_options;
    wo.sync = true;  // collection definitions are always durable
    MRL_RETURN_IF_ERROR(FromRocks(storage_->db->Write(wo, &batch), "creating collection"));

    auto state = std::make_shared<CollectionState>(cid, spec);
    for (const auto& ix : spec.indexes) {
      auto is = std::make_unique<IndexState>();
      is->spec = ix;
      is->index = MakeLowDIndex(ix, state->index_metric(), 1024);
      is->sequence = storage_->db->GetLatestSequenceNumber();
      state->indexes.push_back(std::move(is));
    }
    std::unique_lock lock(mu_);
    collections_[spec.name] = std::move(state);
    return Status::Ok();
  }

  Result<CollectionSpec> DescribeCollection(const std::string& name) const override {
    auto c = Find(name);
    if (!c.ok()) return c.status();
    return c.value()->spec;
  }

  std::vector<CollectionSpec> ListCollections() const override {
    std::shared_lock lock(mu_);
    std::vector<CollectionSpec> out;
    for (const auto& [name, c] : collections_) out.push_back(c->spec);
    return out;
  }

  Status DropCollection(const std::string& name) override {
    std::lock_guard admin(admin_mu_);
    auto found = Find(name);
    if (!found.ok()) return found.status();
    auto c = found.value();
    {
      std::lock_guard w(c->write_mu);
      rocksdb::WriteBatch batch;
      batch.DeleteRange(storage_->points, CollectionPrefix(c->id), CollectionPrefix(c->id + 1));
      batch.Delete(storage_->meta, CollectionMetaKey(name));
      batch.Delete(storage_->meta, GenerationMetaKey(c->id));
      rocksdb::WriteOptions wo = storage_->write_options;
      wo.sync = true;
      MRL_RETURN_IF_ERROR(FromRocks(storage_->db->Write(wo, &batch), "dropping collection"));
      c->dropped = true;
    }
    {
      std::unique_lock lock(mu_);
      collections_.erase(name);
    }
    RemoveIndexFilesExcept({}, "c" + std::to_string(c->id) + "_");
    return Status::Ok();
  }

  // ---- writes -----------------------------------------------------------------------------

  Status Upsert(const std::string& collection, std::span<const PointView> points) override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    CollectionState& c = *found.value();
    if (points.size() > static_cast<size_t>(options_.max_batch)) {
      return Status::OutOfRange("upsert batch of " + std::to_string(points.size()) +
                                " points exceeds max_batch " + std::to_string(options_.max_batch));
    }
    for (const auto& p : points) {
      if (p.vector.size() != static_cast<size_t>(c.spec.dim)) {
        return Status::InvalidArgument("point " + std::to_string(p.id) + ": vector has " +
                                       std::to_string(p.vector.size()) + " floats, collection '" +
                                       collection + "' has dim " + std::to_string(c.spec.dim));
      }
      MRL_RETURN_IF_ERROR(CheckFinite(p.vector, "point " + std::to_string(p.id) + ": vector"));
      if (p.payload.size() > c.spec.max_payload_bytes) {
        return Status::OutOfRange("point " + std::to_string(p.id) + ": payload of " +
                                  std::to_string(p.payload.size()) + " bytes exceeds " +
                                  std::to_string(c.spec.max_payload_bytes));
      }
    }
    if (points.empty()) return Status::Ok();

    // Encode outside the lock; the index sees the decoded stored vector (what a rebuild sees).
    const int32_t max_dims = c.MaxIndexDims();
    std::vector<float> prefixes(points.size() * static_cast<size_t>(max_dims));
    rocksdb::WriteBatch batch;
    std::string value;
    for (size_t i = 0; i < points.size(); ++i) {
      const auto& p = points[i];
      c.codec.Encode(p.vector, p.payload, &value);
      const PointKey key = EncodePointKey(c.id, BucketOf(p.id, c.spec.num_buckets), p.id);
      batch.Put(storage_->points, rocksdb::Slice(key.data(), key.size()), value);
      if (max_dims > 0) c.codec.DecodePrefix(value, max_dims, &prefixes[i * max_dims]);
    }

    std::lock_guard w(c.write_mu);
    if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
    Existing existing;
    if (c.indexes.empty()) {
      auto ex = CountExisting(c, points.size(), [&](size_t i) { return points[i].id; });
      if (!ex.ok()) return ex.status();
      existing = ex.value();
    }
    MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
    try {
      ApplyUpsertToIndexes(c, points, prefixes, max_dims);
    } catch (const std::exception& e) {
      return Status::Internal(std::string("index update failed after the write: ") + e.what());
    }
    AfterWrite(c, existing, /*is_delete=*/false);
    return Status::Ok();
  }

  Status Delete(const std::string& collection, std::span<const uint64_t> ids) override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    CollectionState& c = *found.value();
    if (ids.size() > static_cast<size_t>(options_.max_batch)) {
      return Status::OutOfRange("delete batch of " + std::to_string(ids.size()) +
                                " ids exceeds max_batch " + std::to_string(options_.max_batch));
    }
    if (ids.empty()) return Status::Ok();
    rocksdb::WriteBatch batch;
    for (uint64_t id : ids) {
      const PointKey key = EncodePointKey(c.id, BucketOf(id, c.spec.num_buckets), id);
      batch.Delete(storage_->points, rocksdb::Slice(key.data(), key.size()));
    }
    std::lock_guard w(c.write_mu);
    if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
    Existing existing;
    if (c.indexes.empty()) {
      auto ex = CountExisting(c, ids.size(), [&](size_t i) { return ids[i]; });
      if (!ex.ok()) return ex.status();
      existing = ex.value();
    }
    MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
    for (auto& ix : c.indexes) {
      for (uint64_t id : ids) ix->index->Remove(id);
    }
    AfterWrite(c, existing, /*is_delete=*/true);
    return Status::Ok();
  }

  // ---- reads ------------------------------------------------------------------------------

  Result<std::vector<std::optional<StoredPoint>>> Get(const std::string& collection,
                                                      std::span<const uint64_t> ids,
                                                      bool with_vector) const override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    const CollectionState& c = *found.value();
    if (ids.size() > static_cast<size_t>(options_.max_batch)) {
      return Status::OutOfRange("get of " + std::to_string(ids.size()) + " ids exceeds max_batch " +
                                std::to_string(options_.max_batch));
    }
    Scratch& s = TlsScratch();
    UnpinOnExit unpin(&s);
    MRL_RETURN_IF_ERROR(MultiGet(c, ids, &s));
    std::vector<std::optional<StoredPoint>> out(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (s.statuses[i].IsNotFound()) continue;
      MRL_RETURN_IF_ERROR(FromRocks(s.statuses[i], "reading point " + std::to_string(ids[i])));
      const std::string_view v = s.values[i].ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      StoredPoint p;
      p.id = ids[i];
      p.payload = std::string(c.codec.Payload(v));
      if (with_vector) {
        p.vector.resize(static_cast<size_t>(c.spec.dim));
        c.codec.DecodePrefix(v, c.spec.dim, p.vector.data());
      }
      out[i] = std::move(p);
    }
    return out;
  }

  Result<std::vector<Candidate>> Shortlist(const std::string& collection,
                                           std::span<const float> query, int32_t k, int32_t ef,
                                           bool exact) const override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    const CollectionState& c = *found.value();
    MRL_RETURN_IF_ERROR(CheckQuery(c, query, "shortlist"));
    MRL_RETURN_IF_ERROR(CheckK(k, /*allow_zero=*/false));
    MRL_RETURN_IF_ERROR(CheckEf(ef));
    std::vector<Candidate> out;
    MRL_RETURN_IF_ERROR(ShortlistInternal(c, query, k, ef, exact, &out));
    return out;
  }

  Result<std::vector<Candidate>> Rerank(const std::string& collection, std::span<const float> query,
                                        std::span<const uint64_t> ids, int32_t k) const override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    const CollectionState& c = *found.value();
    MRL_RETURN_IF_ERROR(CheckQuery(c, query, "rerank"));
    MRL_RETURN_IF_ERROR(CheckK(k, /*allow_zero=*/true));
    if (ids.size() > static_cast<size_t>(options_.max_batch)) {
      return Status::OutOfRange("rerank of " + std::to_string(ids.size()) +
                                " ids exceeds max_batch " + std::to_string(options_.max_batch));
    }
    Scratch& s = TlsScratch();
    s.ids.assign(ids.begin(), ids.end());
    std::sort(s.ids.begin(), s.ids.end());
    s.ids.erase(std::unique(s.ids.begin(), s.ids.end()), s.ids.end());
    const std::vector<uint64_t>& unique_ids = s.ids;  // MultiGet does not touch s.ids
    UnpinOnExit unpin(&s);
    MRL_RETURN_IF_ERROR(MultiGet(c, unique_ids, &s));

    const size_t d = query.size();
    s.query.assign(query.begin(), query.end());
    PrepareForMetric(c.spec.metric, s.query.data(), d);
    s.vec.resize(d);
    TopK top;
    top.Reset(k == 0 ? unique_ids.size() : static_cast<size_t>(k), &s.heap);
    for (size_t i = 0; i < unique_ids.size(); ++i) {
      if (s.statuses[i].IsNotFound()) continue;  // deleted or never written
      MRL_RETURN_IF_ERROR(FromRocks(s.statuses[i], "reading point for rerank"));
      const std::string_view v = s.values[i].ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      c.codec.DecodePrefix(v, static_cast<int32_t>(d), s.vec.data());
      PrepareForMetric(c.spec.metric, s.vec.data(), d);
      top.Push(unique_ids[i], ScorePrepared(c.spec.metric, s.query.data(), s.vec.data(), d));
    }
    top.Finish();
    return std::vector<Candidate>(s.heap.begin(), s.heap.end());
  }

  Result<std::vector<Candidate>> Search(const std::string& collection, std::span<const float> query,
                                        std::span<const SearchStage> stages, int32_t ef,
                                        bool exact) const override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    const CollectionState& c = *found.value();
    if (stages.empty() || stages.size() > kMaxStages) {
      return Status::InvalidArgument("search needs 1 to 16 stages, got " +
                                     std::to_string(stages.size()));
    }
    int32_t max_dims = 0;
    for (const auto& st : stages) {
      if (!c.IsNestingDim(st.dims)) {
        return Status::InvalidArgument("search stage dims " + std::to_string(st.dims) +
                                       " is not a nesting dim of '" + collection + "' " +
                                       NestingString(c.spec.nesting));
      }
      MRL_RETURN_IF_ERROR(CheckK(st.k, /*allow_zero=*/false));
      max_dims = std::max(max_dims, st.dims);
    }
    if (query.size() < static_cast<size_t>(max_dims) ||
        query.size() > static_cast<size_t>(c.spec.dim)) {
      return Status::InvalidArgument("search query has " + std::to_string(query.size()) +
                                     " dims; the stages need " + std::to_string(max_dims) +
                                     " and the collection has " + std::to_string(c.spec.dim));
    }
    MRL_RETURN_IF_ERROR(CheckFinite(query.first(max_dims), "search query"));
    MRL_RETURN_IF_ERROR(CheckEf(ef));

    std::vector<Candidate> cands;
    MRL_RETURN_IF_ERROR(
        ShortlistInternal(c, query.first(stages[0].dims), stages[0].k, ef, exact, &cands));
    if (stages.size() == 1) return cands;

    // Read every survivor once, decode the largest prefix a later stage needs, then narrow.
    int32_t rerank_dims = 0;
    for (size_t i = 1; i < stages.size(); ++i) rerank_dims = std::max(rerank_dims, stages[i].dims);
    Scratch& s = TlsScratch();
    std::vector<uint64_t> ids(cands.size());
    for (size_t i = 0; i < cands.size(); ++i) ids[i] = cands[i].id;
    UnpinOnExit unpin(&s);
    MRL_RETURN_IF_ERROR(MultiGet(c, ids, &s));
    const size_t rd = static_cast<size_t>(rerank_dims);
    s.matrix.resize(ids.size() * rd);
    std::vector<uint32_t> rows;  // surviving candidates: row in s.matrix
    rows.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      if (s.statuses[i].IsNotFound()) continue;
      MRL_RETURN_IF_ERROR(FromRocks(s.statuses[i], "reading point for rerank"));
      const std::string_view v = s.values[i].ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      c.codec.DecodePrefix(v, rerank_dims, &s.matrix[i * rd]);
      rows.push_back(static_cast<uint32_t>(i));
    }
    std::vector<uint32_t> next_rows;
    for (size_t st = 1; st < stages.size(); ++st) {
      const size_t d = static_cast<size_t>(stages[st].dims);
      s.query.assign(query.begin(), query.begin() + d);
      PrepareForMetric(c.spec.metric, s.query.data(), d);
      s.vec.resize(d);
      TopK top;
      top.Reset(static_cast<size_t>(stages[st].k), &s.heap);
      for (uint32_t r : rows) {
        std::copy_n(&s.matrix[r * rd], d, s.vec.data());
        PrepareForMetric(c.spec.metric, s.vec.data(), d);
        // The heap carries the row; ids are restored below.
        top.Push(r, ScorePrepared(c.spec.metric, s.query.data(), s.vec.data(), d));
      }
      top.Finish();
      next_rows.clear();
      cands.clear();
      for (const auto& h : s.heap) {
        next_rows.push_back(static_cast<uint32_t>(h.id));
        cands.push_back(Candidate{ids[h.id], h.score});
      }
      rows.swap(next_rows);
    }
    // Rows were compared by row on equal scores; restore the engine's id tie order.
    std::sort(cands.begin(), cands.end(), BetterCandidate);
    return cands;
  }

  Result<ScanPage> ScanBucket(const std::string& collection, uint32_t bucket,
                              std::optional<uint64_t> after, int32_t limit) const override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    const CollectionState& c = *found.value();
    if (bucket >= c.spec.num_buckets) {
      return Status::OutOfRange("bucket " + std::to_string(bucket) + " >= num_buckets " +
                                std::to_string(c.spec.num_buckets));
    }
    if (limit < 1 || limit > options_.max_batch) {
      return Status::OutOfRange("scan limit " + std::to_string(limit) + " not in [1, " +
                                std::to_string(options_.max_batch) + "]");
    }
    const std::string upper = BucketPrefix(c.id, bucket + 1);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
    if (after) {
      const PointKey k = EncodePointKey(c.id, bucket, *after);
      it->Seek(rocksdb::Slice(k.data(), k.size()));
      if (it->Valid() && PointKeyId(it->key().ToStringView()) == *after) it->Next();
    } else {
      it->Seek(BucketPrefix(c.id, bucket));
    }
    ScanPage page;
    for (; it->Valid() && page.points.size() < static_cast<size_t>(limit); it->Next()) {
      const std::string_view v = it->value().ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      StoredPoint p;
      p.id = PointKeyId(it->key().ToStringView());
      p.vector.resize(static_cast<size_t>(c.spec.dim));
      c.codec.DecodePrefix(v, c.spec.dim, p.vector.data());
      p.payload = std::string(c.codec.Payload(v));
      page.points.push_back(std::move(p));
    }
    MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning bucket"));
    if (it->Valid() && !page.points.empty()) page.next_after = page.points.back().id;
    return page;
  }

  Status DropBucket(const std::string& collection, uint32_t bucket) override {
    auto found = Find(collection);
    if (!found.ok()) return found.status();
    CollectionState& c = *found.value();
    if (bucket >= c.spec.num_buckets) {
      return Status::OutOfRange("bucket " + std::to_string(bucket) + " >= num_buckets " +
                                std::to_string(c.spec.num_buckets));
    }
    std::lock_guard w(c.write_mu);
    if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
    const std::string lower = BucketPrefix(c.id, bucket);
    const std::string upper = BucketPrefix(c.id, bucket + 1);
    std::vector<uint64_t> ids;
    {
      rocksdb::Slice upper_slice(upper);
      rocksdb::ReadOptions ro;
      ro.iterate_upper_bound = &upper_slice;
      std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
      for (it->Seek(lower); it->Valid(); it->Next()) {
        ids.push_back(PointKeyId(it->key().ToStringView()));
      }
      MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning bucket"));
    }
    if (ids.empty()) return Status::Ok();
    rocksdb::WriteBatch batch;
    batch.DeleteRange(storage_->points, lower, upper);
    MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
    for (auto& ix : c.indexes) {
      for (uint64_t id : ids) ix->index->Remove(id);
    }
    AfterWrite(c, Existing{ids.size(), ids.size()}, /*is_delete=*/true);
    return Status::Ok();
  }

  // ---- stats and checkpoints --------------------------------------------------------------

  EngineStats Stats() const override {
    EngineStats out;
    {
      std::shared_lock lock(mu_);
      for (const auto& [name, c] : collections_) {
        EngineStats::Collection sc;
        sc.name = name;
        sc.points = c->points.load();
        for (const auto& ix : c->indexes) {
          EngineStats::Collection::Index si;
          si.dims = ix->spec.dims;
          si.kind = ix->spec.kind;
          si.size = ix->index->size();
          si.memory_bytes = ix->index->memory_bytes();
          si.sequence = ix->sequence.load();
          si.loaded = ix->loaded;
          sc.indexes.push_back(si);
        }
        out.collections.push_back(std::move(sc));
      }
    }
    rocksdb::DB* db = storage_->db.get();
    for (auto* cf : {storage_->points, storage_->meta}) {
      uint64_t v = 0;
      if (db->GetIntProperty(cf, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
        out.disk_bytes += v;
      }
      if (db->GetIntProperty(cf, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
        out.memtable_bytes += v;
      }
    }
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(fs::path(options_.data_dir) / "db", ec)) {
      if (e.path().extension() == ".log") out.disk_bytes += e.file_size(ec);
    }
    out.block_cache_bytes = storage_->block_cache->GetUsage();
    return out;
  }

  Status Checkpoint() override {
    std::lock_guard cp(checkpoint_mu_);
    rocksdb::DB* db = storage_->db.get();
    MRL_RETURN_IF_ERROR(FromRocks(db->FlushWAL(/*sync=*/true), "syncing the WAL"));
    rocksdb::FlushOptions fo;
    fo.wait = true;
    MRL_RETURN_IF_ERROR(
        FromRocks(db->Flush(fo, {storage_->points, storage_->meta}), "flushing memtables"));
    std::vector<std::shared_ptr<CollectionState>> all;
    {
      std::shared_lock lock(mu_);
      for (const auto& [name, c] : collections_) all.push_back(c);
    }
    for (const auto& c : all) {
      // No write can interleave: the files reflect exactly generation c->generation.
      std::lock_guard w(c->write_mu);
      if (c->dropped) continue;
      for (const auto& ix : c->indexes) {
        const std::string name = IndexFileName(c->id, ix->spec, c->generation);
        const std::string path = (fs::path(index_dir_) / name).string();
        if (!fs::exists(path)) MRL_RETURN_IF_ERROR(ix->index->Save(path));
        RemoveIndexFilesExcept({name}, IndexFileStem(c->id, ix->spec.dims));
      }
    }
    return Status::Ok();
  }

 private:
  Result<std::shared_ptr<CollectionState>> Find(const std::string& name) const {
    std::shared_lock lock(mu_);
    auto it = collections_.find(name);
    if (it == collections_.end()) return Status::NotFound("unknown collection '" + name + "'");
    return it->second;
  }

  Status CheckQuery(const CollectionState& c, std::span<const float> q, const char* what) const {
    if (!c.IsNestingDim(static_cast<int32_t>(q.size()))) {
      return Status::InvalidArgument(std::string(what) + " query has " + std::to_string(q.size()) +
                                     " dims, which is not a nesting dim of '" + c.spec.name + "' " +
                                     NestingString(c.spec.nesting));
    }
    return CheckFinite(q, std::string(what) + " query");
  }

  Status CheckK(int32_t k, bool allow_zero) const {
    if (k < 0 || (k == 0 && !allow_zero)) {
      return Status::InvalidArgument("k = " + std::to_string(k) +
                                     " must be >= " + (allow_zero ? "0" : "1"));
    }
    if (k > options_.max_k) {
      return Status::OutOfRange("k = " + std::to_string(k) + " exceeds max_k " +
                                std::to_string(options_.max_k));
    }
    return Status::Ok();
  }

  Status CheckEf(int32_t ef) const {
    if (ef < 0 || ef > 100000) {
      return Status::OutOfRange("ef = " + std::to_string(ef) + " not in [0, 100000]");
    }
    return Status::Ok();
  }

  // REQUIRES: validated query (a nesting dim, finite) and k.
  Status ShortlistInternal(const CollectionState& c, std::span<const float> query, int32_t k,
                           int32_t ef, bool exact, std::vector<Candidate>* out) const {
    Scratch& s = TlsScratch();
    const size_t d = query.size();
    s.query.assign(query.begin(), query.end());
    PrepareForMetric(c.spec.metric, s.query.data(), d);
    if (const IndexState* ix = c.FindIndex(static_cast<int32_t>(d))) {
      ix->index->Search(s.query.data(), k, ef, exact, out);
      return Status::Ok();
    }
    // No index over these dims: scan storage.
    const std::string upper = CollectionPrefix(c.id + 1);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
    s.vec.resize(d);
    TopK top;
    top.Reset(static_cast<size_t>(k), &s.heap);
    for (it->Seek(CollectionPrefix(c.id)); it->Valid(); it->Next()) {
      const std::string_view v = it->value().ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      c.codec.DecodePrefix(v, static_cast<int32_t>(d), s.vec.data());
      PrepareForMetric(c.spec.metric, s.vec.data(), d);
      top.Push(PointKeyId(it->key().ToStringView()),
               ScorePrepared(c.spec.metric, s.query.data(), s.vec.data(), d));
    }
    MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning collection"));
    top.Finish();
    out->assign(s.heap.begin(), s.heap.end());
    return Status::Ok();
  }

  // Fills s->values/statuses for `ids` (one MultiGet).
  Status MultiGet(const CollectionState& c, std::span<const uint64_t> ids, Scratch* s) const {
    const size_t n = ids.size();
    s->keys.resize(n);
    s->key_slices.resize(n);
    if (s->values.size() < n) s->values.resize(n);
    s->statuses.assign(n, rocksdb::Status());
    for (size_t i = 0; i < n; ++i) {
      s->keys[i] = EncodePointKey(c.id, BucketOf(ids[i], c.spec.num_buckets), ids[i]);
      s->key_slices[i] = rocksdb::Slice(s->keys[i].data(), s->keys[i].size());
      s->values[i].Reset();
    }
    if (n == 0) return Status::Ok();
    storage_->db->MultiGet(rocksdb::ReadOptions(), storage_->points, n, s->key_slices.data(),
                           s->values.data(), s->statuses.data());
    return Status::Ok();
  }

  // How many distinct ids of a batch exist now. REQUIRES: c.write_mu held.
  struct Existing {
    uint64_t distinct = 0;  // distinct ids in the batch
    uint64_t present = 0;   // of which stored now
  };
  template <typename IdAt>
  Result<Existing> CountExisting(const CollectionState& c, size_t n, IdAt id_at) const {
    std::vector<uint64_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = id_at(i);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    Scratch& s = TlsScratch();
    UnpinOnExit unpin(&s);
    MRL_RETURN_IF_ERROR(MultiGet(c, ids, &s));
    Existing e;
    e.distinct = ids.size();
    for (size_t i = 0; i < ids.size(); ++i) {
      if (s.statuses[i].ok()) {
        ++e.present;
      } else if (!s.statuses[i].IsNotFound()) {
        return FromRocks(s.statuses[i], "reading point");
      }
    }
    return e;
  }

  // REQUIRES: c.write_mu held. A large batch of new, distinct ids (a bulk load) is added to each
  // index with several threads; anything else is applied point by point in batch order.
  void ApplyUpsertToIndexes(CollectionState& c, std::span<const PointView> points,
                            const std::vector<float>& prefixes, int32_t max_dims) {
    if (c.indexes.empty()) return;
    const size_t n = points.size();
    const size_t md = static_cast<size_t>(max_dims);
    bool bulk = n >= 256 && options_.threads > 1;
    std::vector<uint64_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = points[i].id;
    if (bulk) {
      std::unordered_set<uint64_t> seen(ids.begin(), ids.end());
      bulk = seen.size() == n;
      for (size_t i = 0; bulk && i < n; ++i) bulk = !c.indexes[0]->index->Contains(ids[i]);
    }
    std::vector<float> prepared;
    for (auto& ix : c.indexes) {
      const size_t d = static_cast<size_t>(ix->spec.dims);
      prepared.resize(n * d);
      for (size_t i = 0; i < n; ++i) {
        std::copy_n(&prefixes[i * md], d, &prepared[i * d]);
        PrepareForMetric(c.spec.metric, &prepared[i * d], d);
      }
      if (bulk) {
        ix->index->AddBulk(ids, prepared.data(), options_.threads);
      } else {
        for (size_t i = 0; i < n; ++i) ix->index->Upsert(ids[i], &prepared[i * d]);
      }
    }
  }

  // REQUIRES: c.write_mu held. Adds the generation bump and writes atomically.
  Status WriteWithGeneration(CollectionState& c, rocksdb::WriteBatch* batch) {
    const uint64_t gen = c.generation + 1;
    batch->Put(storage_->meta, GenerationMetaKey(c.id), EncodeU64(gen));
    MRL_RETURN_IF_ERROR(
        FromRocks(storage_->db->Write(storage_->write_options, batch), "writing to RocksDB"));
    c.generation = gen;
    return Status::Ok();
  }

  // REQUIRES: c.write_mu held. Updates the point count and the sequence numbers.
  void AfterWrite(CollectionState& c, const Existing& e, bool is_delete) {
    const uint64_t seq = storage_->db->GetLatestSequenceNumber();
    for (auto& ix : c.indexes) ix->sequence = seq;
    if (!c.indexes.empty()) {
      c.points = c.indexes[0]->index->size();
    } else if (is_delete) {
      c.points -= std::min<uint64_t>(e.present, c.points.load());
    } else {
      c.points += e.distinct - e.present;
    }
  }

  // Loads every persisted index of `c` that matches its generation; rebuilds the others from
  // one scan of the collection. Records the files in use in *keep.
  Status OpenIndexes(CollectionState* c, std::unordered_set<std::string>* keep) {
    std::vector<IndexState*> stale;
    for (const auto& spec : c->spec.indexes) {
      auto is = std::make_unique<IndexState>();
      is->spec = spec;
      const std::string name = IndexFileName(c->id, spec, c->generation);
      const std::string path = (fs::path(index_dir_) / name).string();
      if (fs::exists(path)) {
        auto loaded = LoadLowDIndex(path, spec, c->index_metric());
        if (loaded.ok()) {
          is->index = std::move(loaded.value());
          is->loaded = true;
          keep->insert(name);
          Log("collection '%s': loaded index d=%d (%s, %" PRIu64 " points) from %s",
              c->spec.name.c_str(), spec.dims, KindName(spec.kind), is->index->size(),
              name.c_str());
        } else {
          Log("collection '%s': cannot load %s (%s): rebuilding", c->spec.name.c_str(),
              name.c_str(), loaded.status().ToString().c_str());
        }
      } else {
        Log("collection '%s': no index d=%d persisted for generation %" PRIu64
            " (crash or writes after the last checkpoint): rebuilding from RocksDB",
            c->spec.name.c_str(), spec.dims, c->generation);
      }
      if (!is->index) {
        is->index = MakeLowDIndex(spec, c->index_metric(), 1024);
        stale.push_back(is.get());
      }
      c->indexes.push_back(std::move(is));
    }
    const uint64_t seq = storage_->db->GetLatestSequenceNumber();
    for (auto& ix : c->indexes) ix->sequence = seq;
    if (stale.empty() && !c->indexes.empty()) {
      c->points = c->indexes[0]->index->size();
      return Status::Ok();
    }
    return Rebuild(c, stale);
  }

  Status Rebuild(CollectionState* c, const std::vector<IndexState*>& stale) {
    int32_t max_dims = 0;
    for (auto* ix : stale) max_dims = std::max(max_dims, ix->spec.dims);
    const size_t md = static_cast<size_t>(max_dims);
    constexpr size_t kChunk = 8192;
    std::vector<uint64_t> ids;
    std::vector<float> prefixes;
    std::vector<float> prepared;
    ids.reserve(kChunk);
    prefixes.reserve(kChunk * md);
    uint64_t total = 0;
    const auto start = Clock::now();
    auto last_report = start;
    auto flush = [&] {
      for (auto* ix : stale) {
        const size_t d = static_cast<size_t>(ix->spec.dims);
        prepared.resize(ids.size() * d);
        for (size_t i = 0; i < ids.size(); ++i) {
          std::copy_n(&prefixes[i * md], d, &prepared[i * d]);
          PrepareForMetric(c->spec.metric, &prepared[i * d], d);
        }
        ix->index->AddBulk(ids, prepared.data(), options_.threads);
      }
      total += ids.size();
      ids.clear();
      prefixes.clear();
      const auto now = Clock::now();
      if (now - last_report > std::chrono::seconds(2)) {
        const double s = std::chrono::duration<double>(now - start).count();
        Log("collection '%s': indexed %" PRIu64 " points (%.0f/s)", c->spec.name.c_str(), total,
            total / s);
        last_report = now;
      }
    };
    const std::string upper = CollectionPrefix(c->id + 1);
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    ro.fill_cache = false;
    std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
    try {
      for (it->Seek(CollectionPrefix(c->id)); it->Valid(); it->Next()) {
        if (max_dims > 0) {
          const std::string_view v = it->value().ToStringView();
          MRL_RETURN_IF_ERROR(c->codec.Check(v));
          prefixes.resize(prefixes.size() + md);
          c->codec.DecodePrefix(v, max_dims, &prefixes[prefixes.size() - md]);
        }
        ids.push_back(PointKeyId(it->key().ToStringView()));
        if (ids.size() == kChunk) flush();
      }
      MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning collection for an index build"));
      if (!ids.empty()) flush();
    } catch (const std::exception& e) {
      return Status::Internal("index build of '" + c->spec.name + "' failed: " + e.what());
    }
    c->points = total;
    if (!stale.empty()) {
      Log("collection '%s': rebuilt %zu index(es) over %" PRIu64 " points in %.1f s",
          c->spec.name.c_str(), stale.size(), total,
          std::chrono::duration<double>(Clock::now() - start).count());
    }
    return Status::Ok();
  }

  // Removes index files (and leftover temporaries) whose name starts with `prefix` and is not
  // in `keep`.
  void RemoveIndexFilesExcept(const std::unordered_set<std::string>& keep,
                              const std::string& prefix) {
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(index_dir_, ec)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(prefix, 0) != 0 || keep.count(name)) continue;
      fs::remove(e.path(), ec);
    }
  }

  static const char* KindName(IndexKind k) { return k == IndexKind::kHnsw ? "hnsw" : "exact"; }

  template <typename... Args>
  void Log(const char* fmt, Args... args) const {
    if (!options_.verbose) return;
    std::fprintf(stderr, "[shard-engine] ");
    std::fprintf(stderr, fmt, args...);
    std::fprintf(stderr, "\n");
  }

  EngineOptions options_;
  std::string index_dir_;
  std::unique_ptr<Storage> storage_;
  mutable std::shared_mutex mu_;  // guards collections_ (the map, not the states)
  std::map<std::string, std::shared_ptr<CollectionState>> collections_;
  std::mutex admin_mu_;       // serialises create / drop
  std::mutex checkpoint_mu_;  // one checkpoint at a time
};

}  // namespace

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.data_dir.empty()) return Status::InvalidArgument("engine: data_dir is empty");
  if (options.max_k < 1 || options.max_batch < 1) {
    return Status::InvalidArgument("engine: max_k and max_batch must be >= 1");
  }
  auto engine = std::make_unique<EngineImpl>(options);
  MRL_RETURN_IF_ERROR(engine->Init());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace mrl::shard
