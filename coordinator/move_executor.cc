#include "coordinator/move_executor.h"

#include <algorithm>
#include <chrono>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <set>

#include "common/collection_spec.h"
#include "common/protocol.h"
#include "coordinator/bucket_copy.h"

namespace mrl::coord {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowUnixMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

StepOutcome Outcome(MoveStep::Kind step) {
  StepOutcome o;
  o.step = step;
  o.now_unix_ms = NowUnixMs();
  return o;
}

struct Entry {
  MoveRecord record;
  int64_t revision = 0;
};

// The journal's records; an entry that does not parse is reported once per pass and skipped
// (it blocks nothing but itself: its bucket shows as moving in the map).
std::vector<Entry> Records(const ClusterSnapshot& snap) {
  std::vector<Entry> out;
  for (const auto& [id, e] : snap.moves) {
    auto r = MoveFromJson(e.value);
    if (!r.ok()) {
      std::fprintf(stderr, "mrl-coordinator: move journal entry '%s' does not parse: %s\n",
                   id.c_str(), r.status().ToString().c_str());
      continue;
    }
    out.push_back({std::move(r).value(), e.mod_revision});
  }
  return out;
}

// Test failpoints (tests/move_crash_e2e_test.cc): MRL_MOVE_FAILPOINT=<action>:<point>, where
// <point> is "after:<PHASE>" (a journal write just moved a record into PHASE), "copy_page" (the
// first page of a copy is recorded), "cleanup_map" (CLEANUP's map change is recorded, the drop
// not yet run) or "dropped" (the losing group dropped the bucket, DONE not yet recorded), and
// <action> is "exit" (the process ends at once, as kill -9 would end it) or "pause" (the
// executor holds there, once, until the file named by MRL_MOVE_FAILPOINT_RELEASE exists: the
// test kills a shard meanwhile). Unset in production: one getenv at start, then a string compare.
void Failpoint(const std::string& point) {
  static const std::string spec = [] {
    const char* e = std::getenv("MRL_MOVE_FAILPOINT");
    return std::string(e ? e : "");
  }();
  static std::atomic<bool> paused{false};
  if (spec.empty()) return;
  const size_t colon = spec.find(':');
  if (colon == std::string::npos || spec.substr(colon + 1) != point) return;
  const std::string action = spec.substr(0, colon);
  if (action == "exit") {
    std::fprintf(stderr, "mrl-coordinator: failpoint %s: exiting\n", spec.c_str());
    std::_Exit(137);
  }
  if (action == "pause" && !paused.exchange(true)) {
    const char* release = std::getenv("MRL_MOVE_FAILPOINT_RELEASE");
    std::fprintf(stderr, "mrl-coordinator: failpoint %s: paused until %s exists\n", spec.c_str(),
                 release ? release : "(unset)");
    while (release && !std::filesystem::exists(release)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
}

Result<int64_t> After(Result<int64_t> rev, MovePhase phase) {
  if (rev.ok()) Failpoint(std::string("after:") + MovePhaseName(phase));
  return rev;
}

bool Started(const MoveRecord& r) { return IsActive(r) && r.phase != MovePhase::kPlanned; }

double PhasePercent(const MoveRecord& r, uint64_t bucket_points) {
  switch (r.phase) {
    case MovePhase::kPlanned:
      return 0;
    case MovePhase::kDualWrite:
      return 2;
    case MovePhase::kCopy:
      return bucket_points == 0
                 ? 5
                 : 5 + 85 * std::min(1.0, static_cast<double>(r.points_copied) / bucket_points);
    case MovePhase::kVerify:
      return 90;
    case MovePhase::kFlip:
      return 95;
    case MovePhase::kCleanup:
      return 97;
    case MovePhase::kDone:
      return 100;
    case MovePhase::kAborted:
      return r.target_discarded || r.epoch_at_flip ? 100 : 99;
  }
  return 0;
}

}  // namespace

MoveExecutor::MoveExecutor(ClusterState& state, ShardPool& pool, MoveExecutorOptions options)
    : state_(state), pool_(pool), opt_(options) {}

MoveExecutor::~MoveExecutor() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void MoveExecutor::Start() { thread_ = std::thread([this] { Loop(); }); }

void MoveExecutor::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    wake_ = true;
  }
  cv_.notify_all();
}

void MoveExecutor::Loop() {
  for (;;) {
    bool moved = false;
    if (state_.CheckLeader().ok()) moved = RunOnce();
    std::unique_lock<std::mutex> lock(mu_);
    if (stop_) return;
    if (!moved) {
      cv_.wait_for(lock, std::chrono::milliseconds(opt_.idle_poll_ms),
                   [&] { return stop_ || wake_; });
    }
    wake_ = false;
    if (stop_) return;
  }
}

bool MoveExecutor::RunOnce() {
  const auto snap = state_.Snapshot();
  std::vector<Entry> entries = Records(*snap);
  std::map<uint32_t, uint32_t> started_on_group;
  for (const Entry& e : entries) {
    if (!Started(e.record)) continue;
    ++started_on_group[e.record.source_group];
    ++started_on_group[e.record.target_group];
  }
  // An abort in FLIP records the reverse move first: finish the abort it belongs to.
  std::map<std::string, const Entry*> by_id;
  for (const Entry& e : entries) by_id[e.record.id] = &e;
  bool moved = false;
  for (const Entry& e : entries) {
    if (e.record.reverse_of.empty()) continue;
    auto it = by_id.find(e.record.reverse_of);
    if (it == by_id.end() || it->second->record.phase != MovePhase::kFlip) continue;
    auto aborted = Abort(it->second->record, "reversed by move '" + e.record.id + "'", NowUnixMs());
    if (aborted.ok()) (void)Record(aborted->aborted, it->second->revision);
    return true;  // re-read the journal
  }
  for (const Entry& e : entries) {
    const MoveRecord& r = e.record;
    if (NextStep(r).kind == MoveStep::Kind::kNone) continue;
    if (!r.reverse_of.empty() && by_id.count(r.reverse_of) &&
        by_id[r.reverse_of]->record.phase == MovePhase::kFlip) {
      continue;
    }
    if (r.phase == MovePhase::kPlanned) {
      if (started_on_group[r.source_group] >= opt_.max_moves_per_group ||
          started_on_group[r.target_group] >= opt_.max_moves_per_group) {
        SetWaiting(r.id, "queued: group limit of " + std::to_string(opt_.max_moves_per_group) +
                             " moves at a time");
        continue;
      }
      ++started_on_group[r.source_group];
      ++started_on_group[r.target_group];
    }
    const Status st = Step(r, e.revision);
    if (!st.ok()) {
      if (st.code() != Status::Code::kAborted) {  // Aborted: the entry moved on; re-read
        SetWaiting(r.id, st.ToString());
      }
      continue;
    }
    const auto now = state_.Snapshot();
    auto after = now->moves.find(r.id);
    if (after != now->moves.end() && after->second.mod_revision != e.revision) {
      moved = true;
      std::lock_guard<std::mutex> lock(mu_);
      progress_[r.id].waiting_on.clear();
    }
  }
  Prune(*snap);
  return moved;
}

void MoveExecutor::Prune(const ClusterSnapshot& snap) {
  const std::vector<Entry> entries = Records(snap);
  // Finished records (DONE, or ABORTED with nothing left to undo) that no active reverse move
  // refers to; the newest keep_finished stay for `mrlctl moves --all`, the rest are deleted.
  std::set<std::string> referenced;
  for (const Entry& e : entries) {
    if (NextStep(e.record).kind != MoveStep::Kind::kNone && !e.record.reverse_of.empty()) {
      referenced.insert(e.record.reverse_of);
    }
  }
  std::vector<const Entry*> finished;
  for (const Entry& e : entries) {
    const bool settled = e.record.phase == MovePhase::kDone ||
                         (e.record.phase == MovePhase::kAborted &&
                          NextStep(e.record).kind == MoveStep::Kind::kNone);
    if (settled && !referenced.count(e.record.id)) finished.push_back(&e);
  }
  if (finished.size() <= opt_.keep_finished) return;
  std::sort(finished.begin(), finished.end(), [](const Entry* a, const Entry* b) {
    return a->record.updated_unix_ms > b->record.updated_unix_ms;  // newest first
  });
  size_t pruned = 0;
  const int64_t cutoff = NowUnixMs() - int64_t{1000} * opt_.prune_after_s;
  for (size_t i = opt_.keep_finished; i < finished.size(); ++i) {
    if (finished[i]->record.updated_unix_ms > cutoff) continue;
    // Compare-and-swapped on its revision like every journal write: a record that changed
    // meanwhile is left for the next pass.
    if (state_.RecordMove(finished[i]->record.id, "", finished[i]->revision).ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      progress_.erase(finished[i]->record.id);
      ++pruned;
    }
  }
  if (pruned > 0) {
    std::fprintf(stderr, "mrl-coordinator: pruned %zu finished moves from the journal (kept %u)\n",
                 pruned, opt_.keep_finished);
  }
}

Status MoveExecutor::Step(const MoveRecord& r, int64_t revision) {
  const auto snap = state_.Snapshot();
  const ShardMap& map = snap->map;
  const MoveStep step = NextStep(r);
  switch (step.kind) {
    case MoveStep::Kind::kBeginDualWrite: {
      // The target's shards may be new (a group added to a running cluster): they get the
      // collection first (idempotent), so dual writes and the copy find it there.
      auto spec = snap->Spec(r.collection);
      if (!spec.ok()) return spec.status();
      MRL_RETURN_IF_ERROR(EnsureCollection(map, r.target_group, *spec.value()));
      return MapStep(r, revision, /*advance=*/true);
    }
    case MoveStep::Kind::kFlip:
      return MapStep(r, revision, /*advance=*/true);
    case MoveStep::Kind::kAwaitEpoch: {
      auto saw = ShardsSawEpoch(map, {r.source_group, r.target_group}, step.epoch);
      if (!saw.ok()) return saw.status();
      if (!*saw) {
        SetWaiting(r.id, "waiting for the shards to see map epoch " + std::to_string(step.epoch));
        return Status::Ok();
      }
      StepOutcome o = Outcome(step.kind);
      auto next = Advance(r, o);
      if (!next.ok()) return next.status();
      return Record(*next, revision).status();
    }
    case MoveStep::Kind::kCopyFrom:
      return CopyPage(map, r, revision);
    case MoveStep::Kind::kVerify:
      return Verify(map, r, revision);
    case MoveStep::Kind::kCleanup: {
      // The map first (writes stop reaching the source: FinishMove), then, once the source's
      // shards refuse requests routed by the older map, the drop; DONE last.
      MRL_RETURN_IF_ERROR(MapStep(r, revision, /*advance=*/false));
      return Status::Ok();  // the next pass (with the new revision) drops
    }
    case MoveStep::Kind::kDiscardTarget:
      return MapStep(r, revision, /*advance=*/false);
    case MoveStep::Kind::kNone:
      return Status::Ok();
  }
  return Status::Ok();
}

Status MoveExecutor::MapStep(const MoveRecord& r, int64_t revision, bool advance) {
  const MoveStep::Kind kind = NextStep(r).kind;
  if (!advance) {
    // CLEANUP and DISCARD: bring the map there (a no-op when it already is), wait for the
    // shards of the group losing the bucket to see that epoch, drop there, then advance.
    const auto snap = state_.Snapshot();
    ShardMap probe = snap->map;
    auto changed = ApplyMapStep(&probe, r);
    if (!changed.ok()) return changed.status();
    if (*changed) {
      auto rev = state_.RecordMoveWith(
          r.id, revision,
          [&](ShardMap* m) -> Result<std::string> {
            auto c = ApplyMapStep(m, r);
            if (!c.ok()) return c.status();
            MoveRecord same = r;
            same.updated_unix_ms = NowUnixMs();
            return ToJson(same);
          },
          /*changes_map=*/true);
      if (rev.ok()) Failpoint(kind == MoveStep::Kind::kCleanup ? "cleanup_map" : "discard_map");
      return rev.status();  // the drop follows on the next pass
    }
    const uint32_t losing = kind == MoveStep::Kind::kCleanup ? r.source_group : r.target_group;
    auto saw = ShardsSawEpoch(snap->map, {losing}, snap->map.epoch());
    if (!saw.ok()) return saw.status();
    if (!*saw) {
      SetWaiting(r.id, "waiting for group " + std::to_string(losing) + " to see map epoch " +
                           std::to_string(snap->map.epoch()));
      return Status::Ok();
    }
    MRL_RETURN_IF_ERROR(DropOn(snap->map, losing, r));
    Failpoint("dropped");
    StepOutcome o = Outcome(kind);
    auto next = Advance(r, o);
    if (!next.ok()) return next.status();
    return Record(*next, revision).status();
  }
  MovePhase reached = r.phase;
  auto rev = state_.RecordMoveWith(
      r.id, revision,
      [&](ShardMap* m) -> Result<std::string> {
        auto c = ApplyMapStep(m, r);
        if (!c.ok()) return c.status();
        StepOutcome o = Outcome(kind);
        o.epoch = m->epoch();
        auto next = Advance(r, o);
        if (!next.ok()) return next.status();
        reached = next->phase;
        return ToJson(*next);
      },
      /*changes_map=*/true);
  return After(std::move(rev), reached).status();
}

Result<bool> MoveExecutor::ShardsSawEpoch(const ShardMap& map, const std::vector<uint32_t>& groups,
                                          uint64_t epoch) {
  std::vector<std::pair<std::string, std::future<Result<wire::StatsResponseT>>>> calls;
  for (uint32_t g : groups) {
    if (g >= map.groups().size()) continue;
    for (const std::string& s : map.groups()[g].WriteShards()) {
      if (!pool_.Healthy(s)) continue;
      calls.emplace_back(s,
                         pool_.Client(s)->CallFuture(wire::StatsRequestT{}, opt_.rpc_deadline_ms));
    }
  }
  bool all = true;
  for (auto& [s, f] : calls) {
    auto r = f.get();
    pool_.Report(s, r.status());
    if (!r.ok()) continue;  // gone: it sees the new epoch on its first request after it returns
    if (r->map_epoch < epoch) all = false;
  }
  return all;
}

std::optional<std::string> MoveExecutor::HealthySource(const ShardMap& map, uint32_t group) {
  for (const std::string& s : map.groups()[group].shards) {
    if (pool_.Healthy(s)) return s;
  }
  return std::nullopt;
}

Status MoveExecutor::CopyPage(const ShardMap& map, const MoveRecord& r, int64_t revision) {
  auto source = HealthySource(map, r.source_group);
  if (!source) {
    SetWaiting(r.id, "no healthy replica in source group " + std::to_string(r.source_group));
    return Status::Ok();
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    Progress& p = progress_[r.id];
    if (!r.copy_cursor || p.started == Clock::time_point{}) {
      p.started = Clock::now();
      p.copied_at_start = r.points_copied;
    }
  }
  if (!r.copy_cursor) {  // the first page: the bucket's size, for percent and ETA
    auto f = Figures(*source, r);
    if (f.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      progress_[r.id].bucket_points = f->count;
    }
  }
  auto page = CopyBucketPage(pool_, *source, map.groups()[r.target_group].WriteShards(),
                             r.collection, r.bucket, r.copy_cursor, opt_.copy_batch,
                             opt_.rpc_deadline_ms, [this](uint64_t bytes) { Throttle(bytes); });
  if (!page.ok()) return page.status();
  StepOutcome o = Outcome(MoveStep::Kind::kCopyFrom);
  o.points_copied = page->points;
  o.copy_finished = page->finished;
  o.cursor = page->cursor;
  if (o.cursor && r.copy_cursor && *o.cursor <= *r.copy_cursor) o.cursor.reset();
  auto next = Advance(r, o);
  if (!next.ok()) return next.status();
  auto rev = Record(*next, revision);
  if (rev.ok() && next->phase == MovePhase::kCopy) Failpoint("copy_page");
  return rev.status();
}

Result<VerifyFigures> MoveExecutor::Figures(const std::string& shard, const MoveRecord& r) {
  return BucketFigures(pool_, shard, r.collection, r.bucket, opt_.rpc_deadline_ms);
}

Status MoveExecutor::Verify(const ShardMap& map, const MoveRecord& r, int64_t revision) {
  auto source = HealthySource(map, r.source_group);
  if (!source) {
    SetWaiting(r.id, "no healthy replica in source group " + std::to_string(r.source_group));
    return Status::Ok();
  }
  // Writes keep landing on both sides, each side a moment apart: figures taken while one is in
  // flight disagree without anything missing. Re-take them a few times before counting a
  // disagreement (which copies the bucket again).
  VerifyFigures src, dst;
  bool agree = false;
  for (int attempt = 0; attempt < 5 && !agree; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(20 << attempt));
    auto s = Figures(*source, r);
    if (!s.ok()) return s.status();
    src = *s;
    agree = true;
    for (const std::string& t : map.groups()[r.target_group].shards) {
      auto d = Figures(t, r);
      if (!d.ok()) return d.status();
      dst = *d;
      if (!(dst == src)) {
        agree = false;
        break;
      }
    }
  }
  StepOutcome o = Outcome(MoveStep::Kind::kVerify);
  o.source = src;
  o.target = dst;
  MoveLimits limits;
  limits.max_verify_attempts = opt_.max_verify_attempts;
  auto next = Advance(r, o, limits);
  if (!next.ok()) return next.status();
  if (!agree) {
    std::fprintf(
        stderr,
        "mrl-coordinator: move '%s': verify disagreed (source %llu points, target %llu)%s\n",
        r.id.c_str(), static_cast<unsigned long long>(src.count),
        static_cast<unsigned long long>(dst.count),
        next->phase == MovePhase::kAborted ? ": aborted" : ": copying again");
  }
  return Record(*next, revision).status();
}

Status MoveExecutor::EnsureCollection(const ShardMap& map, uint32_t group,
                                      const CollectionSpec& spec) {
  wire::CreateCollectionRequestT req;
  req.spec = std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(spec));
  for (const std::string& s : map.groups()[group].WriteShards()) {
    auto a = pool_.Client(s)->Call(req, opt_.rpc_deadline_ms);
    pool_.Report(s, a.status());
    if (!a.ok()) return a.status().WithContext("creating '" + spec.name + "' on shard '" + s + "'");
  }
  return Status::Ok();
}

Status MoveExecutor::DropOn(const ShardMap& map, uint32_t group, const MoveRecord& r) {
  wire::DropBucketRequestT req;
  req.collection = r.collection;
  req.bucket = r.bucket;
  for (const std::string& s : map.groups()[group].WriteShards()) {
    auto a = pool_.Client(s)->Call(req, opt_.rpc_deadline_ms);
    pool_.Report(s, a.status());
    // Every member must drop: one that kept the range would serve stale points if the bucket
    // ever came back to this group. The step waits for it.
    if (!a.ok()) return a.status().WithContext("dropping the bucket on shard '" + s + "'");
  }
  return Status::Ok();
}

Result<int64_t> MoveExecutor::Record(const MoveRecord& next, int64_t revision) {
  return After(state_.RecordMove(next.id, ToJson(next), revision), next.phase);
}

void MoveExecutor::SetWaiting(const std::string& id, const std::string& why) {
  std::lock_guard<std::mutex> lock(mu_);
  progress_[id].waiting_on = why;
}

void MoveExecutor::Throttle(uint64_t bytes) {
  if (opt_.max_bytes_per_s == 0) return;
  std::unique_lock<std::mutex> lock(mu_);
  const auto now = Clock::now();
  if (throttle_start_ == Clock::time_point{} || now - throttle_start_ > std::chrono::seconds(5)) {
    throttle_start_ = now;
    throttle_bytes_ = 0;
  }
  throttle_bytes_ += bytes;
  const auto due = throttle_start_ + std::chrono::microseconds(static_cast<int64_t>(
                                         1e6 * static_cast<double>(throttle_bytes_) /
                                         static_cast<double>(opt_.max_bytes_per_s)));
  cv_.wait_until(lock, due, [&] { return stop_; });
}

Result<MoveRecord> MoveExecutor::Submit(MoveRequest request) {
  MRL_RETURN_IF_ERROR(state_.AdmitChange("moving bucket " + std::to_string(request.bucket) +
                                         " of '" + request.collection + "'"));
  const auto snap = state_.Snapshot();
  std::vector<MoveRecord> records;
  for (Entry& e : Records(*snap)) records.push_back(std::move(e.record));
  if (request.id.empty()) {
    request.id = request.collection + "-b" + std::to_string(request.bucket) + "-" +
                 std::to_string(NowUnixMs());
  }
  if (request.now_unix_ms == 0) request.now_unix_ms = NowUnixMs();
  MoveLimits limits;
  limits.max_moves_per_group = opt_.max_queued_per_group;
  limits.max_verify_attempts = opt_.max_verify_attempts;
  auto planned = PlanMove(snap->map, records, request,
                          [&](const std::string& s) { return pool_.Healthy(s); }, limits);
  if (!planned.ok()) return planned.status();
  auto rev = state_.RecordMove(planned->id, ToJson(*planned), 0);
  if (!rev.ok()) return rev.status();
  Wake();
  return planned;
}

Result<AbortResult> MoveExecutor::AbortMove(const std::string& id, const std::string& reason) {
  MRL_RETURN_IF_ERROR(state_.AdmitChange("aborting move '" + id + "'"));
  // The executor may record a step meanwhile: re-read and retry on a stale revision.
  for (int attempt = 0;; ++attempt) {
    const auto snap = state_.Snapshot();
    auto it = snap->moves.find(id);
    if (it == snap->moves.end()) return Status::NotFound("no move '" + id + "'");
    auto record = MoveFromJson(it->second.value);
    if (!record.ok()) return record.status();
    auto aborted = Abort(*record, reason.empty() ? "aborted by the operator" : reason, NowUnixMs());
    if (!aborted.ok()) return aborted.status();
    if (aborted->reverse) {
      auto rev = state_.RecordMove(aborted->reverse->id, ToJson(*aborted->reverse), 0);
      if (!rev.ok() && rev.status().code() != Status::Code::kAborted) return rev.status();
    }
    auto rev = state_.RecordMove(id, ToJson(aborted->aborted), it->second.mod_revision);
    if (rev.ok()) {
      Wake();
      return aborted;
    }
    if (rev.status().code() != Status::Code::kAborted || attempt >= 20) return rev.status();
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

std::vector<MoveView> MoveExecutor::List() const {
  const auto snap = state_.Snapshot();
  std::vector<MoveView> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (Entry& e : Records(*snap)) {
    MoveView v;
    v.revision = e.revision;
    if (auto it = progress_.find(e.record.id); it != progress_.end()) {
      const Progress& p = it->second;
      v.bucket_points = p.bucket_points;
      v.waiting_on = p.waiting_on;
      if (e.record.phase == MovePhase::kCopy && p.started != Clock::time_point{}) {
        const double s = std::chrono::duration<double>(Clock::now() - p.started).count();
        const uint64_t done =
            e.record.points_copied - std::min(e.record.points_copied, p.copied_at_start);
        if (s > 0) v.points_per_s = done / s;
        if (v.points_per_s > 0 && p.bucket_points >= e.record.points_copied) {
          v.eta_s = (p.bucket_points - e.record.points_copied) / v.points_per_s;
        }
      }
    }
    v.percent = PhasePercent(e.record, v.bucket_points);
    if (!IsActive(e.record)) v.waiting_on.clear();
    v.record = std::move(e.record);
    out.push_back(std::move(v));
  }
  return out;
}

Result<std::vector<uint64_t>> MoveExecutor::BucketWeights(const ShardMap& map,
                                                          const std::string& collection) {
  auto placement = map.Placement(collection);
  if (!placement.ok()) return placement.status();
  const CollectionPlacement& p = *placement.value();
  std::vector<uint64_t> weights(p.num_buckets, 0);
  // A few checksums in flight per group at a time: each scans its bucket on the shard.
  std::vector<std::future<Status>> work;
  const uint32_t lanes = 8;
  for (uint32_t lane = 0; lane < lanes; ++lane) {
    work.push_back(std::async(std::launch::async, [&, lane]() -> Status {
      for (uint32_t b = lane; b < p.num_buckets; b += lanes) {
        auto shard = HealthySource(map, p.group_of_bucket[b]);
        if (!shard) {
          return Status::Unavailable("no healthy replica in group " +
                                     std::to_string(p.group_of_bucket[b]) + " to count bucket " +
                                     std::to_string(b));
        }
        wire::BucketChecksumRequestT req;
        req.collection = collection;
        req.bucket = b;
        auto a = pool_.Client(*shard)->Call(req, opt_.rpc_deadline_ms);
        pool_.Report(*shard, a.status());
        if (!a.ok()) return a.status().WithContext("counting on shard '" + *shard + "'");
        weights[b] = a->count;
      }
      return Status::Ok();
    }));
  }
  Status first;
  for (auto& w : work) {
    const Status st = w.get();
    if (first.ok() && !st.ok()) first = st;
  }
  if (!first.ok()) return first;
  return weights;
}

}  // namespace mrl::coord
