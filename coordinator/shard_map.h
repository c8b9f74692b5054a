// The cluster's shard map: which shards exist, how they form replica groups, and which group
// owns each bucket of each collection, stamped with an epoch that grows on every change. Plain
// data and decisions, no sockets: the coordinator persists it (atomically) and serves it to
// mrlctl and to other coordinators; shards reject requests stamped with an older epoch.
//
// Placement: shards are arranged in replica groups of `replication` shards holding identical
// data; a collection's buckets are dealt round-robin to the groups. A query therefore asks one
// healthy member of every group, and a shard's data is exactly its group's buckets.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::coord {

struct ShardInfo {
  std::string id;       // unique, [A-Za-z0-9_.-]{1,64}
  std::string address;  // host:port
};

struct ReplicaGroup {
  std::vector<std::string> shards;  // shard ids; all hold the same buckets
};

struct CollectionPlacement {
  uint32_t num_buckets = 0;
  std::vector<uint32_t> group_of_bucket;  // [num_buckets] -> index into groups()
};

// One shard to ask per replica group for a query, and what is left uncovered.
struct QueryRoute {
  struct Target {
    std::string shard;
    uint32_t group = 0;
    uint32_t buckets = 0;  // buckets of the collection this target covers
  };
  std::vector<Target> targets;
  std::vector<uint32_t> uncovered_groups;  // every replica unhealthy
  uint32_t uncovered_buckets = 0;
  uint32_t total_buckets = 0;
  double coverage() const {
    return total_buckets == 0 ? 1.0 : 1.0 - static_cast<double>(uncovered_buckets) / total_buckets;
  }
};

class ShardMap {
 public:
  uint64_t epoch() const { return epoch_; }
  const std::vector<ReplicaGroup>& groups() const { return groups_; }
  const std::map<std::string, ShardInfo>& shards() const { return shards_; }

  // Adds `shards` as one new replica group (all of them hold the same data). epoch + 1.
  Status AddGroup(const std::vector<ShardInfo>& shards);
  // Places a new collection: bucket b goes to group b mod groups. epoch + 1.
  // REQUIRES: num_buckets a power of two; at least one group.
  Status PlaceCollection(const std::string& collection, uint32_t num_buckets);
  Status RemoveCollection(const std::string& collection);
  Result<const CollectionPlacement*> Placement(const std::string& collection) const;

  // Shards that must receive a write to `bucket` (every replica).
  Result<std::vector<std::string>> ReplicasOfBucket(const std::string& collection,
                                                    uint32_t bucket) const;
  // The shard to ask in each group that owns buckets of `collection`: the first healthy member
  // starting at member (rotation mod size), so load spreads over replicas.
  Result<QueryRoute> RouteQuery(const std::string& collection,
                                const std::function<bool(const std::string&)>& healthy,
                                uint64_t rotation = 0) const;
  Result<std::string> AddressOf(const std::string& shard) const;

  std::string ToJson() const;
  static Result<ShardMap> FromJson(const std::string& text);
  // Written atomically (tmp + fsync + rename), so a crash leaves the old or the new map.
  Status Save(const std::string& path) const;
  static Result<ShardMap> Load(const std::string& path);

 private:
  uint64_t epoch_ = 0;
  std::map<std::string, ShardInfo> shards_;
  std::vector<ReplicaGroup> groups_;
  std::map<std::string, CollectionPlacement> collections_;
};

// Replica group -> positions (into `ids`) of the ids whose bucket it owns, in input order.
std::map<uint32_t, std::vector<size_t>> GroupByReplicaSet(const CollectionPlacement& placement,
                                                         const std::vector<uint64_t>& ids);
// Acknowledgements a write to a group of `replicas` needs: all when write_quorum is 0, else
// min(write_quorum, replicas).
int WriteQuorum(int write_quorum, int replicas);

}  // namespace mrl::coord
