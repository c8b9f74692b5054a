// The shard engine's implementation behind engine.h, shared by its four .cc files (internal:
// nothing outside shard/engine*.cc includes this):
//   engine.cc        Open, start-up, collections, stats, checkpoints
//   engine_write.cc  the write path: one WriteBatch per call (+ generation), then the indexes
//   engine_read.cc   the read paths: index shortlist or exact scan, MultiGet rerank, staged
//                    search, Get, bucket scans
//   engine_index.cc  the in-RAM indexes' life: load the persisted file of the current
//                    generation or rebuild from RocksDB; stale files removed
//
// Locks, in the order they may be taken: admin_mu_ (create / drop) -> mu_ (the collection map)
// -> CollectionState::write_mu (one collection's writes, in RocksDB order) ; checkpoint_mu_ is
// taken alone, then write_mu per collection.
#pragma once

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/distance.h"
#include "common/vector_codec.h"
#include "shard/engine.h"
#include "shard/engine_stages.h"
#include "shard/low_d_index.h"
#include "shard/row_store.h"
#include "shard/storage.h"

namespace mrl::shard::engine_internal {

constexpr size_t kMaxStages = 16;

struct IndexState {
  IndexSpec spec;
  std::unique_ptr<LowDIndex> index;
  std::atomic<uint64_t> sequence{0};
  bool loaded = false;  // loaded from a persisted file at Open, not rebuilt
  std::string rebuild_reason;  // why not (missing, stale, checksum, ...); empty when loaded
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
  // The rerank rows (shard/row_store.h); null when EngineOptions::rerank_rows is off. Reads use
  // them while rows_ok; a change that failed half-way (rows out of step with RocksDB) clears
  // it, and reads go back to RocksDB until the next open rebuilds the rows.
  std::unique_ptr<RowStore> rows;
  std::atomic<bool> rows_ok{false};
  bool rows_loaded = false;         // loaded at Open from the checkpoint's table, not rebuilt
  std::string rows_rebuild_reason;  // why not

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

inline std::string IndexFileStem(uint32_t cid, int32_t dims) {
  return "c" + std::to_string(cid) + "_d" + std::to_string(dims) + "_g";
}
inline std::string IndexFileName(uint32_t cid, const IndexSpec& spec, uint64_t generation) {
  return IndexFileStem(cid, spec.dims) + std::to_string(generation) +
         (spec.kind == IndexKind::kHnsw ? ".hnsw" : ".exact");
}

// The rerank rows of collection `cid` and the checkpointed row table of one generation.
inline std::string RowsFileName(uint32_t cid) { return "c" + std::to_string(cid) + "_rows.dat"; }
inline std::string RowTableStem(uint32_t cid) { return "c" + std::to_string(cid) + "_rows_g"; }
inline std::string RowTableName(uint32_t cid, uint64_t generation) {
  return RowTableStem(cid) + std::to_string(generation) + ".rowids";
}

// Prepares a query or stored prefix for scoring: cosine scores the normalised prefix.
inline void PrepareForMetric(Metric metric, float* v, size_t n) {
  if (metric == Metric::kCosine) NormalizeInPlace(v, n);
}

inline float ScorePrepared(Metric metric, const float* q, const float* x, size_t n) {
  return metric == Metric::kL2 ? -L2Sq(q, x, n) : Dot(q, x, n);
}

inline Status CheckFinite(std::span<const float> v, const std::string& what) {
  if (!AllFinite(v.data(), v.size())) {
    return Status::InvalidArgument(what + " contains NaN or Inf");
  }
  return Status::Ok();
}

// Per-thread scratch buffers so that the read paths allocate nothing per candidate.
struct Scratch {
  std::vector<float> query;
  std::vector<float> vec;
  std::vector<uint64_t> ids;
  std::vector<PointKey> keys;
  std::vector<rocksdb::Slice> key_slices;
  std::vector<rocksdb::PinnableSlice> values;
  std::vector<rocksdb::Status> statuses;
  std::vector<Candidate> heap;
  std::vector<Candidate> cands;
};
inline Scratch& TlsScratch() {
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

  Status Init();

  // ---- collections ------------------------------------------------------------------------

  Status CreateCollection(const CollectionSpec& spec) override;

  Result<CollectionSpec> DescribeCollection(const std::string& name) const override;

  std::vector<CollectionSpec> ListCollections() const override;

  Status DropCollection(const std::string& name) override;

  // ---- writes -----------------------------------------------------------------------------

  using Engine::Delete;
  using Engine::Upsert;

  Status Upsert(const std::string& collection, std::span<const PointView> points,
                WriteCounts* counts) override;

  Status Delete(const std::string& collection, std::span<const uint64_t> ids,
                std::span<const uint64_t> versions, WriteCounts* counts) override;

  // ---- reads ------------------------------------------------------------------------------

  Result<std::vector<std::optional<StoredPoint>>> Get(const std::string& collection,
                                                      std::span<const uint64_t> ids,
                                                      bool with_vector) const override;

  Result<std::vector<Candidate>> Shortlist(const std::string& collection,
                                           std::span<const float> query, int32_t k, int32_t ef,
                                           bool exact) const override;

  Result<std::vector<Candidate>> Rerank(const std::string& collection, std::span<const float> query,
                                        std::span<const uint64_t> ids, int32_t k) const override;

  Result<std::vector<Candidate>> Search(const std::string& collection, std::span<const float> query,
                                        std::span<const SearchStage> stages, int32_t ef,
                                        bool exact) const override;

  Result<ScanPage> ScanBucket(const std::string& collection, uint32_t bucket,
                              std::optional<uint64_t> after, int32_t limit,
                              uint64_t min_version = 0) const override;

  Result<BucketFigures> BucketChecksum(const std::string& collection,
                                       uint32_t bucket) const override;

  Status DropBucket(const std::string& collection, uint32_t bucket) override;

  Status PurgeTombstones(const std::string& collection, uint32_t bucket) override;

  // ---- stats and checkpoints --------------------------------------------------------------

  EngineStats Stats() const override;

  Status Checkpoint() override;

  Status EvictRows(const std::string& collection) override;

 private:
  Result<std::shared_ptr<CollectionState>> Find(const std::string& name) const;

  Status CheckQuery(const CollectionState& c, std::span<const float> q, const char* what) const;

  Status CheckK(int32_t k, bool allow_zero) const;

  Status CheckEf(int32_t ef) const;

  // The first stage of a plan: `sl`'s best k for the query (its first sl.dims coordinates).
  // REQUIRES: validated query (a nesting dim, finite) and k.
  Status RunShortlister(const CollectionState& c, const Shortlister& sl,
                        std::span<const float> query, int32_t k,
                        std::vector<Candidate>* out) const;
  // A storage scan: every stored point's prefix decoded from RocksDB and scored.
  Status ScanStorage(const CollectionState& c, const float* prepared_query, size_t d, int32_t k,
                     std::vector<Candidate>* out) const;

  // Fills s->values/statuses for `ids` (one MultiGet).
  Status MultiGet(const CollectionState& c, std::span<const uint64_t> ids, Scratch* s) const;

  // The stored vectors of `ids`, gathered once per rerank: blob[i] is ids[i]'s vector blob
  // (ValueCodec::Blob), nullptr when absent (deleted, never written). From the rerank rows while
  // they are in step (rows holds their read lock), else one RocksDB MultiGet pinned in the
  // scratch (the caller unpins). Valid while the Gathered and the pins live.
  struct Gathered {
    std::optional<RowStore::Reader> rows;
    std::vector<const char*> blob;
  };
  Status Gather(const CollectionState& c, std::span<const uint64_t> ids, Scratch* s,
                Gathered* out) const {
    out->blob.assign(ids.size(), nullptr);
    if (c.rows && c.rows_ok.load(std::memory_order_acquire)) {
      out->rows.emplace(*c.rows);
      for (size_t i = 0; i < ids.size(); ++i) {
        const uint8_t* row = out->rows->Find(ids[i]);
        if (row != nullptr && options_.rows_readahead) out->rows->Prefetch(row);
        out->blob[i] = reinterpret_cast<const char*>(row);
      }
      return Status::Ok();
    }
    MRL_RETURN_IF_ERROR(MultiGet(c, ids, s));
    for (size_t i = 0; i < ids.size(); ++i) {
      if (s->statuses[i].IsNotFound()) continue;
      MRL_RETURN_IF_ERROR(FromRocks(s->statuses[i], "reading point for rerank"));
      const std::string_view v = s->values[i].ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      out->blob[i] = c.codec.Blob(v).data();
    }
    return Status::Ok();
  }

  // The score of a blob's first d coordinates against a prepared query (PrepareForMetric'ed):
  // what decoding, preparing and ScorePrepared give, up to float rounding. fp16 is scored in
  // place (common/vector_codec.h), the others decoded into s->vec.
  static float ScoreBlob(const CollectionState& c, const float* q, const char* blob, size_t d,
                         Scratch* s) {
    if (c.spec.storage == StorageType::kFp16) {
      if (c.spec.metric == Metric::kL2) return -HalfL2Sq(q, blob, d);
      float dot = 0, xx = 0;
      HalfDotAndNorm(q, blob, d, &dot, &xx);
      if (c.spec.metric == Metric::kInnerProduct) return dot;
      return xx > 0 ? dot / std::sqrt(xx) : 0.0f;
    }
    s->vec.resize(d);
    c.codec.DecodeBlobPrefix(blob, static_cast<int32_t>(d), s->vec.data());
    PrepareForMetric(c.spec.metric, s->vec.data(), d);
    return ScorePrepared(c.spec.metric, q, s->vec.data(), d);
  }

  // One refine stage, the engine's only decode -> score -> top-k loop over stored vectors:
  // scores the gathered blobs at `rows` (positions in g.blob, none null) on the first st.dims
  // coordinates of `query` and leaves the best st.k (0: all) in *rows, best first (ties: the
  // smaller position; callers whose positions follow id order get the id tie order), and the
  // same (position, score) pairs in s->heap.
  void RefineStage(const CollectionState& c, std::span<const float> query, const Gathered& g,
                   const RefineSpec& st, std::vector<uint32_t>* rows, Scratch* s) const {
    const size_t d = static_cast<size_t>(st.dims);
    s->query.assign(query.begin(), query.begin() + d);
    PrepareForMetric(c.spec.metric, s->query.data(), d);
    TopK top;
    top.Reset(st.k == 0 ? rows->size() : static_cast<size_t>(st.k), &s->heap);
    for (uint32_t r : *rows) top.Push(r, ScoreBlob(c, s->query.data(), g.blob[r], d, s));
    top.Finish();
    rows->clear();
    for (const auto& h : s->heap) rows->push_back(static_cast<uint32_t>(h.id));
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
                            const std::vector<float>& prefixes, int32_t max_dims);

  // REQUIRES: c.write_mu held. Adds the generation bump and writes atomically. A batch that
  // changes no point (tombstones only) is written without the bump: the persisted indexes of
  // the current generation stay valid.
  Status WriteWithGeneration(CollectionState& c, rocksdb::WriteBatch* batch,
                             bool points_changed = true);

  // The newest event of each id as far as versions go: the stored point's version (0 when
  // absent or unversioned) and the tombstone's (0 when none). REQUIRES: c.write_mu held.
  struct IdVersions {
    bool present = false;
    uint64_t point = 0;
    uint64_t tombstone = 0;
    uint64_t newest() const { return std::max(point, tombstone); }
  };
  using VersionMap = std::unordered_map<uint64_t, IdVersions>;
  Status ReadVersions(const CollectionState& c, std::vector<uint64_t> ids, VersionMap* out) const;

  // Bucket range checks shared by the bucket calls.
  Status CheckBucket(const CollectionState& c, uint32_t bucket) const;
  // After RocksDB refused a write (ENOSPC or another I/O error: its background error makes the
  // store read-only), the next write or checkpoint calls DB::Resume() first; Ok once resumed,
  // else the IoError says since when the store is read-only, its last error and why resuming
  // failed (e.g. the disk is still full).
  Status ResumeIfFailed();
  void RecordStoreError(const Status& error);
  // A rows change failed after RocksDB took the write: reads leave the rows (once, with a
  // warning) until the next open rewrites them. REQUIRES: c.write_mu held.
  void RowsOutOfStep(CollectionState& c, const Status& why);

  // REQUIRES: c.write_mu held. Updates the point count and the sequence numbers.
  void AfterWrite(CollectionState& c, const Existing& e, bool is_delete);

  // Loads every persisted index of `c` that matches its generation; rebuilds the others from
  // one scan of the collection. Records the files in use in *keep.
  Status OpenIndexes(CollectionState* c, std::unordered_set<std::string>* keep);

  // Rebuilds the `stale` indexes and, when fill_rows, rewrites the rerank rows, from one scan.
  Status Rebuild(CollectionState* c, const std::vector<IndexState*>& stale, bool fill_rows);
  // Opens c's rerank rows (loaded when the checkpoint's table matches c's generation, else
  // empty, to be filled by Rebuild). Records the files in use in *keep.
  Status OpenRows(CollectionState* c, std::unordered_set<std::string>* keep);
  // Why no file of `spec` exists for c's generation: "stale: ..." or "missing: ...".
  std::string MissingIndexReason(const CollectionState& c, const IndexSpec& spec) const;

  // Removes index files (and leftover temporaries) whose name starts with `prefix` and is not
  // in `keep`.
  void RemoveIndexFilesExcept(const std::unordered_set<std::string>& keep,
                              const std::string& prefix);

  static const char* KindName(IndexKind k) { return k == IndexKind::kHnsw ? "hnsw" : "exact"; }

  // Always printed: a state the operator should know about (an index rebuilt on open).
  template <typename... Args>
  void Warn(const char* fmt, Args... args) const {
    std::fprintf(stderr, "[shard-engine] WARNING: ");
    std::fprintf(stderr, fmt, args...);
    std::fprintf(stderr, "\n");
  }

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
  std::unique_ptr<DiskGuard> disk_;  // the data filesystem's watermark
  mutable std::mutex store_mu_;      // guards the store error state below; serialises Resume
  bool store_failed_ = false;
  std::string store_error_;
  int64_t store_failed_since_ms_ = 0;  // unix ms
};

}  // namespace mrl::shard::engine_internal
