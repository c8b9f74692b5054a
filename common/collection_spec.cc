#include "common/collection_spec.h"

#include <algorithm>
#include <cctype>
#include <unordered_set>

#include <nlohmann/json.hpp>

namespace mrl {
namespace {

using json = nlohmann::json;

// A field that is a name ("cosine") or, in records written before this codec, its integer code.
template <typename E>
Result<E> EnumField(const json& j, const char* key, E fallback, const char* const* names, int count,
                    const char* expected) {
  if (!j.contains(key)) return fallback;
  const json& v = j.at(key);
  if (v.is_number_integer()) {
    const int code = v.get<int>();
    if (code < 0 || code >= count) return Status::InvalidArgument(std::string("'") + key + "' must be " + expected);
    return static_cast<E>(code);
  }
  if (!v.is_string()) return Status::InvalidArgument(std::string("'") + key + "' must be " + expected);
  const std::string s = v.get<std::string>();
  for (int i = 0; i < count; ++i) {
    if (s == names[i]) return static_cast<E>(i);
  }
  return Status::InvalidArgument(std::string("'") + key + "' must be " + expected);
}

constexpr const char* kMetricNames[] = {"cosine", "ip", "l2"};
constexpr const char* kStorageNames[] = {"fp32", "fp16", "int8"};
constexpr const char* kKindNames[] = {"exact", "hnsw"};

}  // namespace

bool operator==(const IndexSpec& a, const IndexSpec& b) {
  return a.dims == b.dims && a.kind == b.kind && a.hnsw_m == b.hnsw_m &&
         a.ef_construction == b.ef_construction && a.ef_search == b.ef_search &&
         a.int8 == b.int8;
}

bool CollectionSpec::operator==(const CollectionSpec& o) const {
  return name == o.name && dim == o.dim && nesting == o.nesting && metric == o.metric &&
         storage == o.storage && num_buckets == o.num_buckets &&
         max_payload_bytes == o.max_payload_bytes && indexes == o.indexes;
}

const char* MetricName(Metric m) {
  const auto i = static_cast<size_t>(m);
  return i < 3 ? kMetricNames[i] : "unknown";
}
const char* StorageName(StorageType s) {
  const auto i = static_cast<size_t>(s);
  return i < 3 ? kStorageNames[i] : "unknown";
}
const char* IndexKindName(IndexKind k) {
  const auto i = static_cast<size_t>(k);
  return i < 2 ? kKindNames[i] : "unknown";
}

std::string NestingString(const std::vector<int32_t>& nesting) {
  std::string s = "[";
  for (size_t i = 0; i < nesting.size(); ++i) {
    if (i) s += ",";
    s += std::to_string(nesting[i]);
  }
  return s + "]";
}

bool ValidCollectionName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  for (char c : name) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-')) {
      return false;
    }
  }
  return true;
}

Status ValidateCollectionSpec(const CollectionSpec& s) {
  auto bad = [&](const std::string& m) {
    return Status::InvalidArgument("collection '" + s.name + "': " + m);
  };
  if (!ValidCollectionName(s.name)) {
    return Status::InvalidArgument("collection name '" + s.name +
                                   "' must match [A-Za-z0-9_.-]{1,64}");
  }
  if (s.dim < 1 || s.dim > kMaxCollectionDim) return bad("dim must be in [1, 65536]");
  if (s.nesting.empty() || s.nesting.back() != s.dim) {
    return bad("nesting must be non-empty and end with dim " + std::to_string(s.dim));
  }
  for (size_t i = 0; i < s.nesting.size(); ++i) {
    if (s.nesting[i] < 1 || (i > 0 && s.nesting[i] <= s.nesting[i - 1])) {
      return bad("nesting dims must be positive and strictly increasing: " +
                 NestingString(s.nesting));
    }
  }
  if (static_cast<uint8_t>(s.metric) > 2) return bad("unknown metric");
  if (static_cast<uint8_t>(s.storage) > 2) return bad("unknown storage type");
  if (s.num_buckets == 0 || s.num_buckets > kMaxBuckets ||
      (s.num_buckets & (s.num_buckets - 1)) != 0) {
    return bad("num_buckets must be a power of two in [1, 2^24]");
  }
  if (s.max_payload_bytes > kMaxPayloadLimit) return bad("max_payload_bytes must be <= 16 MiB");
  std::unordered_set<int32_t> seen;
  for (const auto& ix : s.indexes) {
    if (!std::binary_search(s.nesting.begin(), s.nesting.end(), ix.dims)) {
      return bad("index dims " + std::to_string(ix.dims) + " is not a nesting dim " +
                 NestingString(s.nesting));
    }
    if (!seen.insert(ix.dims).second) {
      return bad("two indexes over " + std::to_string(ix.dims) + " dims");
    }
    if (static_cast<uint8_t>(ix.kind) > 1) return bad("unknown index kind");
    if (ix.int8 && ix.kind != IndexKind::kHnsw) return bad("int8 is for HNSW indexes only");
    if (ix.kind == IndexKind::kHnsw &&
        (ix.hnsw_m < 2 || ix.hnsw_m > 256 || ix.ef_construction < 1 || ix.ef_construction > 10000 ||
         ix.ef_search < 1 || ix.ef_search > 100000)) {
      return bad(
          "hnsw parameters out of range (M in [2,256], ef_construction in [1,10000], "
          "ef_search in [1,100000])");
    }
  }
  return Status::Ok();
}

json CollectionSpecToJson(const CollectionSpec& s) {
  json idx = json::array();
  for (const auto& i : s.indexes) {
    json one = {{"dims", i.dims},
                {"kind", IndexKindName(i.kind)},
                {"m", i.hnsw_m},
                {"ef_construction", i.ef_construction},
                {"ef_search", i.ef_search}};
    if (i.int8) one["int8"] = true;  // absent when false: records read by older shards match
    idx.push_back(std::move(one));
  }
  return {{"name", s.name},
          {"dim", s.dim},
          {"nesting", s.nesting},
          {"metric", MetricName(s.metric)},
          {"storage", StorageName(s.storage)},
          {"num_buckets", s.num_buckets},
          {"indexes", idx},
          {"max_payload_bytes", s.max_payload_bytes}};
}

Result<CollectionSpec> CollectionSpecFromJson(const json& j, const std::string& name) {
  CollectionSpec s;
  try {
    if (!j.is_object()) return Status::InvalidArgument("a collection spec must be a JSON object");
    s.name = !name.empty() ? name : j.value("name", std::string());
    if (!j.contains("dim") || !j["dim"].is_number_integer()) {
      return Status::InvalidArgument("'dim' (integer) is required");
    }
    s.dim = j["dim"].get<int32_t>();
    if (j.contains("nesting")) {
      s.nesting = j["nesting"].get<std::vector<int32_t>>();
    } else {
      for (int32_t m = 8; m < s.dim; m *= 2) s.nesting.push_back(m);
      s.nesting.push_back(s.dim);
    }
    auto metric = EnumField(j, "metric", Metric::kCosine, kMetricNames, 3, "cosine, ip or l2");
    if (!metric.ok()) return metric.status();
    s.metric = metric.value();
    auto storage = EnumField(j, "storage", StorageType::kFp16, kStorageNames, 3, "fp32, fp16 or int8");
    if (!storage.ok()) return storage.status();
    s.storage = storage.value();
    s.num_buckets = j.value("num_buckets", 4096u);
    s.max_payload_bytes = j.value("max_payload_bytes", 4096u);
    const int32_t default_dims =
        s.nesting.size() > 1 && s.nesting.front() == 8 ? s.nesting[1] : s.nesting.front();
    const json idx = j.contains("indexes") ? j.at("indexes") : json::array({json{{"dims", default_dims}}});
    if (!idx.is_array()) return Status::InvalidArgument("'indexes' must be an array");
    for (const json& i : idx) {
      IndexSpec spec;
      spec.dims = i.at("dims").get<int32_t>();
      auto kind = EnumField(i, "kind", IndexKind::kHnsw, kKindNames, 2, "hnsw or exact");
      if (!kind.ok()) return Status::InvalidArgument("index " + kind.status().message());
      spec.kind = kind.value();
      spec.hnsw_m = i.contains("m") ? i.at("m").get<int32_t>() : i.value("hnsw_m", 16);
      spec.ef_construction = i.value("ef_construction", 100);
      spec.ef_search = i.value("ef_search", 64);
      spec.int8 = i.value("int8", false);
      s.indexes.push_back(spec);
    }
  } catch (const json::exception& e) {
    return Status::InvalidArgument(std::string("bad collection spec: ") + e.what());
  }
  MRL_RETURN_IF_ERROR(ValidateCollectionSpec(s));
  return s;
}

}  // namespace mrl
