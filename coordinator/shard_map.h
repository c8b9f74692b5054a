// The cluster's shard map: which shards exist, how they form replica groups, and which group
// owns each bucket of each collection, stamped with an epoch that grows on every change. Plain
// data and decisions, no sockets: the coordinator persists it (atomically) and serves it to
// mrlctl and to other coordinators; shards reject requests stamped with an older epoch.
//
// Placement: shards are arranged in replica groups of `replication` shards holding identical
// data; a collection's buckets are dealt round-robin to the groups. A query therefore asks one
// healthy member of every group, and a shard's data is exactly its group's buckets.
//
// A bucket in motion (docs/architecture.md, "Moving a bucket: the state machine"): while a move
// is in DUAL_WRITE (and its COPY and VERIFY) the source group owns the bucket's queries and
// writes go to source and target; after FLIP the target owns queries and writes still go to
// both until FinishMove, so a reverse move after FLIP finds the source complete. In every
// epoch each bucket has exactly one query owner: group_of_bucket[b].
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::coord {

struct ShardInfo {
  std::string id;       // unique, [A-Za-z0-9_.-]{1,64}
  std::string address;  // host:port
};

// A member that left the in-sync set and returns through a catch-up (ShardMap::TakeOutOfSync).
struct CatchUp {
  // The oldest write version the member may lack: its catch-up copies entries of this version
  // or newer (every bucket is verified after, and copied whole where that was not enough).
  uint64_t from_version = 0;
  // The map epoch at which its current catch-up began (0 while it is out of sync): a fill that
  // began earlier is stale (the member went out again meanwhile) and starts over.
  uint64_t since_epoch = 0;
};

struct ReplicaGroup {
  // The in-sync set: shard ids serving queries and reads; all hold the same buckets, and a write
  // is acknowledged once every one of them has it.
  std::vector<std::string> shards;
  // Replicas being filled (replicate, replace-shard) or catching up: every write to the group
  // reaches them, no query or read asks them; the fill promotes each to `shards` once it holds
  // the group's data.
  std::vector<std::string> filling;
  // Members out of the in-sync set (a write failed on them, or they stayed down past the
  // timeout): no write, read or query goes to them; the leader starts their catch-up (they
  // become filling) once they answer again.
  std::vector<std::string> out_of_sync;
  // For each member out of sync or catching up: where its catch-up starts.
  std::map<std::string, CatchUp> catch_up;
  // The group's replication factor: members serving, being filled or out of sync.
  size_t replication() const { return shards.size() + filling.size() + out_of_sync.size(); }
  // Every shard a write to the group must reach: serving, then filling.
  std::vector<std::string> WriteShards() const;
};

// Where a moving bucket stands in the map (the move record, coordinator/move.h, has the rest).
enum class BucketMovePhase {
  kDualWrite,  // source owns queries; writes to source and target
  kFlipped,    // target owns queries; writes to target and source (until FinishMove)
};

struct BucketMove {
  uint32_t source_group = 0;
  uint32_t target_group = 0;
  BucketMovePhase phase = BucketMovePhase::kDualWrite;
  bool operator==(const BucketMove& o) const {
    return source_group == o.source_group && target_group == o.target_group && phase == o.phase;
  }
};

struct CollectionPlacement {
  uint32_t num_buckets = 0;
  // [num_buckets] -> index into groups(): the group that owns the bucket's queries, moving or
  // not (the source before FLIP, the target after).
  std::vector<uint32_t> group_of_bucket;
  // Buckets in motion; empty for a collection at rest.
  std::map<uint32_t, BucketMove> moving;
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
  // Removes a drained group's shards from the map; the group keeps its index (placements and
  // move records name groups by index) but has no members and is never placed on again.
  // FailedPrecondition while it owns a bucket, a move touches it, or it is the last group of a
  // cluster with collections; NotFound for an unknown or already retired group. epoch + 1.
  Status RetireGroup(uint32_t group);
  // The groups with members (not retired), in index order.
  std::vector<uint32_t> LiveGroups() const;

  // ---- Replicas of a group (each an atomic map change, epoch + 1, so shards refuse writes
  // routed by the older map, which would miss a new replica) ------------------------------------
  // Takes `shard` (serving or filling in `group`) out of the in-sync set: no write, read or query
  // goes to it until it has caught up. `from_version`: the oldest write it may lack (a member
  // already out or catching up keeps the older of the two). FailedPrecondition: the group's last
  // serving member (the group's only complete copy: writes wait for it instead); NotFound: not
  // serving or filling in `group`.
  Status TakeOutOfSync(uint32_t group, const std::string& shard, uint64_t from_version);
  // A member out of sync that answers again starts catching up: it becomes filling (every write
  // reaches it) and the fill copies what changed since its from_version, then promotes it.
  // NotFound: not out of sync in `group`.
  Status StartCatchUp(uint32_t group, const std::string& shard);
  // Raises `group`'s replication factor by one: `shard` joins as a filling replica.
  // NotFound: unknown or retired group; FailedPrecondition: the id is in the map already;
  // InvalidArgument: a bad id or address.
  Status AddReplica(uint32_t group, const ShardInfo& shard);
  // A filled replica starts serving. NotFound unless `shard` is filling in `group`.
  Status PromoteReplica(uint32_t group, const std::string& shard);
  // Removes `shard` from its group. With lower_factor the group's replication factor drops by
  // one; without it the removal is refused (FailedPrecondition: "below the replication factor")
  // -- replace the shard instead. Also refused: the group's last serving replica (drain the
  // group). NotFound: an unknown shard.
  Status RemoveReplica(const std::string& shard, bool lower_factor);
  // Replaces `dead` by `fresh` in one change, the factor unchanged: `dead` leaves the map,
  // `fresh` joins its group as a filling replica. NotFound: unknown `dead`; FailedPrecondition:
  // `fresh` is in the map, or `dead` is the group's only serving replica (nothing to fill from).
  Status ReplaceShard(const std::string& dead, const ShardInfo& fresh);
  // The group `shard` is a member of (serving, filling or out of sync). NotFound: not in any group.
  Result<uint32_t> GroupOfShard(const std::string& shard) const;
  // Places a new collection: bucket b goes to the (b mod live groups)-th live group. epoch + 1.
  // REQUIRES: num_buckets a power of two; at least one group.
  Status PlaceCollection(const std::string& collection, uint32_t num_buckets);
  Status RemoveCollection(const std::string& collection);
  Result<const CollectionPlacement*> Placement(const std::string& collection) const;

  // The replicas of the group that owns `bucket`'s queries. For a bucket at rest these are also
  // every shard a write must reach; for a moving bucket, writes go to WriteGroupsOfBucket.
  Result<std::vector<std::string>> ReplicasOfBucket(const std::string& collection,
                                                    uint32_t bucket) const;
  // The groups a write to `bucket` must reach: {owner} at rest; {source, target} while moving,
  // the query owner first. NotFound: unknown collection; OutOfRange: bucket >= num_buckets.
  Result<std::vector<uint32_t>> WriteGroupsOfBucket(const std::string& collection,
                                                    uint32_t bucket) const;
  // The move of `bucket`, or nullopt when it is at rest. Errors as WriteGroupsOfBucket.
  Result<std::optional<BucketMove>> MoveOf(const std::string& collection, uint32_t bucket) const;

  // ---- A bucket's move (each an atomic map change; errors leave the map as it was) ----------
  // Errors common to all four: NotFound (unknown collection or group), OutOfRange (bucket >=
  // num_buckets), FailedPrecondition (the bucket is not in the phase the change starts from).
  //
  // At rest -> DUAL_WRITE towards `target_group`; the owner stays. epoch + 1, so shards refuse
  // writes routed by the older map, which would miss the target.
  // REQUIRES: target_group != the bucket's owner (else FailedPrecondition).
  Status BeginDualWrite(const std::string& collection, uint32_t bucket, uint32_t target_group);
  // DUAL_WRITE -> FLIPPED: the target owns queries. epoch + 1.
  Status Flip(const std::string& collection, uint32_t bucket);
  // FLIPPED -> at rest on the target: writes stop reaching the source. epoch + 1, so the source
  // refuses writes routed by the older map before it drops the range (a write racing the drop
  // would leave a stray point there).
  Status FinishMove(const std::string& collection, uint32_t bucket);
  // DUAL_WRITE -> at rest on the source (abort before FLIP). epoch + 1, so the target refuses
  // writes routed by the older map before its copy is discarded.
  Status CancelMove(const std::string& collection, uint32_t bucket);
  // FLIPPED (source S, target T) -> DUAL_WRITE from T back to S (abort after FLIP): the owner and
  // the write groups stay the same, so nothing is lost; epoch + 1 like every map change, so
  // other coordinators reload it.
  Status ReverseMove(const std::string& collection, uint32_t bucket);
  // The shard to ask in each group that owns buckets of `collection`: the first healthy member
  // starting at member (rotation mod size), so load spreads over replicas.
  Result<QueryRoute> RouteQuery(const std::string& collection,
                                const std::function<bool(const std::string&)>& healthy,
                                uint64_t rotation = 0) const;
  // The same by a cost per shard (lower is better, infinity = not usable; e.g. measured latency
  // x calls in flight): in every group the cheapest member; members within 20% of the cheapest
  // count as equal and the rotation picks among them, so equal replicas share the load.
  Result<QueryRoute> RouteQueryByCost(const std::string& collection,
                                      const std::function<double(const std::string&)>& cost,
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

  // The placement of `collection` with `bucket` checked to be in range.
  Result<CollectionPlacement*> MutableBucket(const std::string& collection, uint32_t bucket);
  Result<const CollectionPlacement*> BucketPlacement(const std::string& collection,
                                                     uint32_t bucket) const;
};

// Replica group -> positions (into `ids`) of the ids whose bucket it owns, in input order (the
// query owner; a write router for moving buckets adds their target groups).
std::map<uint32_t, std::vector<size_t>> GroupByReplicaSet(const CollectionPlacement& placement,
                                                         const std::vector<uint64_t>& ids);
// Replica group -> positions of the ids a write must send it: GroupByReplicaSet plus, for each
// id of a moving bucket, the move's other group (its target before FLIP, its source after).
std::map<uint32_t, std::vector<size_t>> GroupByWriteSet(const CollectionPlacement& placement,
                                                       const std::vector<uint64_t>& ids);

}  // namespace mrl::coord
