#include "coordinator/in_sync.h"

namespace mrl::coord {

Status CheckInSyncSize(uint32_t group_index, const ReplicaGroup& group, int min_in_sync) {
  if (static_cast<int>(group.shards.size()) >= min_in_sync) return Status::Ok();
  std::string members;
  for (const std::string& s : group.shards) members += (members.empty() ? "" : ", ") + s;
  std::string away;
  for (const std::string& s : group.out_of_sync) away += (away.empty() ? "" : ", ") + s;
  for (const std::string& s : group.filling) away += (away.empty() ? "" : ", ") + s;
  return Status::Unavailable(
      "group " + std::to_string(group_index) + " has " + std::to_string(group.shards.size()) +
      " in-sync replica(s) (" + members + "), fewer than --min-in-sync " +
      std::to_string(min_in_sync) + ": writes to it are refused until " +
      (away.empty() ? std::string("a replica is added") : away + " catch(es) up"));
}

uint64_t CatchUpFromVersion(uint64_t now_unix_us, const InSyncOptions& options) {
  const uint64_t margin = uint64_t{options.catch_up_margin_ms} * 1000;
  return now_unix_us > margin ? now_unix_us - margin : 1;
}

std::vector<InSyncAction> PlanInSyncActions(
    const ShardMap& map, const std::function<std::optional<double>(const std::string&)>& down_for_ms,
    const std::function<bool(const std::string&)>& answering, const InSyncOptions& options) {
  std::vector<InSyncAction> actions;
  for (uint32_t g = 0; g < map.groups().size(); ++g) {
    const ReplicaGroup& group = map.groups()[g];
    size_t serving = group.shards.size();
    for (const std::string& s : group.shards) {
      const auto down = down_for_ms(s);
      if (!down || *down < options.out_after_ms || serving <= 1) continue;
      --serving;  // never plan the group's last serving member out
      actions.push_back({InSyncAction::Kind::kTakeOut, g, s,
                         "down for " + std::to_string(static_cast<int64_t>(*down)) + " ms"});
    }
    for (const std::string& s : group.filling) {
      const auto down = down_for_ms(s);
      if (!down || *down < options.out_after_ms) continue;
      actions.push_back({InSyncAction::Kind::kTakeOut, g, s,
                         "down for " + std::to_string(static_cast<int64_t>(*down)) +
                             " ms while being filled"});
    }
    for (const std::string& s : group.out_of_sync) {
      if (down_for_ms(s) || !answering(s)) continue;
      actions.push_back({InSyncAction::Kind::kStartCatchUp, g, s, "answers again"});
    }
  }
  return actions;
}

bool IsMemberFailure(const Status& status) {
  return status.code() == Status::Code::kUnavailable ||
         status.code() == Status::Code::kDeadlineExceeded;
}

}  // namespace mrl::coord
