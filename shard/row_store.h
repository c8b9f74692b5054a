// The rerank store: one collection's full vectors in a flat file of fixed-size rows, read through
// a memory map, so that reranking a shortlist reads a few pages instead of doing one RocksDB
// point lookup per candidate (issue 13). A row holds the vector bytes exactly as the point's
// RocksDB value encodes them (fp32, fp16, or the int8 scale then the int8 values), padded to a
// multiple of 64 bytes: fp16 at d = 2048 is exactly one 4 KiB page.
//
// Derived state. RocksDB stays the source of truth (ids, payloads, versions, deletes, the WAL);
// the rows file and its row -> id table are rebuilt from a scan of RocksDB whenever they cannot
// be shown to match it:
//   - Checkpoint (Persist) fsyncs the rows file and writes "<stem>_g<generation>.rowids" (the row
//     -> id table, with a checksum sidecar). Open loads it only for the collection's current
//     generation, which a write batch bumps in RocksDB atomically with its points.
//   - Before the first change after a checkpoint, the table file is removed (Invalidate), so a
//     row rewritten in place can never sit under a table that claims the checkpoint's contents
//     (e.g. if RocksDB lost unsynced writes in a power cut while the rows file kept them).
//   - So after kill -9 mid-write (a torn row, or rows ahead of RocksDB), the table is missing or
//     stale, and the engine rewrites every row from RocksDB on open.
// Room for new rows is allocated (posix_fallocate) before the RocksDB write (Reserve), so a full
// disk refuses the write whole instead of failing between RocksDB and the rows (or a SIGBUS on a
// sparse mapping). Freed rows (deletes, dropped buckets) are reused by later inserts.
//
// Thread safety: readers take a Reader (a shared lock) and may read rows while it lives; every
// change takes the lock exclusively, so a reader never sees a half-written row. Writers must be
// serialised by the caller (the engine's per-collection write_mu).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace mrl::shard {

class RowStore {
 public:
  static constexpr uint64_t kFreeRow = ~uint64_t{0};

  // Bytes of one row for a blob of `blob_bytes` (rounded up to 64).
  static size_t RowBytesFor(size_t blob_bytes) { return (blob_bytes + 63) / 64 * 64; }

  // Opens (creating if needed) the rows file at `rows_path`. When `table_path` exists and
  // verifies (checksum, magic, row size, the rows file long enough), the store holds its rows:
  // *loaded = true. Otherwise the store is empty, the rows file truncated, *loaded = false and
  // *reason says why; the caller then Puts every point from a scan of RocksDB.
  static Result<std::unique_ptr<RowStore>> Open(const std::string& rows_path, size_t blob_bytes,
                                                const std::string& table_path, bool* loaded,
                                                std::string* reason);
  ~RowStore();
  RowStore(const RowStore&) = delete;
  RowStore& operator=(const RowStore&) = delete;

  size_t blob_bytes() const { return blob_bytes_; }
  size_t row_bytes() const { return row_bytes_; }

  // A shared hold on the store: rows found through it stay valid and unchanged while it lives.
  class Reader {
   public:
    explicit Reader(const RowStore& s) : s_(s), lock_(s.mu_) {}
    // The row of `id` (blob_bytes() bytes), or nullptr when the store does not hold it.
    const uint8_t* Find(uint64_t id) const {
      auto it = s_.row_of_.find(id);
      return it == s_.row_of_.end() ? nullptr : s_.base_ + it->second * s_.row_bytes_;
    }
    // Starts reading a found row's pages (madvise WILLNEED), so that the reads of many rows
    // run at once instead of one page fault at a time.
    void Prefetch(const uint8_t* row) const { s_.Prefetch(row); }

   private:
    const RowStore& s_;
    std::shared_lock<std::shared_mutex> lock_;
  };

  // ---- changes (serialised by the caller) ---------------------------------------------------

  // Makes room for `n` more rows than are free now, allocating file blocks (ENOSPC here, as an
  // IoError, before anything is written).
  Status Reserve(size_t n);
  // Inserts `id` or rewrites its row. `blob` has blob_bytes() bytes. A new id takes a free row;
  // REQUIRES: a preceding Reserve left room (else it grows the file and may fail).
  Status Put(uint64_t id, const void* blob);
  // Frees `id`'s row; false when the store does not hold it.
  bool Remove(uint64_t id);
  // Removes the persisted table of the last checkpoint (see the file comment). Cheap when there
  // is none; call before the first Put or Remove after a Persist.
  Status Invalidate();
  // Checkpoint: fsyncs the rows and publishes the row -> id table at `table_path` (temporary
  // file, checksum sidecar, rename). REQUIRES: no concurrent change.
  Status Persist(const std::string& table_path);

  // ---- figures ------------------------------------------------------------------------------

  uint64_t size() const;         // rows in use
  uint64_t file_bytes() const;   // the rows file's allocated length
  uint64_t table_bytes() const;  // RAM of the id -> row map and the row -> id table (estimate)
  // Rows of the file resident in the page cache now (mincore), in bytes.
  uint64_t resident_bytes() const;
  // Drops the rows from the page cache (our mapping's pages, then the file's clean pages).
  Status Evict();

 private:
  RowStore(std::string rows_path, size_t blob_bytes, int fd);
  Status Grow(uint64_t min_rows);  // REQUIRES: mu_ held exclusively
  // Loads the table and maps the rows; on failure the store may be half-filled (ResetEmpty).
  Status Load(const std::string& table_path);
  void ResetEmpty();
  void Prefetch(const uint8_t* row) const;

  const std::string rows_path_;
  const size_t blob_bytes_;
  const size_t row_bytes_;
  int fd_ = -1;
  mutable std::shared_mutex mu_;
  uint8_t* base_ = nullptr;           // mapping of capacity_ rows
  uint64_t capacity_ = 0;             // rows the file (and the mapping) hold
  std::vector<uint64_t> id_of_row_;   // row -> id, kFreeRow when free; size = rows ever used
  std::vector<uint32_t> free_rows_;   // rows below id_of_row_.size() that are free
  std::unordered_map<uint64_t, uint32_t> row_of_;  // id -> row
  std::string persisted_table_;       // the table file Persist wrote, until Invalidate
};

}  // namespace mrl::shard
