// mrlctl: the operator's CLI.
//   mrlctl up     --dir D [--shards 2] [--replication 1] [--port 0]   start a local cluster
//   mrlctl down   --dir D                                             stop it (SIGTERM, drain)
//   mrlctl status --url URL [--json]     health, shard map, groups' buckets, collections, moves
//   mrlctl ingest --url URL --collection C --embeddings E.npy [--ids I.npy] [--labels L.npy]
//   mrlctl eval   --url URL --collection C --queries Q.npy --query-labels L.npy
//                                                          (plans, recall, mAP, latency)
// Live cluster changes (ops/cluster_ops.h; each also takes --json: the coordinator's reply):
//   mrlctl add-group    --shard ID=HOST:PORT [--shard ...]   a new replica group, empty
//   mrlctl remove-group --group N                            retire an empty group
//   mrlctl replicate    --group N (--add ID=HOST:PORT | --remove ID) [--wait]
//                                                            factor +1 (filled) or -1
//   mrlctl replace-shard --shard ID --with ID=HOST:PORT [--wait]   a dead shard's successor
//   mrlctl remove-shard --shard ID       (refused below the group's replication factor)
//   mrlctl move         --collection C --bucket B --to G [--wait]
//   mrlctl moves        [--all] [--watch]                    the moves table
//   mrlctl abort-move   --id ID [--reason TEXT]
//   mrlctl rebalance    [--collection C] [--by vectors|buckets] [--dry-run] [--wait]
//   mrlctl drain        --group N [--by vectors|buckets] [--dry-run] [--wait] [--remove]
// One collection (ops/collection_ops.h; each also takes --json):
//   mrlctl collection create   --collection C --dim D [--storage fp32|fp16|int8]
//                              [--index-dims 16] [--index-int8] [--buckets N]
//   mrlctl collection describe --collection C          spec and buckets per group
//   mrlctl collection drop     --collection C          (the coordinator may refuse: docs/api.md)
//   mrlctl search --collection C --vector "0.1,0.2,..." [--k 10] [--plan exact|budget:NAME|
//                 DS:K:DR|funnel:D1xK1,...] [--one-trip] [--ef N] [--with-payload]
// Every verb but up and down reaches the coordinator by --url, or --dir's cluster; --token.
// The local cluster's processes, ports and URL are kept in D/cluster.json (ops/local_cluster.h).
// Every verb returns a Status; its message is printed and the exit code is 1 (2 for usage).
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common/build_info.h"
#include "common/provenance.h"
#include "common/status.h"
#include "ops/cluster_ops.h"
#include "ops/collection_ops.h"
#include "ops/eval.h"
#include "ops/http_client.h"
#include "ops/ingest.h"
#include "ops/local_cluster.h"
#include "rpc/client.h"
#include "rpc/library_versions.h"

namespace {

using json = nlohmann::json;

// One shard's disk and store state from its Stats (the binary protocol, straight to the shard).
std::string ShardHealth(const std::string& address) {
  auto options = mrl::ops::BinaryClientOptions(address);
  if (!options.ok()) return options.status().ToString();
  mrl::rpc::RpcClient client(options.value());
  auto stats = client.Call(mrl::wire::StatsRequestT{}, 2000);
  if (!stats.ok()) return "stats unavailable (" + stats.status().ToString() + ")";
  // What it holds and serves: vectors, bytes on disk, memory (RocksDB's block cache and
  // memtables, the indexes) and requests per second averaged over its uptime.
  uint64_t vectors = 0, index_bytes = 0, requests = 0;
  for (const auto& col : stats->collections) {
    if (!col) continue;
    vectors += col->points;
    for (const auto& ix : col->indexes) {
      if (ix) index_bytes += ix->memory_bytes;
    }
  }
  for (const auto& r : stats->requests) {
    if (r) requests += r->count;
  }
  const double mib = 1 << 20;
  const double uptime_s = std::max(1e-3, static_cast<double>(stats->uptime_ms) / 1000);
  char held[256];
  std::snprintf(held, sizeof(held),
                "%llu vectors, %.1f MiB on disk, RAM %.1f MiB (block cache %.1f, memtables %.1f, "
                "indexes %.1f), %.1f requests/s (mean over %.0f s up); ",
                static_cast<unsigned long long>(vectors), stats->disk_bytes / mib,
                (stats->block_cache_bytes + stats->memtable_bytes + index_bytes) / mib,
                stats->block_cache_bytes / mib, stats->memtable_bytes / mib, index_bytes / mib,
                static_cast<double>(requests) / uptime_s, uptime_s);
  char disk[160];
  const double total = static_cast<double>(stats->fs_total_bytes);
  const double free = static_cast<double>(stats->fs_free_bytes);
  std::snprintf(disk, sizeof(disk), "disk %.2f GiB free of %.2f (%.1f%% used)", free / (1 << 30),
                total / (1 << 30), total > 0 ? 100.0 * (total - free) / total : 0.0);
  std::string out = std::string(held) + disk;
  out += stats->refusing_writes ? ", REFUSING WRITES (above its watermark)" : ", accepting writes";
  if (stats->write_refusals > 0) {
    out += " (" + std::to_string(stats->write_refusals) + " refused since start)";
  }
  if (stats->store_failed) {
    out += "; store READ-ONLY after an I/O error at unix ms " +
           std::to_string(stats->store_failed_since_unix_ms) + ": " + stats->store_error +
           " (resumed by the next write once space returns)";
  }
  if (!stats->version.empty()) out += "; mrl-shard " + stats->version;
  return out;
}

// Health, shard map, replica groups and their buckets, collections and active moves; with
// `as_json` one object {cluster, collections, meta, moves} of the coordinator's raw replies (a
// reply that failed is {"error": its Status}).
mrl::Status PrintStatus(mrl::ops::HttpClient& c, bool as_json) {
  namespace http = boost::beast::http;
  const mrl::ops::HttpReply health = c.Call(http::verb::get, "/healthz", "");
  if (!as_json || health.status != 200) {
    std::cout << "coordinator: "
              << (health.status == 200 ? "healthy" : "DOWN (" + health.body + ")") << "\n";
  }
  if (health.status != 200) return mrl::Status::Unavailable("the coordinator is not healthy");
  auto map = c.CallJson(http::verb::get, "/v1/cluster", "", "shard map");
  if (!map.ok()) return map.status();
  auto cols = c.CallJson(http::verb::get, "/v1/collections", "", "collections");
  if (!cols.ok()) return cols.status();
  // The metadata store: where the state lives, who leads, etcd's members.
  auto meta = c.CallJson(http::verb::get, "/v1/meta", "", "metadata store");
  // The moves need the admin token; a token that cannot read them costs one line, not the status.
  auto moves = c.CallJson(http::verb::get, "/v1/moves", "", "moves");
  // The coordinator's own view of each shard: up / slow / down, probes, latency, hedges.
  auto seen = c.CallJson(http::verb::get, "/v1/shards/health", "", "shard health");
  // Replicas being filled or catching up, and members out of their group's in-sync set.
  auto fills = c.CallJson(http::verb::get, "/v1/cluster/fills", "", "fills");
  if (as_json) {
    auto or_error = [](const mrl::Result<json>& r) {
      return r.ok() ? r.value() : json{{"error", r.status().ToString()}};
    };
    std::cout << json{{"cluster", map.value()},
                      {"collections", cols.value()},
                      {"meta", or_error(meta)},
                      {"moves", or_error(moves)},
                      {"shards_health", or_error(seen)}}
                     .dump(2)
              << "\n";
    return mrl::Status::Ok();
  }
  if (meta.ok()) {
    try {
      const json& m = meta.value();
      std::cout << "metadata: " << m.at("store").get<std::string>()
                << (m.at("reachable").get<bool>()
                        ? ""
                        : " UNREACHABLE (" + m.at("last_error").get<std::string>() + ")")
                << ", revision " << m.at("revision") << "\n";
      std::cout << "  leader: "
                << (m.at("leader").is_object()
                        ? m["leader"].at("id").get<std::string>() + " at " +
                              m["leader"].at("address").get<std::string>()
                        : std::string("none"))
                << "; this coordinator " << m.at("self").at("id").get<std::string>()
                << (m["self"].at("leader").get<bool>() ? " leads" : " follows") << "\n";
      std::string list;
      for (const json& id : m.at("coordinators")) list += (list.empty() ? "" : ", ") + id.get<std::string>();
      std::cout << "  coordinators: " << (list.empty() ? "-" : list) << "\n";
      // Shard registrations (mrl-shard --meta): live under each shard's lease.
      for (const json& s : m.value("shards", json::array())) {
        std::cout << "  shard " << s.at("id").get<std::string>() << " at "
                  << s.at("address").get<std::string>() << ": " << s.at("state").get<std::string>()
                  << (s.at("map_shard").is_string()
                          ? " (map " + s["map_shard"].get<std::string>() + ", group " +
                                std::to_string(s.at("group").get<int>()) + ")"
                          : std::string(" (not in the shard map)"))
                  << "\n";
      }
      const json unregistered = m.value("unregistered_shards", json::array());
      if (!m.value("shards", json::array()).empty() && !unregistered.empty()) {
        std::string names;
        for (const json& id : unregistered) names += (names.empty() ? "" : ", ") + id.get<std::string>();
        std::cout << "  map members with no live registration: " << names << "\n";
      }
      for (const json& e : m.at("members")) {
        std::cout << "  etcd " << e.at("endpoint").get<std::string>() << ": "
                  << (e.at("healthy").get<bool>()
                          ? (e.at("leader").get<bool>() ? "healthy, leader" : "healthy")
                          : "DOWN (" + e.value("error", std::string()) + ")")
                  << "\n";
      }
    } catch (const json::exception& e) {
      return mrl::Status::Corruption(std::string("the coordinator's /v1/meta: ") + e.what());
    }
  } else {
    std::cout << "metadata: " << meta.status().ToString() << "\n";
  }
  try {
    std::cout << "shard map epoch " << map->at("epoch") << ", " << map->at("groups").size()
              << " replica groups\n";
    for (const json& s : map->at("shards")) {
      const std::string address = s.at("address").get<std::string>();
      std::cout << "  " << s.at("id").get<std::string>() << " " << address << ": "
                << ShardHealth(address) << "\n";
      if (!seen.ok()) continue;
      for (const json& h : seen->at("shards")) {
        if (h.at("shard") != s.at("id")) continue;
        auto ms = [&](const char* key) {
          const double v = h.at(key).get<double>();
          char buf[32];
          std::snprintf(buf, sizeof(buf), v < 10 ? "%.2f" : "%.0f", v);
          return v < 0 ? std::string("-") : std::string(buf);
        };
        const std::string state = h.at("state").get<std::string>();
        std::cout << "    coordinator sees it " << state
                  << (state == "up" ? "" : " (" + h.at("reason").get<std::string>() + ")")
                  << ": probe " << ms("probe_ms") << " ms, " << h.at("probes_missed")
                  << " missed; calls p50 " << ms("p50_ms") << " / p99 " << ms("p99_ms")
                  << " ms, hedge after " << ms("hedge_delay_ms") << " ms; " << h.at("in_flight")
                  << " in flight, " << h.at("calls") << " calls, " << h.at("failures")
                  << " failed, " << h.at("hedges") << " hedged\n";
      }
    }
    std::istringstream groups(mrl::ops::GroupsSummary(map.value()));
    for (std::string line; std::getline(groups, line);) std::cout << "  " << line << "\n";
    if (fills.ok()) {
      for (const json& o : fills->value("out_of_sync", json::array())) {
        std::cout << "  out of sync: '" << o.at("shard").get<std::string>() << "' (group "
                  << o.at("group") << "): gets no writes, reads or searches; it catches up once "
                  << "it answers again\n";
      }
      for (const json& f : fills->at("fills")) {
        const bool catch_up = f.value("catch_up", false);
        std::cout << "  " << (catch_up ? "catching up" : "filling") << " '"
                  << f.at("shard").get<std::string>() << "' (group " << f.at("group") << ")";
        if (f.contains("buckets_total")) {
          char rate[64];
          std::snprintf(rate, sizeof(rate), "%.1f s, %.0f points/s", f.at("seconds").get<double>(),
                        f.value("points_per_s", 0.0));
          std::cout << ": " << f.at("buckets_done") << "/" << f.at("buckets_total") << " buckets, "
                    << f.at("points_copied") << " points copied in " << rate;
          if (catch_up && f.value("buckets_copied_whole", 0) > 0) {
            std::cout << ", " << f.at("buckets_copied_whole") << " bucket(s) copied whole";
          }
        }
        if (f.contains("waiting_on")) std::cout << " (" << f.at("waiting_on").get<std::string>() << ")";
        std::cout << "\n";
      }
    }
    for (const json& col : cols->at("collections")) {
      std::cout << "collection " << col.at("name").get<std::string>() << ": dim " << col.at("dim")
                << ", " << col.at("storage").get<std::string>() << ", "
                << col.at("metric").get<std::string>() << "\n";
    }
    if (!moves.ok()) {
      std::cout << "moves: not readable (" << moves.status().ToString() << ")\n";
    } else {
      std::cout << "moves: " << mrl::ops::MovesTable(moves->at("moves"), /*all=*/false);
    }
  } catch (const json::exception& e) {
    return mrl::Status::Corruption(std::string("the coordinator's answer: ") + e.what());
  }
  return mrl::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  // Progress lines reach a pipe (tee, CI logs) as they are printed, not at exit.
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  CLI::App app{"mrlctl: operate an MRL serving cluster"};
  app.set_version_flag("--version", mrl::VersionText(mrl::MakeBuildInfo(
                                        "mrlctl", mrl::rpc::LibraryVersions())));
  app.require_subcommand(1);
  std::string dir = "runs/cluster", url, token, collection = "embeddings";
  mrl::ops::UpOptions uo;
  auto* up = app.add_subcommand("up", "Start a local cluster (shards + coordinator) in --dir");
  up->add_option("--dir", dir);
  up->add_option("--shards", uo.shards);
  up->add_option("--replication", uo.replication);
  up->add_option("--port", uo.port, "Coordinator HTTP port (0: any)");
  up->add_option("--bin-dir", uo.bin_dir, "Build directory holding shard/ and coordinator/");
  up->add_option("--meta", uo.meta,
                 "Cluster state store: the coordinator's embedded one (default), 'etcd' (a local "
                 "3-member etcd cluster in --dir/etcd; needs etcd-server), or etcd://host:port,...");
  auto* down = app.add_subcommand("down", "Stop the local cluster in --dir");
  down->add_option("--dir", dir);
  auto* status = app.add_subcommand("status", "Health, shard map, groups and their buckets, collections, moves");
  auto* ingest = app.add_subcommand("ingest", "Upsert embeddings from .npy files");
  mrl::ops::IngestArgs ia;
  ingest->add_option("--embeddings", ia.embeddings)->required();
  ingest->add_option("--ids", ia.ids);
  ingest->add_option("--labels", ia.labels, "Stored as payload {\"label\": ...}");
  ingest->add_option("--images", ia.images,
                     "uint8 .npy [n, H, W(, 3)]: each image stored as a PNG in the payload (\"image_png\", base64)");
  ingest->add_option("--batch", ia.batch);
  bool http_only = false;
  std::string binary;
  ingest->add_flag("--http", http_only, "Send points as HTTP/JSON even when the binary API is up");
  ingest->add_flag("--create", ia.create, "Create the collection first");
  ingest->add_option("--index-dims", ia.index_dims, "With --create: low-d index prefix");
  ingest->add_flag("--index-int8", ia.index_int8,
                   "With --create: the low-d index holds int8 vectors (a quarter of the RAM)");
  ingest->add_option("--storage", ia.storage, "With --create: fp32 | fp16 | int8");
  ingest->add_option("--buckets", ia.num_buckets,
                     "With --create: buckets, a power of two (default: the coordinator's)");
  for (auto* sub : {status, ingest}) {
    sub->add_option("--binary", binary,
                    "Coordinator binary API host:port (default: --dir's cluster)");
    sub->add_option("--url", url, "Coordinator URL (default: --dir's cluster)");
    sub->add_option("--dir", dir);
    sub->add_option("--token", token, "API token");
  }
  ingest->add_option("--collection", collection);
  auto* eval = app.add_subcommand(
      "eval", "Run test queries through the coordinator: mAP@10, recall@10, latency, QPS per plan");
  mrl::ops::EvalArgs ea;
  eval->add_option("--queries", ea.queries)->required();
  eval->add_option("--query-labels", ea.query_labels)->required();
  eval->add_option("--db-embeddings", ea.db_embeddings,
                   "The database's original vectors [N, d] (rows of --db-ids): the exact ground "
                   "truth for recall");
  eval->add_option("--truth", ea.truth,
                   "Precomputed exact truth instead of the scan over --db-embeddings: .npy "
                   "[queries, >= k] int64/uint64 db ids, best first (full-d fp32 cosine)");
  eval->add_option("--exact-limit", ea.exact_limit,
                   "Run the exact plan through the coordinator on the first N queries only (it "
                   "scans every stored vector: ~1 s per query at 1M x 2048 on 2 cores)");
  eval->add_option("--db-ids", ea.db_ids)->required();
  eval->add_option("--db-labels", ea.db_labels)->required();
  eval->add_option("--k", ea.k);
  eval->add_option("--limit", ea.limit, "Use the first N queries");
  eval->add_option("--warmup", ea.warmup, "Untimed queries of the paper's plan before timing");
  eval->add_option("--seed", ea.seed, "Seed of the shuffled plan order");
  eval->add_option("--plans", ea.plans,
                   "Only these plans: exact, paper, one_trip, funnel, budget_fast, "
                   "budget_balanced, budget_exact "
                   "(default: all; without a budget_ plan no calibration runs)");
  eval->add_option("--concurrency", ea.concurrency);
  eval->add_option("--json", ea.json_out, "Write the figures here");
  eval->add_option("--collection", collection);
  eval->add_option("--url", url);
  eval->add_option("--dir", dir);
  eval->add_option("--token", token);
  eval->add_option("--binary", binary,
                   "Coordinator binary API host:port (default: --dir's cluster)");
  eval->add_flag("--latency-only", ea.latency_only,
                 "Only the paper's plan by concurrency (no exact pass, calibration or recall): for "
                 "large collections");
  // Live cluster changes.
  auto* add_group =
      app.add_subcommand("add-group", "Add a replica group (empty until a rebalance)");
  std::vector<std::string> group_shards;
  add_group->add_option("--shard", group_shards, "A member, ID=HOST:PORT (repeat for replicas)")
      ->required();
  auto* remove_group = app.add_subcommand("remove-group", "Retire an empty replica group");
  uint32_t group = 0;
  remove_group->add_option("--group", group)->required();
  auto* replicate = app.add_subcommand(
      "replicate", "Change a group's replication factor: add a replica (filled from a serving one) "
                   "or remove one");
  mrl::ops::ReplicateArgs ra;
  replicate->add_option("--group", ra.group)->required();
  replicate->add_option("--add", ra.add, "The new replica, ID=HOST:PORT (factor + 1)");
  replicate->add_option("--remove", ra.remove, "A replica's id (factor - 1)");
  replicate->add_flag("--wait", ra.wait, "Until the added replica is filled and serves");
  auto* replace_shard = app.add_subcommand(
      "replace-shard", "Replace a (dead) shard by a new one, filled from its group");
  std::string dead_shard, new_shard;
  bool replace_wait = false;
  replace_shard->add_option("--shard", dead_shard, "The shard to replace (its id)")->required();
  replace_shard->add_option("--with", new_shard, "The new shard, ID=HOST:PORT")->required();
  replace_shard->add_flag("--wait", replace_wait, "Until the new shard is filled and serves");
  auto* remove_shard = app.add_subcommand(
      "remove-shard", "Remove a shard keeping its group's factor (refused below the factor)");
  std::string removed_shard;
  remove_shard->add_option("--shard", removed_shard)->required();
  auto* move = app.add_subcommand("move", "Move one bucket of a collection to another group");
  mrl::ops::MoveArgs ma;
  move->add_option("--collection", ma.collection)->required();
  move->add_option("--bucket", ma.bucket)->required();
  move->add_option("--to", ma.target_group, "Target replica group")->required();
  move->add_flag("--wait", ma.wait, "Until the move is DONE");
  auto* moves = app.add_subcommand("moves", "The bucket moves: phase, progress, ETA");
  mrl::ops::ListMovesArgs la;
  moves->add_flag("--all", la.all, "DONE and ABORTED moves too");
  moves->add_flag("--watch", la.watch, "Redraw every second until none is active");
  auto* abort_move = app.add_subcommand("abort-move", "Abort a move (after FLIP: moved back)");
  std::string move_id, reason;
  abort_move->add_option("--id", move_id)->required();
  abort_move->add_option("--reason", reason);
  auto* rebalance = app.add_subcommand("rebalance", "Plan and start moves that even out groups");
  auto* drain = app.add_subcommand("drain", "Plan and start moves that empty a group");
  mrl::ops::PlanArgs pa;
  rebalance->add_option("--collection", pa.collection, "Only this collection (default: all)");
  drain->add_option("--group", pa.group)->required();
  drain->add_flag("--remove", pa.remove, "Wait, then retire the group");
  for (auto* sub : {rebalance, drain}) {
    sub->add_option("--by", pa.by, "Balance vectors (default) or buckets")
        ->check(CLI::IsMember({"vectors", "buckets"}));
    sub->add_flag("--dry-run", pa.dry_run, "Print the plan, start nothing");
    sub->add_flag("--wait", pa.wait, "Show progress until every move is DONE");
  }
  // One collection.
  auto* coll = app.add_subcommand("collection", "Create, describe or drop one collection");
  coll->require_subcommand(1);
  auto* coll_create = coll->add_subcommand("create", "Create a collection on every shard");
  mrl::ops::CreateCollectionArgs ca;
  coll_create->add_option("--dim", ca.dim, "Full embedding dim")->required();
  coll_create->add_option("--storage", ca.storage)
      ->check(CLI::IsMember({"fp32", "fp16", "int8"}));
  coll_create->add_option("--index-dims", ca.index_dims, "Low-d HNSW prefix");
  coll_create->add_flag("--index-int8", ca.index_int8, "The low-d index holds int8 vectors");
  coll_create->add_option("--buckets", ca.num_buckets,
                          "Buckets, a power of two (default: the coordinator's)");
  auto* coll_describe =
      coll->add_subcommand("describe", "The spec and how many buckets each group owns");
  auto* coll_drop = coll->add_subcommand("drop", "Drop a collection");
  std::string coll_name;
  for (auto* sub : {coll_create, coll_describe, coll_drop}) {
    sub->add_option("--collection", coll_name)->required();
  }
  auto* search = app.add_subcommand("search", "One query vector: hits, plan and stage timings");
  mrl::ops::SearchArgs sa;
  search->add_option("--collection", sa.collection)->required();
  search->add_option("--vector", sa.vector, "The query, comma-separated floats")->required();
  search->add_option("--k", sa.k);
  search->add_option("--plan", sa.plan,
                     "exact | budget:NAME | DS:K:DR (adaptive) | funnel:D1xK1,D2xK2,... "
                     "(default: the collection's)");
  search->add_flag("--one-trip", sa.one_trip, "Each shard shortlists and reranks its own");
  search->add_option("--ef", sa.ef, "HNSW search breadth");
  search->add_flag("--with-payload", sa.with_payload, "Each hit's stored payload");
  bool as_json = false;
  for (auto* sub : {add_group, remove_group, replicate, replace_shard, remove_shard, move, moves,
                    abort_move, rebalance, drain, status,
                    coll_create, coll_describe, coll_drop, search}) {
    if (sub == status) {  // --url, --dir and --token are status's already
      sub->add_flag("--json", as_json, "One object of the coordinator's JSON replies");
      continue;
    }
    sub->add_option("--url", url, "Coordinator URL (default: --dir's cluster)");
    sub->add_option("--dir", dir);
    sub->add_option("--token", token, "API token");
    sub->add_flag("--json", as_json, "Print the coordinator's JSON reply");
  }
  CLI11_PARSE(app, argc, argv);
  auto run = [&]() -> mrl::Status {
    if (up->parsed()) {
      uo.dir = dir;
      return mrl::ops::Up(uo);
    }
    if (down->parsed()) return mrl::ops::Down(dir);
    auto coordinator = mrl::ops::CoordinatorUrl(url, dir);
    if (!coordinator.ok()) return coordinator.status();
    if (eval->parsed()) {
      ea.url = coordinator.value();
      ea.binary = mrl::ops::CoordinatorBinary(binary, url, dir);
      ea.token = token;
      ea.collection = collection;
      return mrl::ops::Eval(ea, mrl::Provenance(argc, argv));
    }
    mrl::ops::HttpClient client(coordinator.value(), token);
    if (status->parsed()) return PrintStatus(client, as_json);
    if (coll_create->parsed()) {
      ca.collection = coll_name;
      ca.json = as_json;
      return mrl::ops::CreateCollection(client, ca);
    }
    if (coll_describe->parsed()) return mrl::ops::DescribeCollection(client, coll_name, as_json);
    if (coll_drop->parsed()) return mrl::ops::DropCollection(client, coll_name, as_json);
    if (search->parsed()) {
      sa.json = as_json;
      return mrl::ops::Search(client, sa);
    }
    if (add_group->parsed()) return mrl::ops::AddGroup(client, group_shards, as_json);
    if (remove_group->parsed()) return mrl::ops::RemoveGroup(client, group, as_json);
    if (replicate->parsed()) {
      ra.json = as_json;
      return mrl::ops::Replicate(client, ra);
    }
    if (replace_shard->parsed()) {
      return mrl::ops::ReplaceShard(client, dead_shard, new_shard, replace_wait, as_json);
    }
    if (remove_shard->parsed()) return mrl::ops::RemoveShard(client, removed_shard, as_json);
    if (move->parsed()) {
      ma.json = as_json;
      return mrl::ops::StartMove(client, ma);
    }
    if (moves->parsed()) {
      la.json = as_json;
      return mrl::ops::ListMoves(client, la);
    }
    if (abort_move->parsed()) return mrl::ops::AbortMove(client, move_id, reason, as_json);
    if (rebalance->parsed() || drain->parsed()) {
      pa.drain = drain->parsed();
      pa.json = as_json;
      return mrl::ops::RunPlan(client, pa);
    }
    ia.collection = collection;
    ia.binary = http_only ? "" : mrl::ops::CoordinatorBinary(binary, url, dir);
    return mrl::ops::Ingest(client, ia);
  };
  const mrl::Status st = run();
  if (!st.ok()) {
    std::cerr << "mrlctl: " << st.ToString() << "\n";
    return 1;
  }
  return 0;
}
