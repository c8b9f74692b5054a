#include "coordinator/cluster_state.h"

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "coordinator/cluster_keys.h"
#include "coordinator/move.h"
#include "coordinator/owner_state.h"
#include "meta/embedded_store.h"
#include "meta/etcd_store.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

bool StartsWith(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

}  // namespace

struct ClusterState::Cache {
  std::map<std::string, meta::KeyValue> kvs;  // every key of the store's prefix
  std::string signature;                      // (key, mod revision) of what the snapshot holds
  int64_t map_mod = -1;                       // the map key's mod revision in the snapshot
};

Result<const CollectionSpec*> ClusterSnapshot::Spec(const std::string& collection) const {
  auto it = specs.find(collection);
  if (it == specs.end()) return Status::NotFound("unknown collection '" + collection + "'");
  return &it->second;
}

Result<QueryPlan> ClusterSnapshot::Budget(const std::string& collection,
                                          const std::string& budget) const {
  auto it = budgets.find(collection);
  if (it == budgets.end() || !it->second.count(budget)) {
    return Status::FailedPrecondition("budget '" + budget + "' of '" + collection +
                                      "' is not calibrated: POST /v1/collections/" + collection +
                                      "/calibrate");
  }
  return it->second.at(budget);
}

ClusterState::ClusterState(ClusterStateOptions options, MapListener on_map)
    : opt_(std::move(options)), on_map_(std::move(on_map)), cache_(std::make_unique<Cache>()) {}

Result<std::unique_ptr<ClusterState>> ClusterState::Open(const std::string& data_dir, bool follow,
                                                         MapListener on_map) {
  ClusterStateOptions o;
  o.data_dir = data_dir;
  o.follow = follow;
  return Open(std::move(o), std::move(on_map));
}

Result<std::unique_ptr<ClusterState>> ClusterState::Open(ClusterStateOptions options,
                                                         MapListener on_map) {
  if (options.session_ttl_s < 2) return Status::InvalidArgument("session TTL must be >= 2 s");
  if (options.id.empty()) options.id = RandomCoordinatorId();
  if (!ValidCoordinatorId(options.id)) {
    return Status::InvalidArgument("coordinator id '" + options.id +
                                   "': want 1-64 of [A-Za-z0-9_.:-]");
  }
  if (!options.follow_url.empty()) options.follow = true;
  std::unique_ptr<ClusterState> s(new ClusterState(std::move(options), std::move(on_map)));
  const ClusterStateOptions& o = s->opt_;
  s->embedded_ = !StartsWith(o.meta_url, "etcd://");
  if (s->embedded_) {
    if (o.data_dir.empty()) return Status::InvalidArgument("the embedded store needs a data dir");
    MRL_RETURN_IF_ERROR(EnsureWritableDir(o.data_dir));
  }
  if (!(s->embedded_ && o.follow)) {  // the embedded follower reads the owner's file instead
    auto store = meta::OpenStore(o.meta_url.empty() ? "file:" + o.data_dir : o.meta_url);
    if (!store.ok()) return store.status();
    s->store_ = std::move(store).value();
  }
  if (s->embedded_ && !o.follow) MRL_RETURN_IF_ERROR(s->ImportLegacyFiles());
  Status loaded = s->Reload(/*at_open=*/true);
  if (!loaded.ok()) {
    // etcd away at start is not fatal: the watch loop reads the state once it answers.
    if (s->embedded_ || loaded.code() != Status::Code::kUnavailable) return loaded;
    std::cerr << "mrl-coordinator: WARNING: " << loaded.message()
              << "; serving an empty cluster until the metadata store answers" << std::endl;
    std::lock_guard<std::mutex> lock(s->mu_);
    s->snap_ = std::make_shared<const ClusterSnapshot>();
  }
  if (!o.follow_url.empty()) {
    ClusterState* self = s.get();
    s->watch_thread_ = std::thread([self] { self->PollOwnerLoop(); });
  } else if (s->store_) {
    ClusterState* self = s.get();
    s->watch_thread_ = std::thread([self, fresh = loaded.ok()] {
      if (!fresh) {
        std::lock_guard<std::mutex> lock(self->watch_mu_);
        self->watch_ended_ = true;  // re-read first
      }
      self->WatchLoop();
    });
  }
  return s;
}

ClusterState::~ClusterState() {
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    stop_ = true;
  }
  session_cv_.notify_all();
  if (session_thread_.joinable()) session_thread_.join();
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    watch_stop_ = true;  // (not watch_ended_: the loop may be about to reset that one)
  }
  watch_cv_.notify_all();
  if (watch_thread_.joinable()) watch_thread_.join();
  std::unique_ptr<meta::Watch> w;
  {
    std::lock_guard<std::mutex> lock(watch_mu_);
    w = std::move(watch_);
  }
  w.reset();
  // Resign: revoking the session lease deletes the leader key, so another coordinator leads at
  // once instead of after the TTL.
  if (store_ && lease_ != 0) (void)store_->RevokeLease(lease_);
}

Status ClusterState::ImportLegacyFiles() {
  auto have = store_->GetPrefix("");
  if (!have.ok()) return have.status();
  for (const auto& kv : have->kvs) {
    if (kv.key == kMapKey || StartsWith(kv.key, kCollectionsPrefix)) return Status::Ok();
  }
  const std::string map_path = (fs::path(opt_.data_dir) / "shard_map.json").string();
  const std::string specs_path = (fs::path(opt_.data_dir) / "collections.json").string();
  if (!fs::exists(map_path) && !fs::exists(specs_path)) return Status::Ok();
  std::vector<meta::Op> ops;
  if (fs::exists(map_path)) {
    auto m = ShardMap::Load(map_path);
    if (!m.ok()) return m.status();
    ops.push_back(meta::Op::Put(kMapKey, m->ToJson()));
  }
  if (fs::exists(specs_path)) {
    auto text = ReadFile(specs_path);
    if (!text.ok()) return text.status();
    try {
      const json all = json::parse(text.value());
      for (const auto& [name, j] : all.items()) {
        auto spec = CollectionSpecFromJson(j, name);
        if (!spec.ok())
          return Status::Corruption("'" + specs_path + "': " + spec.status().message());
        ops.push_back(meta::Op::Put(kCollectionsPrefix + name, j.dump()));
      }
    } catch (const json::exception& e) {
      return Status::Corruption("'" + specs_path + "': " + e.what());
    }
  }
  auto r = store_->Txn({meta::Compare::Absent(kMapKey)}, ops);
  if (!r.ok()) return r.status();
  std::cerr << "mrl-coordinator: imported shard_map.json and collections.json of "
            << opt_.data_dir << " into " << store_->Describe() << std::endl;
  return Status::Ok();
}

Status ClusterState::Reload(bool at_open) {
  Result<meta::ReadResult> r =
      store_ ? store_->GetPrefix("")
      : !opt_.follow_url.empty()
          ? FetchOwnerState(opt_.follow_url, opt_.follow_token, 2000)
          : meta::EmbeddedStore::ReadSnapshot(opt_.data_dir);
  if (!r.ok()) {
    NoteStoreError(r.status());
    return r.status().WithContext("reading the cluster state from " + Source());
  }
  NoteStoreOk();
  std::lock_guard<std::mutex> lock(mu_);
  if (!at_open && r->revision < revision_) return Status::Ok();  // a newer state is here already
  auto fresh = std::make_unique<Cache>();
  for (auto& kv : r->kvs) fresh->kvs.emplace(kv.key, std::move(kv));
  fresh->signature = cache_->signature;
  fresh->map_mod = cache_->map_mod;
  std::swap(cache_, fresh);
  const int64_t served_revision = revision_;
  revision_ = r->revision;
  Status st = RebuildLocked(/*log_epoch=*/!at_open);
  if (!st.ok()) {  // keep what was served, and the revision it reflects
    std::swap(cache_, fresh);
    revision_ = served_revision;
  } else {
    watched_revision_ = std::max(watched_revision_, r->revision);
  }
  return st;
}

void ClusterState::ObserveLeaderKey(const meta::KeyValue& kv) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = cache_->kvs.find(kv.key);
  const int64_t known = it == cache_->kvs.end() ? leader_deleted_at_ : it->second.mod_revision;
  if (kv.mod_revision <= known) return;  // the cache has this write or a later one
  cache_->kvs[kv.key] = kv;
  Status rebuilt = RebuildLocked(/*log_epoch=*/false);
  if (!rebuilt.ok()) std::cerr << "mrl-coordinator: ERROR: " << rebuilt.message() << std::endl;
}

Status ClusterState::RebuildLocked(bool log_epoch) {
  auto next = std::make_shared<ClusterSnapshot>();
  std::string signature;
  int64_t map_mod = 0;
  LeaderInfo leader;
  std::vector<std::string> sessions;
  std::vector<ShardRegistrationInfo> registrations;
  std::map<std::string, std::string> budget_values;
  for (const auto& [key, kv] : cache_->kvs) {
    const bool state_key = key == kMapKey || StartsWith(key, kCollectionsPrefix) ||
                           StartsWith(key, kBudgetsPrefix) || StartsWith(key, kMovesPrefix);
    if (state_key) signature += key + "@" + std::to_string(kv.mod_revision) + ";";
    if (key == kMapKey) {
      auto m = ShardMap::FromJson(kv.value);
      if (!m.ok()) return Status::Corruption("metadata key '" + key + "': " + m.status().message());
      next->map = std::move(m).value();
      map_mod = kv.mod_revision;
    } else if (StartsWith(key, kCollectionsPrefix)) {
      const std::string name = key.substr(kCollectionsPrefix.size());
      const json j = json::parse(kv.value, nullptr, /*allow_exceptions=*/false);
      auto spec = CollectionSpecFromJson(j, name);
      if (!spec.ok())
        return Status::Corruption("metadata key '" + key + "': " + spec.status().message());
      next->specs.emplace(name, std::move(spec).value());
    } else if (StartsWith(key, kBudgetsPrefix)) {
      budget_values[key.substr(kBudgetsPrefix.size())] = kv.value;
    } else if (key == kLeaderKey) {
      leader = ParseLeader(kv);
    } else if (StartsWith(key, kSessionsPrefix)) {
      sessions.push_back(key.substr(kSessionsPrefix.size()));
    } else if (StartsWith(key, kMovesPrefix)) {
      next->moves[key.substr(kMovesPrefix.size())] = {kv.value, kv.mod_revision};
    } else if (StartsWith(key, kShardsPrefix)) {
      registrations.push_back(ParseShardRegistration(key.substr(kShardsPrefix.size()), kv));
    }
  }
  for (const auto& [collection, value] : budget_values) {
    if (!next->specs.count(collection)) continue;  // a dropped collection's measurements
    auto b = BudgetsFromJson(value);
    if (!b.ok()) {
      return Status::Corruption("metadata key '" + kBudgetsPrefix + collection +
                                "': " + b.status().message());
    }
    next->budgets[collection] = std::move(b).value();
  }
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    current_ = leader;
    coordinators_ = std::move(sessions);
    registrations_ = std::move(registrations);
  }
  if (snap_ && signature == cache_->signature) return Status::Ok();
  const bool map_changed = !snap_ || map_mod != cache_->map_mod;
  if (log_epoch && snap_ && next->map.epoch() != snap_->map.epoch()) {
    std::cerr << "mrl-coordinator: shard map epoch " << snap_->map.epoch() << " -> "
              << next->map.epoch() << " (from " << (store_ ? store_->Describe() : opt_.data_dir)
              << ")" << std::endl;
  }
  cache_->signature = std::move(signature);
  cache_->map_mod = map_mod;
  snap_ = std::move(next);
  if (map_changed && on_map_) on_map_(snap_->map);
  return Status::Ok();
}

void ClusterState::OnWatch(const Status& st, const std::vector<meta::WatchEvent>& events) {
  if (!st.ok()) {
    NoteStoreError(st);
    {
      std::lock_guard<std::mutex> lock(watch_mu_);
      watch_ended_ = true;
    }
    watch_cv_.notify_all();
    return;
  }
  NoteStoreOk();
  bool leadership_news = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const meta::WatchEvent& e : events) {
      auto it = cache_->kvs.find(e.kv.key);
      const int64_t have = it == cache_->kvs.end() ? 0 : it->second.mod_revision;
      if (e.kv.mod_revision > have || it == cache_->kvs.end()) {
        if (e.type == meta::WatchEvent::Type::kPut) {
          cache_->kvs[e.kv.key] = e.kv;
        } else if (it != cache_->kvs.end()) {
          cache_->kvs.erase(it);
        }
      }
      if (e.type != meta::WatchEvent::Type::kPut && e.kv.key == kLeaderKey) {
        leader_deleted_at_ = std::max(leader_deleted_at_, e.kv.mod_revision);
      }
      revision_ = std::max(revision_, e.kv.mod_revision);
      watched_revision_ = std::max(watched_revision_, e.kv.mod_revision);
      leadership_news |= e.kv.key == kLeaderKey;
    }
    Status rebuilt = RebuildLocked(/*log_epoch=*/true);
    if (!rebuilt.ok()) {
      std::cerr << "mrl-coordinator: ERROR: ignoring a change of the cluster state: "
                << rebuilt.message() << " (serving epoch " << snap_->map.epoch() << ")"
                << std::endl;
    }
  }
  if (leadership_news) session_cv_.notify_all();
}

void ClusterState::WatchLoop() {
  int backoff_ms = 100;
  for (;;) {
    std::unique_ptr<meta::Watch> old;
    bool reread = false;
    {
      std::unique_lock<std::mutex> lock(watch_mu_);
      watch_cv_.wait(lock, [&] { return watch_stop_ || watch_ended_ || !watch_; });
      if (watch_stop_) return;
      reread = watch_ended_;
      old = std::move(watch_);
    }
    old.reset();  // outside watch_mu_: its callback takes that lock
    if (reread) {
      ++watch_restarts_;
      Status st = Reload(/*at_open=*/false);
      if (!st.ok()) {
        {
          std::unique_lock<std::mutex> lock(session_mu_);
          session_cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [&] { return stop_; });
        }
        backoff_ms = std::min(backoff_ms * 2, 2000);
        std::lock_guard<std::mutex> w(watch_mu_);
        watch_ended_ = true;
        continue;
      }
    }
    int64_t from = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      // Not revision_: a committed change advances that past events the watch has not
      // delivered yet, and a watch resumed there would never deliver them.
      from = watched_revision_;
    }
    auto w = store_->WatchPrefix(
        "", from, [this](const Status& st, const std::vector<meta::WatchEvent>& events) {
          OnWatch(st, events);
        });
    std::lock_guard<std::mutex> lock(watch_mu_);
    if (!w.ok()) {
      NoteStoreError(w.status());
      watch_ended_ = true;
      continue;
    }
    backoff_ms = 100;
    watch_ = std::move(w).value();
    watch_ended_ = false;
  }
}

std::shared_ptr<const ClusterSnapshot> ClusterState::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snap_;
}

Status ClusterState::FollowerRefusal() const {
  return Status::FailedPrecondition(
      "this coordinator follows the cluster state in " +
      Source() +
      "; send cluster and collection changes to the coordinator that owns it");
}

Status ClusterState::Change(
    const std::string& what,
    const std::function<Status(ClusterSnapshot*, std::vector<meta::Op>*)>& mutate,
    const std::vector<meta::Compare>& guards) {
  if (opt_.follow) return FollowerRefusal();
  std::lock_guard<std::mutex> serial(change_mu_);
  for (int attempt = 0; attempt < 2; ++attempt) {
    MRL_RETURN_IF_ERROR(AdmitChange(what));
    int64_t fence = 0;
    {
      std::lock_guard<std::mutex> lock(session_mu_);
      fence = leader_revision_;
    }
    std::shared_ptr<const ClusterSnapshot> snap;
    int64_t map_mod = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      snap = snap_;
      auto it = cache_->kvs.find(kMapKey);
      map_mod = it == cache_->kvs.end() ? 0 : it->second.mod_revision;
    }
    ClusterSnapshot next = *snap;
    std::vector<meta::Op> ops;
    MRL_RETURN_IF_ERROR(mutate(&next, &ops));
    if (ops.empty()) return Status::Ok();  // nothing to change
    std::vector<meta::Compare> compares = {meta::Compare::ModRevisionIs(kLeaderKey, fence),
                                           meta::Compare::ModRevisionIs(kMapKey, map_mod)};
    compares.insert(compares.end(), guards.begin(), guards.end());
    auto r = store_->Txn(compares, ops);
    if (!r.ok()) {
      NoteStoreError(r.status());
      return Status::Unavailable(
          what + ": the metadata store did not confirm the change (" + r.status().message() +
          "); it may or may not have been applied (see mrlctl status); searches and writes go on "
          "with shard map epoch " + std::to_string(snap->map.epoch()));
    }
    NoteStoreOk();
    if (r->succeeded) {
      std::lock_guard<std::mutex> lock(mu_);
      for (const meta::Op& op : ops) {
        if (op.kind != meta::Op::Kind::kPut) {  // (no change deletes a prefix)
          cache_->kvs.erase(op.key);
          continue;
        }
        meta::KeyValue& kv = cache_->kvs[op.key];
        if (kv.create_revision == 0) kv.create_revision = r->revision;
        kv.key = op.key;
        kv.value = op.value;
        kv.mod_revision = r->revision;
        ++kv.version;
      }
      revision_ = std::max(revision_, r->revision);
      return RebuildLocked(/*log_epoch=*/false);
    }
    // A compare failed: deposed (the leader key moved), or the map moved under us.
    auto leader = store_->Get(kLeaderKey);
    if (!leader.ok()) return leader.status().WithContext(what);
    const int64_t now_rev = leader->kvs.empty() ? 0 : leader->kvs[0].mod_revision;
    if (now_rev != fence) {
      ++fenced_;
      std::lock_guard<std::mutex> lock(session_mu_);
      current_ = leader->kvs.empty() ? LeaderInfo{} : ParseLeader(leader->kvs[0]);
      std::cerr << "mrl-coordinator: FENCED: refused to write the cluster state (" << what
                << "): this coordinator led at leader-key revision " << fence
                << ", the key is now at revision " << now_rev << " held by '"
                << (current_.id.empty() ? "nobody" : current_.id) << "'" << std::endl;
      LoseLeadership("fenced by a newer leader key");
      keepalive_now_ = true;  // its session has probably expired: find out now
      session_cv_.notify_all();
      return NotLeaderRefusal();
    }
    MRL_RETURN_IF_ERROR(Reload(/*at_open=*/false));
  }
  return Status::Aborted(what + ": the shard map changed meanwhile twice; retry");
}

Status ClusterState::AddGroup(const std::vector<ShardInfo>& shards) {
  return Change("adding a replica group", [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
    MRL_RETURN_IF_ERROR(next->map.AddGroup(shards));
    ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
    return Status::Ok();
  });
}

Status ClusterState::ChangeMap(const std::string& what,
                               const std::function<Status(ShardMap*)>& edit) {
  return Change(what, [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
    const uint64_t epoch = next->map.epoch();
    MRL_RETURN_IF_ERROR(edit(&next->map));
    if (next->map.epoch() != epoch) ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
    return Status::Ok();
  });
}

Status ClusterState::RetireGroup(uint32_t group) {
  return Change("retiring group " + std::to_string(group),
                [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
                  MRL_RETURN_IF_ERROR(next->map.RetireGroup(group));
                  ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
                  return Status::Ok();
                });
}

Result<int64_t> ClusterState::RecordMove(const std::string& id, const std::string& value,
                                         int64_t expected_revision,
                                         const std::function<Status(ShardMap*)>& map_change) {
  return RecordMoveWith(id, expected_revision, [&](ShardMap* map) -> Result<std::string> {
    if (map_change) MRL_RETURN_IF_ERROR(map_change(map));
    return value;
  }, map_change != nullptr);
}

Result<int64_t> ClusterState::RecordMoveWith(
    const std::string& id, int64_t expected_revision,
    const std::function<Result<std::string>(ShardMap*)>& change, bool changes_map) {
  if (!ValidCoordinatorId(id)) {
    return Status::InvalidArgument("move id '" + id + "' must be 1-64 of [A-Za-z0-9_.:-]");
  }
  const std::string key = kMovesPrefix + id;
  const meta::Compare guard = expected_revision == 0
                                  ? meta::Compare::Absent(key)
                                  : meta::Compare::ModRevisionIs(key, expected_revision);
  Status st = Change(
      "recording move '" + id + "'",
      [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
        auto it = next->moves.find(id);
        const int64_t now = it == next->moves.end() ? 0 : it->second.mod_revision;
        if (now != expected_revision) {
          return Status::Aborted("move '" + id + "' is at journal revision " +
                                 std::to_string(now) + ", not " +
                                 std::to_string(expected_revision) +
                                 ": it changed meanwhile; re-read the journal");
        }
        const uint64_t epoch = next->map.epoch();
        auto value = change(&next->map);
        if (!value.ok()) return value.status();
        if (changes_map && next->map.epoch() != epoch) {
          ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
        }
        ops->push_back(value->empty() ? meta::Op::Delete(key) : meta::Op::Put(key, *value));
        return Status::Ok();
      },
      {guard});
  if (!st.ok()) return st;
  const auto snap = Snapshot();
  auto it = snap->moves.find(id);
  return it == snap->moves.end() ? 0 : it->second.mod_revision;
}

Status ClusterState::AddCollection(const CollectionSpec& spec) {
  return Change("creating collection '" + spec.name + "'",
                [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
                  if (next->specs.count(spec.name)) return Status::Ok();  // idempotent
                  MRL_RETURN_IF_ERROR(next->map.PlaceCollection(spec.name, spec.num_buckets));
                  ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
                  ops->push_back(meta::Op::Put(kCollectionsPrefix + spec.name,
                                               CollectionSpecToJson(spec).dump()));
                  return Status::Ok();
                });
}

Status ClusterState::RemoveCollection(const std::string& name) {
  return Change("dropping collection '" + name + "'",
                [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
                  MRL_RETURN_IF_ERROR(CheckDroppable(*next, name));
                  MRL_RETURN_IF_ERROR(next->map.RemoveCollection(name));
                  ops->push_back(meta::Op::Put(kMapKey, next->map.ToJson()));
                  ops->push_back(meta::Op::Delete(kCollectionsPrefix + name));
                  if (next->budgets.count(name)) ops->push_back(meta::Op::Delete(kBudgetsPrefix + name));
                  return Status::Ok();
                });
}

Status CheckDroppable(const ClusterSnapshot& snap, const std::string& name) {
  if (!snap.specs.count(name)) return Status::NotFound("unknown collection '" + name + "'");
  for (const auto& [id, entry] : snap.moves) {
    auto record = MoveFromJson(entry.value);
    if (!record.ok() || record->collection != name) continue;
    if (record->phase != MovePhase::kDone && record->phase != MovePhase::kAborted) {
      return Status::FailedPrecondition("collection '" + name + "' has a move in progress ('" + id +
                                        "', " + MovePhaseName(record->phase) +
                                        "): wait for it or abort it first");
    }
  }
  return Status::Ok();
}

Status ClusterState::SetBudgets(const std::string& collection,
                                std::map<std::string, QueryPlan> budgets) {
  return Change("storing the budgets of '" + collection + "'",
                [&](ClusterSnapshot* next, std::vector<meta::Op>* ops) {
                  if (!next->specs.count(collection))
                    return Status::NotFound("unknown collection '" + collection + "'");
                  ops->push_back(meta::Op::Put(kBudgetsPrefix + collection, BudgetsToJson(budgets)));
                  return Status::Ok();
                });
}

Status ClusterState::Refresh(uint64_t seen_epoch) {
  const uint64_t before = Snapshot()->map.epoch();
  if (before > seen_epoch) return Status::Ok();  // another call (or the watch) moved past it
  MRL_RETURN_IF_ERROR(Reload(/*at_open=*/false).WithContext("refreshing the shard map"));
  const uint64_t now = Snapshot()->map.epoch();
  if (now > before) {
    ++refreshes_;
    return Status::Ok();
  }
  if (now > seen_epoch) return Status::Ok();
  return Status::Aborted("a shard has seen a newer shard-map epoch than " + std::to_string(now) +
                         ", the newest in " +
                         Source());
}

std::string ClusterState::Source() const {
  if (store_) return store_->Describe();
  if (!opt_.follow_url.empty()) return "the owner coordinator at " + opt_.follow_url;
  return opt_.data_dir + "/meta.json";
}

meta::ReadResult ClusterState::StateKvs() const {
  std::lock_guard<std::mutex> lock(mu_);
  meta::ReadResult r;
  r.revision = revision_;
  for (const auto& [key, kv] : cache_->kvs) r.kvs.push_back(kv);
  return r;
}

void ClusterState::PollOwnerLoop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(watch_mu_);
      watch_cv_.wait_for(lock, std::chrono::milliseconds(opt_.follow_poll_ms), [&] { return watch_stop_; });
      if (watch_stop_) return;
    }
    (void)Reload(/*at_open=*/false);  // an unreachable owner: noted, the last state serves on
  }
}

void ClusterState::NoteStoreError(const Status& st) {
  std::lock_guard<std::mutex> lock(status_mu_);
  if (reachable_) {
    std::cerr << "mrl-coordinator: WARNING: metadata store: " << st.message()
              << " (serving the last cluster state; changes are refused until it answers)"
              << std::endl;
  }
  reachable_ = false;
  last_error_ = st.message();
}

void ClusterState::NoteStoreOk() {
  std::lock_guard<std::mutex> lock(status_mu_);
  if (!reachable_) std::cerr << "mrl-coordinator: metadata store answers again" << std::endl;
  reachable_ = true;
}

MetaState ClusterState::Meta() const {
  MetaState m;
  m.store = store_ ? store_->Describe()
           : !opt_.follow_url.empty() ? "follower of the owner coordinator at " + opt_.follow_url
                                      : "embedded file:" + opt_.data_dir + "/meta.json (follower)";
  m.self_id = opt_.id;
  m.follow = opt_.follow;
  {
    std::lock_guard<std::mutex> lock(session_mu_);
    m.self_address = address_;
    m.leader = leader_;
    m.current = current_;
    m.coordinators = coordinators_;
    m.shards = registrations_;
  }
  {
    std::lock_guard<std::mutex> lock(status_mu_);
    m.reachable = reachable_;
    m.last_error = last_error_;
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    m.revision = revision_;
  }
  m.watch_restarts = watch_restarts_.load();
  m.lease_losses = lease_losses_.load();
  m.fenced_writes = fenced_.load();
  if (auto* etcd = dynamic_cast<meta::EtcdStore*>(store_.get())) m.store_requests = etcd->exchanges();
  return m;
}

std::vector<meta::EtcdMember> ClusterState::StoreMembers() const {
  auto* etcd = dynamic_cast<meta::EtcdStore*>(store_.get());
  if (!etcd) return {};
  // Asked of every member (one status request each): at most once a second, however often
  // /v1/meta and `mrlctl status` are polled. One caller asks at a time; the others wait for it.
  std::lock_guard<std::mutex> lock(members_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (members_at_ == std::chrono::steady_clock::time_point{} ||
      now - members_at_ >= std::chrono::seconds(1)) {
    members_ = etcd->Members();
    members_at_ = std::chrono::steady_clock::now();
  }
  return members_;
}

}  // namespace mrl::coord
