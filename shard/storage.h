// One shard's on-disk layout in RocksDB.
//
// Column family "default" holds points:
//   key   = collection_id (u32 BE) | bucket (u32 BE) | id (u64 BE)      16 bytes
//   value = type byte (u8) | [versioned: version, u64 LE] | [int8 only: scale, f32 LE] | vector
//           | payload
// so that one collection, and one bucket of it, is one contiguous key range in id order.
// The type byte's low 7 bits are the storage type; its top bit (kVersionedFlag) says that an
// 8-byte version follows. A value without the flag (every value written before versions, and
// every unversioned write now) decodes as version 0, so older data directories read unchanged.
// The vector is the full d coordinates: fp32 or fp16 little-endian, or int8.
//
// Column family "tombstones" holds the versions of versioned deletes (shard/engine.h, Delete):
//   key   = the point key above (collection | bucket | id)
//   value = version (u64 LE)
// apart from the points, so scans, index builds and point counts never see them; a bucket's
// tombstones are one contiguous range too (ScanBucket carries them, DropBucket drops them).
//
// Column family "meta" holds the collection definitions and per-collection write generations:
//   "collection/<name>"      -> JSON {id, spec}
//   "generation/<id u32 BE>" -> u64 LE, incremented by every write batch of that collection that
//                               changes its points (a tombstone-only batch leaves it)
//   "next_collection_id"     -> u32 LE; ids are never reused, so a re-created collection never
//                               meets an old collection's keys or index files.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "shard/engine.h"

namespace mrl::shard {

constexpr size_t kPointKeySize = 16;
using PointKey = std::array<char, kPointKeySize>;

PointKey EncodePointKey(uint32_t collection_id, uint32_t bucket, uint64_t id);
// REQUIRES: key.size() == kPointKeySize
uint64_t PointKeyId(std::string_view key);
// 4 bytes: every key of the collection starts with it.
std::string CollectionPrefix(uint32_t collection_id);
// 8 bytes: every key of the bucket starts with it.
std::string BucketPrefix(uint32_t collection_id, uint32_t bucket);

// Set in a point value's type byte when an 8-byte version follows it.
inline constexpr uint8_t kVersionedFlag = 0x80;

// Encodes and decodes point values for one collection's storage type and dim.
// Thread safety: immutable after construction.
class ValueCodec {
 public:
  ValueCodec(StorageType storage, int32_t dim);

  size_t vector_bytes() const;  // encoded vector

  // version 0 writes the unversioned layout (no flag, byte for byte what older shards wrote).
  // REQUIRES: v.size() == dim
  void Encode(std::span<const float> v, std::string_view payload, uint64_t version,
              std::string* out) const;
  void Encode(std::span<const float> v, std::string_view payload, std::string* out) const {
    Encode(v, payload, 0, out);
  }
  // Corruption if `value` is too short or of another storage type.
  Status Check(std::string_view value) const;
  // The point's version; 0 for an unversioned value. REQUIRES: Check(value) ok.
  static uint64_t Version(std::string_view value);
  // Decodes the first n coordinates. REQUIRES: Check(value) ok, n <= dim.
  void DecodePrefix(std::string_view value, int32_t n, float* out) const {
    DecodeBlobPrefix(Blob(value).data(), n, out);
  }
  // The vector's bytes as one blob (int8: the scale, then the values): what a rerank row holds
  // (shard/row_store.h). REQUIRES: Check(value) ok.
  size_t blob_bytes() const { return vector_bytes() + (storage_ == StorageType::kInt8 ? 4 : 0); }
  std::string_view Blob(std::string_view value) const {
    return value.substr(header_bytes(value) + vector_bytes() - blob_bytes(), blob_bytes());
  }
  // Decodes the first n coordinates of a blob. REQUIRES: n <= dim.
  void DecodeBlobPrefix(const char* blob, int32_t n, float* out) const;
  // REQUIRES: Check(value) ok.
  std::string_view Payload(std::string_view value) const {
    return value.substr(header_bytes(value) + vector_bytes());
  }

 private:
  // Type byte, version when flagged, int8 scale. REQUIRES: !value.empty()
  size_t header_bytes(std::string_view value) const;

  StorageType storage_;
  int32_t dim_;
};

// A tombstone's value: the delete's version, u64 LE. Corruption unless 8 bytes.
Status DecodeTombstone(std::string_view value, uint64_t* version);

std::string EncodeCollectionRecord(uint32_t collection_id, const CollectionSpec& spec);
Status DecodeCollectionRecord(std::string_view bytes, uint32_t* collection_id,
                              CollectionSpec* spec);

std::string CollectionMetaKey(const std::string& name);
std::string GenerationMetaKey(uint32_t collection_id);
inline constexpr std::string_view kCollectionMetaPrefix = "collection/";
inline constexpr std::string_view kNextCollectionIdKey = "next_collection_id";

std::string EncodeU64(uint64_t v);
uint64_t DecodeU64(std::string_view bytes);  // 0 unless 8 bytes

Status FromRocks(const rocksdb::Status& s, const std::string& what);

// The RocksDB instance with its three column families ("tombstones" is created on the first
// open of a directory written before it existed).
struct Storage {
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* points = nullptr;  // owned by db's handles below
  rocksdb::ColumnFamilyHandle* meta = nullptr;
  rocksdb::ColumnFamilyHandle* tombstones = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  std::shared_ptr<rocksdb::Cache> block_cache;
  rocksdb::WriteOptions write_options;

  // mmap_reads: SST files are read through a memory map (no pread per block and no copy into
  // the block cache for uncompressed vector blocks); for read-heavy shards whose data fits the
  // OS page cache.
  static Result<std::unique_ptr<Storage>> Open(const std::string& dir, size_t block_cache_mb,
                                               bool sync_writes, bool mmap_reads = false);
  ~Storage();
};

}  // namespace mrl::shard
