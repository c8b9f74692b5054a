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
  v.catch_up = fill_->catch_up;
  v.from_version = fill_->from_version;
  v.buckets_copied_whole = fill_->copied_whole;
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
  const auto& catch_ups = map.groups()[*group].catch_up;
  const auto catch_up = catch_ups.find(shard);
  Fill f;
  {
    std::lock_guard<std::mutex> lock(mu_);
    // A fill that began before the member's current catch-up is stale (it went out meanwhile).
    if (fill_ && fill_->group == *group && fill_->shard == shard &&
        (catch_up == catch_ups.end() || fill_->joined_epoch >= catch_up->second.since_epoch)) {
      f = *fill_;
    }
  }
  if (f.shard.empty()) {  // a new fill: every bucket the group stores, as the map has it now
    f.group = *group;
    f.shard = shard;
    f.joined_epoch = map.epoch();
    f.started = Clock::now();
    if (catch_up != catch_ups.end()) {
      f.catch_up = true;
      f.from_version = catch_up->second.from_version;
    }
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
    std::cerr << "mrl-coordinator: " << (f.catch_up ? "catching up" : "filling") << " shard '"
              << shard << "' of group " << *group << ": " << f.todo.size() << " buckets to copy"
              << (f.catch_up ? " (entries of version " + std::to_string(f.from_version) + " or newer)"
                             : std::string())
              << std::endl;
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
      f.whole = false;
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
    if (f.whole && !f.cursor) {
      // The catch-up copy was not enough: start the bucket over on the member. Writes go on
      // reaching it meanwhile; the whole copy that follows brings back everything older.
      wire::DropBucketRequestT drop;
      drop.collection = collection;
      drop.bucket = bucket;
      auto r = pool_.Client(f.shard)->Call(drop, opt_.rpc_deadline_ms);
      pool_.Report(f.shard, r.status());
      if (!r.ok()) return r.status().WithContext("dropping bucket " + std::to_string(bucket) + " on '" + f.shard + "'");
    }
    const uint64_t min_version = f.catch_up && !f.whole ? f.from_version : 0;
    auto page = CopyBucketPage(pool_, *source, {f.shard}, collection, bucket, f.cursor,
                               opt_.copy_batch, opt_.rpc_deadline_ms, {}, min_version);
    if (!page.ok()) return page.status();
    f.points += page->points;
    f.bytes += page->bytes;
    if (opt_.max_bytes_per_s > 0) {  // at most max_bytes_per_s on average since the fill began
      const auto due = f.started + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
                                       static_cast<double>(f.bytes) / opt_.max_bytes_per_s));
      const auto wait = std::min<Clock::duration>(due - Clock::now(), std::chrono::seconds(1));
      if (wait > Clock::duration::zero()) std::this_thread::sleep_for(wait);
    }
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
      f.whole = false;
      return Status::Ok();
    }
    ++f.attempts;
    if (f.catch_up && !f.whole) {
      f.whole = true;
      ++f.copied_whole;
      std::cerr << "mrl-coordinator: catching up shard '" << f.shard << "': bucket " << bucket
                << " of '" << collection << "' differs after the copy of what changed (source "
                << src.count << " entries, member " << dst.count << "): copying it whole"
                << std::endl;
      return Status::Ok();
    }
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
                               [&](ShardMap* m) -> Status {
                                 // Not if it went out (and maybe began another catch-up) since.
                                 if (f.group < m->groups().size()) {
                                   const auto& c = m->groups()[f.group].catch_up;
                                   auto it = c.find(f.shard);
                                   if (it != c.end() && it->second.since_epoch > f.joined_epoch) {
                                     return Status::Aborted("shard '" + f.shard + "' left and began another catch-up");
                                   }
                                 }
                                 return m->PromoteReplica(f.group, f.shard);
                               });
  if (st.ok()) {
    std::cerr << "mrl-coordinator: shard '" << f.shard << "' is "
              << (f.catch_up ? "caught up" : "filled") << " (" << f.points << " points, "
              << f.todo.size() << " buckets, " << f.copied_whole << " copied whole, "
              << std::chrono::duration<double>(Clock::now() - f.started).count()
              << " s) and serves group " << f.group << std::endl;
  }
  return st;
}

}  // namespace mrl::coord
