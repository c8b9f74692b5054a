#include "coordinator/binary_api.h"

#include <cmath>
#include <string>

namespace mrl::coord {
namespace {

std::string Str(const flatbuffers::String* s) { return s ? s->str() : std::string(); }

}  // namespace

Result<std::vector<uint8_t>> BinaryApi::Handle(wire::MessageType type,
                                               std::span<const uint8_t> body,
                                               const rpc::RequestContext& context) {
  using MT = wire::MessageType;
  switch (type) {
    case MT::PingRequest:
      return wire::PackBody(wire::PingResponseT{});
    case MT::AuthRequest:
      return wire::PackBody(wire::AuthResponseT{});
    case MT::SearchRequest:
      return OnOneSnapshot(*wire::RootAs<wire::SearchRequest>(body),
                           &wire::SearchRequest::collection, &BinaryApi::Search);
    case MT::UpsertRequest:
      return OnOneSnapshot(*wire::RootAs<wire::UpsertRequest>(body),
                           &wire::UpsertRequest::collection, &BinaryApi::Upsert);
    case MT::DeleteRequest:
      return OnOneSnapshot(*wire::RootAs<wire::DeleteRequest>(body),
                           &wire::DeleteRequest::collection, &BinaryApi::Delete);
    case MT::GetRequest:
      return OnOneSnapshot(*wire::RootAs<wire::GetRequest>(body), &wire::GetRequest::collection,
                           &BinaryApi::Get);
    case MT::DescribeCollectionRequest:
      return OnOneSnapshot(*wire::RootAs<wire::DescribeCollectionRequest>(body),
                           &wire::DescribeCollectionRequest::name, &BinaryApi::Describe);
    case MT::StatsRequest:
      return Stats(context.server);
    default:
      return Status::InvalidArgument(
          std::string(wire::EnumNameMessageType(type)) +
          " is not served by the coordinator (shard-internal or admin: use a shard "
          "or the HTTP API)");
  }
}

Result<std::vector<uint8_t>> BinaryApi::Search(const ClusterSnapshot& snap,
                                               const wire::SearchRequest& req) {
  const std::string name = Str(req.collection());
  auto found = snap.Spec(name);
  if (!found.ok()) return found.status();
  const CollectionSpec& spec = *found.value();
  SearchSpec s;
  s.collection = name;
  s.deadline_ms = deadline_ms_;
  s.one_trip = req.one_trip();
  s.dims = req.dims();
  if (s.dims != spec.dim) {
    return Status::InvalidArgument("queries must have the collection's " +
                                   std::to_string(spec.dim) + " dims (got dims " +
                                   std::to_string(s.dims) + ")");
  }
  const size_t floats = req.queries() ? req.queries()->size() : 0;
  if (floats == 0 || floats % static_cast<size_t>(s.dims) != 0) {
    return Status::InvalidArgument("queries must hold n * dims floats with n >= 1");
  }
  if (floats / static_cast<size_t>(s.dims) > static_cast<size_t>(max_queries_)) {
    return Status::OutOfRange("at most " + std::to_string(max_queries_) + " queries per request");
  }
  s.queries.assign(req.queries()->begin(), req.queries()->end());
  for (float v : s.queries) {
    if (!std::isfinite(v)) return Status::InvalidArgument("queries hold NaN or Inf");
  }
  const auto* stages = req.stages();
  if (!stages || stages->size() == 0) {
    return Status::InvalidArgument("give stages (the last stage's k is the answer size)");
  }
  const int32_t k = stages->Get(stages->size() - 1)->k();
  if (k < 1 || k > max_k_)
    return Status::OutOfRange("k must be in [1, " + std::to_string(max_k_) + "]");
  PlanRequest pr;
  pr.k = k;
  pr.budget = std::string(Str(req.budget()));
  pr.exact = req.exact();
  // Stage 0 shortlists, later stages rerank; dims increase, K does not (FunnelPlan checks).
  for (const wire::SearchStage* x : *stages) pr.funnel.push_back({x->dims(), x->k()});
  pr.ef = req.ef();
  auto plan = ResolvePlan(pr, spec, [&](const std::string& b) { return snap.Budget(name, b); });
  if (!plan.ok()) return plan.status();
  s.plan = plan.value();
  auto r = c_.Search(snap, s);
  if (!r.ok()) return r.status();
  wire::SearchResponseT resp;
  resp.coverage = r->coverage;
  for (const auto& hits : r->hits) {
    auto list = std::make_unique<wire::CandidateListT>();
    for (const ScoredId& h : hits) list->candidates.emplace_back(h.id, h.score);
    resp.results.push_back(std::move(list));
  }
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> BinaryApi::Upsert(const ClusterSnapshot& snap,
                                               const wire::UpsertRequest& req) {
  const size_t n = req.ids() ? req.ids()->size() : 0;
  const int32_t dims = req.dims();
  if (dims <= 0) return Status::InvalidArgument("dims must be positive");
  const size_t floats = req.vectors() ? req.vectors()->size() : 0;
  if (floats != n * static_cast<size_t>(dims)) {
    return Status::InvalidArgument("vectors must hold len(ids) * dims floats");
  }
  const size_t np = req.payloads() ? req.payloads()->size() : 0;
  if (np != 0 && np != n) return Status::InvalidArgument("payloads must be empty or one per id");
  std::vector<PointIn> points(n);
  for (size_t i = 0; i < n; ++i) {
    points[i].id = req.ids()->Get(static_cast<flatbuffers::uoffset_t>(i));
    const float* v = req.vectors()->data() + i * static_cast<size_t>(dims);
    points[i].vector.assign(v, v + dims);
    if (np) {
      const auto* p = req.payloads()->Get(static_cast<flatbuffers::uoffset_t>(i));
      if (p && p->data()) points[i].payload.assign(p->data()->begin(), p->data()->end());
    }
  }
  MRL_RETURN_IF_ERROR(c_.Upsert(snap, Str(req.collection()), points, deadline_ms_));
  wire::UpsertResponseT resp;
  resp.count = static_cast<uint32_t>(n);
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> BinaryApi::Delete(const ClusterSnapshot& snap,
                                               const wire::DeleteRequest& req) {
  std::vector<uint64_t> ids;
  if (req.ids()) ids.assign(req.ids()->begin(), req.ids()->end());
  MRL_RETURN_IF_ERROR(c_.Delete(snap, Str(req.collection()), ids, deadline_ms_));
  wire::DeleteResponseT resp;
  resp.count = static_cast<uint32_t>(ids.size());
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> BinaryApi::Get(const ClusterSnapshot& snap,
                                            const wire::GetRequest& req) {
  std::vector<uint64_t> ids;
  if (req.ids()) ids.assign(req.ids()->begin(), req.ids()->end());
  auto got = c_.Get(snap, Str(req.collection()), ids, req.with_vector(), deadline_ms_);
  if (!got.ok()) return got.status();
  wire::GetResponseT resp;
  for (size_t i = 0; i < ids.size(); ++i) {
    auto p = std::make_unique<wire::PointT>();
    p->id = ids[i];
    if (got.value()[i]) {
      p->found = true;
      p->vector = got.value()[i]->vector;
      p->payload.assign(got.value()[i]->payload.begin(), got.value()[i]->payload.end());
    }
    resp.points.push_back(std::move(p));
  }
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> BinaryApi::Describe(const ClusterSnapshot& snap,
                                                 const wire::DescribeCollectionRequest& req) {
  auto spec = snap.Spec(Str(req.name()));
  if (!spec.ok()) return spec.status();
  wire::DescribeCollectionResponseT resp;
  resp.collections.push_back(
      std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(*spec.value())));
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> BinaryApi::Stats(const rpc::ServerMetrics* server) {
  wire::StatsResponseT resp;
  resp.uptime_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - started_)
                                             .count());
  if (server) server->FillStats(&resp);
  resp.map_epoch = static_cast<uint32_t>(c_.Snapshot()->map.epoch());
  return wire::PackBody(resp);
}

}  // namespace mrl::coord
