// The shard engine: one shard's storage (RocksDB, source of truth at full d) and its in-RAM
// low-d indexes, with no sockets. mrl-shard's server is a thin layer that decodes requests,
// calls an Engine and encodes the answers; tests and benchmarks drive the Engine directly.
//
// Thread safety: every method may be called concurrently from many threads. Reads (Shortlist,
// Rerank, Search, Get, Scan) run in parallel; writes to one collection are serialised.
//
// Errors: NotFound for an unknown collection; InvalidArgument for malformed input (a vector of
// the wrong length, NaN/Inf, a query length that is not a nesting dim, k < 1 where k must be
// positive, a bad spec); OutOfRange for a request beyond a limit (k > max_k, more than max_batch
// points or ids, a payload over max_payload_bytes, bucket >= num_buckets, ef > 100000, a scan
// limit outside [1, max_batch]); FailedPrecondition for CreateCollection with another spec.
// A rejected write writes nothing.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"
#include "shard/disk_guard.h"

namespace mrl::shard {

// The spec types live in common/collection_spec.h (shared with the coordinator).
using mrl::CollectionSpec;
using mrl::IndexKind;
using mrl::IndexSpec;
using mrl::Metric;
using mrl::StorageType;

// bucket = SplitMix64-style hash of the id, mod num_buckets. Shared with the coordinator.
uint32_t BucketOf(uint64_t id, uint32_t num_buckets);

struct PointView {
  uint64_t id = 0;
  std::span<const float> vector;  // exactly dim floats, all finite
  std::string_view payload;       // optional, <= max_payload_bytes
  uint64_t version = 0;           // 0: unversioned (always applies); see Engine::Upsert
};

struct StoredPoint {
  uint64_t id = 0;
  std::vector<float> vector;  // decoded to fp32 (empty unless asked for)
  std::string payload;
  uint64_t version = 0;  // 0: written unversioned (or before versions existed)
};

// A versioned delete's mark: `id` was deleted at `version`; no write of a version <= it applies.
struct Tombstone {
  uint64_t id = 0;
  uint64_t version = 0;
};

// What a write did with its points or ids: applied, or skipped as stale (a version not newer
// than the stored point's or the id's tombstone's; a replayed write is one).
struct WriteCounts {
  uint32_t applied = 0;
  uint32_t skipped = 0;
};

// A bucket's figures for a move's VERIFY: count and order-independent checksum of (id, version)
// with common/move_checksum.h's hash (the coordinator's VerifyFigures), over the live points,
// and apart over the tombstones. Checksums add mod 2^64, so points + tombstones together are
// the figures of their union.
struct BucketFigures {
  uint64_t count = 0;
  uint64_t checksum = 0;
  uint64_t tombstone_count = 0;
  uint64_t tombstone_checksum = 0;
};

// Higher score = closer for every metric (L2 is reported as the negated squared distance).
struct Candidate {
  uint64_t id = 0;
  float score = 0;
};

// One stage of a one-trip search: stage 0 shortlists `k` with the index over `dims` (exact scan
// if there is no such index or `exact`); later stages rescore the survivors at `dims` read from
// storage and keep `k`. The last stage's k is the answer size.
struct SearchStage {
  int32_t dims = 0;
  int32_t k = 0;
};

// One page of a bucket scan: up to `limit` ids in id order, each with its point, its tombstone
// or (an unversioned point written over a tombstone) both; points and tombstones are read from
// one RocksDB snapshot.
struct ScanPage {
  std::vector<StoredPoint> points;     // in id order, with vectors and versions
  std::vector<Tombstone> tombstones;   // in id order, same id range as the page
  std::optional<uint64_t> next_after;  // resume cursor; empty when the bucket is exhausted
};

struct EngineStats {
  struct Collection {
    std::string name;
    uint64_t points = 0;
    struct Index {
      int32_t dims = 0;
      IndexKind kind = IndexKind::kExact;
      uint64_t size = 0;          // live points in the index
      uint64_t memory_bytes = 0;  // estimate of RAM held
      uint64_t sequence = 0;      // RocksDB sequence number it reflects
      bool loaded = false;        // loaded from its persisted file at Open (not rebuilt)
      std::string rebuild_reason;  // when rebuilt: which check failed (missing, stale, checksum)
    };
    std::vector<Index> indexes;
    // The rerank rows (shard/row_store.h); all 0 when off.
    struct Rows {
      bool enabled = false;        // in use for reads (on, and in step with RocksDB)
      uint64_t rows = 0;           // rows holding a point
      uint64_t file_bytes = 0;     // the rows file's allocated length
      uint64_t resident_bytes = 0; // of which in the page cache now
      uint64_t table_bytes = 0;    // RAM of the id <-> row tables
      bool loaded = false;         // loaded at Open (not rewritten from RocksDB)
      std::string rebuild_reason;  // when rewritten: why
    } rows;
  };
  std::vector<Collection> collections;
  uint64_t disk_bytes = 0;         // RocksDB live SST + WAL
  uint64_t block_cache_bytes = 0;  // in use
  uint64_t memtable_bytes = 0;
  // The data filesystem and its watermark (DiskGuard), and the store's I/O error state.
  uint64_t fs_total_bytes = 0, fs_free_bytes = 0;
  bool refusing_writes = false;   // above the high watermark
  uint64_t write_refusals = 0;    // writes refused by the watermark since start
  bool store_failed = false;      // RocksDB refused a write (e.g. ENOSPC); resumed on the next write
  std::string store_error;        // the last such error
  int64_t store_failed_since_unix_ms = 0;
};

struct EngineOptions {
  std::string data_dir;           // RocksDB + persisted indexes; created if missing
  size_t block_cache_mb = 256;
  bool sync_writes = true;        // fsync the WAL before acknowledging (safe default)
  bool mmap_reads = false;        // read SST files through mmap (see Storage::Open)
  // Rerank (and Search's later stages) read full vectors from a memory-mapped rows file
  // (shard/row_store.h) instead of one RocksDB lookup per candidate; off: RocksDB only.
  bool rerank_rows = true;
  // Before scoring a rerank's rows, ask the kernel to read them all (madvise WILLNEED): on a
  // cold rows file the reads then run concurrently instead of one page fault at a time; on a
  // warm one it costs a system call per candidate.
  bool rows_readahead = false;
  int threads = 0;                // for index builds; 0 = hardware concurrency
  int32_t max_k = 10000;          // limits that bound one request's work
  int32_t max_batch = 10000;      // points per Upsert/Delete/Get, ids per Rerank
  bool verbose = true;            // progress lines on stderr while building indexes
  DiskMarks disk;                 // write refusal by disk usage (shard/disk_guard.h)
};

class Engine {
 public:
  // Opens (or creates) the data directory. Loads each persisted index whose recorded sequence
  // number matches RocksDB's; rebuilds the others from RocksDB with progress output.
  static Result<std::unique_ptr<Engine>> Open(const EngineOptions& options);
  virtual ~Engine() = default;

  // Idempotent for an identical spec; FailedPrecondition if `name` exists with another spec.
  virtual Status CreateCollection(const CollectionSpec& spec) = 0;
  virtual Result<CollectionSpec> DescribeCollection(const std::string& name) const = 0;
  virtual std::vector<CollectionSpec> ListCollections() const = 0;
  virtual Status DropCollection(const std::string& name) = 0;

  // Atomic (one WriteBatch) and durable per sync_writes before it returns OK; the indexes have
  // the points when it returns. All points are validated first: a bad one rejects the batch.
  //
  // Versions ("newest wins", for live bucket moves): a point of version v > 0 applies only if v
  // is greater than both its stored point's version and its id's tombstone's; otherwise it is
  // skipped as stale (v equal to the stored version is a replayed write: a no-op). An applied
  // versioned point replaces the stored one and clears the id's tombstone, so each id holds the
  // newest event it has seen whatever the arrival order. Version 0 (unversioned) always applies
  // and leaves the tombstone alone, as before versions. Points of one batch are decided in
  // order, each against the state the earlier ones left. Skipped points touch neither RocksDB
  // nor the indexes. `counts` (may be null) gets applied + skipped == points.size().
  virtual Status Upsert(const std::string& collection, std::span<const PointView> points,
                        WriteCounts* counts) = 0;
  Status Upsert(const std::string& collection, std::span<const PointView> points) {
    return Upsert(collection, points, nullptr);
  }
  // Unknown ids are ignored (delete is idempotent). A deleted id is never returned again.
  // `versions` is empty (every delete unversioned) or has one entry per id (InvalidArgument
  // otherwise; 0 = unversioned). A delete of version v > 0 applies only if v is greater than the
  // stored point's version and the id's tombstone's: it removes the point and records the
  // tombstone {id -> v}, so a later write of an older version cannot resurrect it; otherwise it
  // is skipped as stale. An unversioned delete removes the point and records nothing.
  virtual Status Delete(const std::string& collection, std::span<const uint64_t> ids,
                        std::span<const uint64_t> versions, WriteCounts* counts) = 0;
  Status Delete(const std::string& collection, std::span<const uint64_t> ids) {
    return Delete(collection, ids, {}, nullptr);
  }
  // One entry per id, nullopt for unknown ids.
  virtual Result<std::vector<std::optional<StoredPoint>>> Get(const std::string& collection,
                                                              std::span<const uint64_t> ids,
                                                              bool with_vector) const = 0;

  // Top `k` by the index over query.size() dims (query.size() must be a nesting dim). ef = 0
  // uses the index's default; exact = true scans every point (also the fallback when no index
  // over those dims exists). Sorted by score, best first.
  virtual Result<std::vector<Candidate>> Shortlist(const std::string& collection,
                                                   std::span<const float> query, int32_t k,
                                                   int32_t ef = 0, bool exact = false) const = 0;
  // Scores `ids` on the first query.size() dims from the full vectors in storage; unknown or
  // deleted ids are skipped. Returns the best `k` (k = 0: all), best first.
  virtual Result<std::vector<Candidate>> Rerank(const std::string& collection,
                                                std::span<const float> query,
                                                std::span<const uint64_t> ids,
                                                int32_t k) const = 0;
  // Shortlist + rerank stages in one call (query has at least the largest stage's dims).
  virtual Result<std::vector<Candidate>> Search(const std::string& collection,
                                                std::span<const float> query,
                                                std::span<const SearchStage> stages,
                                                int32_t ef = 0, bool exact = false) const = 0;

  // Rebalancing support: the points and tombstones of one bucket in id order, each page from one
  // snapshot; ids > `after` (all when nullopt), at most `limit` ids per page.
  // With min_version > 0 (a catch-up: only what changed since) a page holds only the points and
  // tombstones of that version or newer, and ends after `limit` such ids or after examining
  // 64 x `limit` ids, whichever comes first (next_after says where to go on; a page may be empty).
  virtual Result<ScanPage> ScanBucket(const std::string& collection, uint32_t bucket,
                                      std::optional<uint64_t> after, int32_t limit,
                                      uint64_t min_version = 0) const = 0;
  // The bucket's figures from one snapshot (BucketFigures above).
  virtual Result<BucketFigures> BucketChecksum(const std::string& collection,
                                               uint32_t bucket) const = 0;
  // Drops the bucket's points (and their index rows) and its tombstones. Idempotent.
  virtual Status DropBucket(const std::string& collection, uint32_t bucket) = 0;
  // Drops the bucket's tombstones only (after a move has completed and no older copy can
  // arrive). Idempotent; points and indexes untouched.
  virtual Status PurgeTombstones(const std::string& collection, uint32_t bucket) = 0;

  virtual EngineStats Stats() const = 0;
  // Flushes RocksDB and persists every index with the sequence number it reflects. Called by
  // graceful shutdown; safe to call at any time.
  virtual Status Checkpoint() = 0;
  // Drops the collection's rerank rows from the page cache (cold-store measurements: the next
  // reranks read them from disk). NotFound for an unknown collection; Ok without rows.
  virtual Status EvictRows(const std::string& collection) = 0;
};

}  // namespace mrl::shard
