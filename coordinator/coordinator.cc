#include "coordinator/coordinator.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <iostream>
#include <cmath>
#include <filesystem>
#include <future>
#include <nlohmann/json.hpp>
#include <random>
#include <regex>
#include <unordered_map>

#include "common/atomic_file.h"
#include "common/retrieval_metrics.h"
#include "common/bucket.h"
#include "common/collection_spec.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const Status& StatusOf(const Status& s) { return s; }
template <typename T>
const Status& StatusOf(const Result<T>& r) { return r.status(); }

// The same error with "<context>: " in front of its message.
Status Prefixed(const Status& s, const std::string& context) {
  const std::string m = context + ": " + s.message();
  switch (s.code()) {
    case Status::Code::kOk: return s;
    case Status::Code::kInvalidArgument: return Status::InvalidArgument(m);
    case Status::Code::kNotFound: return Status::NotFound(m);
    case Status::Code::kCorruption: return Status::Corruption(m);
    case Status::Code::kIoError: return Status::IoError(m);
    case Status::Code::kFailedPrecondition: return Status::FailedPrecondition(m);
    case Status::Code::kOutOfRange: return Status::OutOfRange(m);
    case Status::Code::kDeadlineExceeded: return Status::DeadlineExceeded(m);
    case Status::Code::kUnauthenticated: return Status::Unauthenticated(m);
    case Status::Code::kUnavailable: return Status::Unavailable(m);
    case Status::Code::kResourceExhausted: return Status::ResourceExhausted(m);
    case Status::Code::kAborted: return Status::Aborted(m);
    default: return Status::Internal(m);
  }
}

int HttpStatusOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk: return 200;
    case Status::Code::kInvalidArgument:
    case Status::Code::kOutOfRange: return 400;
    case Status::Code::kUnauthenticated: return 401;
    case Status::Code::kNotFound: return 404;
    case Status::Code::kFailedPrecondition:
    case Status::Code::kAborted: return 409;
    case Status::Code::kResourceExhausted: return 429;
    case Status::Code::kUnavailable: return 503;
    case Status::Code::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

HttpResponse JsonReply(int status, const json& j) { return {status, "application/json", j.dump()}; }
HttpResponse ErrorReply(const Status& s) {
  return JsonReply(HttpStatusOf(s), {{"error", s.message()}, {"code", CodeName(s.code())}});
}
HttpResponse ErrorReply(int status, const std::string& message) {
  return JsonReply(status, {{"error", message}});
}

Status ParseVectors(const json& j, int32_t dim, int32_t max_rows, std::vector<float>* out, size_t* rows) {
  auto add = [&](const json& v) -> Status {
    if (!v.is_array()) return Status::InvalidArgument("a vector must be an array of numbers");
    if (static_cast<int32_t>(v.size()) != dim) {
      return Status::InvalidArgument("vector has " + std::to_string(v.size()) + " dims, collection has " +
                                     std::to_string(dim));
    }
    for (const json& x : v) {
      if (!x.is_number()) return Status::InvalidArgument("vector entries must be numbers");
      const double d = x.get<double>();
      if (!std::isfinite(d)) return Status::InvalidArgument("vector entries must be finite");
      out->push_back(static_cast<float>(d));
    }
    ++*rows;
    return Status::Ok();
  };
  if (j.contains("vector")) MRL_RETURN_IF_ERROR(add(j["vector"]));
  if (j.contains("vectors")) {
    if (!j["vectors"].is_array()) return Status::InvalidArgument("'vectors' must be an array");
    if (static_cast<int32_t>(j["vectors"].size()) > max_rows) {
      return Status::InvalidArgument("at most " + std::to_string(max_rows) + " query vectors per request");
    }
    for (const json& v : j["vectors"]) MRL_RETURN_IF_ERROR(add(v));
  }
  return Status::Ok();
}

}  // namespace

struct Coordinator::Metrics {
  std::mutex mu;
  std::map<std::string, uint64_t> requests;  // "endpoint status" -> count
  // Latency histograms (log2 microsecond buckets) per stage.
  std::map<std::string, std::vector<uint64_t>> latency;
  std::map<std::string, uint64_t> shard_errors;
  uint64_t candidates = 0, searches = 0, queries = 0;
  std::atomic<uint64_t> map_refreshes{0};
  void Observe(const std::string& stage, double ms) {
    const double us = std::max(1.0, ms * 1000.0);
    size_t b = std::min<size_t>(30, static_cast<size_t>(std::log2(us)));
    auto& h = latency[stage];
    if (h.empty()) h.assign(31, 0);
    ++h[b];
  }
};

Coordinator::Coordinator(CoordinatorOptions options)
    : opt_(std::move(options)), metrics_(std::make_unique<Metrics>()) {
  PoolOptions po;
  po.auth_secret = opt_.shard_secret;
  po.connections_per_shard = opt_.shard_connections;
  po.max_in_flight_per_connection = opt_.shard_max_in_flight;
  pool_ = std::make_unique<ShardPool>(po);
  engine_ = std::make_unique<QueryEngine>(*pool_);
}

Coordinator::~Coordinator() = default;

Result<std::unique_ptr<Coordinator>> Coordinator::Open(CoordinatorOptions options) {
  MRL_RETURN_IF_ERROR(EnsureWritableDir(options.data_dir));
  std::unique_ptr<Coordinator> c(new Coordinator(options));
  auto state = LoadState(options.data_dir);
  if (!state.ok()) return state.status();
  c->map_ = std::move(state->map);
  c->specs_ = std::move(state->specs);
  c->pool_->Sync(c->map_);
  return c;
}

Result<Coordinator::State> Coordinator::LoadState(const std::string& data_dir) {
  State st;
  const std::string map_path = (fs::path(data_dir) / "shard_map.json").string();
  if (fs::exists(map_path)) {
    auto m = ShardMap::Load(map_path);
    if (!m.ok()) return m.status();
    st.map = std::move(m).value();
  }
  const std::string specs_path = (fs::path(data_dir) / "collections.json").string();
  if (fs::exists(specs_path)) {
    auto text = ReadFile(specs_path);
    if (!text.ok()) return text.status();
    try {
      const json all = json::parse(text.value());
      for (const auto& [name, j] : all.items()) {
        auto spec = CollectionSpecFromJson(j, name);
        if (!spec.ok()) return Status::Corruption("'" + specs_path + "': " + spec.status().message());
        st.specs[name] = std::make_unique<CollectionSpec>(std::move(spec).value());
      }
    } catch (const json::exception& e) {
      return Status::Corruption("'" + specs_path + "': " + e.what());
    }
  }
  return st;
}

Status Coordinator::RefreshMap(uint64_t seen_epoch) {
  auto state = LoadState(opt_.data_dir);
  if (!state.ok()) return Prefixed(state.status(), "refreshing the shard map");
  std::lock_guard<std::mutex> lock(mu_);
  if (state->map.epoch() > map_.epoch()) {
    std::cerr << "mrl-coordinator: shard map epoch " << map_.epoch() << " -> " << state->map.epoch()
              << " (reloaded from " << opt_.data_dir << ")" << std::endl;
    map_ = std::move(state->map);
    specs_ = std::move(state->specs);
    pool_->Sync(map_);
    ++metrics_->map_refreshes;
    return Status::Ok();
  }
  if (map_.epoch() > seen_epoch) return Status::Ok();  // another call refreshed it meanwhile
  return Status::Aborted("a shard has seen a newer shard-map epoch than " + std::to_string(map_.epoch()) +
                         ", the newest in " + opt_.data_dir);
}

template <typename Fn>
auto Coordinator::WithFreshMap(const std::string& collection, Fn&& fn) -> decltype(fn()) {
  const uint64_t epoch = MapSnapshot().epoch();
  auto r = fn();
  const Status& st = StatusOf(r);
  const bool stale = st.code() == Status::Code::kAborted;
  // A follower learns of collections the primary created from the same files.
  const bool unknown = opt_.follow && st.code() == Status::Code::kNotFound &&
                       st.message() == "unknown collection '" + collection + "'";
  if (!stale && !unknown) return r;
  if (Status refreshed = RefreshMap(epoch); !refreshed.ok()) return stale ? refreshed : st;
  return fn();
}

Status Coordinator::FollowerRefusal() const {
  return Status::FailedPrecondition("this coordinator follows the cluster state in '" + opt_.data_dir +
                                    "'; send cluster and collection changes to the coordinator that owns it");
}

Status Coordinator::Persist() const {
  json specs = json::object();
  for (const auto& [name, s] : specs_) specs[name] = CollectionSpecToJson(*s);
  MRL_RETURN_IF_ERROR(WriteFileAtomic((fs::path(opt_.data_dir) / "collections.json").string(), specs.dump(2)));
  return map_.Save((fs::path(opt_.data_dir) / "shard_map.json").string());
}

ShardMap Coordinator::MapSnapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return map_;
}

Status Coordinator::AddGroup(const std::vector<ShardInfo>& shards) {
  if (opt_.follow) return FollowerRefusal();
  std::lock_guard<std::mutex> lock(mu_);
  if (!specs_.empty()) {
    return Status::FailedPrecondition(
        "adding a group to a cluster with collections needs a rebalance (not supported yet)");
  }
  MRL_RETURN_IF_ERROR(map_.AddGroup(shards));
  pool_->Sync(map_);
  return Persist();
}

Result<CollectionSpec> Coordinator::SpecLocked(const std::string& collection) const {
  auto it = specs_.find(collection);
  if (it == specs_.end()) return Status::NotFound("unknown collection '" + collection + "'");
  return *it->second;
}

Result<CollectionSpec> Coordinator::Describe(const std::string& collection) const {
  std::lock_guard<std::mutex> lock(mu_);
  return SpecLocked(collection);
}

Status Coordinator::CreateCollection(const CollectionSpec& spec) {
  if (opt_.follow) return FollowerRefusal();
  ShardMap map = MapSnapshot();
  if (map.groups().empty()) return Status::FailedPrecondition("the cluster has no shards");
  // Create on every shard first (idempotent there), then record it.
  std::vector<std::pair<std::string, std::future<Result<wire::CreateCollectionResponseT>>>> calls;
  wire::CreateCollectionRequestT req;
  req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
  for (const auto& [id, info] : map.shards()) {
    calls.emplace_back(id, pool_->Client(id)->CallFuture(req, opt_.default_deadline_ms * 5));
  }
  for (auto& [id, f] : calls) {
    auto r = f.get();
    pool_->Report(id, r.status());
    if (!r.ok()) return Prefixed(r.status(), "shard \'" + id + "\'");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (specs_.count(spec.name)) return Status::Ok();  // created before (idempotent)
  MRL_RETURN_IF_ERROR(map_.PlaceCollection(spec.name, spec.num_buckets));
  pool_->Sync(map_);  // later requests carry the new epoch
  specs_[spec.name] = std::make_unique<CollectionSpec>(spec);
  return Persist();
}

Status Coordinator::Upsert(const std::string& collection, const std::vector<PointIn>& points,
                           uint32_t deadline_ms) {
  return WithFreshMap(collection, [&] { return UpsertOnce(collection, points, deadline_ms); });
}

Status Coordinator::Delete(const std::string& collection, const std::vector<uint64_t>& ids,
                           uint32_t deadline_ms) {
  return WithFreshMap(collection, [&] { return DeleteOnce(collection, ids, deadline_ms); });
}

Result<std::vector<std::optional<PointIn>>> Coordinator::Get(const std::string& collection,
                                                             const std::vector<uint64_t>& ids,
                                                             bool with_vector, uint32_t deadline_ms) {
  return WithFreshMap(collection, [&] { return GetOnce(collection, ids, with_vector, deadline_ms); });
}

Result<SearchOutcome> Coordinator::Search(const SearchSpec& spec) {
  return WithFreshMap(spec.collection, [&] { return SearchOnce(spec); });
}

Status Coordinator::UpsertOnce(const std::string& collection, const std::vector<PointIn>& points,
                               uint32_t deadline_ms) {
  ShardMap map = MapSnapshot();
  CollectionSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto s = SpecLocked(collection);
    if (!s.ok()) return s.status();
    spec = s.value();
  }
  if (points.empty()) return Status::Ok();
  if (static_cast<int32_t>(points.size()) > opt_.max_points) {
    return Status::InvalidArgument("at most " + std::to_string(opt_.max_points) + " points per request");
  }
  // Group points by replica group; every replica of the group gets the group's batch.
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  std::map<uint32_t, wire::UpsertRequestT> by_group;
  for (const PointIn& p : points) {
    if (static_cast<int32_t>(p.vector.size()) != spec.dim) {
      return Status::InvalidArgument("point " + std::to_string(p.id) + " has " + std::to_string(p.vector.size()) +
                                     " dims, collection has " + std::to_string(spec.dim));
    }
    const uint32_t g = placement.value()->group_of_bucket[BucketOfId(p.id, spec.num_buckets)];
    wire::UpsertRequestT& req = by_group[g];
    req.collection = collection;
    req.dims = spec.dim;
    req.ids.push_back(p.id);
    req.vectors.insert(req.vectors.end(), p.vector.begin(), p.vector.end());
    auto payload = std::make_unique<wire::PayloadT>();
    payload->data.assign(p.payload.begin(), p.payload.end());
    req.payloads.push_back(std::move(payload));
  }
  struct Call { uint32_t group; std::string shard; std::future<Result<wire::UpsertResponseT>> f; };
  std::vector<Call> calls;
  for (auto& [g, req] : by_group) {
    for (const std::string& s : map.groups()[g].shards) {
      calls.push_back({g, s, pool_->Client(s)->CallFuture(req, deadline_ms)});
    }
  }
  std::map<uint32_t, int> acks;
  Status first_error;
  for (Call& c : calls) {
    auto r = c.f.get();
    pool_->Report(c.shard, r.status());
    if (r.ok()) {
      ++acks[c.group];
    } else if (first_error.ok()) {
      first_error = Prefixed(r.status(), "shard \'" + c.shard + "\'");
    }
  }
  for (const auto& [g, req] : by_group) {
    const int replicas = static_cast<int>(map.groups()[g].shards.size());
    const int need = opt_.write_quorum > 0 ? std::min(opt_.write_quorum, replicas) : replicas;
    if (acks[g] < need) {
      // Retrying the same request is safe: an upsert of the same id and vector is idempotent.
      return first_error.ok() ? Status::Unavailable("not enough replicas acknowledged") : first_error;
    }
  }
  return Status::Ok();
}

Status Coordinator::DeleteOnce(const std::string& collection, const std::vector<uint64_t>& ids,
                               uint32_t deadline_ms) {
  ShardMap map = MapSnapshot();
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  if (static_cast<int32_t>(ids.size()) > opt_.max_points) {
    return Status::InvalidArgument("at most " + std::to_string(opt_.max_points) + " ids per request");
  }
  std::map<uint32_t, wire::DeleteRequestT> by_group;
  for (uint64_t id : ids) {
    auto& req = by_group[placement.value()->group_of_bucket[BucketOfId(id, placement.value()->num_buckets)]];
    req.collection = collection;
    req.ids.push_back(id);
  }
  std::vector<std::pair<std::string, std::future<Result<wire::DeleteResponseT>>>> calls;
  for (auto& [g, req] : by_group) {
    for (const std::string& s : map.groups()[g].shards) calls.emplace_back(s, pool_->Client(s)->CallFuture(req, deadline_ms));
  }
  for (auto& [s, f] : calls) {
    auto r = f.get();
    pool_->Report(s, r.status());
    if (!r.ok()) return Prefixed(r.status(), "shard \'" + s + "\'");
  }
  return Status::Ok();
}

Result<std::vector<std::optional<PointIn>>> Coordinator::GetOnce(const std::string& collection,
                                                                 const std::vector<uint64_t>& ids,
                                                                 bool with_vector, uint32_t deadline_ms) {
  ShardMap map = MapSnapshot();
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  if (static_cast<int32_t>(ids.size()) > opt_.max_points) {
    return Status::InvalidArgument("at most " + std::to_string(opt_.max_points) + " ids per request");
  }
  std::map<uint32_t, std::vector<size_t>> positions;
  for (size_t i = 0; i < ids.size(); ++i) {
    positions[placement.value()->group_of_bucket[BucketOfId(ids[i], placement.value()->num_buckets)]].push_back(i);
  }
  std::vector<std::optional<PointIn>> out(ids.size());
  for (const auto& [g, pos] : positions) {
    wire::GetRequestT req;
    req.collection = collection;
    req.with_vector = with_vector;
    for (size_t i : pos) req.ids.push_back(ids[i]);
    Status last = Status::Unavailable("no healthy replica");
    bool done = false;
    for (const std::string& s : map.groups()[g].shards) {
      if (!pool_->Healthy(s)) continue;
      auto r = pool_->Client(s)->Call(req, deadline_ms);
      pool_->Report(s, r.status());
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

Result<SearchOutcome> Coordinator::SearchOnce(const SearchSpec& spec) {
  ShardMap map = MapSnapshot();
  const auto t0 = Clock::now();
  auto r = engine_->Search(map, spec);
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  std::lock_guard<std::mutex> lock(metrics_->mu);
  metrics_->Observe("total", ms);
  if (r.ok()) {
    metrics_->Observe("shortlist", r->shortlist_ms);
    metrics_->Observe("rerank", r->rerank_ms);
    metrics_->candidates += r->candidates;
    metrics_->queries += r->hits.size();
    for (const std::string& s : r->failed_shards) ++metrics_->shard_errors[s];
  }
  ++metrics_->searches;
  return r;
}

Result<std::vector<CalibrationPoint>> Coordinator::Calibrate(const std::string& collection,
                                                             int32_t sample, int32_t k) {
  CollectionSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto s = SpecLocked(collection);
    if (!s.ok()) return s.status();
    spec = s.value();
  }
  ShardMap map = MapSnapshot();
  // Sample queries: points read from a spread of buckets (real data, not synthetic).
  std::vector<float> queries;
  int32_t got = 0;
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  for (uint32_t b = 0; b < spec.num_buckets && got < sample; b += std::max<uint32_t>(1, spec.num_buckets / 64)) {
    wire::ScanBucketRequestT req;
    req.collection = collection;
    req.bucket = b;
    req.limit = std::max(1, sample / 32);
    for (const std::string& s : map.groups()[placement.value()->group_of_bucket[b]].shards) {
      if (!pool_->Healthy(s)) continue;
      auto r = pool_->Client(s)->Call(req, opt_.default_deadline_ms * 5);
      pool_->Report(s, r.status());
      if (!r.ok()) continue;
      for (const auto& p : r->points) {
        if (got >= sample || static_cast<int32_t>(p->vector.size()) != spec.dim) continue;
        queries.insert(queries.end(), p->vector.begin(), p->vector.end());
        ++got;
      }
      break;
    }
  }
  if (got == 0) return Status::FailedPrecondition("collection '" + collection + "' has no points to calibrate on");
  auto run = [&](const QueryPlan& plan, double* us) -> Result<std::vector<std::vector<ScoredId>>> {
    SearchSpec s;
    s.collection = collection;
    s.dims = spec.dim;
    s.queries = queries;
    s.plan = plan;
    s.deadline_ms = opt_.default_deadline_ms * 50;
    const auto t0 = Clock::now();
    auto r = engine_->Search(map, s);
    *us = std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / got;
    if (!r.ok()) return r.status();
    return std::move(r->hits);
  };
  // The sampled points are in the collection: each query's own id is dropped from both lists
  // (leave-one-out), otherwise a plan gets credit for finding the query itself.
  double exact_us = 0;
  auto exact = run(ExactPlan(spec.dim, k + 1), &exact_us);
  if (!exact.ok()) return exact.status();
  auto without_self = [&](const std::vector<ScoredId>& hits, size_t i) {
    // The exact list's best hit for a stored point is the point itself (score = max).
    const uint64_t self = exact.value()[i].empty() ? ~0ull : exact.value()[i].front().id;
    std::vector<uint64_t> ids;
    for (const ScoredId& h : hits) {
      if (h.id != self && ids.size() < static_cast<size_t>(k)) ids.push_back(h.id);
    }
    return ids;
  };
  std::vector<int32_t> index_dims;
  for (const auto& i : spec.indexes) index_dims.push_back(i.dims);
  std::vector<CalibrationPoint> points;
  for (const QueryPlan& candidate : CalibrationCandidates(index_dims, spec.nesting, k + 1)) {
    CalibrationPoint p;
    p.plan = candidate;
    auto hits = run(candidate, &p.latency_us);
    if (!hits.ok()) return hits.status();
    double recall = 0;
    for (int32_t i = 0; i < got; ++i) {
      const size_t qi = static_cast<size_t>(i);
      recall += mrl::RecallAtK(without_self(hits.value()[qi], qi), without_self(exact.value()[qi], qi),
                               static_cast<size_t>(k));
    }
    p.recall = recall / got;
    p.plan.stages.back().k = k;  // calibrated with k + 1 for the self match; serves k
    points.push_back(p);
  }
  auto budgets = PickBudgets(points, DefaultBudgets());
  if (!budgets.ok()) return budgets.status();
  std::lock_guard<std::mutex> lock(mu_);
  budgets_[collection] = std::move(budgets).value();
  return points;
}

Result<QueryPlan> Coordinator::BudgetPlan(const std::string& collection, const std::string& budget) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = budgets_.find(collection);
  if (it == budgets_.end() || !it->second.count(budget)) {
    return Status::FailedPrecondition("budget '" + budget + "' of '" + collection +
                                      "' is not calibrated: POST /v1/collections/" + collection + "/calibrate");
  }
  return it->second.at(budget);
}

std::string Coordinator::PrometheusMetrics() const {
  const uint64_t epoch = MapSnapshot().epoch();  // before metrics_->mu: never hold both
  std::lock_guard<std::mutex> lock(metrics_->mu);
  std::string out;
  out += "# TYPE mrl_coordinator_requests_total counter\n";
  for (const auto& [key, n] : metrics_->requests) {
    const size_t sp = key.rfind(' ');
    out += "mrl_coordinator_requests_total{endpoint=\"" + key.substr(0, sp) + "\",status=\"" +
           key.substr(sp + 1) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# TYPE mrl_coordinator_searches_total counter\nmrl_coordinator_searches_total " +
         std::to_string(metrics_->searches) + "\n";
  out += "# TYPE mrl_coordinator_map_epoch gauge\nmrl_coordinator_map_epoch " + std::to_string(epoch) + "\n";
  out += "# TYPE mrl_coordinator_map_refreshes_total counter\nmrl_coordinator_map_refreshes_total " +
         std::to_string(metrics_->map_refreshes.load()) + "\n";
  out += "# TYPE mrl_coordinator_queries_total counter\nmrl_coordinator_queries_total " +
         std::to_string(metrics_->queries) + "\n";
  out += "# TYPE mrl_coordinator_shortlist_candidates_total counter\nmrl_coordinator_shortlist_candidates_total " +
         std::to_string(metrics_->candidates) + "\n";
  out += "# TYPE mrl_coordinator_shard_errors_total counter\n";
  for (const auto& [s, n] : metrics_->shard_errors) {
    out += "mrl_coordinator_shard_errors_total{shard=\"" + s + "\"} " + std::to_string(n) + "\n";
  }
  out += "# TYPE mrl_coordinator_stage_latency_seconds histogram\n";
  for (const auto& [stage, h] : metrics_->latency) {
    uint64_t cum = 0;
    for (size_t b = 0; b < h.size(); ++b) {
      cum += h[b];
      char le[32];
      std::snprintf(le, sizeof(le), "%.6g", std::ldexp(1.0, static_cast<int>(b) + 1) / 1e6);
      out += "mrl_coordinator_stage_latency_seconds_bucket{stage=\"" + stage + "\",le=\"" + le + "\"} " +
             std::to_string(cum) + "\n";
    }
    out += "mrl_coordinator_stage_latency_seconds_bucket{stage=\"" + stage + "\",le=\"+Inf\"} " +
           std::to_string(cum) + "\n";
    out += "mrl_coordinator_stage_latency_seconds_count{stage=\"" + stage + "\"} " + std::to_string(cum) + "\n";
  }
  return out;
}

HttpResponse Coordinator::Handle(const HttpRequest& req) {
  static const std::regex kCollection(R"(/v1/collections/([A-Za-z0-9_.-]{1,64}))");
  static const std::regex kPoints(R"(/v1/collections/([A-Za-z0-9_.-]{1,64})/points(/delete|/get)?)");
  static const std::regex kSearch(R"(/v1/collections/([A-Za-z0-9_.-]{1,64})/(search|calibrate))");
  std::string endpoint = "other";
  auto finish = [&](HttpResponse r) {
    std::lock_guard<std::mutex> lock(metrics_->mu);
    ++metrics_->requests[endpoint + " " + std::to_string(r.status)];
    return r;
  };
  if (req.target == "/healthz") {
    endpoint = "healthz";
    return finish({200, "text/plain", "ok\n"});
  }
  if (req.target == "/metrics") {
    endpoint = "metrics";
    return finish({200, "text/plain; version=0.0.4", PrometheusMetrics()});
  }
  // Tokens: reads need the read or admin token, writes and admin the admin token.
  const bool is_read = req.method == "GET" ||
                       (req.method == "POST" && (req.target.ends_with("/search") || req.target.ends_with("/points/get")));
  std::string token;
  if (auto it = req.headers.find("authorization"); it != req.headers.end() && it->second.starts_with("Bearer ")) {
    token = it->second.substr(7);
  }
  const bool admin_ok = opt_.admin_token.empty() || token == opt_.admin_token;
  const bool read_ok = admin_ok || opt_.read_token.empty() || token == opt_.read_token;
  if (!opt_.admin_token.empty() || !opt_.read_token.empty()) {
    if (token.empty()) return finish(ErrorReply(401, "missing token: send 'Authorization: Bearer <token>'"));
    if (is_read ? !read_ok : !admin_ok) {
      return finish(ErrorReply(token == opt_.read_token ? 403 : 401,
                               token == opt_.read_token ? "the read-only token cannot do this" : "wrong token"));
    }
  }
  json body;
  if (!req.body.empty()) {
    body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return finish(ErrorReply(400, "malformed JSON body"));
    if (!body.is_object()) return finish(ErrorReply(400, "the JSON body must be an object"));
  }
  const uint32_t deadline = body.is_object() && body.contains("deadline_ms") && body["deadline_ms"].is_number_unsigned()
                                ? body["deadline_ms"].get<uint32_t>()
                                : opt_.default_deadline_ms;
  std::smatch m;
  try {
    if (req.target == "/v1/cluster") {
      endpoint = "cluster";
      if (req.method == "GET") return finish({200, "application/json", MapSnapshot().ToJson()});
      if (req.method == "POST") {
        std::vector<ShardInfo> group;
        for (const json& s : body.at("group")) group.push_back({s.at("id").get<std::string>(), s.at("address").get<std::string>()});
        Status st = AddGroup(group);
        return finish(st.ok() ? JsonReply(200, {{"epoch", MapSnapshot().epoch()}}) : ErrorReply(st));
      }
      return finish(ErrorReply(405, "method not allowed"));
    }
    if (req.target == "/v1/collections") {
      endpoint = "collections";
      if (req.method != "GET") return finish(ErrorReply(405, "method not allowed"));
      json list = json::array();
      std::lock_guard<std::mutex> lock(mu_);
      for (const auto& [name, s] : specs_) list.push_back(CollectionSpecToJson(*s));
      return finish(JsonReply(200, {{"collections", list}}));
    }
    if (std::regex_match(req.target, m, kCollection)) {
      endpoint = "collection";
      const std::string name = m[1];
      if (req.method == "GET") {
        auto s = Describe(name);
        return finish(s.ok() ? JsonReply(200, CollectionSpecToJson(s.value())) : ErrorReply(s.status()));
      }
      if (req.method == "PUT") {
        auto spec = CollectionSpecFromJson(body, name);
        if (!spec.ok()) return finish(ErrorReply(spec.status()));
        Status st = CreateCollection(spec.value());
        return finish(st.ok() ? JsonReply(200, {{"result", "created"}}) : ErrorReply(st));
      }
      return finish(ErrorReply(405, "method not allowed"));
    }
    if (std::regex_match(req.target, m, kPoints)) {
      const std::string name = m[1], op = m[2];
      if (op.empty()) {
        endpoint = "upsert";
        if (req.method != "PUT" && req.method != "POST") return finish(ErrorReply(405, "method not allowed"));
        if (!body.contains("points") || !body["points"].is_array()) return finish(ErrorReply(400, "'points' (array) is required"));
        auto spec = Describe(name);
        if (!spec.ok()) return finish(ErrorReply(spec.status()));
        std::vector<PointIn> points;
        for (const json& p : body["points"]) {
          if (!p.is_object() || !p.contains("id") || !p["id"].is_number_unsigned()) {
            return finish(ErrorReply(400, "every point needs a non-negative integer 'id'"));
          }
          PointIn in;
          in.id = p["id"].get<uint64_t>();
          size_t rows = 0;
          json v = {{"vector", p.value("vector", json())}};
          Status st = ParseVectors(v, spec->dim, 1, &in.vector, &rows);
          if (!st.ok()) return finish(ErrorReply(Status::InvalidArgument("point " + std::to_string(in.id) + ": " + st.message())));
          if (p.contains("payload")) in.payload = p["payload"].dump();
          points.push_back(std::move(in));
        }
        Status st = Upsert(name, points, deadline);
        return finish(st.ok() ? JsonReply(200, {{"result", "acknowledged"}, {"count", points.size()}}) : ErrorReply(st));
      }
      if (req.method != "POST") return finish(ErrorReply(405, "method not allowed"));
      if (!body.contains("ids") || !body["ids"].is_array()) return finish(ErrorReply(400, "'ids' (array) is required"));
      std::vector<uint64_t> ids;
      for (const json& id : body["ids"]) {
        if (!id.is_number_unsigned()) return finish(ErrorReply(400, "ids must be non-negative integers"));
        ids.push_back(id.get<uint64_t>());
      }
      if (op == "/delete") {
        endpoint = "delete";
        Status st = Delete(name, ids, deadline);
        return finish(st.ok() ? JsonReply(200, {{"result", "acknowledged"}}) : ErrorReply(st));
      }
      endpoint = "get";
      auto got = Get(name, ids, body.value("with_vector", false), deadline);
      if (!got.ok()) return finish(ErrorReply(got.status()));
      json pts = json::array();
      for (size_t i = 0; i < ids.size(); ++i) {
        if (!got.value()[i]) {
          pts.push_back({{"id", ids[i]}, {"found", false}});
          continue;
        }
        json p = {{"id", ids[i]}, {"found", true}};
        if (!got.value()[i]->vector.empty()) p["vector"] = got.value()[i]->vector;
        if (!got.value()[i]->payload.empty()) p["payload"] = json::parse(got.value()[i]->payload, nullptr, false);
        pts.push_back(p);
      }
      return finish(JsonReply(200, {{"points", pts}}));
    }
    if (std::regex_match(req.target, m, kSearch)) {
      const std::string name = m[1];
      if (req.method != "POST") return finish(ErrorReply(405, "method not allowed"));
      auto spec = Describe(name);
      if (!spec.ok()) return finish(ErrorReply(spec.status()));
      if (m[2] == "calibrate") {
        endpoint = "calibrate";
        auto pts = Calibrate(name, body.value("sample", 200), body.value("k", 10));
        if (!pts.ok()) return finish(ErrorReply(pts.status()));
        json out = json::array();
        for (const auto& p : pts.value()) out.push_back({{"plan", p.plan.name}, {"recall", p.recall}, {"latency_us", p.latency_us}});
        json budgets = json::object();
        for (const char* b : {"fast", "balanced", "exact"}) budgets[b] = BudgetPlan(name, b)->name;
        return finish(JsonReply(200, {{"candidates", out}, {"budgets", budgets}}));
      }
      endpoint = "search";
      if (!body.contains("k") || !body["k"].is_number_integer()) return finish(ErrorReply(400, "'k' (integer) is required"));
      const int64_t k = body["k"].get<int64_t>();
      if (k < 1 || k > opt_.max_k) return finish(ErrorReply(400, "'k' must be in [1, " + std::to_string(opt_.max_k) + "]"));
      SearchSpec s;
      s.collection = name;
      s.dims = spec->dim;
      s.deadline_ms = deadline;
      s.one_trip = body.value("one_trip", false);
      size_t rows = 0;
      if (body.contains("id")) {
        if (!body["id"].is_number_unsigned()) return finish(ErrorReply(400, "'id' must be a non-negative integer"));
        auto got = Get(name, {body["id"].get<uint64_t>()}, true, deadline);
        if (!got.ok()) return finish(ErrorReply(got.status()));
        if (!got.value()[0]) return finish(ErrorReply(404, "no point with id " + body["id"].dump()));
        s.queries = got.value()[0]->vector;
        rows = 1;
      } else {
        Status st = ParseVectors(body, spec->dim, opt_.max_queries, &s.queries, &rows);
        if (!st.ok()) return finish(ErrorReply(st));
      }
      if (rows == 0) return finish(ErrorReply(400, "give 'vector', 'vectors' or 'id'"));
      const int32_t kk = static_cast<int32_t>(k);
      PlanRequest pr;
      pr.k = kk;
      if (body.contains("budget")) pr.budget = body["budget"].get<std::string>();
      if (pr.budget.empty() && body.contains("funnel")) {
        for (const json& st : body["funnel"]) pr.funnel.push_back({st.at(0).get<int32_t>(), st.at(1).get<int32_t>()});
        if (pr.funnel.empty()) return finish(ErrorReply(400, "'funnel' must hold at least one [dims, k] stage"));
      }
      pr.exact = body.value("exact", false);
      const json p = body.value("plan", json::object());
      pr.shortlist_dims = p.value("shortlist_dims", 0);
      pr.shortlist_k = p.value("shortlist_k", 0);
      pr.rerank_dims = p.value("rerank_dims", 0);
      if (body.contains("ef") && body["ef"].is_number_integer()) pr.ef = body["ef"].get<int32_t>();
      auto plan = ResolvePlan(pr, *spec, [&](const std::string& b) { return BudgetPlan(name, b); });
      if (!plan.ok()) return finish(ErrorReply(plan.status()));
      s.plan = plan.value();
      auto r = Search(s);
      if (!r.ok()) return finish(ErrorReply(r.status()));
      // "with_payload": true adds each hit's payload (one Get of the distinct hit ids).
      std::unordered_map<uint64_t, std::string> payloads;
      if (body.value("with_payload", false)) {
        std::vector<uint64_t> ids;
        for (const auto& hits : r->hits)
          for (const auto& h : hits) ids.push_back(h.id);
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (size_t at = 0; at < ids.size(); at += static_cast<size_t>(opt_.max_points)) {
          const std::vector<uint64_t> part(ids.begin() + static_cast<std::ptrdiff_t>(at),
                                           ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + opt_.max_points)));
          auto got = Get(name, part, false, deadline);
          if (!got.ok()) return finish(ErrorReply(got.status()));
          for (size_t i = 0; i < part.size(); ++i) {
            if (got.value()[i]) payloads[part[i]] = got.value()[i]->payload;
          }
        }
      }
      json results = json::array();
      for (const auto& hits : r->hits) {
        json list = json::array();
        for (const auto& h : hits) {
          json hit = {{"id", h.id}, {"score", h.score}};
          if (auto it = payloads.find(h.id); it != payloads.end() && !it->second.empty()) {
            hit["payload"] = json::parse(it->second, nullptr, false);
            if (hit["payload"].is_discarded()) hit["payload"] = it->second;
          }
          list.push_back(hit);
        }
        results.push_back(list);
      }
      return finish(JsonReply(200, {{"results", results},
                                    {"coverage", r->coverage},
                                    {"partial", r->coverage < 1.0},
                                    {"failed_shards", r->failed_shards},
                                    {"plan", s.plan.name},
                                    {"timing_ms", {{"shortlist", r->shortlist_ms}, {"rerank", r->rerank_ms}}}}));
    }
  } catch (const json::exception& e) {
    return finish(ErrorReply(400, std::string("bad request: ") + e.what()));
  }
  return finish(ErrorReply(404, "no such endpoint: " + req.method + " " + req.target));
}

}  // namespace mrl::coord
