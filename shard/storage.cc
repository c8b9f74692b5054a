#include "shard/storage.h"

#include <rocksdb/cache.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>

#include <cstring>
#include <nlohmann/json.hpp>

#include "common/bucket.h"
#include "common/collection_spec.h"
#include "common/vector_codec.h"

namespace mrl::shard {

uint32_t BucketOf(uint64_t id, uint32_t num_buckets) {
  // One definition shared with the coordinator's write routing (common/bucket.h).
  return num_buckets == 0 ? 0 : BucketOfId(id, num_buckets);
}

namespace {
void PutBE32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}
void PutBE64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}
}  // namespace

PointKey EncodePointKey(uint32_t collection_id, uint32_t bucket, uint64_t id) {
  PointKey k;
  PutBE32(k.data(), collection_id);
  PutBE32(k.data() + 4, bucket);
  PutBE64(k.data() + 8, id);
  return k;
}

uint64_t PointKeyId(std::string_view key) {
  uint64_t v = 0;
  for (int i = 8; i < 16; ++i) v = (v << 8) | static_cast<unsigned char>(key[i]);
  return v;
}

std::string CollectionPrefix(uint32_t collection_id) {
  std::string s(4, '\0');
  PutBE32(s.data(), collection_id);
  return s;
}

std::string BucketPrefix(uint32_t collection_id, uint32_t bucket) {
  std::string s(8, '\0');
  PutBE32(s.data(), collection_id);
  PutBE32(s.data() + 4, bucket);
  return s;
}

ValueCodec::ValueCodec(StorageType storage, int32_t dim) : storage_(storage), dim_(dim) {}

size_t ValueCodec::header_bytes(std::string_view value) const {
  const bool versioned = (static_cast<uint8_t>(value[0]) & kVersionedFlag) != 0;
  return 1 + (versioned ? 8 : 0) + (storage_ == StorageType::kInt8 ? 4 : 0);
}

size_t ValueCodec::vector_bytes() const {
  const size_t d = static_cast<size_t>(dim_);
  switch (storage_) {
    case StorageType::kFp32:
      return 4 * d;
    case StorageType::kFp16:
      return 2 * d;
    case StorageType::kInt8:
      return d;
  }
  return 4 * d;
}

void ValueCodec::Encode(std::span<const float> v, std::string_view payload, uint64_t version,
                        std::string* out) const {
  const size_t header = 1 + (version != 0 ? 8 : 0) + (storage_ == StorageType::kInt8 ? 4 : 0);
  out->resize(header + vector_bytes() + payload.size());
  char* p = out->data();
  p[0] = static_cast<char>(static_cast<uint8_t>(storage_) | (version != 0 ? kVersionedFlag : 0));
  if (version != 0) std::memcpy(p + 1, &version, 8);  // little-endian hosts only (x86, arm64)
  char* vec = p + header;
  switch (storage_) {
    case StorageType::kFp32:
      std::memcpy(vec, v.data(), 4 * v.size());
      break;
    case StorageType::kFp16:
      EncodeHalf(v.data(), v.size(), vec);
      break;
    case StorageType::kInt8: {
      const float scale = EncodeInt8(v.data(), v.size(), reinterpret_cast<int8_t*>(vec));
      std::memcpy(vec - 4, &scale, 4);
      break;
    }
  }
  if (!payload.empty()) std::memcpy(vec + vector_bytes(), payload.data(), payload.size());
}

Status ValueCodec::Check(std::string_view value) const {
  if (value.empty() ||
      (static_cast<uint8_t>(value[0]) & ~kVersionedFlag) != static_cast<uint8_t>(storage_) ||
      value.size() < header_bytes(value) + vector_bytes()) {
    return Status::Corruption("stored point value has " + std::to_string(value.size()) +
                              " bytes or a storage type that does not match the collection");
  }
  return Status::Ok();
}

uint64_t ValueCodec::Version(std::string_view value) {
  uint64_t v = 0;
  if ((static_cast<uint8_t>(value[0]) & kVersionedFlag) != 0) std::memcpy(&v, value.data() + 1, 8);
  return v;
}

void ValueCodec::DecodeBlobPrefix(const char* blob, int32_t n, float* out) const {
  const size_t m = static_cast<size_t>(n);
  switch (storage_) {
    case StorageType::kFp32:
      std::memcpy(out, blob, 4 * m);
      break;
    case StorageType::kFp16:
      DecodeHalf(blob, m, out);
      break;
    case StorageType::kInt8: {
      float scale;
      std::memcpy(&scale, blob, 4);
      DecodeInt8(reinterpret_cast<const int8_t*>(blob + 4), m, scale, out);
      break;
    }
  }
}

Status DecodeTombstone(std::string_view value, uint64_t* version) {
  if (value.size() != 8) {
    return Status::Corruption("stored tombstone has " + std::to_string(value.size()) +
                              " bytes, not 8");
  }
  std::memcpy(version, value.data(), 8);
  return Status::Ok();
}

// The record is the spec's JSON (common/collection_spec.h) plus the collection's id. Records
// written before that codec (integer enums, "hnsw_m") still decode.
std::string EncodeCollectionRecord(uint32_t collection_id, const CollectionSpec& spec) {
  nlohmann::json j = CollectionSpecToJson(spec);
  j["id"] = collection_id;
  return j.dump();
}

Status DecodeCollectionRecord(std::string_view bytes, uint32_t* collection_id,
                              CollectionSpec* spec) {
  try {
    const auto j = nlohmann::json::parse(bytes);
    *collection_id = j.at("id").get<uint32_t>();
    auto s = CollectionSpecFromJson(j);
    if (!s.ok()) return Status::Corruption("collection record: " + s.status().message());
    *spec = std::move(s).value();
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("collection record: ") + e.what());
  }
  return Status::Ok();
}

std::string CollectionMetaKey(const std::string& name) {
  return std::string(kCollectionMetaPrefix) + name;
}

std::string GenerationMetaKey(uint32_t collection_id) {
  return "generation/" + CollectionPrefix(collection_id);
}

std::string EncodeU64(uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);
  return s;
}

uint64_t DecodeU64(std::string_view bytes) {
  uint64_t v = 0;
  if (bytes.size() == 8) std::memcpy(&v, bytes.data(), 8);
  return v;
}

Status FromRocks(const rocksdb::Status& s, const std::string& what) {
  if (s.ok()) return Status::Ok();
  const std::string msg = what + ": " + s.ToString();
  if (s.IsNotFound()) return Status::NotFound(msg);
  if (s.IsCorruption()) return Status::Corruption(msg);
  if (s.IsInvalidArgument()) return Status::InvalidArgument(msg);
  return Status::IoError(msg);
}

Result<std::unique_ptr<Storage>> Storage::Open(const std::string& dir, size_t block_cache_mb,
                                               bool sync_writes, bool mmap_reads) {
  auto st = std::make_unique<Storage>();
  st->block_cache = rocksdb::NewLRUCache(block_cache_mb << 20);

  rocksdb::BlockBasedTableOptions table;
  table.block_cache = st->block_cache;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));  // point lookups in rerank
  table.cache_index_and_filter_blocks = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;

  rocksdb::ColumnFamilyOptions points_cf;
  points_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  points_cf.compression = rocksdb::kNoCompression;  // float vectors do not compress
  points_cf.write_buffer_size = 64 << 20;
  // Whole-key bloom filter in the memtables: a rerank's point reads mostly miss them (the data
  // is in SST files), and without it every read walks the skiplist first (about a quarter of
  // the rerank time right after an ingest, measured with perf on bench/engine_qps).
  points_cf.memtable_prefix_bloom_size_ratio = 0.05;
  points_cf.memtable_whole_key_filtering = true;

  rocksdb::ColumnFamilyOptions meta_cf;
  meta_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  // Tombstones: 16-byte keys, 8-byte values, read by point lookups on versioned writes.
  rocksdb::ColumnFamilyOptions tombstones_cf;
  tombstones_cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.allow_mmap_reads = mmap_reads;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, points_cf},
      {"meta", meta_cf},
      {"tombstones", tombstones_cf}};
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_options, dir, cfs, &st->handles, &raw);
  if (!s.ok()) return FromRocks(s, "opening RocksDB at '" + dir + "'");
  st->db.reset(raw);
  st->points = st->handles[0];
  st->meta = st->handles[1];
  st->tombstones = st->handles[2];
  st->write_options.sync = sync_writes;
  return st;
}

Storage::~Storage() {
  if (db) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    db->Close();
    db.reset();
  }
}

}  // namespace mrl::shard
