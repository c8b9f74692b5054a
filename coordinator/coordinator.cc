#include "coordinator/coordinator.h"

#include <algorithm>
#include <chrono>
#include <future>

#include "coordinator/calibration.h"

namespace mrl::coord {

using Clock = std::chrono::steady_clock;

Coordinator::Coordinator(CoordinatorOptions options) : opt_(std::move(options)) {
  PoolOptions po;
  po.auth_secret = opt_.shard_secret;
  po.connections_per_shard = opt_.shard_connections;
  po.max_in_flight_per_connection = opt_.shard_max_in_flight;
  po.health = opt_.shard_health;
  pool_ = std::make_unique<ShardPool>(po);
  engine_ = std::make_unique<QueryEngine>(*pool_);
}

Result<std::unique_ptr<Coordinator>> Coordinator::Open(CoordinatorOptions options) {
  std::unique_ptr<Coordinator> c(new Coordinator(std::move(options)));
  ShardPool* pool = c->pool_.get();
  // The pool learns every published map: clients for new shards, the epoch on every request.
  ClusterStateOptions so;
  so.data_dir = c->opt_.data_dir;
  so.meta_url = c->opt_.meta_url;
  so.follow = c->opt_.follow;
  so.id = c->opt_.coordinator_id;
  so.session_ttl_s = c->opt_.session_ttl_s;
  so.follow_url = c->opt_.follow_url;
  so.follow_token = c->opt_.follow_token;
  so.follow_poll_ms = c->opt_.follow_poll_ms;
  auto state = ClusterState::Open(so, [pool](const ShardMap& m) { pool->Sync(m); });
  if (!state.ok()) return state.status();
  c->state_ = std::move(state).value();
  c->moves_ = std::make_unique<MoveExecutor>(*c->state_, *c->pool_, c->opt_.moves);
  // A new leader resumes the journal at once (its records are in the snapshot).
  MoveExecutor* moves = c->moves_.get();
  ReplicaFillOptions fo;
  fo.copy_batch = c->opt_.moves.copy_batch;
  fo.rpc_deadline_ms = c->opt_.moves.rpc_deadline_ms;
  fo.max_bytes_per_s = static_cast<double>(c->opt_.moves.max_bytes_per_s);
  c->fills_ = std::make_unique<ReplicaFiller>(*c->state_, *c->pool_, fo);
  ReplicaFiller* fills = c->fills_.get();
  c->state_->SetLeadershipListener([moves, fills] {
    moves->Wake();
    fills->Wake();
  });
  c->in_sync_ = std::make_unique<InSyncKeeper>(*c->state_, *c->pool_, c->opt_.in_sync,
                                               [fills] { fills->Wake(); });
  InSyncKeeper* in_sync = c->in_sync_.get();
  WriteRouterOptions wo;
  wo.min_in_sync = c->opt_.in_sync.min_in_sync;
  wo.max_points = c->opt_.max_points;
  wo.take_out = [in_sync](uint32_t group, const std::string& shard, const std::string& why) {
    return in_sync->TakeOut(group, shard, why);
  };
  c->writes_ = std::make_unique<WriteRouter>(*c->pool_, wo);
  c->moves_->Start();
  c->fills_->Start();
  c->in_sync_->Start();
  return c;
}

Coordinator::~Coordinator() {
  in_sync_.reset();
  moves_.reset();
  fills_.reset();
}

Status Coordinator::AddReplica(uint32_t group, const ShardInfo& shard) {
  return JoinShard("adding shard '" + shard.id + "' to group " + std::to_string(group), shard,
                   [&](ShardMap* m) { return m->AddReplica(group, shard); });
}

Status Coordinator::RemoveReplica(const std::string& shard, bool lower_factor) {
  return state_->ChangeMap("removing shard '" + shard + "'",
                           [&](ShardMap* m) { return m->RemoveReplica(shard, lower_factor); });
}

Status Coordinator::ReplaceShard(const std::string& dead, const ShardInfo& fresh) {
  return JoinShard("replacing shard '" + dead + "' by '" + fresh.id + "'", fresh,
                   [&](ShardMap* m) { return m->ReplaceShard(dead, fresh); });
}

Status Coordinator::JoinShard(const std::string& what, const ShardInfo& shard,
                              const std::function<Status(ShardMap*)>& edit) {
  MRL_RETURN_IF_ERROR(state_->AdmitChange(what));
  {
    // The map's own checks first: a clear refusal before any shard is asked.
    ShardMap trial = state_->Snapshot()->map;
    MRL_RETURN_IF_ERROR(edit(&trial));
  }
  MRL_RETURN_IF_ERROR(CreateCollectionsOn(shard, what));
  MRL_RETURN_IF_ERROR(state_->ChangeMap(what, edit));
  fills_->Wake();
  return Status::Ok();
}

Status Coordinator::CreateCollectionsOn(const ShardInfo& shard, const std::string& what) {
  pool_->Ensure(shard);
  for (const auto& [name, spec] : state_->Snapshot()->specs) {
    wire::CreateCollectionRequestT req;
    req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
    auto r = pool_->Client(shard.id)->Call(req, opt_.default_deadline_ms * 5);
    pool_->Report(shard.id, r.status());
    if (!r.ok()) {
      return r.status().WithContext(what + ": shard '" + shard.id + "' at " + shard.address +
                                    " did not create '" + name + "' (nothing changed)");
    }
  }
  return Status::Ok();
}

Result<uint32_t> Coordinator::AddGroup(const std::vector<ShardInfo>& shards) {
  MRL_RETURN_IF_ERROR(state_->AddGroup(shards));
  const auto snap = state_->Snapshot();
  uint32_t group = 0;
  for (uint32_t g = 0; g < snap->map.groups().size(); ++g) {
    if (!shards.empty() && !snap->map.groups()[g].shards.empty() &&
        snap->map.groups()[g].shards.front() == shards.front().id) {
      group = g;
    }
  }
  // The new shards get every collection now, so they are ready for moves (a move also makes
  // sure of it before it starts: this is not the only chance).
  for (const auto& [name, spec] : snap->specs) {
    wire::CreateCollectionRequestT req;
    req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
    for (const ShardInfo& s : shards) {
      auto r = pool_->Client(s.id)->Call(req, opt_.default_deadline_ms * 5);
      pool_->Report(s.id, r.status());
      if (!r.ok()) {
        return r.status().WithContext("group " + std::to_string(group) +
                                      " was added, but creating '" + name + "' on shard '" +
                                      s.id + "' failed (moves to it will retry)");
      }
    }
  }
  return group;
}

Status Coordinator::RetireGroup(uint32_t group) { return state_->RetireGroup(group); }

Status Coordinator::CreateCollection(const CollectionSpec& spec) {
  // Refused before any shard is asked when this coordinator may not change the cluster.
  MRL_RETURN_IF_ERROR(state_->AdmitChange("creating collection '" + spec.name + "'"));
  const auto snap = state_->Snapshot();
  if (snap->map.groups().empty()) return Status::FailedPrecondition("the cluster has no shards");
  wire::CreateCollectionRequestT req;
  req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
  std::vector<std::pair<std::string, std::future<Result<wire::CreateCollectionResponseT>>>> calls;
  for (const auto& [id, info] : snap->map.shards()) {
    calls.emplace_back(id, pool_->Client(id)->CallFuture(req, opt_.default_deadline_ms * 5));
  }
  for (auto& [id, f] : calls) {
    auto r = f.get();
    pool_->Report(id, r.status());
    if (!r.ok()) return r.status().WithContext("shard '" + id + "'");
  }
  return state_->AddCollection(spec);
}

Result<size_t> Coordinator::DropCollection(const std::string& name) {
  const std::string what = "dropping collection '" + name + "'";
  MRL_RETURN_IF_ERROR(state_->AdmitChange(what));
  const auto snap = state_->Snapshot();
  MRL_RETURN_IF_ERROR(CheckDroppable(*snap, name));
  wire::DropCollectionRequestT req;
  req.name = name;
  std::vector<std::pair<std::string, std::future<Result<wire::DropCollectionResponseT>>>> calls;
  for (const auto& [id, info] : snap->map.shards()) {
    calls.emplace_back(id, pool_->Client(id)->CallFuture(req, opt_.default_deadline_ms * 5));
  }
  Status first;
  for (auto& [id, f] : calls) {
    auto r = f.get();
    pool_->Report(id, r.status());
    // NotFound: this shard never had it, or a retried drop already removed it there.
    if (!r.ok() && r.status().code() != Status::Code::kNotFound && first.ok()) {
      first = r.status().WithContext(what + ": shard '" + id +
                                     "' did not drop it (the cluster still lists it; retry)");
    }
  }
  MRL_RETURN_IF_ERROR(first);
  MRL_RETURN_IF_ERROR(state_->RemoveCollection(name));
  return calls.size();
}

Status Coordinator::Upsert(const ClusterSnapshot& snap, const std::string& collection,
                           const std::vector<PointIn>& points, uint32_t deadline_ms) {
  return writes_->Upsert(snap, collection, points, deadline_ms);
}

Status Coordinator::Delete(const ClusterSnapshot& snap, const std::string& collection,
                           const std::vector<uint64_t>& ids, uint32_t deadline_ms) {
  return writes_->Delete(snap, collection, ids, deadline_ms);
}

Result<std::vector<std::optional<PointIn>>> Coordinator::Get(const ClusterSnapshot& snap,
                                                             const std::string& collection,
                                                             const std::vector<uint64_t>& ids,
                                                             bool with_vector,
                                                             uint32_t deadline_ms) {
  return writes_->Get(snap, collection, ids, with_vector, deadline_ms);
}

Result<SearchOutcome> Coordinator::Search(const ClusterSnapshot& snap, const SearchSpec& spec) {
  const auto t0 = Clock::now();
  auto r = engine_->Search(snap.map, spec);
  metrics_.ObserveSearch(std::chrono::duration<double, std::milli>(Clock::now() - t0).count(),
                         r.ok() ? &r.value() : nullptr);
  return r;
}

Result<std::vector<float>> Coordinator::SampleQueries(const ClusterSnapshot& snap,
                                                      const CollectionSpec& spec, int32_t sample) {
  // Points read from a spread of buckets (real data, not synthetic).
  auto placement = snap.map.Placement(spec.name);
  if (!placement.ok()) return placement.status();
  std::vector<float> queries;
  int32_t got = 0;
  for (uint32_t b = 0; b < spec.num_buckets && got < sample;
       b += std::max<uint32_t>(1, spec.num_buckets / 64)) {
    wire::ScanBucketRequestT req;
    req.collection = spec.name;
    req.bucket = b;
    req.limit = std::max(1, sample / 32);
    for (const std::string& s : snap.map.groups()[placement.value()->group_of_bucket[b]].shards) {
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
  if (got == 0)
    return Status::FailedPrecondition("collection '" + spec.name +
                                      "' has no points to calibrate on");
  return queries;
}

Result<Calibration> Coordinator::Calibrate(const std::string& collection, int32_t sample,
                                           int32_t k) {
  if (k < 1 || k > opt_.max_k)
    return Status::InvalidArgument("'k' must be in [1, " + std::to_string(opt_.max_k) + "]");
  if (sample < 1) return Status::InvalidArgument("'sample' must be positive");
  // The budgets it picks are cluster state (every coordinator serves them): the leader's job.
  MRL_RETURN_IF_ERROR(state_->AdmitChange("calibrating '" + collection + "'"));
  auto measured = WithSnapshot(
      collection, [&](const ClusterSnapshot& snap) -> Result<std::vector<CalibrationPoint>> {
        auto spec = snap.Spec(collection);
        if (!spec.ok()) return spec.status();
        auto queries = SampleQueries(snap, *spec.value(), sample);
        if (!queries.ok()) return queries.status();
        const int32_t n =
            static_cast<int32_t>(queries->size() / static_cast<size_t>(spec.value()->dim));
        const int32_t dim = spec.value()->dim;
        // The sample runs in chunks, each under its own deadline: the exact plan scans every
        // stored vector per query (~2 s per query at 1M x 2048 on 2 cores), so one deadline for
        // the whole sample would fail a large collection. Every chunk must cover every bucket:
        // a partial exact answer would be a wrong truth and a silently wrong calibration.
        constexpr int32_t kChunk = 16;
        return Calibrator(*spec.value(), k)
            .Measure(n, [&](const QueryPlan& plan) -> Result<std::vector<std::vector<ScoredId>>> {
              std::vector<std::vector<ScoredId>> hits;
              for (int32_t begin = 0; begin < n; begin += kChunk) {
                const int32_t end = std::min(n, begin + kChunk);
                SearchSpec s;
                s.collection = collection;
                s.dims = dim;
                s.queries.assign(queries->begin() + static_cast<ptrdiff_t>(begin) * dim,
                                 queries->begin() + static_cast<ptrdiff_t>(end) * dim);
                s.deadline_ms = opt_.default_deadline_ms * 50;
                s.plan = plan;
                auto r = engine_->Search(snap.map, s);
                if (!r.ok()) return r.status();
                if (r->coverage < 1.0) {
                  return Status::Unavailable(
                      "calibration needs every bucket answered; this pass covered " +
                      std::to_string(r->coverage) + " of them (failed: " +
                      std::to_string(r->failed_shards.size()) + " shards)");
                }
                for (auto& h : r->hits) hits.push_back(std::move(h));
              }
              return hits;
            });
      });
  if (!measured.ok()) return measured.status();
  auto budgets = PickBudgets(measured.value(), DefaultBudgets());
  if (!budgets.ok()) return budgets.status();
  MRL_RETURN_IF_ERROR(state_->SetBudgets(collection, budgets.value()));
  return Calibration{std::move(measured).value(), std::move(budgets).value()};
}

std::string Coordinator::PrometheusMetrics() const {
  const auto snap = state_->Snapshot();
  std::string out = metrics_.Render(snap->map.epoch(), state_->refreshes());
  out += BuildInfoGauge(opt_.build);
  out += MetaMetrics(state_->Meta());
  // Shards whose disk refused a write moments ago (their watermark; writes to them are refused
  // up front until retry_after_ms has passed).
  out += "# TYPE mrl_coordinator_shard_refusing_writes gauge\n";
  for (const auto& [id, info] : snap->map.shards()) {
    out += "mrl_coordinator_shard_refusing_writes{shard=\"" + id + "\"} " +
           (pool_->WriteRefusal(id).ok() ? "0" : "1") + "\n";
  }
  out += ShardHealthMetrics(ShardHealthReports(), pool_->hedges(), pool_->hedgeable_calls());
  out += ShardStatsMetrics(*snap);
  return out;
}

std::vector<ShardHealthReport> Coordinator::ShardHealthReports() const {
  const auto snap = state_->Snapshot();
  std::vector<ShardHealthReport> out;
  for (ShardHealthReport& r : pool_->HealthReports()) {
    if (snap->map.shards().count(r.shard)) out.push_back(std::move(r));
  }
  return out;
}

std::string Coordinator::ShardStatsMetrics(const ClusterSnapshot& snap) const {
  // Each shard's own Stats, asked of every shard at once for this scrape (500 ms at most): its
  // points per collection, bytes on disk, RAM, requests served (the console's QPS is their
  // rate), its data filesystem, its watermark and whether its store is read-only after an I/O
  // error.
  std::vector<std::pair<std::string, std::future<Result<wire::StatsResponseT>>>> asks;
  for (const auto& [id, info] : snap.map.shards()) {
    asks.emplace_back(id, pool_->Client(id)->CallFuture(wire::StatsRequestT{}, 500));
  }
  auto label = [](const std::string& v) {
    std::string e;
    for (char c : v) {
      if (c == '"' || c == '\\') e += '\\';
      e += c == '\n' ? ' ' : c;
    }
    return e;
  };
  std::string up, total, free_bytes, refusing, refusals, failed, since, error;
  std::string points, disk, memory, requests, uptime;
  for (auto& [id, f] : asks) {
    auto st = f.get();
    const std::string l = "{shard=\"" + id + "\"} ";
    up += "mrl_shard_up" + l + (st.ok() ? "1" : "0") + "\n";
    if (!st.ok()) continue;
    uint64_t index_bytes = 0, served = 0;
    for (const auto& c : st->collections) {
      if (!c) continue;
      points += "mrl_shard_points{shard=\"" + id + "\",collection=\"" + label(c->name) + "\"} " +
                std::to_string(c->points) + "\n";
      for (const auto& ix : c->indexes) index_bytes += ix ? ix->memory_bytes : 0;
    }
    for (const auto& r : st->requests) served += r ? r->count : 0;
    disk += "mrl_shard_disk_bytes" + l + std::to_string(st->disk_bytes) + "\n";
    const std::string m = "mrl_shard_memory_bytes{shard=\"" + id + "\",kind=\"";
    memory += m + "block_cache\"} " + std::to_string(st->block_cache_bytes) + "\n" + m +
              "memtables\"} " + std::to_string(st->memtable_bytes) + "\n" + m + "indexes\"} " +
              std::to_string(index_bytes) + "\n";
    requests += "mrl_shard_requests_total" + l + std::to_string(served) + "\n";
    uptime += "mrl_shard_uptime_seconds" + l + std::to_string(st->uptime_ms / 1000.0) + "\n";
    total += "mrl_shard_fs_total_bytes" + l + std::to_string(st->fs_total_bytes) + "\n";
    free_bytes += "mrl_shard_fs_free_bytes" + l + std::to_string(st->fs_free_bytes) + "\n";
    refusing += "mrl_shard_refusing_writes" + l + (st->refusing_writes ? "1" : "0") + "\n";
    refusals += "mrl_shard_write_refusals_total" + l + std::to_string(st->write_refusals) + "\n";
    failed += "mrl_shard_store_failed" + l + (st->store_failed ? "1" : "0") + "\n";
    since += "mrl_shard_store_failed_since_unix_ms" + l +
             std::to_string(st->store_failed ? st->store_failed_since_unix_ms : 0) + "\n";
    if (st->store_failed) {
      error += "mrl_shard_store_error_info{shard=\"" + id + "\",error=\"" + label(st->store_error) +
               "\"} 1\n";
    }
  }
  return "# HELP mrl_shard_up 1 when the shard answered its Stats to this scrape (500 ms).\n"
         "# TYPE mrl_shard_up gauge\n" +
         up +
         "# HELP mrl_shard_points Points stored per collection on the shard.\n"
         "# TYPE mrl_shard_points gauge\n" +
         points +
         "# HELP mrl_shard_disk_bytes The shard's RocksDB files (SST and WAL) in bytes.\n"
         "# TYPE mrl_shard_disk_bytes gauge\n" +
         disk +
         "# HELP mrl_shard_memory_bytes The shard's RAM by kind: RocksDB block cache, memtables, "
         "in-memory indexes.\n"
         "# TYPE mrl_shard_memory_bytes gauge\n" +
         memory +
         "# HELP mrl_shard_requests_total Requests the shard served (every message type).\n"
         "# TYPE mrl_shard_requests_total counter\n" +
         requests + "# TYPE mrl_shard_uptime_seconds gauge\n" + uptime +
         "# HELP mrl_shard_fs_free_bytes Free bytes of the shard's data filesystem (df's "
         "available).\n"
         "# TYPE mrl_shard_fs_free_bytes gauge\n" +
         free_bytes + "# TYPE mrl_shard_fs_total_bytes gauge\n" + total +
         "# HELP mrl_shard_refusing_writes 1 while the shard's disk is above its high watermark.\n"
         "# TYPE mrl_shard_refusing_writes gauge\n" +
         refusing + "# TYPE mrl_shard_write_refusals_total counter\n" + refusals +
         "# HELP mrl_shard_store_failed 1 while the shard's RocksDB is read-only after an I/O "
         "error.\n"
         "# TYPE mrl_shard_store_failed gauge\n" +
         failed + "# TYPE mrl_shard_store_failed_since_unix_ms gauge\n" + since +
         (error.empty() ? "" : "# TYPE mrl_shard_store_error_info gauge\n" + error);
}

}  // namespace mrl::coord
