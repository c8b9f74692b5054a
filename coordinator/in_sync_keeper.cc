#include "coordinator/in_sync_keeper.h"

#include <algorithm>
#include <chrono>
#include <iostream>
#include <map>

namespace mrl::coord {

namespace {

uint64_t NowUnixUs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

bool Contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

}  // namespace

InSyncKeeper::InSyncKeeper(ClusterState& state, ShardPool& pool, InSyncOptions options,
                           std::function<void()> on_catch_up)
    : state_(state), pool_(pool), opt_(options), on_catch_up_(std::move(on_catch_up)) {}

InSyncKeeper::~InSyncKeeper() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void InSyncKeeper::Start() { thread_ = std::thread([this] { Loop(); }); }

void InSyncKeeper::Loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(opt_.poll_ms), [&] { return stop_; });
      if (stop_) return;
    }
    if (state_.CheckLeader().ok()) RunOnce();
  }
}

Status InSyncKeeper::TakeOut(uint32_t group, const std::string& shard, const std::string& why) {
  const uint64_t from = CatchUpFromVersion(NowUnixUs(), opt_);
  bool changed = false;
  const Status st = state_.ChangeMap(
      "taking shard '" + shard + "' out of group " + std::to_string(group) + "'s in-sync set",
      [&](ShardMap* m) -> Status {
        changed = false;
        if (group >= m->groups().size()) return Status::NotFound("group " + std::to_string(group) + " is not in the map");
        if (Contains(m->groups()[group].out_of_sync, shard)) return Status::Ok();  // already out
        MRL_RETURN_IF_ERROR(m->TakeOutOfSync(group, shard, from));
        changed = true;
        return Status::Ok();
      });
  if (st.ok() && changed) {
    taken_out_.fetch_add(1);
    std::cerr << "mrl-coordinator: shard '" << shard << "' is out of group " << group
              << "'s in-sync set (" << why << "); writes go on without it, and it catches up from version "
              << from << " once it answers" << std::endl;
  }
  return st;
}

void InSyncKeeper::RunOnce() {
  const auto snap = state_.Snapshot();
  std::map<std::string, ShardHealthReport> health;
  for (ShardHealthReport& r : pool_.HealthReports()) health[r.shard] = std::move(r);
  const bool probing = pool_.HealthProbing();
  auto down_for_ms = [&](const std::string& s) -> std::optional<double> {
    auto it = health.find(s);
    if (it == health.end() || it->second.state != ShardState::kDown) return std::nullopt;
    return it->second.down_for_s * 1000.0;
  };
  auto answering = [&](const std::string& s) {
    auto it = health.find(s);
    if (it == health.end() || it->second.state == ShardState::kDown) return false;
    return !probing || it->second.probe_ms >= 0;  // answered a probe since this one started
  };
  for (const InSyncAction& a : PlanInSyncActions(snap->map, down_for_ms, answering, opt_)) {
    if (a.kind == InSyncAction::Kind::kTakeOut) {
      const Status st = TakeOut(a.group, a.shard, a.why);
      if (!st.ok()) {
        std::cerr << "mrl-coordinator: could not take shard '" << a.shard << "' out of group "
                  << a.group << "'s in-sync set: " << st.ToString() << std::endl;
      }
      continue;
    }
    const Status st = state_.ChangeMap(
        "starting the catch-up of shard '" + a.shard + "' in group " + std::to_string(a.group),
        [&](ShardMap* m) { return m->StartCatchUp(a.group, a.shard); });
    if (st.ok()) {
      catch_ups_.fetch_add(1);
      std::cerr << "mrl-coordinator: shard '" << a.shard << "' of group " << a.group
                << " answers again: it catches up (every write reaches it from now on)" << std::endl;
      if (on_catch_up_) on_catch_up_();
    } else if (st.code() != Status::Code::kNotFound) {
      std::cerr << "mrl-coordinator: could not start the catch-up of shard '" << a.shard
                << "': " << st.ToString() << std::endl;
    }
  }
}

}  // namespace mrl::coord
