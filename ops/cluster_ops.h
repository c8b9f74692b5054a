// mrlctl's verbs for live cluster changes, over the coordinator's admin API (docs/architecture.md,
// "Moving a bucket"): add and retire replica groups, move one bucket, list and abort moves, and
// rebalance or drain (a plan of many moves) with an optional wait that shows their progress.
//
// Each verb prints a short text answer, or with `json` the coordinator's raw JSON reply. A
// refusal by the coordinator comes back as its Status (the coordinator's message); every verb
// is one request except the waits and --watch, which poll GET /v1/moves once a second. Ctrl-C
// during a wait stops the wait only: the moves run on the coordinator, not in mrlctl.
//
// The summaries and the table (MoveProgressOf, MovesTable) are plain functions of the
// coordinator's JSON, so a test can drive them without a cluster.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/status.h"
#include "ops/http_client.h"

namespace mrl::ops {

// The phases a move can no longer leave.
bool IsFinishedPhase(const std::string& phase);  // "DONE" or "ABORTED"

// The moves table (id, collection, bucket, from->to, phase, percent, points/s, ETA, waiting_on)
// of GET /v1/moves's "moves", only those not finished unless `all`; a line saying so when none.
std::string MovesTable(const nlohmann::json& moves, bool all);

// One line per replica group of GET /v1/cluster's map: "group N: SHARDS; COL: B of T buckets, ..."
// (every collection, 0 included), or "group N: retired" for a group with no shards.
std::string GroupsSummary(const nlohmann::json& map);

// Where a set of moves stands. `moves`: GET /v1/moves's "moves"; `ids`: the moves waited for.
struct MoveProgress {
  size_t total = 0;                  // ids.size()
  size_t done = 0;                   // DONE
  std::string aborted;               // the first of `ids` found ABORTED (its id); empty: none
  std::string aborted_error;         // its "error"
  std::vector<std::string> missing;  // ids the coordinator does not list
  double percent = 0;                // mean over `ids` (DONE: 100)
  double points_per_s = 0;           // sum over the moves copying now
};
MoveProgress MoveProgressOf(const nlohmann::json& moves, const std::vector<std::string>& ids);

// POST /v1/cluster/groups. `shards`: "ID=HOST:PORT" each; prints the new group and the epoch.
Status AddGroup(HttpClient& client, const std::vector<std::string>& shards, bool json);
// POST /v1/cluster/groups/<group>/remove: retires an empty group.
Status RemoveGroup(HttpClient& client, uint32_t group, bool json);

// Replicas of a group. `add` ("ID=HOST:PORT"): POST /v1/cluster/groups/<group>/replicas, the
// factor + 1, the new shard filled from a serving replica; `remove` (an id): DELETE
// /v1/cluster/groups/<group>/replicas/<id>, the factor - 1. Exactly one of the two. --wait:
// until the added shard serves (progress from GET /v1/cluster/fills).
struct ReplicateArgs {
  uint32_t group = 0;
  std::string add;
  std::string remove;
  bool wait = false;
  bool json = false;
};
Status Replicate(HttpClient& client, const ReplicateArgs& args);
// POST /v1/cluster/shards/<dead>/replace: `with` ("ID=HOST:PORT") takes `dead`'s place in its
// group, the factor unchanged; filled like an added replica. --wait as Replicate's.
Status ReplaceShard(HttpClient& client, const std::string& dead, const std::string& with,
                    bool wait, bool json);
// DELETE /v1/cluster/shards/<id>: removes a shard keeping its group's factor -- refused below
// the factor (the coordinator says to replace it or lower the factor).
Status RemoveShard(HttpClient& client, const std::string& id, bool json);

struct MoveArgs {
  std::string collection;
  uint32_t bucket = 0;
  uint32_t target_group = 0;
  bool wait = false;  // until DONE (Ok) or ABORTED (FailedPrecondition naming it)
  bool json = false;
};
// POST /v1/moves.
Status StartMove(HttpClient& client, const MoveArgs& args);

struct ListMovesArgs {
  bool all = false;    // DONE and ABORTED too
  bool watch = false;  // redraw each second (a pipe: on change) until none is active
  bool json = false;
};
// GET /v1/moves.
Status ListMoves(HttpClient& client, const ListMovesArgs& args);

// POST /v1/moves/<id>/abort; prints the aborted move and, after FLIP, the reverse move.
Status AbortMove(HttpClient& client, const std::string& id, const std::string& reason, bool json);

struct PlanArgs {
  bool drain = false;      // drain `group`; else rebalance
  uint32_t group = 0;      // drain
  std::string collection;  // rebalance: one collection; empty: every one
  std::string by;          // "vectors" | "buckets"; empty: the coordinator's default
  bool dry_run = false;    // print the plan, start nothing
  bool wait = false;       // until every started move is DONE; FailedPrecondition on an ABORTED
  bool remove = false;     // drain: wait, then retire the group
  bool json = false;       // the raw replies; progress lines go to stderr
};
// POST /v1/cluster/rebalance or /v1/cluster/drain: prints the plan (one line per move and a
// total), the started moves, then with `wait` a progress line each second that something changed.
Status RunPlan(HttpClient& client, const PlanArgs& args);

}  // namespace mrl::ops
