#include "coordinator/query_engine.h"

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/bucket.h"

namespace mrl::coord {
namespace {

using Clock = std::chrono::steady_clock;

// The first `d` of every `dims`-float row.
std::vector<float> Prefix(const std::vector<float>& q, int32_t dims, int32_t d) {
  const size_t n = q.size() / static_cast<size_t>(dims);
  std::vector<float> out(n * static_cast<size_t>(d));
  for (size_t i = 0; i < n; ++i) {
    std::copy_n(q.begin() + static_cast<std::ptrdiff_t>(i * dims), d,
                out.begin() + static_cast<std::ptrdiff_t>(i * d));
  }
  return out;
}

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

}  // namespace

Result<SearchOutcome> QueryEngine::Search(const ShardMap& map, const SearchSpec& spec) {
  const auto start = Clock::now();
  const Clock::time_point deadline = start + std::chrono::milliseconds(spec.deadline_ms);
  if (spec.dims <= 0 || spec.queries.empty() || spec.queries.size() % static_cast<size_t>(spec.dims)) {
    return Status::InvalidArgument("queries must hold n * dims floats");
  }
  if (spec.plan.stages.empty()) return Status::InvalidArgument("empty plan");
  for (const Stage& s : spec.plan.stages) {
    if (s.dims > spec.dims) {
      return Status::InvalidArgument("plan stage uses " + std::to_string(s.dims) +
                                     " dims but queries have " + std::to_string(spec.dims));
    }
  }
  const size_t n = spec.queries.size() / static_cast<size_t>(spec.dims);
  const bool one_trip = spec.one_trip || spec.plan.one_trip;
  auto route_or = map.RouteQueryByCost(
      spec.collection, [&](const std::string& s) { return channels_.RouteCost(s); }, rotation_++);
  if (!route_or.ok()) return route_or.status();
  const QueryRoute& route = route_or.value();
  const auto& groups = map.groups();

  SearchOutcome out;
  uint32_t uncovered = route.uncovered_buckets;
  for (uint32_t g : route.uncovered_groups) {
    for (const std::string& s : groups[g].shards) out.failed_shards.push_back(s);
  }

  // A target's replicas: the one the route chose, then the other members of its group.
  auto replicas_of = [&](const std::string& first, uint32_t group) {
    std::vector<std::string> order = {first};
    for (const std::string& s : groups[group].shards) {
      if (s != first) order.push_back(s);
    }
    return order;
  };
  auto note_failures = [&](const FanOutReply& r) {
    out.failed_shards.insert(out.failed_shards.end(), r.failed.begin(), r.failed.end());
  };

  // ---- Stage 0 (or the whole plan, one-trip) on every group, concurrently -----------------
  const Stage& first = spec.plan.stages.front();
  const int32_t qdims = one_trip ? spec.plan.stages.back().dims : first.dims;
  int32_t max_dims = 0;
  for (const Stage& s : spec.plan.stages) max_dims = std::max(max_dims, s.dims);
  const std::vector<float> q0 = Prefix(spec.queries, spec.dims, one_trip ? max_dims : qdims);

  std::vector<uint8_t> body0;
  wire::MessageType type0;
  if (one_trip) {
    wire::SearchRequestT req;
    req.collection = spec.collection;
    req.dims = max_dims;
    req.queries = q0;
    for (const Stage& s : spec.plan.stages) req.stages.emplace_back(s.dims, s.k);
    req.ef = spec.plan.ef;
    req.exact = spec.plan.exact;
    body0 = wire::PackBody(req);
    type0 = wire::MessageType::SearchRequest;
  } else {
    wire::ShortlistRequestT req;
    req.collection = spec.collection;
    req.dims = first.dims;
    req.queries = q0;
    req.k = first.k;
    req.ef = spec.plan.ef;
    req.exact = spec.plan.exact;
    body0 = wire::PackBody(req);
    type0 = wire::MessageType::ShortlistRequest;
  }
  std::vector<FanOutTarget> targets0;
  for (const auto& target : route.targets) {
    targets0.push_back({replicas_of(target.shard, target.group), type0, body0});
  }
  // With later stages to run, stage 0 stops waiting a little before the deadline: a silent
  // group must not eat the time the answering groups' candidates need to be reranked.
  const auto reserve = std::chrono::milliseconds(
      one_trip || spec.plan.stages.size() == 1 ? 0 : std::min<uint32_t>(spec.deadline_ms / 3, 50));
  std::vector<FanOutReply> answers = FanOut(channels_, std::move(targets0), deadline - reserve);

  // Merge stage 0; remember which target owns each candidate. A candidate counts only from the
  // group that owns its bucket's queries: while a bucket moves, the other group holds a copy
  // (partial before FLIP; no longer written after the move), which must not answer.
  const CollectionPlacement& placement = *map.Placement(spec.collection).value();
  std::vector<std::vector<std::vector<ScoredId>>> per_query(n);
  std::vector<std::unordered_map<uint64_t, size_t>> owner(n);
  size_t answered = 0;
  for (size_t t = 0; t < answers.size(); ++t) {
    FanOutReply& a = answers[t];
    note_failures(a);
    if (!a.shard) {
      if (IsRequestError(a.error)) return a.error;
      uncovered += route.targets[t].buckets;
      continue;
    }
    auto lists = ReadLists(type0, a.body, n);
    if (!lists.ok()) {
      return Status::Internal("shard '" + *a.shard + "' " + lists.status().message());
    }
    ++answered;
    for (size_t i = 0; i < n; ++i) {
      std::vector<ScoredId>& list = (*lists)[i];
      std::erase_if(list, [&](const ScoredId& c) {
        return placement.group_of_bucket[BucketOfId(c.id, placement.num_buckets)] !=
               route.targets[t].group;
      });
      for (const ScoredId& c : list) owner[i].emplace(c.id, t);
      per_query[i].push_back(std::move(list));
    }
  }
  if (answered == 0) {
    for (const FanOutReply& a : answers) {
      if (!a.error.ok()) return Status::Unavailable("no shard answered: " + a.error.ToString());
    }
    return Status::Unavailable("no shard of collection '" + spec.collection + "' is reachable");
  }
  std::vector<std::vector<ScoredId>> current(n);
  const int32_t keep0 = one_trip ? spec.plan.stages.back().k : first.k;
  for (size_t i = 0; i < n; ++i) {
    current[i] = MergeTopK(per_query[i], static_cast<size_t>(keep0));
    out.candidates += current[i].size();
  }
  out.shortlist_ms = Ms(start);

  // ---- Later stages: rerank each candidate on the shard that owns it ---------------------
  const auto rerank_start = Clock::now();
  if (!one_trip) {
    for (size_t s = 1; s < spec.plan.stages.size(); ++s) {
      const Stage& stage = spec.plan.stages[s];
      const std::vector<float> qs = Prefix(spec.queries, spec.dims, stage.dims);
      std::vector<FanOutTarget> targets;
      std::vector<size_t> target_of;  // FanOut target -> stage-0 target
      for (size_t t = 0; t < answers.size(); ++t) {
        if (!answers[t].shard) continue;
        wire::RerankRequestT req;
        req.collection = spec.collection;
        req.dims = stage.dims;
        req.queries = qs;
        req.k = stage.k;
        bool any = false;
        for (size_t i = 0; i < n; ++i) {
          auto list = std::make_unique<wire::IdListT>();
          for (const ScoredId& c : current[i]) {
            if (owner[i].at(c.id) == t) list->ids.push_back(c.id);
          }
          any |= !list->ids.empty();
          req.id_lists.push_back(std::move(list));
        }
        if (!any) continue;  // nothing to rerank there
        targets.push_back({replicas_of(*answers[t].shard, route.targets[t].group),
                           wire::MessageType::RerankRequest, wire::PackBody(req)});
        target_of.push_back(t);
      }
      std::vector<FanOutReply> replies = FanOut(channels_, std::move(targets), deadline);
      std::vector<std::vector<std::vector<ScoredId>>> reranked(n);
      for (size_t r = 0; r < replies.size(); ++r) {
        const size_t t = target_of[r];
        note_failures(replies[r]);
        if (!replies[r].shard) {
          if (IsRequestError(replies[r].error)) return replies[r].error;
          uncovered += route.targets[t].buckets;  // its candidates cannot be rescored
          answers[t].shard.reset();
          continue;
        }
        auto lists = ReadLists(wire::MessageType::RerankRequest, replies[r].body, n);
        if (!lists.ok()) {
          return Status::Internal("shard '" + *replies[r].shard + "' " + lists.status().message());
        }
        for (size_t i = 0; i < n; ++i) reranked[i].push_back(std::move((*lists)[i]));
      }
      for (size_t i = 0; i < n; ++i) {
        current[i] = MergeTopK(reranked[i], static_cast<size_t>(stage.k));
      }
    }
  }
  out.rerank_ms = Ms(rerank_start);
  out.hits = std::move(current);
  out.coverage = route.total_buckets == 0
                     ? 1.0
                     : 1.0 - static_cast<double>(std::min(uncovered, route.total_buckets)) /
                                 route.total_buckets;
  return out;
}

}  // namespace mrl::coord
