// The cluster state's keys in the metadata store (docs/metadata.md has the layout) and the
// codecs of the values that are not specs or maps: the leader key and the budgets.
#pragma once

#include <map>
#include <string>

#include "common/status.h"
#include "coordinator/query_plan.h"
#include "meta/store.h"

namespace mrl::coord {

struct LeaderInfo;

inline const std::string kMapKey = "map";                      // ShardMap JSON with its epoch
inline const std::string kCollectionsPrefix = "collections/";  // + name: spec JSON
inline const std::string kBudgetsPrefix = "budgets/";          // + collection: budget -> plan
inline const std::string kLeaderKey = "leader";                // {"id","address"}, leased
inline const std::string kMovesPrefix = "moves/";              // + move id: the move journal
inline const std::string kSessionsPrefix = "coordinators/";    // + id: {"id","address"}, leased
// + shard id: the shard's registration under its own lease (written by mrl-shard --meta; the
// same key and value as shard/registration.h: the store's layout is the contract)
inline const std::string kShardsPrefix = "shards/";

// {"id": ..., "address": ...} with its mod revision; an empty id when it does not parse.
LeaderInfo ParseLeader(const meta::KeyValue& kv);
std::string SessionValue(const std::string& id, const std::string& address);
struct ShardRegistrationInfo;
// shards/<id>'s value; a value that does not parse gives state "unparseable" (shown, not fatal).
ShardRegistrationInfo ParseShardRegistration(const std::string& id, const meta::KeyValue& kv);

std::string BudgetsToJson(const std::map<std::string, QueryPlan>& budgets);
Result<std::map<std::string, QueryPlan>> BudgetsFromJson(const std::string& text);

// [A-Za-z0-9_.:-]{1,64}; a random id "coord-<12 hex>" for a coordinator started without one.
bool ValidCoordinatorId(const std::string& id);
std::string RandomCoordinatorId();

}  // namespace mrl::coord
