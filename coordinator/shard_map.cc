#include "coordinator/shard_map.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <charconv>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <utility>

#include "common/atomic_file.h"
#include "common/bucket.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;

bool ValidName(const std::string& s) {
  static const std::regex kName("[A-Za-z0-9_.-]{1,64}");
  return std::regex_match(s, kName);
}

// host:port with a non-empty host and a port in 1..65535.
bool ValidAddress(const std::string& a) {
  const size_t colon = a.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 >= a.size() || a.size() - colon > 6) {
    return false;
  }
  uint32_t port = 0;
  for (size_t i = colon + 1; i < a.size(); ++i) {
    if (a[i] < '0' || a[i] > '9') return false;
    port = port * 10 + static_cast<uint32_t>(a[i] - '0');
  }
  return port >= 1 && port <= 65535;
}

const char* PhaseName(BucketMovePhase p) {
  return p == BucketMovePhase::kDualWrite ? "dual_write" : "flipped";
}

std::string BucketName(const std::string& collection, uint32_t bucket) {
  return "bucket " + std::to_string(bucket) + " of '" + collection + "'";
}

}  // namespace

Status ShardMap::AddGroup(const std::vector<ShardInfo>& shards) {
  if (shards.empty()) return Status::InvalidArgument("a replica group needs at least one shard");
  std::set<std::string> ids;
  for (const ShardInfo& s : shards) {
    if (!ValidName(s.id)) return Status::InvalidArgument("bad shard id '" + s.id + "'");
    if (!ValidAddress(s.address)) {
      return Status::InvalidArgument("shard '" + s.id + "': address must be host:port, got '" +
                                     s.address + "'");
    }
    if (shards_.count(s.id) || !ids.insert(s.id).second) {
      return Status::FailedPrecondition("shard '" + s.id + "' is already in the map");
    }
  }
  ReplicaGroup g;
  for (const ShardInfo& s : shards) {
    shards_[s.id] = s;
    g.shards.push_back(s.id);
  }
  groups_.push_back(std::move(g));
  ++epoch_;
  return Status::Ok();
}

std::vector<std::string> ReplicaGroup::WriteShards() const {
  std::vector<std::string> all = shards;
  all.insert(all.end(), filling.begin(), filling.end());
  return all;
}

namespace {

Status CheckNewShard(const std::map<std::string, ShardInfo>& known, const ShardInfo& s) {
  if (!ValidName(s.id)) return Status::InvalidArgument("bad shard id '" + s.id + "'");
  if (!ValidAddress(s.address)) {
    return Status::InvalidArgument("shard '" + s.id + "': address must be host:port, got '" +
                                   s.address + "'");
  }
  if (known.count(s.id)) return Status::FailedPrecondition("shard '" + s.id + "' is already in the map");
  return Status::Ok();
}

}  // namespace

Result<uint32_t> ShardMap::GroupOfShard(const std::string& shard) const {
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    const ReplicaGroup& group = groups_[g];
    if (std::find(group.shards.begin(), group.shards.end(), shard) != group.shards.end() ||
        std::find(group.filling.begin(), group.filling.end(), shard) != group.filling.end() ||
        std::find(group.out_of_sync.begin(), group.out_of_sync.end(), shard) !=
            group.out_of_sync.end()) {
      return g;
    }
  }
  return Status::NotFound("unknown shard '" + shard + "': it is in no replica group");
}

Status ShardMap::AddReplica(uint32_t group, const ShardInfo& shard) {
  if (group >= groups_.size() || groups_[group].shards.empty()) {
    return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  }
  MRL_RETURN_IF_ERROR(CheckNewShard(shards_, shard));
  shards_[shard.id] = shard;
  groups_[group].filling.push_back(shard.id);
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::PromoteReplica(uint32_t group, const std::string& shard) {
  if (group >= groups_.size()) return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  auto& filling = groups_[group].filling;
  auto it = std::find(filling.begin(), filling.end(), shard);
  if (it == filling.end()) {
    return Status::NotFound("shard '" + shard + "' is not being filled in group " + std::to_string(group));
  }
  filling.erase(it);
  groups_[group].shards.push_back(shard);
  groups_[group].catch_up.erase(shard);
  ++epoch_;
  return Status::Ok();
}

namespace {

// Erases `id` from `v`; false when absent.
bool EraseMember(std::vector<std::string>& v, const std::string& id) {
  auto it = std::find(v.begin(), v.end(), id);
  if (it == v.end()) return false;
  v.erase(it);
  return true;
}

}  // namespace

Status ShardMap::TakeOutOfSync(uint32_t group, const std::string& shard, uint64_t from_version) {
  if (group >= groups_.size()) return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  ReplicaGroup& g = groups_[group];
  const bool serving = std::count(g.shards.begin(), g.shards.end(), shard) > 0;
  const bool filling = std::count(g.filling.begin(), g.filling.end(), shard) > 0;
  if (!serving && !filling) {
    return Status::NotFound("shard '" + shard + "' is not serving or filling in group " +
                            std::to_string(group));
  }
  if (serving && g.shards.size() == 1) {
    return Status::FailedPrecondition("shard '" + shard + "' is the last in-sync replica of group " +
                                      std::to_string(group) + ": writes wait for it");
  }
  EraseMember(serving ? g.shards : g.filling, shard);
  g.out_of_sync.push_back(shard);
  auto known = g.catch_up.find(shard);
  if (known != g.catch_up.end()) {
    known->second.from_version = std::min(known->second.from_version, from_version);
    known->second.since_epoch = 0;
  } else if (serving) {
    g.catch_up[shard] = CatchUp{from_version, 0};
  } else {
    g.catch_up[shard] = CatchUp{0, 0};  // a new replica's fill was interrupted: copy it whole
  }
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::StartCatchUp(uint32_t group, const std::string& shard) {
  if (group >= groups_.size()) return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  ReplicaGroup& g = groups_[group];
  if (!EraseMember(g.out_of_sync, shard)) {
    return Status::NotFound("shard '" + shard + "' is not out of sync in group " +
                            std::to_string(group));
  }
  g.filling.push_back(shard);
  ++epoch_;
  g.catch_up[shard].since_epoch = epoch_;
  return Status::Ok();
}

Status ShardMap::RemoveReplica(const std::string& shard, bool lower_factor) {
  auto g = GroupOfShard(shard);
  if (!g.ok()) return g.status();
  ReplicaGroup& group = groups_[*g];
  const std::string where = "group " + std::to_string(*g);
  if (!lower_factor) {
    return Status::FailedPrecondition(
        "removing shard '" + shard + "' would drop " + where + " below its replication factor " +
        std::to_string(group.replication()) + " (" + std::to_string(group.replication() - 1) +
        " replicas left): replace it (replace-shard) or lower the factor (replicate --remove)");
  }
  auto serving = std::find(group.shards.begin(), group.shards.end(), shard);
  if (serving != group.shards.end()) {
    if (group.shards.size() == 1) {
      return Status::FailedPrecondition("shard '" + shard + "' is the last serving replica of " +
                                        where + ": drain the group instead");
    }
    group.shards.erase(serving);
  } else if (!EraseMember(group.filling, shard)) {
    EraseMember(group.out_of_sync, shard);
  }
  group.catch_up.erase(shard);
  shards_.erase(shard);
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::ReplaceShard(const std::string& dead, const ShardInfo& fresh) {
  auto g = GroupOfShard(dead);
  if (!g.ok()) return g.status();
  MRL_RETURN_IF_ERROR(CheckNewShard(shards_, fresh));
  ReplicaGroup& group = groups_[*g];
  auto serving = std::find(group.shards.begin(), group.shards.end(), dead);
  if (serving != group.shards.end()) {
    if (group.shards.size() == 1) {
      return Status::FailedPrecondition(
          "shard '" + dead + "' is the only serving replica of group " + std::to_string(*g) +
          ": there is no replica to fill '" + fresh.id + "' from (restore '" + dead +
          "' or add a replica to the group first)");
    }
    group.shards.erase(serving);
  } else if (!EraseMember(group.filling, dead)) {
    EraseMember(group.out_of_sync, dead);
  }
  group.catch_up.erase(dead);
  shards_.erase(dead);
  shards_[fresh.id] = fresh;
  group.filling.push_back(fresh.id);
  ++epoch_;
  return Status::Ok();
}

std::vector<uint32_t> ShardMap::LiveGroups() const {
  std::vector<uint32_t> live;
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    if (!groups_[g].shards.empty()) live.push_back(g);
  }
  return live;
}

Status ShardMap::RetireGroup(uint32_t group) {
  if (group >= groups_.size() || groups_[group].shards.empty()) {
    return Status::NotFound("group " + std::to_string(group) + " is not in the map");
  }
  if (LiveGroups().size() < 2 && !collections_.empty()) {
    return Status::FailedPrecondition("group " + std::to_string(group) +
                                      " is the last group of a cluster with collections");
  }
  for (const auto& [name, p] : collections_) {
    for (uint32_t b = 0; b < p.num_buckets; ++b) {
      if (p.group_of_bucket[b] == group) {
        return Status::FailedPrecondition("group " + std::to_string(group) + " still owns bucket " +
                                          std::to_string(b) + " of '" + name +
                                          "': drain it first");
      }
    }
    for (const auto& [b, m] : p.moving) {
      if (m.source_group == group || m.target_group == group) {
        return Status::FailedPrecondition("bucket " + std::to_string(b) + " of '" + name +
                                          "' is moving to or from group " + std::to_string(group));
      }
    }
  }
  for (const std::string& s : groups_[group].WriteShards()) shards_.erase(s);
  for (const std::string& s : groups_[group].out_of_sync) shards_.erase(s);
  groups_[group].shards.clear();
  groups_[group].filling.clear();
  groups_[group].out_of_sync.clear();
  groups_[group].catch_up.clear();
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::PlaceCollection(const std::string& collection, uint32_t num_buckets) {
  if (!ValidName(collection)) return Status::InvalidArgument("bad collection name '" + collection + "'");
  if (num_buckets == 0 || (num_buckets & (num_buckets - 1)) != 0) {
    return Status::InvalidArgument("num_buckets must be a power of two");
  }
  const std::vector<uint32_t> live = LiveGroups();
  if (live.empty()) return Status::FailedPrecondition("no shards in the map");
  if (collections_.count(collection)) {
    return Status::FailedPrecondition("collection '" + collection + "' is already placed");
  }
  CollectionPlacement p;
  p.num_buckets = num_buckets;
  p.group_of_bucket.resize(num_buckets);
  for (uint32_t b = 0; b < num_buckets; ++b) p.group_of_bucket[b] = live[b % live.size()];
  collections_[collection] = std::move(p);
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::RemoveCollection(const std::string& collection) {
  if (collections_.erase(collection) == 0) {
    return Status::NotFound("collection '" + collection + "' is not in the shard map");
  }
  ++epoch_;
  return Status::Ok();
}

Result<const CollectionPlacement*> ShardMap::Placement(const std::string& collection) const {
  auto it = collections_.find(collection);
  if (it == collections_.end()) {
    return Status::NotFound("collection '" + collection + "' is not in the shard map");
  }
  return &it->second;
}

Result<const CollectionPlacement*> ShardMap::BucketPlacement(const std::string& collection,
                                                             uint32_t bucket) const {
  auto p = Placement(collection);
  if (!p.ok()) return p.status();
  if (bucket >= p.value()->num_buckets) {
    return Status::OutOfRange("bucket " + std::to_string(bucket) + " >= " +
                              std::to_string(p.value()->num_buckets));
  }
  return p.value();
}

Result<CollectionPlacement*> ShardMap::MutableBucket(const std::string& collection,
                                                     uint32_t bucket) {
  auto p = BucketPlacement(collection, bucket);
  if (!p.ok()) return p.status();
  return &collections_.find(collection)->second;
}

Result<std::vector<std::string>> ShardMap::ReplicasOfBucket(const std::string& collection,
                                                            uint32_t bucket) const {
  auto p = BucketPlacement(collection, bucket);
  if (!p.ok()) return p.status();
  return groups_[p.value()->group_of_bucket[bucket]].shards;
}

Result<std::vector<uint32_t>> ShardMap::WriteGroupsOfBucket(const std::string& collection,
                                                            uint32_t bucket) const {
  auto p = BucketPlacement(collection, bucket);
  if (!p.ok()) return p.status();
  const uint32_t owner = p.value()->group_of_bucket[bucket];
  auto it = p.value()->moving.find(bucket);
  if (it == p.value()->moving.end()) return std::vector<uint32_t>{owner};
  const BucketMove& m = it->second;
  return std::vector<uint32_t>{owner, owner == m.source_group ? m.target_group : m.source_group};
}

Result<std::optional<BucketMove>> ShardMap::MoveOf(const std::string& collection,
                                                   uint32_t bucket) const {
  auto p = BucketPlacement(collection, bucket);
  if (!p.ok()) return p.status();
  auto it = p.value()->moving.find(bucket);
  if (it == p.value()->moving.end()) return std::optional<BucketMove>();
  return std::optional<BucketMove>(it->second);
}

Status ShardMap::BeginDualWrite(const std::string& collection, uint32_t bucket,
                                uint32_t target_group) {
  auto p = MutableBucket(collection, bucket);
  if (!p.ok()) return p.status();
  CollectionPlacement& c = *p.value();
  if (target_group >= groups_.size()) {
    return Status::NotFound("group " + std::to_string(target_group) + " is not in the map");
  }
  if (c.moving.count(bucket)) {
    return Status::FailedPrecondition(BucketName(collection, bucket) + " is already moving");
  }
  if (c.group_of_bucket[bucket] == target_group) {
    return Status::FailedPrecondition(BucketName(collection, bucket) + " already lives on group " +
                                      std::to_string(target_group));
  }
  c.moving[bucket] = {c.group_of_bucket[bucket], target_group, BucketMovePhase::kDualWrite};
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::Flip(const std::string& collection, uint32_t bucket) {
  auto p = MutableBucket(collection, bucket);
  if (!p.ok()) return p.status();
  CollectionPlacement& c = *p.value();
  auto it = c.moving.find(bucket);
  if (it == c.moving.end() || it->second.phase != BucketMovePhase::kDualWrite) {
    return Status::FailedPrecondition("flip: " + BucketName(collection, bucket) +
                                      " is not in dual write");
  }
  it->second.phase = BucketMovePhase::kFlipped;
  c.group_of_bucket[bucket] = it->second.target_group;
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::FinishMove(const std::string& collection, uint32_t bucket) {
  auto p = MutableBucket(collection, bucket);
  if (!p.ok()) return p.status();
  CollectionPlacement& c = *p.value();
  auto it = c.moving.find(bucket);
  if (it == c.moving.end() || it->second.phase != BucketMovePhase::kFlipped) {
    return Status::FailedPrecondition("finish: " + BucketName(collection, bucket) +
                                      " has not flipped");
  }
  c.moving.erase(it);
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::CancelMove(const std::string& collection, uint32_t bucket) {
  auto p = MutableBucket(collection, bucket);
  if (!p.ok()) return p.status();
  CollectionPlacement& c = *p.value();
  auto it = c.moving.find(bucket);
  if (it == c.moving.end() || it->second.phase != BucketMovePhase::kDualWrite) {
    return Status::FailedPrecondition("cancel: " + BucketName(collection, bucket) +
                                      " is not in dual write (after a flip, reverse the move)");
  }
  c.moving.erase(it);
  ++epoch_;
  return Status::Ok();
}

Status ShardMap::ReverseMove(const std::string& collection, uint32_t bucket) {
  auto p = MutableBucket(collection, bucket);
  if (!p.ok()) return p.status();
  CollectionPlacement& c = *p.value();
  auto it = c.moving.find(bucket);
  if (it == c.moving.end() || it->second.phase != BucketMovePhase::kFlipped) {
    return Status::FailedPrecondition("reverse: " + BucketName(collection, bucket) +
                                      " has not flipped");
  }
  BucketMove& m = it->second;
  std::swap(m.source_group, m.target_group);
  m.phase = BucketMovePhase::kDualWrite;
  ++epoch_;
  return Status::Ok();
}

Result<QueryRoute> ShardMap::RouteQuery(const std::string& collection,
                                        const std::function<bool(const std::string&)>& healthy,
                                        uint64_t rotation) const {
  return RouteQueryByCost(
      collection,
      [&](const std::string& s) {
        return healthy(s) ? 0.0 : std::numeric_limits<double>::infinity();
      },
      rotation);
}

Result<QueryRoute> ShardMap::RouteQueryByCost(const std::string& collection,
                                              const std::function<double(const std::string&)>& cost,
                                              uint64_t rotation) const {
  auto p = Placement(collection);
  if (!p.ok()) return p.status();
  std::vector<uint32_t> buckets_of_group(groups_.size(), 0);
  for (uint32_t g : p.value()->group_of_bucket) ++buckets_of_group[g];
  QueryRoute route;
  route.total_buckets = p.value()->num_buckets;
  std::vector<double> costs;
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    if (buckets_of_group[g] == 0) continue;
    const std::vector<std::string>& members = groups_[g].shards;
    costs.assign(members.size(), 0.0);
    double best = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < members.size(); ++i) {
      costs[i] = cost(members[i]);
      best = std::min(best, costs[i]);
    }
    bool found = false;
    for (size_t i = 0; i < members.size() && !found && std::isfinite(best); ++i) {
      const size_t m = (rotation + i) % members.size();
      if (costs[m] <= best * 1.2) {
        route.targets.push_back({members[m], g, buckets_of_group[g]});
        found = true;
      }
    }
    if (!found) {
      route.uncovered_groups.push_back(g);
      route.uncovered_buckets += buckets_of_group[g];
    }
  }
  return route;
}

Result<std::string> ShardMap::AddressOf(const std::string& shard) const {
  auto it = shards_.find(shard);
  if (it == shards_.end()) return Status::NotFound("shard '" + shard + "' is not in the map");
  return it->second.address;
}

std::string ShardMap::ToJson() const {
  json j;
  j["epoch"] = epoch_;
  j["shards"] = json::array();
  for (const auto& [id, s] : shards_) j["shards"].push_back({{"id", id}, {"address", s.address}});
  j["groups"] = json::array();
  for (const ReplicaGroup& g : groups_) j["groups"].push_back(g.shards);
  // Written only while a replica fills, so a map without one reads exactly as before.
  json filling = json::object();
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    if (!groups_[g].filling.empty()) filling[std::to_string(g)] = groups_[g].filling;
  }
  if (!filling.empty()) j["filling"] = std::move(filling);
  // Written only while a member is out of sync or catching up (issue 20).
  json out = json::object(), catch_up = json::object();
  for (uint32_t g = 0; g < groups_.size(); ++g) {
    if (!groups_[g].out_of_sync.empty()) out[std::to_string(g)] = groups_[g].out_of_sync;
    for (const auto& [id, c] : groups_[g].catch_up) {
      catch_up[id] = {{"from_version", c.from_version}, {"since_epoch", c.since_epoch}};
    }
  }
  if (!out.empty()) j["out_of_sync"] = std::move(out);
  if (!catch_up.empty()) j["catch_up"] = std::move(catch_up);
  j["collections"] = json::object();
  for (const auto& [name, p] : collections_) {
    j["collections"][name] = {{"num_buckets", p.num_buckets}, {"group_of_bucket", p.group_of_bucket}};
    // Written only while a bucket moves, so a map at rest reads exactly as before moves existed.
    if (!p.moving.empty()) {
      json moving = json::array();
      for (const auto& [b, m] : p.moving) {
        moving.push_back({{"bucket", b},
                          {"source", m.source_group},
                          {"target", m.target_group},
                          {"phase", PhaseName(m.phase)}});
      }
      j["collections"][name]["moving"] = std::move(moving);
    }
  }
  return j.dump(2);
}

Result<ShardMap> ShardMap::FromJson(const std::string& text) {
  ShardMap m;
  try {
    const json j = json::parse(text);
    m.epoch_ = j.at("epoch").get<uint64_t>();
    for (const json& s : j.at("shards")) {
      ShardInfo info{s.at("id").get<std::string>(), s.at("address").get<std::string>()};
      m.shards_[info.id] = info;
    }
    for (const json& g : j.at("groups")) {
      ReplicaGroup group;
      group.shards = g.get<std::vector<std::string>>();
      for (const std::string& id : group.shards) {
        if (!m.shards_.count(id)) return Status::Corruption("group names unknown shard '" + id + "'");
      }
      m.groups_.push_back(std::move(group));
    }
    if (j.contains("filling")) {
      for (const auto& [key, ids] : j.at("filling").items()) {
        uint32_t g = 0;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), g);
        if (ec != std::errc() || end != key.data() + key.size() || g >= m.groups_.size()) return Status::Corruption("filling names unknown group " + key);
        for (const std::string& id : ids.get<std::vector<std::string>>()) {
          if (!m.shards_.count(id)) return Status::Corruption("filling names unknown shard '" + id + "'");
          m.groups_[g].filling.push_back(id);
        }
      }
    }
    if (j.contains("out_of_sync")) {
      for (const auto& [key, ids] : j.at("out_of_sync").items()) {
        uint32_t g = 0;
        const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), g);
        if (ec != std::errc() || end != key.data() + key.size() || g >= m.groups_.size()) {
          return Status::Corruption("out_of_sync names unknown group " + key);
        }
        for (const std::string& id : ids.get<std::vector<std::string>>()) {
          if (!m.shards_.count(id)) return Status::Corruption("out_of_sync names unknown shard '" + id + "'");
          m.groups_[g].out_of_sync.push_back(id);
        }
      }
    }
    if (j.contains("catch_up")) {
      for (const auto& [id, c] : j.at("catch_up").items()) {
        auto g = m.GroupOfShard(id);
        if (!g.ok()) return Status::Corruption("catch_up names shard '" + id + "' of no group");
        m.groups_[*g].catch_up[id] =
            CatchUp{c.at("from_version").get<uint64_t>(), c.at("since_epoch").get<uint64_t>()};
      }
    }
    for (const auto& [name, c] : j.at("collections").items()) {
      CollectionPlacement p;
      p.num_buckets = c.at("num_buckets").get<uint32_t>();
      p.group_of_bucket = c.at("group_of_bucket").get<std::vector<uint32_t>>();
      if (p.group_of_bucket.size() != p.num_buckets) {
        return Status::Corruption("collection '" + name + "': bucket table has the wrong size");
      }
      for (uint32_t g : p.group_of_bucket) {
        if (g >= m.groups_.size()) return Status::Corruption("collection '" + name + "': bad group");
      }
      // Maps written before moves existed have no "moving": every bucket at rest.
      if (c.contains("moving")) {
        for (const json& mv : c.at("moving")) {
          const uint32_t b = mv.at("bucket").get<uint32_t>();
          BucketMove bm;
          bm.source_group = mv.at("source").get<uint32_t>();
          bm.target_group = mv.at("target").get<uint32_t>();
          const std::string phase = mv.at("phase").get<std::string>();
          if (phase == "dual_write") {
            bm.phase = BucketMovePhase::kDualWrite;
          } else if (phase == "flipped") {
            bm.phase = BucketMovePhase::kFlipped;
          } else {
            return Status::Corruption("collection '" + name + "': moving bucket " +
                                      std::to_string(b) + ": unknown phase '" + phase + "'");
          }
          const uint32_t owner =
              bm.phase == BucketMovePhase::kDualWrite ? bm.source_group : bm.target_group;
          if (b >= p.num_buckets || bm.source_group >= m.groups_.size() ||
              bm.target_group >= m.groups_.size() || bm.source_group == bm.target_group ||
              p.group_of_bucket[b] != owner || !p.moving.emplace(b, bm).second) {
            return Status::Corruption("collection '" + name + "': moving bucket " +
                                      std::to_string(b) + " contradicts the bucket table");
          }
        }
      }
      m.collections_[name] = std::move(p);
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("shard map: ") + e.what());
  }
  return m;
}

Status ShardMap::Save(const std::string& path) const { return WriteFileAtomic(path, ToJson()); }

Result<ShardMap> ShardMap::Load(const std::string& path) {
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  auto m = FromJson(text.value());
  if (!m.ok()) return Status::Corruption("'" + path + "': " + m.status().message());
  return m;
}

std::map<uint32_t, std::vector<size_t>> GroupByReplicaSet(const CollectionPlacement& placement,
                                                         const std::vector<uint64_t>& ids) {
  std::map<uint32_t, std::vector<size_t>> by_group;
  for (size_t i = 0; i < ids.size(); ++i) {
    by_group[placement.group_of_bucket[BucketOfId(ids[i], placement.num_buckets)]].push_back(i);
  }
  return by_group;
}

std::map<uint32_t, std::vector<size_t>> GroupByWriteSet(const CollectionPlacement& placement,
                                                       const std::vector<uint64_t>& ids) {
  std::map<uint32_t, std::vector<size_t>> by_group;
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint32_t b = BucketOfId(ids[i], placement.num_buckets);
    const uint32_t owner = placement.group_of_bucket[b];
    by_group[owner].push_back(i);
    if (auto it = placement.moving.find(b); it != placement.moving.end()) {
      const BucketMove& m = it->second;
      by_group[m.source_group == owner ? m.target_group : m.source_group].push_back(i);
    }
  }
  return by_group;
}


}  // namespace mrl::coord
