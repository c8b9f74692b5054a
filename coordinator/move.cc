#include "coordinator/move.h"

#include <algorithm>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>
#include <utility>

#include "common/move_checksum.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;

constexpr MovePhase kAllPhases[] = {MovePhase::kPlanned, MovePhase::kDualWrite, MovePhase::kCopy,
                                    MovePhase::kVerify,  MovePhase::kFlip,      MovePhase::kCleanup,
                                    MovePhase::kDone,    MovePhase::kAborted};

std::string Describe(const MoveRecord& r) {
  return "move '" + r.id + "' (bucket " + std::to_string(r.bucket) + " of '" + r.collection +
         "', group " + std::to_string(r.source_group) + " -> " + std::to_string(r.target_group) +
         ", " + MovePhaseName(r.phase) + ")";
}

json FiguresJson(const VerifyFigures& f) { return {{"count", f.count}, {"checksum", f.checksum}}; }

template <typename T>
json OptionalJson(const std::optional<T>& v) {
  return v ? json(*v) : json(nullptr);
}

// Every field must be present: a record is written whole, so a missing field means damage.
template <typename T>
Status Field(const json& j, const std::string& name, T* out) {
  if (!j.is_object() || !j.contains(name)) {
    return Status::Corruption("move record: missing field '" + name + "'");
  }
  try {
    *out = j.at(name).get<T>();
  } catch (const json::exception& e) {
    return Status::Corruption("move record: field '" + name + "': " + e.what());
  }
  return Status::Ok();
}

template <typename T>
Status OptionalField(const json& j, const std::string& name, std::optional<T>* out) {
  if (!j.is_object() || !j.contains(name)) {
    return Status::Corruption("move record: missing field '" + name + "'");
  }
  if (j.at(name).is_null()) {
    out->reset();
    return Status::Ok();
  }
  T v{};
  MRL_RETURN_IF_ERROR(Field(j, name, &v));
  *out = v;
  return Status::Ok();
}

Status FiguresField(const json& j, const std::string& name, VerifyFigures* out) {
  json f;
  MRL_RETURN_IF_ERROR(Field(j, name, &f));
  MRL_RETURN_IF_ERROR(Field(f, "count", &out->count).WithContext(name));
  return Field(f, "checksum", &out->checksum).WithContext(name);
}

bool Touches(const MoveRecord& r, uint32_t group) {
  return r.source_group == group || r.target_group == group;
}

}  // namespace

const char* MovePhaseName(MovePhase phase) {
  switch (phase) {
    case MovePhase::kPlanned:
      return "PLANNED";
    case MovePhase::kDualWrite:
      return "DUAL_WRITE";
    case MovePhase::kCopy:
      return "COPY";
    case MovePhase::kVerify:
      return "VERIFY";
    case MovePhase::kFlip:
      return "FLIP";
    case MovePhase::kCleanup:
      return "CLEANUP";
    case MovePhase::kDone:
      return "DONE";
    case MovePhase::kAborted:
      return "ABORTED";
  }
  return "?";
}

const char* MoveStepName(MoveStep::Kind kind) {
  switch (kind) {
    case MoveStep::Kind::kBeginDualWrite:
      return "BeginDualWrite";
    case MoveStep::Kind::kAwaitEpoch:
      return "AwaitEpoch";
    case MoveStep::Kind::kCopyFrom:
      return "CopyFrom";
    case MoveStep::Kind::kVerify:
      return "Verify";
    case MoveStep::Kind::kFlip:
      return "Flip";
    case MoveStep::Kind::kCleanup:
      return "Cleanup";
    case MoveStep::Kind::kDiscardTarget:
      return "DiscardTarget";
    case MoveStep::Kind::kNone:
      return "None";
  }
  return "?";
}

void VerifyFigures::Add(uint64_t id, uint64_t version) {
  ++count;
  checksum += MoveChecksumTerm(id, version);  // shared with the shards' BucketChecksum
}

std::string ToJson(const MoveRecord& r) {
  json j = {{"id", r.id},
            {"collection", r.collection},
            {"bucket", r.bucket},
            {"source_group", r.source_group},
            {"target_group", r.target_group},
            {"phase", MovePhaseName(r.phase)},
            {"reverse_of", r.reverse_of},
            {"epoch_at_dual_write", OptionalJson(r.epoch_at_dual_write)},
            {"epoch_at_flip", OptionalJson(r.epoch_at_flip)},
            {"copy_cursor", OptionalJson(r.copy_cursor)},
            {"points_copied", r.points_copied},
            {"verified", r.verified},
            {"source_figures", FiguresJson(r.source_figures)},
            {"target_figures", FiguresJson(r.target_figures)},
            {"attempts", r.attempts},
            {"error", r.error},
            {"target_discarded", r.target_discarded},
            {"created_unix_ms", r.created_unix_ms},
            {"updated_unix_ms", r.updated_unix_ms}};
  return j.dump();
}

Result<MoveRecord> MoveFromJson(const std::string& text) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("move record: ") + e.what());
  }
  MoveRecord r;
  std::string phase;
  MRL_RETURN_IF_ERROR(Field(j, "id", &r.id));
  MRL_RETURN_IF_ERROR(Field(j, "collection", &r.collection));
  MRL_RETURN_IF_ERROR(Field(j, "bucket", &r.bucket));
  MRL_RETURN_IF_ERROR(Field(j, "source_group", &r.source_group));
  MRL_RETURN_IF_ERROR(Field(j, "target_group", &r.target_group));
  MRL_RETURN_IF_ERROR(Field(j, "phase", &phase));
  bool known = false;
  for (MovePhase p : kAllPhases) {
    if (phase == MovePhaseName(p)) r.phase = p, known = true;
  }
  if (!known)
    return Status::Corruption("move record: field 'phase': unknown phase '" + phase + "'");
  MRL_RETURN_IF_ERROR(Field(j, "reverse_of", &r.reverse_of));
  MRL_RETURN_IF_ERROR(OptionalField(j, "epoch_at_dual_write", &r.epoch_at_dual_write));
  MRL_RETURN_IF_ERROR(OptionalField(j, "epoch_at_flip", &r.epoch_at_flip));
  MRL_RETURN_IF_ERROR(OptionalField(j, "copy_cursor", &r.copy_cursor));
  MRL_RETURN_IF_ERROR(Field(j, "points_copied", &r.points_copied));
  MRL_RETURN_IF_ERROR(Field(j, "verified", &r.verified));
  MRL_RETURN_IF_ERROR(FiguresField(j, "source_figures", &r.source_figures));
  MRL_RETURN_IF_ERROR(FiguresField(j, "target_figures", &r.target_figures));
  MRL_RETURN_IF_ERROR(Field(j, "attempts", &r.attempts));
  MRL_RETURN_IF_ERROR(Field(j, "error", &r.error));
  MRL_RETURN_IF_ERROR(Field(j, "target_discarded", &r.target_discarded));
  MRL_RETURN_IF_ERROR(Field(j, "created_unix_ms", &r.created_unix_ms));
  MRL_RETURN_IF_ERROR(Field(j, "updated_unix_ms", &r.updated_unix_ms));
  return r;
}

bool IsActive(const MoveRecord& record) {
  if (record.phase == MovePhase::kDone) return false;
  if (record.phase == MovePhase::kAborted) return NextStep(record).kind != MoveStep::Kind::kNone;
  return true;
}

Result<MoveRecord> PlanMove(const ShardMap& map, const std::vector<MoveRecord>& active_moves,
                            const MoveRequest& request,
                            const std::function<bool(const std::string&)>& healthy,
                            const MoveLimits& limits) {
  static const std::regex kId("[A-Za-z0-9_.-]{1,64}");
  if (!std::regex_match(request.id, kId)) {
    return Status::InvalidArgument("bad move id '" + request.id + "'");
  }
  auto placement = map.Placement(request.collection);
  if (!placement.ok()) return placement.status();
  const CollectionPlacement& p = *placement.value();
  const std::string what =
      "bucket " + std::to_string(request.bucket) + " of '" + request.collection + "'";
  if (request.bucket >= p.num_buckets) {
    return Status::OutOfRange(what + ": the collection has " + std::to_string(p.num_buckets) +
                              " buckets");
  }
  if (request.target_group >= map.groups().size()) {
    return Status::NotFound("group " + std::to_string(request.target_group) +
                            " is not in the map (" + std::to_string(map.groups().size()) +
                            " groups)");
  }
  const uint32_t source = p.group_of_bucket[request.bucket];
  if (source == request.target_group) {
    return Status::FailedPrecondition(what + " already lives on group " + std::to_string(source));
  }
  if (p.moving.count(request.bucket)) {
    return Status::FailedPrecondition(what + " is already moving (in the shard map)");
  }
  for (const MoveRecord& r : active_moves) {
    if (r.id == request.id) return Status::FailedPrecondition("move id '" + r.id + "' is taken");
    if (IsActive(r) && r.collection == request.collection && r.bucket == request.bucket) {
      return Status::FailedPrecondition(what + " is already moving: " + Describe(r));
    }
  }
  const auto any_healthy = [&](uint32_t g) {
    const auto& members = map.groups()[g].shards;
    return std::any_of(members.begin(), members.end(), healthy);
  };
  if (!any_healthy(request.target_group)) {
    return Status::Unavailable("target group " + std::to_string(request.target_group) +
                               " has no healthy member");
  }
  if (!any_healthy(source)) {
    return Status::Unavailable(what + ": every replica of source group " + std::to_string(source) +
                               " is down");
  }
  for (uint32_t g : {source, request.target_group}) {
    const auto n = std::count_if(active_moves.begin(), active_moves.end(),
                                 [&](const MoveRecord& r) { return IsActive(r) && Touches(r, g); });
    if (n >= static_cast<long>(limits.max_moves_per_group)) {
      return Status::ResourceExhausted("group " + std::to_string(g) + " already has " +
                                       std::to_string(n) + " active moves (limit " +
                                       std::to_string(limits.max_moves_per_group) + ")");
    }
  }
  MoveRecord r;
  r.id = request.id;
  r.collection = request.collection;
  r.bucket = request.bucket;
  r.source_group = source;
  r.target_group = request.target_group;
  r.phase = MovePhase::kPlanned;
  r.created_unix_ms = r.updated_unix_ms = request.now_unix_ms;
  return r;
}

MoveStep NextStep(const MoveRecord& r) {
  MoveStep s;
  switch (r.phase) {
    case MovePhase::kPlanned:
      s.kind = MoveStep::Kind::kBeginDualWrite;
      break;
    case MovePhase::kDualWrite:
      s.kind = MoveStep::Kind::kAwaitEpoch;
      s.epoch = r.epoch_at_dual_write.value_or(0);
      break;
    case MovePhase::kCopy:
      s.kind = MoveStep::Kind::kCopyFrom;
      s.cursor = r.copy_cursor;
      break;
    case MovePhase::kVerify:
      s.kind = r.verified ? MoveStep::Kind::kFlip : MoveStep::Kind::kVerify;
      break;
    case MovePhase::kFlip:
      s.kind = MoveStep::Kind::kAwaitEpoch;
      s.epoch = r.epoch_at_flip.value_or(0);
      break;
    case MovePhase::kCleanup:
      s.kind = MoveStep::Kind::kCleanup;
      break;
    case MovePhase::kDone:
      s.kind = MoveStep::Kind::kNone;
      break;
    case MovePhase::kAborted:
      // Aborted after FLIP: the reverse move owns the bucket; nothing here to discard.
      s.kind = r.target_discarded || r.epoch_at_flip ? MoveStep::Kind::kNone
                                                     : MoveStep::Kind::kDiscardTarget;
      break;
  }
  return s;
}

Result<MoveRecord> Advance(const MoveRecord& record, const StepOutcome& outcome,
                           const MoveLimits& limits) {
  const MoveStep::Kind expected = NextStep(record).kind;
  if (outcome.step != expected || expected == MoveStep::Kind::kNone) {
    return Status::InvalidArgument(std::string("an outcome of ") + MoveStepName(outcome.step) +
                                   " for " + Describe(record) + ", whose next step is " +
                                   MoveStepName(expected));
  }
  MoveRecord r = record;
  r.updated_unix_ms = outcome.now_unix_ms;
  switch (expected) {
    case MoveStep::Kind::kBeginDualWrite:
      r.phase = MovePhase::kDualWrite;
      r.epoch_at_dual_write = outcome.epoch;
      break;
    case MoveStep::Kind::kAwaitEpoch:
      r.phase = r.phase == MovePhase::kDualWrite ? MovePhase::kCopy : MovePhase::kCleanup;
      break;
    case MoveStep::Kind::kCopyFrom:
      if (outcome.cursor) {
        if (r.copy_cursor && *outcome.cursor <= *r.copy_cursor) {
          return Status::InvalidArgument("copy cursor went back from " +
                                         std::to_string(*r.copy_cursor) + " to " +
                                         std::to_string(*outcome.cursor) + " in " + Describe(r));
        }
        r.copy_cursor = outcome.cursor;
      }
      r.points_copied += outcome.points_copied;
      if (outcome.copy_finished) {
        r.phase = MovePhase::kVerify;
        r.verified = false;
      }
      break;
    case MoveStep::Kind::kVerify:
      r.source_figures = outcome.source;
      r.target_figures = outcome.target;
      if (outcome.source == outcome.target) {
        r.verified = true;
        break;
      }
      ++r.attempts;
      if (r.attempts >= limits.max_verify_attempts) {
        auto aborted = Abort(r,
                             "verify disagreed " + std::to_string(r.attempts) +
                                 " times (last: source " + std::to_string(outcome.source.count) +
                                 " points, target " + std::to_string(outcome.target.count) + ")",
                             outcome.now_unix_ms);
        if (!aborted.ok()) return aborted.status();
        return aborted.value().aborted;
      }
      // Copy again from the start: applying a point only when its version is newer makes the
      // second pass fix what the first missed without undoing newer writes.
      r.phase = MovePhase::kCopy;
      r.copy_cursor.reset();
      r.points_copied = 0;
      break;
    case MoveStep::Kind::kFlip:
      r.phase = MovePhase::kFlip;
      r.epoch_at_flip = outcome.epoch;
      break;
    case MoveStep::Kind::kCleanup:
      r.phase = MovePhase::kDone;
      break;
    case MoveStep::Kind::kDiscardTarget:
      r.target_discarded = true;
      break;
    case MoveStep::Kind::kNone:
      break;
  }
  return r;
}

Result<AbortResult> Abort(const MoveRecord& record, const std::string& reason,
                          int64_t now_unix_ms) {
  AbortResult out;
  out.aborted = record;
  out.aborted.phase = MovePhase::kAborted;
  out.aborted.error = reason;
  out.aborted.updated_unix_ms = now_unix_ms;
  switch (record.phase) {
    case MovePhase::kPlanned:
    case MovePhase::kDualWrite:
    case MovePhase::kCopy:
    case MovePhase::kVerify:
      out.aborted.target_discarded = false;
      return out;
    case MovePhase::kFlip: {
      MoveRecord rev;
      rev.id = record.id + "-rev";
      rev.collection = record.collection;
      rev.bucket = record.bucket;
      rev.source_group = record.target_group;
      rev.target_group = record.source_group;
      rev.phase = MovePhase::kPlanned;
      rev.reverse_of = record.id;
      rev.created_unix_ms = rev.updated_unix_ms = now_unix_ms;
      out.reverse = std::move(rev);
      return out;
    }
    case MovePhase::kCleanup:
      return Status::FailedPrecondition(
          Describe(record) + ": cleanup has begun; move the bucket back with a new move");
    case MovePhase::kDone:
    case MovePhase::kAborted:
      break;
  }
  return Status::FailedPrecondition(Describe(record) + " has ended");
}

Result<bool> ApplyMapStep(ShardMap* map, const MoveRecord& r) {
  auto placement = map->Placement(r.collection);
  if (!placement.ok()) return placement.status();
  auto move = map->MoveOf(r.collection, r.bucket);
  if (!move.ok()) return move.status();
  const uint32_t owner = placement.value()->group_of_bucket[r.bucket];
  const std::optional<BucketMove>& m = move.value();
  const BucketMove dual{r.source_group, r.target_group, BucketMovePhase::kDualWrite};
  const BucketMove flipped{r.source_group, r.target_group, BucketMovePhase::kFlipped};
  const auto change = [](Status s) -> Result<bool> {
    if (!s.ok()) return s;
    return true;
  };
  const MoveStep::Kind step = NextStep(r).kind;
  switch (step) {
    case MoveStep::Kind::kBeginDualWrite:
      if (m == dual) return false;
      if (!r.reverse_of.empty() &&
          m == BucketMove{r.target_group, r.source_group, BucketMovePhase::kFlipped}) {
        return change(map->ReverseMove(r.collection, r.bucket));
      }
      if (r.reverse_of.empty() && !m && owner == r.source_group) {
        return change(map->BeginDualWrite(r.collection, r.bucket, r.target_group));
      }
      break;
    case MoveStep::Kind::kFlip:
      if (m == flipped) return false;
      if (m == dual) return change(map->Flip(r.collection, r.bucket));
      break;
    case MoveStep::Kind::kCleanup:
      if (!m && owner == r.target_group) return false;
      if (m == flipped) return change(map->FinishMove(r.collection, r.bucket));
      break;
    case MoveStep::Kind::kDiscardTarget:
      if (!m && owner == r.source_group) return false;
      if (m == dual) return change(map->CancelMove(r.collection, r.bucket));
      break;
    default:
      return Status::InvalidArgument(std::string("step ") + MoveStepName(step) + " of " +
                                     Describe(r) + " changes no map");
  }
  return Status::FailedPrecondition("the shard map does not show " + Describe(r) +
                                    " where its step " + MoveStepName(step) + " starts");
}

}  // namespace mrl::coord
