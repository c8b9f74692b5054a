// Calibration: which plan serves each named budget (fast / balanced / exact) of a collection.
// The candidate plans run on sample queries that are stored points of the collection; each
// plan's recall@k is measured against the exact plan's answer, leaving the query's own point out
// of both lists (otherwise every plan gets credit for finding the query itself), and its latency
// per query is timed. PickBudgets then takes the fastest plan reaching each budget's target.
//
// The Calibrator knows no sockets: it runs plans through a search callback (the coordinator's
// query engine in the daemon, an in-memory search in the tests).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"
#include "coordinator/query_plan.h"

namespace mrl::coord {

class Calibrator {
 public:
  // Runs `plan` on every sample query; per query, best first.
  using PlanSearch =
      std::function<Result<std::vector<std::vector<ScoredId>>>(const QueryPlan& plan)>;

  // REQUIRES: k >= 1.
  Calibrator(const CollectionSpec& spec, int32_t k) : spec_(spec), k_(k) {}

  // Measures every candidate plan (CalibrationCandidates) on `queries` sample queries; each
  // point's plan serves k. Fails with the search's error, or InvalidArgument for no queries.
  Result<std::vector<CalibrationPoint>> Measure(int32_t queries, const PlanSearch& search) const;

 private:
  const CollectionSpec spec_;
  const int32_t k_;
};

}  // namespace mrl::coord
