#include "coordinator/replica_fill.h"

#include <algorithm>
#include <iostream>

#include "common/collection_spec.h"
#include "common/protocol.h"
#include "coordinator/bucket_copy.h"

namespace mrl::coord {

using Clock = std::chrono::steady_clock;

ReplicaFiller::ReplicaFiller(ClusterState& state, ShardPool& pool, ReplicaFillOptions options)
    : state_(state), pool_(pool), opt_(std::move(options)) {}

ReplicaFiller::~ReplicaFiller() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ReplicaFiller::Start() { thread_ = std::thread([this] { Loop(); }); }

void ReplicaFiller::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

std::optional<FillView> ReplicaFiller::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  if (!fill_) return std::nullopt;
  FillView v;
  v.group = fill_->group;
  v.shard = fill_->shard;
  v.buckets_done = static_cast<uint32_t>(fill_->next);
  v.buckets_total = static_cast<uint32_t>(fill_->todo.size());
  v.points_copied = fill_->points;
  v.seconds = std::chrono::duration<double>(Clock::now() - fill_->started).count();
  v.waiting_on = fill_->waiting_on;
  return v;
}

void ReplicaFiller::Loop() {
  for (;;) {
    const bool progressed = RunOnce();
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) return;
    if (!progressed) {
      cv_.wait_for(lock, std::chrono::milliseconds(opt_.idle_poll_ms), [&] { return stop_ || wake_; });
    }
    wake_ = false;
    if (stop_) return;
  }
}

bool ReplicaFiller::RunOnce() {
  if (!state_.CheckLeader().ok()) {
    std::lock_guard<std::mutex> lock(mu_);
    fill_.reset();
    return false;
  }
  const auto snap = state_.Snapshot();
  const ShardMap& map = snap->map;
  std::optional<uint32_t> group;
  for (uint32_t g = 0; g < map.groups().size() && !group; ++g) {
    if (!map.groups()[g].filling.empty()) group = g;
  }
  if (!group) {
    std::lock_guard<std::mutex> lock(mu_);
    fill_.reset();
    return false;
  }
  const std::string shard = map.groups()[*group].filling.front();
  Fill f;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (fill_ && fill_->group == *group && fill_->shard == shard) f = *fill_;
  }
  if (f.shard.empty()) {  // a new fill: every bucket the group stores, as the map has it now
    f.group = *group;
    f.shard = shard;
    f.joined_epoch = map.epoch();
    f.started = Clock::now();
    for (const auto& [name, spec] : snap->specs) {
      auto placement = map.Placement(name);
      if (!placement.ok()) continue;
      for (uint32_t b = 0; b < placement.value()->num_buckets; ++b) {
        auto groups = map.WriteGroupsOfBucket(name, b);
        if (groups.ok() && std::count(groups->begin(), groups->end(), *group)) {
          f.todo.emplace_back(name, b);
        }
      }
    }
    std::cerr << "mrl-coordinator: filling shard '" << shard << "' of group " << *group << ": "
              << f.todo.size() << " buckets to copy" << std::endl;
  }
  f.waiting_on.clear();
  const Status st = Step(*snap, f);
  if (!st.ok()) f.waiting_on = st.ToString();
  const bool progressed = f.waiting_on.empty();  // else wait a poll before the next try
  std::lock_guard<std::mutex> lock(mu_);
  fill_ = std::move(f);
  return progressed;
}

Status ReplicaFiller::Step(const ClusterSnapshot& snap, Fill& f) {
  const ShardMap& map = snap.map;
  const ReplicaGroup& group = map.groups()[f.group];
  if (!f.epoch_seen) {
    // Writes routed by an older map miss the new replica; once every reachable member has seen
    // the epoch that added it, shards refuse those, and everything else reaches the replica.
    for (const std::string& s : group.WriteShards()) {
      if (!pool_.Healthy(s) && s != f.shard) continue;
      auto r = pool_.Client(s)->Call(wire::StatsRequestT{}, opt_.rpc_deadline_ms);
      pool_.Report(s, r.status());
      if (!r.ok()) {
        if (s == f.shard) return r.status().WithContext("the replica to fill, '" + s + "'");
        continue;  // gone: it sees the new epoch on its first request after it returns
      }
      if (r->map_epoch < f.joined_epoch) {
        f.waiting_on = "waiting for shard '" + s + "' to see map epoch " + std::to_string(f.joined_epoch);
        return Status::Ok();
      }
    }
    for (const auto& [name, spec] : snap.specs) {  // idempotent; the admin call did it first
      wire::CreateCollectionRequestT req;
      req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
      auto r = pool_.Client(f.shard)->Call(req, opt_.rpc_deadline_ms);
      pool_.Report(f.shard, r.status());
      if (!r.ok()) return r.status().WithContext("creating '" + name + "' on shard '" + f.shard + "'");
    }
    f.epoch_seen = true;
    return Status::Ok();
  }
  while (f.next < f.todo.size()) {
    const auto& [collection, bucket] = f.todo[f.next];
    // A bucket that moved away from the group (or a dropped collection) needs no copy.
    auto groups = map.WriteGroupsOfBucket(collection, bucket);
    if (!groups.ok() || !std::count(groups->begin(), groups->end(), f.group)) {
      ++f.next;
      f.cursor.reset();
      f.attempts = 0;
      continue;
    }
    std::optional<std::string> source;
    for (const std::string& s : group.shards) {
      if (pool_.Healthy(s)) {
        source = s;
        break;
      }
    }
    if (!source) {
      f.waiting_on = "no healthy serving replica in group " + std::to_string(f.group) + " to copy from";
      return Status::Ok();
    }
    auto page = CopyBucketPage(pool_, *source, {f.shard}, collection, bucket, f.cursor,
                               opt_.copy_batch, opt_.rpc_deadline_ms);
    if (!page.ok()) return page.status();
    f.points += page->points;
    if (!page->finished) {
      if (!page->cursor || (f.cursor && *page->cursor <= *f.cursor)) {
        f.cursor.reset();
        return Status::Internal("shard '" + *source + "' paged bucket " + std::to_string(bucket) +
                                " of '" + collection + "' without moving on; copying it again");
      }
      f.cursor = page->cursor;
      return Status::Ok();
    }
    // The bucket is copied: both sides must hold the same versions. Writes land on both sides
    // a moment apart, so figures taken mid-write may differ: re-take them a few times.
    VerifyFigures src, dst;
    bool agree = false;
    for (int attempt = 0; attempt < 5 && !agree; ++attempt) {
      if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20 << attempt));
      auto s = BucketFigures(pool_, *source, collection, bucket, opt_.rpc_deadline_ms);
      if (!s.ok()) return s.status();
      auto d = BucketFigures(pool_, f.shard, collection, bucket, opt_.rpc_deadline_ms);
      if (!d.ok()) return d.status();
      src = *s;
      dst = *d;
      agree = src == dst;
    }
    f.cursor.reset();
    if (agree) {
      ++f.next;
      f.attempts = 0;
      return Status::Ok();
    }
    ++f.attempts;
    std::cerr << "mrl-coordinator: filling shard '" << f.shard << "': bucket " << bucket << " of '"
              << collection << "' differs after copy " << f.attempts << " (source " << src.count
              << " entries, replica " << dst.count << "): copying it again" << std::endl;
    if (f.attempts >= opt_.max_verify_attempts) {
      f.waiting_on = "bucket " + std::to_string(bucket) + " of '" + collection + "' differs after " +
                     std::to_string(f.attempts) + " copies; still copying";
    }
    return Status::Ok();
  }
  Status st = state_.ChangeMap("promoting shard '" + f.shard + "' in group " + std::to_string(f.group),
                               [&](ShardMap* m) { return m->PromoteReplica(f.group, f.shard); });
  if (st.ok()) {
    std::cerr << "mrl-coordinator: shard '" << f.shard << "' is filled (" << f.points << " points, "
              << f.todo.size() << " buckets, "
              << std::chrono::duration<double>(Clock::now() - f.started).count()
              << " s) and serves group " << f.group << std::endl;
  }
  return st;
}

}  // namespace mrl::coord
