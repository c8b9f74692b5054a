#include "coordinator/query_engine.h"

#include <atomic>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/bucket.h"

namespace mrl::coord {
namespace {

using Clock = std::chrono::steady_clock;

// Errors that say the request itself is wrong: every replica would say the same.
bool IsRequestError(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument:
    case Status::Code::kNotFound:
    case Status::Code::kOutOfRange:
    case Status::Code::kFailedPrecondition:
    case Status::Code::kAborted:  // stale shard-map epoch: the coordinator refreshes and retries
      return true;
    default:
      return false;
  }
}

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

std::vector<ScoredId> FromWire(const wire::CandidateListT& list) {
  std::vector<ScoredId> out;
  out.reserve(list.candidates.size());
  for (const wire::Candidate& c : list.candidates) out.push_back({c.id(), c.score()});
  return out;
}

struct Deadline {
  Clock::time_point at;
  // Milliseconds left (at least 1 so a call is still stamped; 0 means it has passed).
  uint32_t Left() const {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(at - Clock::now()).count();
    return ms <= 0 ? 0 : static_cast<uint32_t>(ms);
  }
};

double Ms(Clock::time_point since) {
  return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

}  // namespace

Result<SearchOutcome> QueryEngine::Search(const ShardMap& map, const SearchSpec& spec) {
  const auto start = Clock::now();
  Deadline deadline{start + std::chrono::milliseconds(spec.deadline_ms)};
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
  auto route_or = map.RouteQuery(
      spec.collection, [&](const std::string& s) { return pool_.Healthy(s); }, rotation_++);
  if (!route_or.ok()) return route_or.status();
  const QueryRoute& route = route_or.value();
  const auto& groups = map.groups();

  SearchOutcome out;
  uint32_t uncovered = route.uncovered_buckets;
  for (uint32_t g : route.uncovered_groups) {
    for (const std::string& s : groups[g].shards) out.failed_shards.push_back(s);
  }

  // Calls `make_call(client)` on `shard`; on a shard failure, once on each other healthy
  // member of `group`. Returns the shard that answered, or nullopt (with first error in *err).
  // Runs on several threads at once (one per target): `out.failed_shards` is shared, so it is
  // appended under `failed_mu` (two shards refusing a stale epoch together used to race here).
  std::mutex failed_mu;
  auto call_with_retry = [&](auto&& issue, std::string shard, uint32_t group, auto* reply,
                             Status* err) -> std::optional<std::string> {
    std::vector<std::string> order = {shard};
    for (const std::string& s : groups[group].shards) {
      if (s != shard) order.push_back(s);
    }
    for (size_t i = 0; i < order.size(); ++i) {
      if (i > 0 && !pool_.Healthy(order[i])) continue;
      if (deadline.Left() == 0) {
        *err = Status::DeadlineExceeded("query deadline passed");
        return std::nullopt;
      }
      auto r = issue(pool_.Client(order[i])).get();
      pool_.Report(order[i], r.status());
      if (r.ok()) {
        *reply = std::move(r).value();
        return order[i];
      }
      if (err->ok()) *err = r.status();
      {
        std::lock_guard<std::mutex> lock(failed_mu);
        out.failed_shards.push_back(order[i]);
      }
      if (IsRequestError(r.status())) return std::nullopt;
    }
    return std::nullopt;
  };

  // ---- Stage 0 (or the whole plan, one-trip) on every group, concurrently -----------------
  const Stage& first = spec.plan.stages.front();
  const int32_t qdims = spec.one_trip ? spec.plan.stages.back().dims : first.dims;
  int32_t max_dims = 0;
  for (const Stage& s : spec.plan.stages) max_dims = std::max(max_dims, s.dims);
  const std::vector<float> q0 = Prefix(spec.queries, spec.dims, spec.one_trip ? max_dims : qdims);

  struct Answer {
    std::optional<std::string> shard;
    std::vector<std::unique_ptr<wire::CandidateListT>> lists;
    Status error;
  };
  std::vector<Answer> answers(route.targets.size());
  {
    std::vector<std::future<void>> work;
    for (size_t t = 0; t < route.targets.size(); ++t) {
      work.push_back(std::async(std::launch::async, [&, t] {
        const auto& target = route.targets[t];
        Answer& a = answers[t];
        if (spec.one_trip) {
          wire::SearchRequestT req;
          req.collection = spec.collection;
          req.dims = max_dims;
          req.queries = q0;
          for (const Stage& s : spec.plan.stages) req.stages.emplace_back(s.dims, s.k);
          req.ef = spec.plan.ef;
          req.exact = spec.plan.exact;
          wire::SearchResponseT resp;
          a.shard = call_with_retry([&](rpc::RpcClient* c) { return c->CallFuture(req, deadline.Left()); },
                                    target.shard, target.group, &resp, &a.error);
          if (a.shard) a.lists = std::move(resp.results);
        } else {
          wire::ShortlistRequestT req;
          req.collection = spec.collection;
          req.dims = first.dims;
          req.queries = q0;
          req.k = first.k;
          req.ef = spec.plan.ef;
          req.exact = spec.plan.exact;
          wire::ShortlistResponseT resp;
          a.shard = call_with_retry([&](rpc::RpcClient* c) { return c->CallFuture(req, deadline.Left()); },
                                    target.shard, target.group, &resp, &a.error);
          if (a.shard) a.lists = std::move(resp.results);
        }
      }));
    }
    for (auto& w : work) w.get();
  }
  size_t answered = 0;
  for (size_t t = 0; t < answers.size(); ++t) {
    const Answer& a = answers[t];
    if (!a.shard) {
      if (IsRequestError(a.error)) return a.error;
      uncovered += route.targets[t].buckets;
      continue;
    }
    if (a.lists.size() != n) {
      return Status::Internal("shard '" + *a.shard + "' answered " + std::to_string(a.lists.size()) +
                              " result lists for " + std::to_string(n) + " queries");
    }
    ++answered;
  }
  if (answered == 0) {
    for (const Answer& a : answers) {
      if (!a.error.ok()) return Status::Unavailable("no shard answered: " + a.error.ToString());
    }
    return Status::Unavailable("no shard of collection '" + spec.collection + "' is reachable");
  }

  // Merge stage 0; remember which target owns each candidate. A candidate counts only from the
  // group that owns its bucket's queries: while a bucket moves, the other group holds a copy
  // (partial before FLIP; no longer written after the move), which must not answer.
  const CollectionPlacement& placement = *map.Placement(spec.collection).value();
  std::vector<std::vector<ScoredId>> current(n);
  std::vector<std::unordered_map<uint64_t, size_t>> owner(n);
  const int32_t keep0 = spec.one_trip ? spec.plan.stages.back().k : first.k;
  for (size_t i = 0; i < n; ++i) {
    std::vector<std::vector<ScoredId>> lists;
    for (size_t t = 0; t < answers.size(); ++t) {
      if (!answers[t].shard || !answers[t].lists[i]) continue;
      std::vector<ScoredId> list = FromWire(*answers[t].lists[i]);
      std::erase_if(list, [&](const ScoredId& c) {
        return placement.group_of_bucket[BucketOfId(c.id, placement.num_buckets)] !=
               route.targets[t].group;
      });
      for (const ScoredId& c : list) owner[i].emplace(c.id, t);
      lists.push_back(std::move(list));
    }
    current[i] = MergeTopK(lists, static_cast<size_t>(keep0));
    out.candidates += current[i].size();
  }
  out.shortlist_ms = Ms(start);

  // ---- Later stages: rerank each candidate on the shard that owns it ---------------------
  const auto rerank_start = Clock::now();
  if (!spec.one_trip) {
    for (size_t s = 1; s < spec.plan.stages.size(); ++s) {
      const Stage& stage = spec.plan.stages[s];
      const std::vector<float> qs = Prefix(spec.queries, spec.dims, stage.dims);
      std::vector<std::vector<ScoredId>> next(n);
      std::vector<std::vector<std::vector<ScoredId>>> per_query(n);
      std::vector<std::future<void>> work;
      std::vector<Status> errors(answers.size());
      std::vector<wire::RerankResponseT> replies(answers.size());
      std::vector<uint8_t> ok(answers.size(), 0);  // not vector<bool>: tasks set their own entry concurrently
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
        if (!any) {
          ok[t] = true;  // nothing to rerank there: an empty answer
          replies[t].results.resize(n);
          continue;
        }
        work.push_back(std::async(std::launch::async, [&, t, req = std::move(req)]() mutable {
          auto shard = call_with_retry([&](rpc::RpcClient* c) { return c->CallFuture(req, deadline.Left()); },
                                       *answers[t].shard, route.targets[t].group, &replies[t], &errors[t]);
          ok[t] = shard.has_value();
        }));
      }
      for (auto& w : work) w.get();
      for (size_t t = 0; t < answers.size(); ++t) {
        if (!answers[t].shard) continue;
        if (!ok[t]) {
          if (IsRequestError(errors[t])) return errors[t];
          uncovered += route.targets[t].buckets;  // its candidates cannot be rescored
          answers[t].shard.reset();
          continue;
        }
        for (size_t i = 0; i < n && i < replies[t].results.size(); ++i) {
          if (replies[t].results[i]) per_query[i].push_back(FromWire(*replies[t].results[i]));
        }
      }
      for (size_t i = 0; i < n; ++i) current[i] = MergeTopK(per_query[i], static_cast<size_t>(stage.k));
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
