#include "coordinator/cluster_state.h"

#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

}  // namespace

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

Result<std::unique_ptr<ClusterState>> ClusterState::Open(const std::string& data_dir, bool follow,
                                                         MapListener on_map) {
  MRL_RETURN_IF_ERROR(EnsureWritableDir(data_dir));
  auto loaded = Load(data_dir);
  if (!loaded.ok()) return loaded.status();
  std::unique_ptr<ClusterState> state(new ClusterState(data_dir, follow, std::move(on_map)));
  std::lock_guard<std::mutex> lock(state->mu_);
  state->Publish(std::make_shared<const ClusterSnapshot>(std::move(loaded).value()),
                 /*map_changed=*/true);
  return state;
}

Result<ClusterSnapshot> ClusterState::Load(const std::string& data_dir) {
  ClusterSnapshot st;
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
        if (!spec.ok())
          return Status::Corruption("'" + specs_path + "': " + spec.status().message());
        st.specs.emplace(name, std::move(spec).value());
      }
    } catch (const json::exception& e) {
      return Status::Corruption("'" + specs_path + "': " + e.what());
    }
  }
  return st;
}

std::shared_ptr<const ClusterSnapshot> ClusterState::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snap_;
}

void ClusterState::Publish(std::shared_ptr<const ClusterSnapshot> next, bool map_changed) {
  snap_ = std::move(next);
  if (map_changed && on_map_) on_map_(snap_->map);
}

Status ClusterState::FollowerRefusal() const {
  return Status::FailedPrecondition(
      "this coordinator follows the cluster state in '" + data_dir_ +
      "'; send cluster and collection changes to the coordinator that owns it");
}

Status ClusterState::Persist(const ClusterSnapshot& next) const {
  json specs = json::object();
  for (const auto& [name, s] : next.specs) specs[name] = CollectionSpecToJson(s);
  MRL_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(data_dir_) / "collections.json").string(), specs.dump(2)));
  return next.map.Save((fs::path(data_dir_) / "shard_map.json").string());
}

Status ClusterState::AddGroup(const std::vector<ShardInfo>& shards) {
  if (follow_) return FollowerRefusal();
  std::lock_guard<std::mutex> lock(mu_);
  if (!snap_->specs.empty()) {
    return Status::FailedPrecondition(
        "adding a group to a cluster with collections needs a rebalance (not supported yet)");
  }
  auto next = std::make_shared<ClusterSnapshot>(*snap_);
  MRL_RETURN_IF_ERROR(next->map.AddGroup(shards));
  MRL_RETURN_IF_ERROR(Persist(*next));
  Publish(std::move(next), /*map_changed=*/true);
  return Status::Ok();
}

Status ClusterState::AddCollection(const CollectionSpec& spec) {
  if (follow_) return FollowerRefusal();
  std::lock_guard<std::mutex> lock(mu_);
  if (snap_->specs.count(spec.name)) return Status::Ok();  // created before (idempotent)
  auto next = std::make_shared<ClusterSnapshot>(*snap_);
  MRL_RETURN_IF_ERROR(next->map.PlaceCollection(spec.name, spec.num_buckets));
  next->specs.emplace(spec.name, spec);
  MRL_RETURN_IF_ERROR(Persist(*next));
  Publish(std::move(next), /*map_changed=*/true);  // later requests carry the new epoch
  return Status::Ok();
}

void ClusterState::SetBudgets(const std::string& collection,
                              std::map<std::string, QueryPlan> budgets) {
  std::lock_guard<std::mutex> lock(mu_);
  auto next = std::make_shared<ClusterSnapshot>(*snap_);
  next->budgets[collection] = std::move(budgets);
  Publish(std::move(next), /*map_changed=*/false);
}

Status ClusterState::Refresh(uint64_t seen_epoch) {
  auto loaded = Load(data_dir_);
  if (!loaded.ok()) return loaded.status().WithContext("refreshing the shard map");
  std::lock_guard<std::mutex> lock(mu_);
  const uint64_t current = snap_->map.epoch();
  if (loaded->map.epoch() > current) {
    std::cerr << "mrl-coordinator: shard map epoch " << current << " -> " << loaded->map.epoch()
              << " (reloaded from " << data_dir_ << ")" << std::endl;
    auto next = std::make_shared<ClusterSnapshot>(std::move(loaded).value());
    next->budgets = snap_->budgets;  // measured here; still valid for the collections that remain
    std::erase_if(next->budgets, [&](const auto& b) { return !next->specs.count(b.first); });
    ++refreshes_;
    Publish(std::move(next), /*map_changed=*/true);
    return Status::Ok();
  }
  if (current > seen_epoch) return Status::Ok();  // another call refreshed it meanwhile
  return Status::Aborted("a shard has seen a newer shard-map epoch than " +
                         std::to_string(current) + ", the newest in " + data_dir_);
}

}  // namespace mrl::coord
