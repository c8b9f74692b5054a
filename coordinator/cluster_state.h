// The coordinator's truth about the cluster: the shard map, the collection specs and the
// calibrated budgets, published as one immutable snapshot. A request takes one snapshot and
// uses it for everything it decides (spec, placement, budget), so its parts never come from
// different epochs; a change publishes a new snapshot, and requests holding the old one finish
// with it.
//
// Where it lives: the metadata store (meta/store.h; docs/metadata.md has the key layout). The
// embedded store in data_dir by default (one coordinator; no etcd), or etcd (--meta
// etcd://...), where any number of coordinators serve the same cluster:
// - every coordinator reads the state at open and then watches the store's prefix, so a change
//   made by any of them is served by all within the watch's delay; after a lost or compacted
//   watch it re-reads the prefix and watches again;
// - each holds a session (a leased key coordinators/<id>, kept alive every ttl/3) and campaigns
//   for the leased key `leader`; only the leader changes the cluster, and every change is one
//   transaction that also compares the leader key's mod revision, so a deposed leader's write
//   fails (fencing) instead of overwriting the new leader's;
// - a store that cannot be reached stops changes only: the last snapshot keeps serving searches
//   and writes, and nothing exits; the session and the watch recover by themselves.
// A follower (`follow`) never campaigns. With the embedded store it reads the owner's
// data_dir/meta.json when a shard reports a newer epoch (Refresh) instead of watching.
//
// Thread safety: every method may be called concurrently.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/collection_spec.h"
#include "common/status.h"
#include "coordinator/query_plan.h"
#include "coordinator/shard_map.h"
#include "meta/etcd_store.h"
#include "meta/store.h"

namespace mrl::coord {

// One entry of the move journal (moves/<id>): the value is the move record's JSON (its codec
// belongs to the move executor); mod_revision is the compare-and-swap token of its next change.
struct JournalEntry {
  std::string value;
  int64_t mod_revision = 0;
};

struct ClusterSnapshot {
  ShardMap map;
  std::map<std::string, JournalEntry> moves;  // move id -> its journal entry
  std::map<std::string, CollectionSpec> specs;
  std::map<std::string, std::map<std::string, QueryPlan>> budgets;  // collection -> name -> plan

  // NotFound "unknown collection '<name>'" when absent (the follower's cue to reload).
  Result<const CollectionSpec*> Spec(const std::string& collection) const;
  // FailedPrecondition naming the calibrate endpoint when the budget was not measured.
  Result<QueryPlan> Budget(const std::string& collection, const std::string& budget) const;
};

// Ok when `name` may be dropped: it exists and no move of its buckets is unfinished.
Status CheckDroppable(const ClusterSnapshot& snap, const std::string& name);

struct ClusterStateOptions {
  std::string data_dir;  // the embedded store's directory (and older versions' state files)
  std::string meta_url;  // "" = the embedded store in data_dir; or etcd://h:p,.../prefix
  bool follow = false;   // never lead (and, embedded, read the owner's file on Refresh)
  std::string id;        // this coordinator in its session and the leader key ("" = a random one)
  // Session lease TTL. It must outlive an etcd leader election (~1-3 s with etcd's defaults)
  // plus a keep-alive's retry budget (5 s), and it is how long a dead leader blocks changes.
  int session_ttl_s = 10;
  // A follower on another host (issue 16 item 5): read the state from the owner coordinator's
  // HTTP API (GET /v1/meta/state, owner_state.h) every follow_poll_ms and on a stale-epoch
  // refusal, instead of the owner's files; while the owner does not answer, the last state keeps
  // serving. Implies follow. follow_token: a read (or admin) token of the owner.
  std::string follow_url;
  std::string follow_token;
  int follow_poll_ms = 1000;
};

// Who leads, as the store says.
struct LeaderInfo {
  std::string id;       // "" = nobody holds the leader key
  std::string address;  // its HTTP address, for a refusal's redirect
  int64_t revision = 0;  // the leader key's mod revision (the fencing token)
};

// A shard's registration (shards/<id>, kept alive by the shard under its own lease).
struct ShardRegistrationInfo {
  std::string id, address;
  std::string state;  // "serving", "read_only", "draining"; "unparseable" for a bad value
  std::string version;
  int64_t lease = 0, mod_revision = 0;
};

struct MetaState {
  std::string store;  // meta::Store::Describe()
  std::string self_id, self_address;
  bool follow = false;
  bool leader = false;  // this coordinator leads now
  LeaderInfo current;   // the leader the store named last
  bool reachable = true;  // the last call to the store succeeded
  std::string last_error;
  int64_t revision = 0;  // the store revision the snapshot reflects
  uint64_t watch_restarts = 0, lease_losses = 0, fenced_writes = 0;
  uint64_t store_requests = 0;  // etcd: HTTP exchanges so far (0 for the embedded store)
  std::vector<std::string> coordinators;  // live sessions (coordinators/<id>), as last read
  std::vector<ShardRegistrationInfo> shards;  // live shard registrations, as last read
};

class ClusterState {
 public:
  // Called with every newly published map, under the state's lock (so calls arrive in epoch
  // order): the coordinator connects to new shards and stamps requests with the new epoch.
  using MapListener = std::function<void(const ShardMap&)>;

  // Opens the store, reads the state (imports shard_map.json and collections.json of older
  // versions from data_dir once) and starts the watch. Corruption names the key or file that
  // does not parse. No session yet: StartSession.
  static Result<std::unique_ptr<ClusterState>> Open(ClusterStateOptions options, MapListener on_map);
  // The embedded store in data_dir.
  static Result<std::unique_ptr<ClusterState>> Open(const std::string& data_dir, bool follow,
                                                    MapListener on_map);
  ~ClusterState();  // ends the session (revokes its lease: another coordinator leads at once)

  // Registers this coordinator (its HTTP address, for redirects) and starts campaigning, unless
  // it follows. With the embedded store it leads before this returns.
  void StartSession(const std::string& address);
  // Waits up to timeout_ms for this coordinator to lead.
  bool AwaitLeadership(int timeout_ms);

  std::shared_ptr<const ClusterSnapshot> Snapshot() const;
  bool follow() const { return opt_.follow; }
  uint64_t refreshes() const { return refreshes_.load(); }
  MetaState Meta() const;
  // Every key this state was built from, with the store revision it reflects (what
  // GET /v1/meta/state serves to followers on other hosts).
  meta::ReadResult StateKvs() const;
  // etcd only: each member's health and which one leads (empty for the embedded store); asked
  // of the members at most once a second (a cached answer in between).
  std::vector<meta::EtcdMember> StoreMembers() const;

  // Changes (the leader only: a follower or a non-leader gets FailedPrecondition naming the
  // leader; an unreachable store, Unavailable). Each is one fenced transaction, then published.
  Status AddGroup(const std::vector<ShardInfo>& shards);
  // Places the collection's buckets and records its spec; Ok without change when it exists.
  Status AddCollection(const CollectionSpec& spec);
  // Removes the collection's placement (epoch + 1), spec and budgets. NotFound: unknown;
  // FailedPrecondition: a move of one of its buckets is not finished.
  Status RemoveCollection(const std::string& name);
  Status SetBudgets(const std::string& collection, std::map<std::string, QueryPlan> budgets);
  // The move journal: writes moves/<id> = value (an empty value deletes the entry) when the
  // entry's mod revision is still `expected_revision` (0: the entry is absent), and, when
  // `map_change` is given, the map it edits (epoch and all) in the same transaction, so a phase
  // change and the map change it implies are applied together or not at all. Fenced like every
  // change. The entry's new mod revision (the token of its next change), or: Aborted when the
  // entry moved on meanwhile (re-read the journal), FailedPrecondition on a non-leader, the
  // map_change's own error, Unavailable when the store did not confirm.
  Result<int64_t> RecordMove(const std::string& id, const std::string& value,
                             int64_t expected_revision,
                             const std::function<Status(ShardMap*)>& map_change = nullptr);
  // RecordMove whose value is computed by `change` from the map after it edited it (a phase
  // change records the epoch its map change produced); the map is written only when
  // `changes_map` and its epoch moved. `change` may run twice (a retry on a concurrent change).
  Result<int64_t> RecordMoveWith(const std::string& id, int64_t expected_revision,
                                 const std::function<Result<std::string>(ShardMap*)>& change,
                                 bool changes_map);
  // Removes a drained group's members from the map (ShardMap::RetireGroup).
  Status RetireGroup(uint32_t group);
  // Any other map change (`edit` on a copy: ShardMap::AddReplica, ReplaceShard, ...): the map
  // is written when `edit` returns Ok and moved the epoch. `what` names it in errors and logs.
  Status ChangeMap(const std::string& what, const std::function<Status(ShardMap*)>& edit);
  // Called on the session thread, with no lock held, each time this coordinator becomes the
  // leader: the move executor resumes the journal from there (its entries are in Snapshot()).
  // Set it before StartSession.
  void SetLeadershipListener(std::function<void()> on_lead) { on_lead_ = std::move(on_lead); }
  // Ok when this coordinator may change the cluster now; else the refusal a change would get.
  Status CheckLeader() const;
  // CheckLeader, with a refusal logged (what: "creating collection 'x'").
  Status AdmitChange(const std::string& what) const;

  // A shard has seen an epoch newer than `seen_epoch` (or a follower met an unknown collection):
  // re-read the store. Ok when the reload (or a concurrent one) moved past `seen_epoch`; Aborted
  // when the store holds nothing newer.
  Status Refresh(uint64_t seen_epoch);

 private:
  struct Cache;  // the store's keys this state is built from
  explicit ClusterState(ClusterStateOptions options, MapListener on_map);
  Status Reload(bool at_open);                    // read the prefix, rebuild, publish
  Status ImportLegacyFiles();                     // older versions' files -> the store, once
  void OnWatch(const Status& st, const std::vector<meta::WatchEvent>& events);
  void WatchLoop();                               // (re)starts the watch after it ends
  void PollOwnerLoop();                           // follow_url: Reload every follow_poll_ms
  std::string Source() const;                     // where the state is read from, for messages
  void SessionLoop();                             // lease keep-alive and the campaign
  bool Campaign();                                // one try; true when leading
  void LoseLeadership(const std::string& why);    // REQUIRES: session_mu_
  // Rebuilds the snapshot from the cache; publishes when anything changed. REQUIRES: mu_
  Status RebuildLocked(bool log_epoch);
  // The leader key as this coordinator read or wrote it goes into the cache: the watch may
  // deliver it later than the next committed change rebuilds the snapshot, and that rebuild must
  // not name an older leader (or nobody) after this one. Takes mu_ (then session_mu_).
  void ObserveLeaderKey(const meta::KeyValue& kv);
  // The fenced transaction of a change: `mutate` edits a copy of the snapshot and names the
  // keys it touched; retried once on a concurrent change of the map.
  // `guards` are compared too (a journal entry's revision).
  Status Change(const std::string& what,
                const std::function<Status(ClusterSnapshot*, std::vector<meta::Op>*)>& mutate,
                const std::vector<meta::Compare>& guards = {});
  Status FollowerRefusal() const;
  Status NotLeaderRefusal() const;  // REQUIRES: session_mu_
  void NoteStoreError(const Status& st);
  void NoteStoreOk();

  const ClusterStateOptions opt_;
  const MapListener on_map_;
  std::function<void()> on_lead_;
  std::unique_ptr<meta::Store> store_;  // null for the embedded follower (reads the file)
  bool embedded_ = true;

  mutable std::mutex mu_;  // guards snap_, cache_, the revisions
  std::shared_ptr<const ClusterSnapshot> snap_;
  std::unique_ptr<Cache> cache_;
  int64_t revision_ = 0;
  int64_t watched_revision_ = 0;   // what the watch (or a full read) delivered: it resumes here
  int64_t leader_deleted_at_ = 0;  // revision of the last delete of the leader key seen (watch)
  std::mutex change_mu_;  // serialises changes

  mutable std::mutex session_mu_;  // guards the session and leadership fields
  std::condition_variable session_cv_;
  std::string address_;
  int64_t lease_ = 0;
  std::chrono::steady_clock::time_point last_ack_{};
  bool leader_ = false;
  int64_t leader_revision_ = 0;  // the leader key's mod revision when this one won
  LeaderInfo current_;
  std::vector<std::string> coordinators_;
  std::vector<ShardRegistrationInfo> registrations_;
  bool session_started_ = false;
  bool keepalive_now_ = false;  // check the lease at once (after being fenced)
  bool stop_ = false;

  mutable std::mutex status_mu_;
  bool reachable_ = true;
  std::string last_error_;
  std::atomic<uint64_t> refreshes_{0}, watch_restarts_{0}, lease_losses_{0}, fenced_{0};

  mutable std::mutex members_mu_;  // guards the StoreMembers cache
  mutable std::vector<meta::EtcdMember> members_;
  mutable std::chrono::steady_clock::time_point members_at_{};

  std::mutex watch_mu_;  // guards watch_, watch_ended_
  std::condition_variable watch_cv_;
  std::unique_ptr<meta::Watch> watch_;
  bool watch_ended_ = false;
  bool watch_stop_ = false;  // the destructor runs: WatchLoop returns
  std::thread watch_thread_, session_thread_;
};

}  // namespace mrl::coord
