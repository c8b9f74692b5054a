// Runs a query plan across the cluster (DESIGN.md "Query path"): Shortlist(q[:Ds], K) to one
// healthy replica of every group concurrently -> global top-K merge -> each later stage's
// Rerank(q[:D], ids) sent to the shards that own the candidates -> merge -> top-k. Or, in
// one-trip mode, Search (shortlist + rerank on each shard) to every group and one merge.
// Each stage's calls go out at once and complete through callbacks (coordinator/fan_out.h, no
// thread per call); a failed call moves to the next healthy replica of the same group; with
// none left, or at the deadline, the answer is partial (what arrived is kept) and says which
// fraction of buckets it covers. Every call carries what is left of the query's deadline.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"
#include "coordinator/fan_out.h"

namespace mrl::coord {

struct SearchSpec {
  std::string collection;
  int32_t dims = 0;            // floats per query in `queries` (>= the plan's largest dims)
  std::vector<float> queries;  // n * dims, row-major
  QueryPlan plan;              // the last stage's k is the answer size
  bool one_trip = false;
  uint32_t deadline_ms = 1000;
};

struct SearchOutcome {
  std::vector<std::vector<ScoredId>> hits;  // per query, best first
  double coverage = 1.0;                    // fraction of the collection's buckets answered
  std::vector<std::string> failed_shards;   // shards whose calls failed (even if retried)
  double shortlist_ms = 0;                  // stage 0 fan-out
  double rerank_ms = 0;                     // later stages
  uint64_t candidates = 0;                  // stage-0 candidates merged, summed over queries
};

class QueryEngine {
 public:
  explicit QueryEngine(ShardChannels& channels) : channels_(channels) {}

  // Fails only for a bad request (what any shard rejects as InvalidArgument / NotFound /
  // OutOfRange), when no shard at all answered, or when the deadline passed.
  Result<SearchOutcome> Search(const ShardMap& map, const SearchSpec& spec);

 private:
  ShardChannels& channels_;
  std::atomic<uint64_t> rotation_{0};
};

}  // namespace mrl::coord
