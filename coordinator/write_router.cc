#include "coordinator/write_router.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "common/protocol.h"
#include "coordinator/in_sync.h"

namespace mrl::coord {

namespace {

// Sends each group's request to its in-sync and filling members at once, then waits for all.
// Every one of them must have the write; a member whose call failed (IsMemberFailure) is taken
// out of the in-sync set (take_out) before the write is acknowledged without it; an answer that
// refuses the write (every member would give it alike) is the write's error. Retrying a failed
// write is safe: versioned upserts and deletes are idempotent.
template <typename Request>
Status SendWrites(ShardPool& pool, const ClusterSnapshot& snap,
                  const std::map<uint32_t, Request>& by_group, uint32_t deadline_ms,
                  const WriteRouterOptions& opt) {
  for (const auto& [g, req] : by_group) {
    MRL_RETURN_IF_ERROR(CheckInSyncSize(g, snap.map.groups()[g], opt.min_in_sync));
  }
  struct Call {
    uint32_t group;
    std::string shard;
    bool filling;
    std::future<Result<typename wire::ResponseOf<Request>::type>> f;
    std::string error;  // its failure, when it failed
  };
  std::vector<Call> calls;
  for (const auto& [g, req] : by_group) {
    for (const std::string& s : snap.map.groups()[g].shards) {
      calls.push_back({g, s, false, pool.Client(s)->CallFuture(req, deadline_ms), {}});
    }
    for (const std::string& s : snap.map.groups()[g].filling) {
      calls.push_back({g, s, true, pool.Client(s)->CallFuture(req, deadline_ms), {}});
    }
  }
  std::map<uint32_t, int> acks;
  std::vector<const Call*> failed;  // members that did not get the write
  Status first_error;
  for (Call& c : calls) {
    auto r = c.f.get();
    pool.Report(c.shard, r.status());
    if (r.ok()) {
      if (!c.filling) ++acks[c.group];
      continue;
    }
    if (IsMemberFailure(r.status()) && opt.take_out) {
      c.error = r.status().ToString();
      failed.push_back(&c);
      continue;
    }
    if (first_error.ok()) {
      first_error = r.status().WithContext(
          "shard '" + c.shard + "'" +
          (c.filling ? " (a replica being filled in group " + std::to_string(c.group) +
                           " must take every write)"
                     : ""));
    }
  }
  if (!first_error.ok()) return first_error;
  std::map<uint32_t, int> taken_out;
  for (const Call* c : failed) {
    if (!c->filling && acks[c->group] == 0) continue;  // no in-sync member has it: fail below
    const Status st = opt.take_out(c->group, c->shard, "a write to it failed");
    if (!st.ok()) {
      return Status::Unavailable("shard '" + c->shard + "' of group " + std::to_string(c->group) +
                                 " did not acknowledge the write, and it could not be taken out of "
                                 "the group's in-sync set (" + st.ToString() +
                                 "); retry: the leader takes a member down for long out of the set");
    }
    if (!c->filling) ++taken_out[c->group];
  }
  for (const auto& [g, req] : by_group) {
    const int in_sync = static_cast<int>(snap.map.groups()[g].shards.size());
    if (acks[g] == 0 || acks[g] + taken_out[g] < in_sync) {
      std::string why;
      for (const Call* c : failed) {
        if (c->group == g && !c->filling) why += (why.empty() ? "" : "; ") + c->shard + ": " + c->error;
      }
      return Status::Unavailable("no in-sync replica of group " + std::to_string(g) +
                                 " acknowledged the write (" + why + "); retry");
    }
    if (acks[g] < opt.min_in_sync) {
      return Status::Unavailable(
          "only " + std::to_string(acks[g]) + " in-sync replica(s) of group " + std::to_string(g) +
          " acknowledged the write, fewer than --min-in-sync " + std::to_string(opt.min_in_sync) +
          ": not acknowledged (the others are out of the in-sync set until they catch up)");
    }
  }
  return Status::Ok();
}

}  // namespace

Status WriteRouter::CheckCount(size_t n, const char* what) const {
  if (static_cast<int64_t>(n) > opt_.max_points) {
    return Status::InvalidArgument("at most " + std::to_string(opt_.max_points) + " " + what +
                                   " per request");
  }
  return Status::Ok();
}

uint64_t WriteRouter::NextVersions(size_t n) {
  const uint64_t now_us = static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count());
  uint64_t last = last_version_.load();
  uint64_t first = 0;
  do {
    first = std::max(now_us, last + 1);
  } while (!last_version_.compare_exchange_weak(last, first + n - 1));
  return first;
}

Status WriteRouter::Upsert(const ClusterSnapshot& snap, const std::string& collection,
                           const std::vector<PointIn>& points, uint32_t deadline_ms) {
  auto spec = snap.Spec(collection);
  if (!spec.ok()) return spec.status();
  const int32_t dim = spec.value()->dim;
  if (points.empty()) return Status::Ok();
  MRL_RETURN_IF_ERROR(CheckCount(points.size(), "points"));
  auto placement = snap.map.Placement(collection);
  if (!placement.ok()) return placement.status();
  std::vector<uint64_t> ids;
  ids.reserve(points.size());
  for (const PointIn& p : points) {
    if (static_cast<int32_t>(p.vector.size()) != dim) {
      return Status::InvalidArgument("point " + std::to_string(p.id) + " has " +
                                     std::to_string(p.vector.size()) + " dims, collection has " +
                                     std::to_string(dim));
    }
    ids.push_back(p.id);
  }
  const uint64_t first_version = NextVersions(points.size());
  std::map<uint32_t, wire::UpsertRequestT> by_group;
  for (const auto& [g, positions] : GroupByWriteSet(*placement.value(), ids)) {
    wire::UpsertRequestT& req = by_group[g];
    req.collection = collection;
    req.dims = dim;
    for (size_t i : positions) {
      const PointIn& p = points[i];
      req.ids.push_back(p.id);
      req.versions.push_back(first_version + i);
      req.vectors.insert(req.vectors.end(), p.vector.begin(), p.vector.end());
      auto payload = std::make_unique<wire::PayloadT>();
      payload->data.assign(p.payload.begin(), p.payload.end());
      req.payloads.push_back(std::move(payload));
    }
  }
  // A replica that refused writes for its disk moments ago would refuse this batch too: refuse
  // it whole, before any replica applies part of it.
  for (const auto& [g, req] : by_group) {
    for (const std::string& s : snap.map.groups()[g].WriteShards()) {
      const Status refusal = pool_.WriteRefusal(s);
      if (!refusal.ok()) {
        return refusal.WithContext("shard '" + s + "' (nothing of this batch was written)");
      }
    }
  }
  return SendWrites(pool_, snap, by_group, deadline_ms, opt_);
}

Status WriteRouter::Delete(const ClusterSnapshot& snap, const std::string& collection,
                           const std::vector<uint64_t>& ids, uint32_t deadline_ms) {
  auto placement = snap.map.Placement(collection);
  if (!placement.ok()) return placement.status();
  MRL_RETURN_IF_ERROR(CheckCount(ids.size(), "ids"));
  const uint64_t first_version = NextVersions(ids.size());
  std::map<uint32_t, wire::DeleteRequestT> by_group;
  for (const auto& [g, positions] : GroupByWriteSet(*placement.value(), ids)) {
    wire::DeleteRequestT& req = by_group[g];
    req.collection = collection;
    for (size_t i : positions) {
      req.ids.push_back(ids[i]);
      req.versions.push_back(first_version + i);
    }
  }
  return SendWrites(pool_, snap, by_group, deadline_ms, opt_);
}

Result<std::vector<std::optional<PointIn>>> WriteRouter::Get(const ClusterSnapshot& snap,
                                                             const std::string& collection,
                                                             const std::vector<uint64_t>& ids,
                                                             bool with_vector,
                                                             uint32_t deadline_ms) {
  auto placement = snap.map.Placement(collection);
  if (!placement.ok()) return placement.status();
  MRL_RETURN_IF_ERROR(CheckCount(ids.size(), "ids"));
  std::vector<std::optional<PointIn>> out(ids.size());
  for (const auto& [g, pos] : GroupByReplicaSet(*placement.value(), ids)) {
    wire::GetRequestT req;
    req.collection = collection;
    req.with_vector = with_vector;
    for (size_t i : pos) req.ids.push_back(ids[i]);
    Status last = Status::Unavailable("no healthy replica");
    bool done = false;
    for (const std::string& s : snap.map.groups()[g].shards) {
      if (!pool_.Healthy(s)) continue;
      auto r = pool_.Client(s)->Call(req, deadline_ms);
      pool_.Report(s, r.status());
      if (!r.ok()) {
        last = r.status();
        continue;
      }
      for (size_t j = 0; j < pos.size() && j < r->points.size(); ++j) {
        const auto& p = r->points[j];
        if (!p || !p->found) continue;
        out[pos[j]] = PointIn{p->id, p->vector, std::string(p->payload.begin(), p->payload.end())};
      }
      done = true;
      break;
    }
    if (!done) return last;
  }
  return out;
}

}  // namespace mrl::coord
