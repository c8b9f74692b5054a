// A bucket's move between replica groups, as decisions only: the persisted move record, its state
// machine and the refusals of a move request (the planners that propose moves are in
// rebalance_plan.h). No sockets, no files, no clocks (times come in as arguments): the executor
// (which talks to shards and to the metadata store) drives these, and a unit test drives them
// directly.
//
// Phases (docs/architecture.md, "Moving a bucket: the state machine"); each names the state the
// move has reached, and NextStep(record) is the one thing left to do in it:
//   PLANNED     record stored, nothing changed          -> BeginDualWrite (map, epoch + 1)
//   DUAL_WRITE  map dual-writes, source owns queries     -> AwaitEpoch(epoch_at_dual_write)
//   COPY        target streams the bucket from a source  -> CopyFrom(cursor), batch by batch
//   VERIFY      count + checksum on both sides           -> Verify; once they agree, Flip (epoch +
//   1) FLIP        target owns queries, writes to both      -> AwaitEpoch(epoch_at_flip) CLEANUP
//   source leaves the write set, drops range -> Cleanup (FinishMove: epoch + 1; drop) DONE nothing
//   left                             -> None ABORTED     before FLIP: target copy to discard ->
//   DiscardTarget (CancelMove: epoch + 1)
// Every step is safe to re-run: map changes go through ApplyMapStep, which leaves a map that
// already shows the change alone; copies apply a point only if its version is newer; drops of a
// range are idempotent. So an executor that crashed anywhere re-reads the record and runs
// NextStep again.
//
// Thread safety: plain values and pure functions; no shared state.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/shard_map.h"

namespace mrl::coord {

enum class MovePhase { kPlanned, kDualWrite, kCopy, kVerify, kFlip, kCleanup, kDone, kAborted };
const char* MovePhaseName(MovePhase phase);  // "PLANNED", "DUAL_WRITE", ...

// Count and order-independent checksum of a bucket's (id, version) pairs, tombstones included:
// two replicas agree iff they hold the same points at the same versions (up to hash collisions).
// The checksum is a sum mod 2^64 of a 64-bit mix of each pair, so the order of a scan does not
// matter and, unlike XOR, a pair seen twice does not cancel out. The mix is
// common/move_checksum.h's MoveChecksumTerm, the one a shard's BucketChecksum uses.
struct VerifyFigures {
  uint64_t count = 0;
  uint64_t checksum = 0;
  void Add(uint64_t id, uint64_t version);
  bool operator==(const VerifyFigures& o) const {
    return count == o.count && checksum == o.checksum;
  }
};

// Persisted as the value of `moves/<id>` in the metadata store (ToJson / MoveFromJson).
struct MoveRecord {
  std::string id;
  std::string collection;
  uint32_t bucket = 0;
  uint32_t source_group = 0;
  uint32_t target_group = 0;
  MovePhase phase = MovePhase::kPlanned;
  std::string reverse_of;  // the id of the move this one undoes (abort after FLIP); else empty
  std::optional<uint64_t> epoch_at_dual_write;  // the map's epoch once dual write began
  std::optional<uint64_t> epoch_at_flip;        // the map's epoch once the target owned queries
  std::optional<uint64_t> copy_cursor;          // last id copied; nullopt: copy from the start
  uint64_t points_copied = 0;                   // in the current copy attempt
  bool verified = false;                        // VERIFY: the figures agreed; Flip is next
  VerifyFigures source_figures;                 // of the last verify
  VerifyFigures target_figures;
  uint32_t attempts = 0;          // verifies that disagreed
  std::string error;              // why the move was aborted (empty otherwise)
  bool target_discarded = false;  // ABORTED: DiscardTarget has run
  int64_t created_unix_ms = 0;
  int64_t updated_unix_ms = 0;
};

std::string ToJson(const MoveRecord& record);
// Corruption naming the field for a missing or mistyped field or an unknown phase.
Result<MoveRecord> MoveFromJson(const std::string& text);

// A move still holds its bucket (and counts against the per-group limit) until it is DONE, or
// ABORTED with the target's copy discarded.
bool IsActive(const MoveRecord& record);

struct MoveLimits {
  uint32_t max_moves_per_group = 2;  // active moves touching one group (as source or target)
  uint32_t max_verify_attempts = 3;  // disagreeing verifies before the move is aborted
};

struct MoveRequest {
  std::string id;  // unique among the active moves, [A-Za-z0-9_.-]{1,64}
  std::string collection;
  uint32_t bucket = 0;
  uint32_t target_group = 0;
  int64_t now_unix_ms = 0;
};

// The PLANNED record for `request`, or a refusal that changes nothing:
//   InvalidArgument     a bad id
//   NotFound            unknown collection or target group
//   OutOfRange          bucket >= num_buckets
//   FailedPrecondition  the bucket already lives on the target; the bucket is already moving (in
//                       `active_moves` or in the map); the id is taken
//   Unavailable         no healthy member in the target group; every source replica down
//   ResourceExhausted   the source or the target group already has max_moves_per_group active
// `active_moves` may hold finished records; only IsActive ones count.
Result<MoveRecord> PlanMove(const ShardMap& map, const std::vector<MoveRecord>& active_moves,
                            const MoveRequest& request,
                            const std::function<bool(const std::string&)>& healthy,
                            const MoveLimits& limits = MoveLimits());

// What the executor must do next; a function of the record alone.
struct MoveStep {
  enum class Kind {
    kBeginDualWrite,  // map: BeginDualWrite (ReverseMove for a reverse record), then persist
    kAwaitEpoch,      // every shard of source and target groups has seen `epoch` (no request
                      // routed by an older map can still land), then Advance
    kCopyFrom,        // copy the bucket to the target from `cursor` (exclusive; nullopt: start)
                      // off a source snapshot taken after epoch_at_dual_write reached the shards
    kVerify,          // figures of the bucket on a source replica and on the target
    kFlip,            // map: Flip
    kCleanup,         // map: FinishMove; then the source group drops the bucket's range
    kDiscardTarget,   // map: CancelMove (if still dual); then the target drops the range
    kNone,            // DONE, or ABORTED with nothing left
  };
  Kind kind = Kind::kNone;
  uint64_t epoch = 0;              // kAwaitEpoch
  std::optional<uint64_t> cursor;  // kCopyFrom
  bool operator==(const MoveStep& o) const {
    return kind == o.kind && epoch == o.epoch && cursor == o.cursor;
  }
};
const char* MoveStepName(MoveStep::Kind kind);

MoveStep NextStep(const MoveRecord& record);

// What running NextStep(record) produced.
struct StepOutcome {
  MoveStep::Kind step = MoveStep::Kind::kNone;  // REQUIRES: == NextStep(record).kind
  uint64_t epoch = 0;                           // kBeginDualWrite, kFlip: the map's new epoch
  std::optional<uint64_t> cursor;               // kCopyFrom: last id copied by this batch
  uint64_t points_copied = 0;                   // kCopyFrom: points this batch applied
  bool copy_finished = false;                   // kCopyFrom: the range is exhausted
  VerifyFigures source, target;                 // kVerify
  int64_t now_unix_ms = 0;
};

// The record after `outcome`: one phase forward (COPY stays in COPY until copy_finished; VERIFY
// records agreement and stays for the Flip step). A disagreeing VERIFY goes back to COPY from
// the start with attempts + 1; the max_verify_attempts-th disagreement aborts the move (ABORTED,
// error says why). InvalidArgument when `outcome` answers another step than NextStep(record):
// a phase is never skipped.
Result<MoveRecord> Advance(const MoveRecord& record, const StepOutcome& outcome,
                           const MoveLimits& limits = MoveLimits());

struct AbortResult {
  MoveRecord aborted;                 // phase ABORTED, `reason` in error
  std::optional<MoveRecord> reverse;  // after FLIP: target -> source, PLANNED, reverse_of set
};
// Before FLIP (PLANNED..VERIFY): ABORTED; NextStep is DiscardTarget (cancel the map's dual
// write, drop the target's copy). In FLIP: ABORTED with nothing to discard, plus the reverse
// move, whose first step turns the map's flipped move into dual write back to the source (the
// source received every write since DUAL_WRITE and kept its data); persist both in one
// transaction. FailedPrecondition in CLEANUP (the source is being dropped: move the bucket back
// with a new move), DONE and ABORTED.
// REQUIRES: the map shows the record's phase: an executor resuming with a map step half done
// (the map changed, the record not yet) finishes it with ApplyMapStep + Advance first.
Result<AbortResult> Abort(const MoveRecord& record, const std::string& reason, int64_t now_unix_ms);

// Brings `map` to what NextStep(record) (one of kBeginDualWrite, kFlip, kCleanup, kDiscardTarget)
// requires of it, or leaves it alone (no epoch bump) when it already shows that: re-running a
// step after a crash between the map change and the record's update is harmless. Returns whether
// the map changed. FailedPrecondition when the map shows a different move of the bucket, or a
// state the record cannot reach.
Result<bool> ApplyMapStep(ShardMap* map, const MoveRecord& record);

}  // namespace mrl::coord
