// common/collection_spec.h: the one validator and the JSON / FlatBuffers codecs that mrl-shard
// and mrl-coordinator share.
#include "common/collection_spec.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "schemas/shard_generated.h"

namespace mrl {
namespace {

using json = nlohmann::json;

CollectionSpec Sample() {
  CollectionSpec s;
  s.name = "emb";
  s.dim = 64;
  s.nesting = {8, 16, 32, 64};
  s.metric = Metric::kL2;
  s.storage = StorageType::kInt8;
  s.num_buckets = 256;
  s.max_payload_bytes = 100;
  s.indexes = {IndexSpec{16, IndexKind::kHnsw, 12, 80, 40, /*int8=*/true},
               IndexSpec{32, IndexKind::kExact, 16, 100, 64}};
  return s;
}

// Sample() as a record from before int8 indexes says it (no int8 field: false).
CollectionSpec Legacy() {
  CollectionSpec s = Sample();
  s.indexes[0].int8 = false;
  return s;
}

TEST(CollectionSpec, JsonRoundTripKeepsEveryField) {
  const CollectionSpec s = Sample();
  const json j = CollectionSpecToJson(s);
  EXPECT_EQ(j.at("metric"), "l2");
  EXPECT_EQ(j.at("storage"), "int8");
  EXPECT_EQ(j.at("indexes")[1].at("kind"), "exact");
  EXPECT_EQ(j.at("indexes")[0].at("m"), 12);
  EXPECT_EQ(j.at("indexes")[0].at("int8"), true);
  EXPECT_FALSE(j.at("indexes")[1].contains("int8"));  // absent when false
  auto back = CollectionSpecFromJson(j);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back.value() == s);
  CollectionSpec other = s;
  other.indexes[0].ef_search = 41;
  EXPECT_FALSE(other == s);
  other = s;
  other.indexes[0].int8 = false;
  EXPECT_FALSE(other == s);
}

TEST(CollectionSpec, JsonDefaultsAreTheDocumentedOnes) {
  auto s = CollectionSpecFromJson(json{{"dim", 2048}}, "c");
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s.value().name, "c");
  EXPECT_EQ(s.value().nesting, (std::vector<int32_t>{8, 16, 32, 64, 128, 256, 512, 1024, 2048}));
  EXPECT_EQ(s.value().metric, Metric::kCosine);
  EXPECT_EQ(s.value().storage, StorageType::kFp16);
  EXPECT_EQ(s.value().num_buckets, 4096u);
  EXPECT_EQ(s.value().max_payload_bytes, 4096u);
  ASSERT_EQ(s.value().indexes.size(), 1u);
  EXPECT_EQ(s.value().indexes[0].dims, 16);
  EXPECT_EQ(s.value().indexes[0].kind, IndexKind::kHnsw);
  EXPECT_EQ(s.value().indexes[0].hnsw_m, 16);
  EXPECT_EQ(s.value().indexes[0].ef_construction, 100);
  EXPECT_EQ(s.value().indexes[0].ef_search, 64);
  // A nesting that does not start 8, 16: the default index is over its first dim.
  auto t = CollectionSpecFromJson(json{{"dim", 12}, {"nesting", {4, 12}}}, "c");
  ASSERT_TRUE(t.ok()) << t.status().ToString();
  EXPECT_EQ(t.value().indexes.at(0).dims, 4);
}

TEST(CollectionSpec, RecordsWrittenBeforeTheSharedCodecStillParse) {
  // The shard's RocksDB record as storage.cc wrote it before this codec existed.
  const json legacy = json::parse(R"({"id":3,"name":"emb","dim":64,"nesting":[8,16,32,64],
      "metric":2,"storage":2,"num_buckets":256,"max_payload_bytes":100,
      "indexes":[{"dims":16,"kind":1,"hnsw_m":12,"ef_construction":80,"ef_search":40},
                 {"dims":32,"kind":0,"hnsw_m":16,"ef_construction":100,"ef_search":64}]})");
  auto s = CollectionSpecFromJson(legacy);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(s.value() == Legacy());
}

TEST(CollectionSpec, BadSpecsGetAnInvalidArgumentNamingTheField) {
  struct Case {
    json j;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {json{{"nesting", {8, 16}}}, "'dim' (integer) is required"},
      {json{{"dim", 16}, {"metric", "hamming"}}, "'metric' must be cosine, ip or l2"},
      {json{{"dim", 16}, {"metric", 7}}, "'metric' must be cosine, ip or l2"},
      {json{{"dim", 16}, {"storage", "bf16"}}, "'storage' must be fp32, fp16 or int8"},
      {json{{"dim", 16}, {"indexes", {{{"dims", 8}, {"kind", "ivf"}}}}}, "'kind' must be hnsw or exact"},
      {json{{"dim", 16}, {"nesting", {8, 8, 16}}}, "strictly increasing"},
      {json{{"dim", 16}, {"nesting", {8, 12}}}, "end with dim 16"},
      {json{{"dim", 16}, {"num_buckets", 100}}, "power of two"},
      {json{{"dim", 16}, {"indexes", {{{"dims", 12}}}}}, "index dims 12 is not a nesting dim [8,16]"},
      {json{{"dim", 16}, {"indexes", {{{"dims", 8}}, {{"dims", 8}}}}}, "two indexes over 8 dims"},
      {json{{"dim", 16}, {"indexes", {{{"dims", 8}, {"m", 1}}}}}, "hnsw parameters out of range"},
      {json{{"dim", 16}, {"indexes", {{{"dims", 8}, {"kind", "exact"}, {"int8", true}}}}},
       "int8 is for HNSW indexes only"},
      {json{{"dim", 0}}, "dim must be in [1, 65536]"},
      {json{{"dim", "16"}}, "'dim' (integer) is required"},
      {json::array({1, 2}), "must be a JSON object"},
  };
  for (const Case& c : cases) {
    auto s = CollectionSpecFromJson(c.j, "c");
    ASSERT_FALSE(s.ok()) << c.j.dump();
    EXPECT_EQ(s.status().code(), Status::Code::kInvalidArgument) << c.j.dump();
    EXPECT_NE(s.status().message().find(c.needle), std::string::npos)
        << c.j.dump() << " -> " << s.status().message();
  }
  auto bad_name = CollectionSpecFromJson(json{{"dim", 16}}, "no spaces");
  ASSERT_FALSE(bad_name.ok());
  EXPECT_NE(bad_name.status().message().find("must match [A-Za-z0-9_.-]{1,64}"), std::string::npos);
}

TEST(CollectionSpec, WireRoundTripAndTheWireIsValidated) {
  const CollectionSpec s = Sample();
  // Through a real buffer: ToWire, Pack, then the table as the service reads it.
  auto decode = [](const wire::CollectionSpecT& t) {
    flatbuffers::FlatBufferBuilder fbb;
    fbb.Finish(wire::CollectionSpec::Pack(fbb, &t));
    return CollectionSpecFromWire(*flatbuffers::GetRoot<wire::CollectionSpec>(fbb.GetBufferPointer()));
  };
  auto back = decode(CollectionSpecToWire(s));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back.value() == s);

  wire::CollectionSpecT broken = CollectionSpecToWire(s);
  broken.nesting = {8, 32, 16, 64};
  auto r = decode(broken);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Status::Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("strictly increasing"), std::string::npos);
}

}  // namespace
}  // namespace mrl
