// mrlctl eval: runs test queries through a running coordinator and reports, per plan (exact,
// the paper's adaptive plan, one-trip, the paper funnel, the three calibrated budgets), mAP@10 by
// class label and recall@10 against the exact truth, p50/p99 latency and QPS at concurrency 1;
// then the paper's plan by client concurrency over HTTP and over the binary API.
//
// mAP@k and recall@k are common/retrieval_metrics.h's (the MRL paper's AP@k: precisions at the
// hits summed, divided by k). The truth is full-d fp32 cosine over the original vectors
// (--db-embeddings, common/exact_search.h): the truth shard_bench uses (FAISS IndexFlatIP over
// the same normalised vectors), so the recall columns of mrlctl eval, e2e.md and shard.md
// compare. Plans run in a seeded shuffled order after an untimed warm-up; scoring is outside the
// timed loop.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::ops {

struct EvalArgs {
  std::string url, binary, token, collection = "embeddings";
  std::string queries, query_labels, db_embeddings, db_ids, db_labels;  // .npy paths
  // Optional .npy [n_queries, >= k] int64/uint64: each query's exact full-d top-k db ids, best
  // first; replaces the scan over --db-embeddings.
  std::string truth;
  int exact_limit = 0;  // > 0: the exact plan(s) through the coordinator on this many queries
  std::string json_out;  // non-empty: the figures, with `stamp` as provenance
  int k = 10;
  int limit = 0;      // the first `limit` queries; 0: all
  int warmup = 100;   // untimed queries of the paper's plan
  unsigned seed = 1;  // of the shuffled plan order
  std::vector<int> concurrency = {1, 8, 32};
  bool latency_only = false;       // no exact pass, calibration or recall (large collections)
  std::vector<std::string> plans;  // empty: every plan
};

Status Eval(const EvalArgs& args, const nlohmann::json& stamp);

}  // namespace mrl::ops
