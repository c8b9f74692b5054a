// The collection spec: what a collection stores (d, the nesting dims, metric, storage type,
// bucket count, the low-d indexes it keeps in RAM). One definition, one validator and one codec
// each for JSON (the HTTP API, the coordinator's collections.json, the shard's RocksDB record)
// and FlatBuffers (the wire), shared by mrl-shard and mrl-coordinator so that the two can never
// disagree on what a valid spec is.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "common/status.h"

namespace mrl {

namespace wire {
struct CollectionSpec;
struct CollectionSpecT;
}  // namespace wire

enum class Metric : uint8_t { kCosine = 0, kInnerProduct = 1, kL2 = 2 };
enum class StorageType : uint8_t { kFp32 = 0, kFp16 = 1, kInt8 = 2 };  // int8: per-vector scale
enum class IndexKind : uint8_t { kExact = 0, kHnsw = 1 };

// One in-RAM index over the first `dims` coordinates (a nesting dim of the collection).
struct IndexSpec {
  int32_t dims = 16;
  IndexKind kind = IndexKind::kHnsw;
  int32_t hnsw_m = 16;
  int32_t ef_construction = 100;
  int32_t ef_search = 64;  // default when a request gives none
  // HNSW only: vectors held as int8 with one scale per vector (max |x| / 127): a quarter of
  // fp32's RAM; scores are approximate (the shortlist's, reranked at full precision after).
  bool int8 = false;
};

struct CollectionSpec {
  std::string name;                // [A-Za-z0-9_.-]{1,64}
  int32_t dim = 0;                 // full dimension d
  std::vector<int32_t> nesting;    // strictly increasing, last == dim
  Metric metric = Metric::kCosine; // cosine = on the normalised prefix being scored
  StorageType storage = StorageType::kFp16;
  uint32_t num_buckets = 4096;     // power of two; bucket = BucketOf(id, num_buckets)
  std::vector<IndexSpec> indexes;  // low-d prefixes held in RAM (dims must be in nesting)
  uint32_t max_payload_bytes = 4096;

  bool operator==(const CollectionSpec&) const;
};
bool operator==(const IndexSpec& a, const IndexSpec& b);

inline constexpr int32_t kMaxCollectionDim = 65536;
inline constexpr uint32_t kMaxBuckets = 1u << 24;
inline constexpr uint32_t kMaxPayloadLimit = 16u << 20;

// Ok, or InvalidArgument naming the collection and the field that is wrong.
Status ValidateCollectionSpec(const CollectionSpec& spec);
bool ValidCollectionName(const std::string& name);
// "[8,16,32]": how errors print a nesting.
std::string NestingString(const std::vector<int32_t>& nesting);

const char* MetricName(Metric m);            // "cosine", "ip", "l2"
const char* StorageName(StorageType s);      // "fp32", "fp16", "int8"
const char* IndexKindName(IndexKind k);      // "exact", "hnsw"

// JSON: {"name", "dim", "nesting", "metric": "cosine"|"ip"|"l2", "storage": "fp32"|"fp16"|"int8",
// "num_buckets", "max_payload_bytes", "indexes": [{"dims", "kind": "hnsw"|"exact", "m",
// "ef_construction", "ef_search", "int8"}]} (docs/api.md).
nlohmann::json CollectionSpecToJson(const CollectionSpec& spec);
// Parses and validates. `name` overrides the document's "name" when non-empty (the HTTP API
// takes it from the path). Only "dim" is required; the defaults are nesting 8, 16, ... < dim
// then dim; cosine; fp16; 4096 buckets; 4096 payload bytes; one HNSW index (M 16,
// ef_construction 100, ef_search 64) over 16 dims (the first nesting dim when nesting does not
// start 8, 16). Records written by shards before this codec (metric/storage/kind as integers,
// "hnsw_m") parse too. Every problem is an InvalidArgument naming the field.
Result<CollectionSpec> CollectionSpecFromJson(const nlohmann::json& j, const std::string& name = "");

// FlatBuffers. FromWire validates (the buffer came from the network).
wire::CollectionSpecT CollectionSpecToWire(const CollectionSpec& spec);
Result<CollectionSpec> CollectionSpecFromWire(const wire::CollectionSpec& w);

}  // namespace mrl
