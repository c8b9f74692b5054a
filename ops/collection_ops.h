// mrlctl's verbs for one collection over the coordinator's HTTP API (docs/api.md): create,
// describe and drop it, and search it with one query vector and a chosen plan.
//
// Each verb is one request and prints a short text answer, or with `json` the coordinator's raw
// JSON reply. A refusal comes back as the coordinator's Status (its message). The parsing of
// --vector and --plan (ParseVector, PlanFields) is plain functions, so a test can drive them
// without a cluster.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "ops/http_client.h"

namespace mrl::ops {

struct CreateCollectionArgs {
  std::string collection;
  int dim = 0;                   // required
  std::string storage = "fp16";  // fp32 | fp16 | int8
  int index_dims = 16;           // the low-d HNSW prefix
  bool index_int8 = false;       // its vectors as int8 (a quarter of the RAM)
  uint32_t num_buckets = 0;      // a power of two; 0: the coordinator's default
  bool json = false;
};
// PUT /v1/collections/<name>; then prints the stored spec (GET).
Status CreateCollection(HttpClient& client, const CreateCollectionArgs& args);
// GET /v1/collections/<name>: the spec and, from GET /v1/cluster, its buckets per group.
Status DescribeCollection(HttpClient& client, const std::string& collection, bool json);
// DELETE /v1/collections/<name>. The coordinator's refusal (e.g. 405 where it does not support
// dropping a collection) comes back as its Status.
Status DropCollection(HttpClient& client, const std::string& collection, bool json);

// "0.1, 0.2,..." -> floats; InvalidArgument naming the bad element.
Result<std::vector<float>> ParseVector(const std::string& text);
// --plan's text -> the search body's plan fields:
//   "" (the collection's default), "exact", "budget:fast|balanced|exact",
//   "DS:K:DR" (adaptive: shortlist at DS dims, K candidates, rerank at DR),
//   "funnel:D1xK1,D2xK2,..." (each stage's dims and candidates).
Result<nlohmann::json> PlanFields(const std::string& plan);

struct SearchArgs {
  std::string collection;
  std::string vector;  // "0.1,0.2,..."
  int k = 10;
  std::string plan;  // PlanFields' text
  bool one_trip = false;
  int ef = 0;  // 0: the index's default
  bool with_payload = false;
  bool json = false;
};
// POST /v1/collections/<name>/search: prints the plan, coverage, each stage's time and the hits
// (rank, id, score).
Status Search(HttpClient& client, const SearchArgs& args);

}  // namespace mrl::ops
