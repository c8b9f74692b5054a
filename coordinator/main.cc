// mrl-coordinator: the cluster's front door. Parse flags, open the coordinator state, register
// shards given on the command line (first start), serve HTTP until SIGTERM/SIGINT, then drain.
//
//   mrl-coordinator --data-dir /var/lib/mrl/coord --shard s1=127.0.0.1:7001 --shard s2=127.0.0.1:7002
//   mrl-coordinator ... --replication 2   # consecutive --shard flags form replica groups of 2
//   mrl-coordinator --config /etc/mrl/coordinator.toml   # every flag a key; flags override it
#include <signal.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>

#include "common/atomic_file.h"
#include "common/build_info.h"
#include "common/daemon.h"
#include "coordinator/binary_api.h"
#include "coordinator/coordinator.h"
#include "coordinator/http_api.h"
#include "coordinator/http_server.h"
#include "rpc/library_versions.h"
#include "rpc/server.h"

namespace {

int Run(int argc, char** argv) {
  CLI::App app{"mrl-coordinator: query and write front door of an MRL serving cluster"};
  app.option_defaults()->always_capture_default();  // the printed config shows every default
  mrl::coord::CoordinatorOptions co;
  co.build = mrl::MakeBuildInfo("mrl-coordinator", mrl::rpc::LibraryVersions());
  app.set_version_flag("--version", mrl::VersionText(co.build));
  mrl::coord::HttpServerOptions ho;
  std::vector<std::string> shards;
  int replication = 1;
  std::string port_file, read_token_file, admin_token_file, shard_secret_file;
  int port = 0;
  app.add_option("--data-dir", co.data_dir,
                 "The coordinator's directory (the embedded metadata store, unless --meta)")->required();
  app.add_option("--meta", co.meta_url,
                 "Where the cluster state lives: etcd://host:port[,host:port...][/prefix] (every "
                 "coordinator on it serves; one leads changes). Default: the embedded store in --data-dir");
  app.add_option("--coordinator-id", co.coordinator_id,
                 "This coordinator's name in the metadata store (default: a random one)");
  app.add_option("--session-ttl-s", co.session_ttl_s,
                 "Session lease TTL: how long a dead leader blocks changes (must outlive an etcd election)")
      ->check(CLI::Range(2, 300));
  std::string advertise;
  app.add_option("--advertise", advertise,
                 "The URL other coordinators and mrlctl reach this one at (default: scheme://host:port)");
  app.add_option("--host", ho.host, "HTTP listen address");
  app.add_option("--port", port, "HTTP port (0: the OS picks; see --port-file)");
  app.add_option("--port-file", port_file, "Write the bound port here once listening");
  app.add_option("--threads", ho.threads, "Request handler threads (0 = cores)");
  app.add_option("--shard", shards, "id=host:port of a shard (first start only; order matters)");
  app.add_option("--replication", replication, "Consecutive --shard flags form replica groups of this size");
  app.add_option("--deadline-ms", co.default_deadline_ms, "Default per-request deadline");
  app.add_option("--max-k", co.max_k, "Largest k a search may ask for");
  app.add_option("--moves-per-group", co.moves.max_moves_per_group,
                 "Bucket moves running at a time per replica group (more wait, queued)");
  app.add_option("--move-max-bytes-per-s", co.moves.max_bytes_per_s,
                 "Copy throttle of bucket moves over all moves, and of replica fills and catch-ups (0 = unthrottled)");
  app.add_option("--move-copy-batch", co.moves.copy_batch, "Points per copy page of a bucket move");
  app.add_option("--moves-keep-finished", co.moves.keep_finished,
                 "Finished moves kept in the journal (the newest); older ones are pruned");
  app.add_option("--moves-prune-after-s", co.moves.prune_after_s,
                 "Seconds a finished move stays in the journal before it may be pruned");
  mrl::coord::InSyncOptions& is = co.in_sync;
  app.add_option("--min-in-sync", is.min_in_sync,
                 "Writes to a replica group with fewer in-sync replicas are refused (503)")
      ->check(CLI::Range(1, 64));
  app.add_option("--out-of-sync-after-ms", is.out_after_ms,
                 "A replica down this long leaves its group's in-sync set (writes go on without "
                 "it; it catches up when it answers again)");
  app.add_option("--catch-up-margin-ms", is.catch_up_margin_ms,
                 "A returning replica copies what was written since this long before it left "
                 "(writes in flight, clock skew between coordinators)");
  int write_quorum = -1;
  app.add_option("--write-quorum", write_quorum,
                 "Deprecated: a write is acknowledged by every in-sync replica; N > 0 sets "
                 "--min-in-sync N");
  app.add_option("--shard-connections", co.shard_connections, "Pipelined connections per shard")
      ->check(CLI::Range(1, 64));
  app.add_option("--shard-max-in-flight", co.shard_max_in_flight,
                 "Requests awaiting an answer per shard connection before calls fail fast (back-pressure)");
  mrl::coord::ShardHealthOptions& h = co.shard_health;
  app.add_option("--probe-interval-ms", h.probe_interval_ms,
                 "Ping each shard this often to detect silent ones (0: no probes; a down shard is "
                 "then retried after 2 s)");
  app.add_option("--probe-timeout-ms", h.probe_timeout_ms, "A probe not answered by then is missed");
  app.add_option("--probe-misses", h.probe_misses_to_down,
                 "Probes missed in a row that mark a shard down (until it answers one)")
      ->check(CLI::Range(1, 100));
  app.add_option("--hedge", h.hedge, "Hedge slow query calls to another replica (true/false)");
  app.add_option("--hedge-quantile", h.hedge_quantile,
                 "Hedge a call once it is slower than this quantile of its shard's recent calls")
      ->check(CLI::Range(0.5, 1.0));
  app.add_option("--hedge-min-ms", h.hedge_min_ms, "Lower bound of the hedge delay");
  app.add_option("--hedge-max-ms", h.hedge_max_ms, "Upper bound of the hedge delay");
  app.add_option("--hedge-budget", h.hedge_budget, "Hedges per query call at most, over time")
      ->check(CLI::Range(0.0, 1.0));
  app.add_option("--read-token-file", read_token_file, "File holding the read-only API token");
  app.add_option("--admin-token-file", admin_token_file, "File holding the admin API token");
  app.add_option("--shard-secret-file", shard_secret_file, "File holding the shards' shared secret");
  app.add_option("--max-body-bytes", ho.max_body_bytes, "Largest HTTP request body");
  app.add_option("--tls-cert-file", ho.tls_cert_file, "PEM certificate chain: serve HTTPS (with --tls-key-file)");
  app.add_option("--tls-key-file", ho.tls_key_file, "PEM private key of --tls-cert-file");
  int binary_port = -1;
  std::string binary_port_file, binary_secret_file;
  app.add_option("--binary-port", binary_port,
                 "Serve the binary FlatBuffers API (docs/protocol.md) on this port (0: the OS picks; "
                 "-1: off)");
  app.add_option("--binary-port-file", binary_port_file, "Write the bound binary port here once listening");
  app.add_option("--binary-secret-file", binary_secret_file,
                 "File holding the secret binary clients must present (AuthRequest)");
  app.add_flag("--follow", co.follow,
               "Follow the cluster state another coordinator keeps in --data-dir (read and write points, "
               "search; no cluster or collection changes)");
  std::string follow_token_file;
  app.add_option("--follow-url", co.follow_url,
                 "Follow the coordinator at this URL (http://host:port, another host): its cluster "
                 "state is read from GET /v1/meta/state, polled and on a stale-epoch refusal; the last "
                 "state keeps serving while it is away (implies --follow)");
  app.add_option("--follow-token-file", follow_token_file, "File holding a read token of the --follow-url coordinator");
  app.add_option("--follow-poll-ms", co.follow_poll_ms, "How often a --follow-url follower re-reads the state")
      ->check(CLI::Range(50, 600000));
  // A config file (TOML, CLI11's reader): every flag above is a key of the same name without the
  // dashes (data-dir = "/var/lib/mrl/coord", shard = ["s1=10.0.0.1:7400", ...]); flags given on
  // the command line override it. The effective configuration is printed at start.
  app.set_config("--config", "", "TOML config file: every flag a key (flags override it)");
  CLI11_PARSE(app, argc, argv);
  if (port < 0 || port > 65535) {
    std::cerr << "mrl-coordinator: bad port " << port << "\n";
    return 2;
  }
  ho.port = static_cast<uint16_t>(port);
  if (write_quorum > 0) {
    std::cerr << "mrl-coordinator: --write-quorum is deprecated (a write is acknowledged by every "
                 "in-sync replica): read as --min-in-sync "
              << write_quorum << "\n";
    is.min_in_sync = write_quorum;
  }
  co.read_token = mrl::ReadSecretFile(read_token_file);
  co.admin_token = mrl::ReadSecretFile(admin_token_file);
  co.shard_secret = mrl::ReadSecretFile(shard_secret_file);
  co.follow_token = mrl::ReadSecretFile(follow_token_file);

  const sigset_t signals = mrl::BlockTerminationSignals();

  auto coord = mrl::coord::Coordinator::Open(co);
  if (!coord.ok()) {
    std::cerr << "mrl-coordinator: " << coord.status().ToString() << "\n";
    return 1;
  }
  std::cout << "mrl-coordinator " << mrl::VersionSummary(coord.value()->options().build) << std::endl;
  // The effective configuration (file and flags, defaults included), as a config file would say it.
  std::cout << "mrl-coordinator config:\n" << app.config_to_str(/*default_also=*/true) << std::flush;
  mrl::coord::Coordinator* c = coord.value().get();
  mrl::coord::HttpApi api(*c);
  mrl::coord::HttpServer server(ho, [&api](const mrl::coord::HttpRequest& r) { return api.Handle(r); });
  mrl::Status st = server.Start();
  if (!st.ok()) {
    std::cerr << "mrl-coordinator: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << "mrl-coordinator listening on " << (server.tls() ? "https://" : "http://") << ho.host << ":" << server.port()
            << (co.admin_token.empty() ? " (no API tokens)" : " (token auth)") << std::endl;
  if (advertise.empty()) {
    advertise = std::string(server.tls() ? "https://" : "http://") + ho.host + ":" +
                std::to_string(server.port());
  }
  c->state().StartSession(advertise);
  if (!shards.empty() && c->Snapshot()->map.groups().empty()) {
    // The first start's groups are a cluster change: wait to lead (at once with the embedded
    // store; with etcd, until a previous leader's session has expired).
    if (!c->state().AwaitLeadership((co.session_ttl_s + 5) * 1000)) {
      std::cerr << "mrl-coordinator: " << c->state().CheckLeader().ToString()
                << ": cannot register --shard groups" << std::endl;
      return 1;
    }
    if (replication < 1 || shards.size() % static_cast<size_t>(replication) != 0) {
      std::cerr << "mrl-coordinator: " << shards.size() << " shards do not form groups of " << replication << "\n";
      return 2;
    }
    for (size_t i = 0; i < shards.size(); i += static_cast<size_t>(replication)) {
      std::vector<mrl::coord::ShardInfo> group;
      for (size_t j = i; j < i + static_cast<size_t>(replication); ++j) {
        const size_t eq = shards[j].find('=');
        if (eq == std::string::npos) {
          std::cerr << "mrl-coordinator: --shard wants id=host:port, got '" << shards[j] << "'\n";
          return 2;
        }
        group.push_back({shards[j].substr(0, eq), shards[j].substr(eq + 1)});
      }
      auto added = c->AddGroup(group);
      if (!added.ok()) {
        std::cerr << "mrl-coordinator: " << added.status().ToString() << "\n";
        return 2;
      }
    }
  }
  {
    const auto snapshot = c->Snapshot();
    std::cout << "mrl-coordinator: shard map epoch " << snapshot->map.epoch() << ", "
              << snapshot->map.groups().size() << " replica groups, " << snapshot->map.shards().size()
              << " shards; metadata " << c->state().Meta().store << std::endl;
  }
  std::unique_ptr<mrl::coord::BinaryApi> binary;
  std::unique_ptr<mrl::rpc::Server> binary_server;
  if (binary_port >= 0) {
    if (binary_port > 65535) {
      std::cerr << "mrl-coordinator: bad binary port " << binary_port << "\n";
      return 2;
    }
    binary = std::make_unique<mrl::coord::BinaryApi>(*c);
    mrl::rpc::ServerOptions so;
    so.name = "mrl-coordinator";
    so.host = ho.host;
    so.port = static_cast<uint16_t>(binary_port);
    so.threads = ho.threads;
    so.auth_secret = mrl::ReadSecretFile(binary_secret_file);
    binary_server = std::make_unique<mrl::rpc::Server>(so, *binary);
    st = binary_server->Start();
    if (!st.ok()) {
      std::cerr << "mrl-coordinator: binary API: " << st.ToString() << "\n";
      return 1;
    }
    std::cout << "mrl-coordinator binary API on " << ho.host << ":" << binary_server->port()
              << (so.auth_secret.empty() ? " (no secret)" : " (secret auth)") << std::endl;
    if (!binary_port_file.empty()) {
      st = mrl::WritePortFile(binary_port_file, binary_server->port());
      if (!st.ok()) {
        std::cerr << "mrl-coordinator: " << st.ToString() << "\n";
        return 1;
      }
    }
  }
  if (!port_file.empty()) {
    st = mrl::WritePortFile(port_file, server.port());
    if (!st.ok()) {
      std::cerr << "mrl-coordinator: " << st.ToString() << "\n";
      return 1;
    }
  }
  const int sig = mrl::WaitForTerminationSignal(signals);
  std::cout << "mrl-coordinator: signal " << sig << ", draining" << std::endl;
  if (binary_server) binary_server->Shutdown();
  server.Shutdown();
  std::cout << "mrl-coordinator: bye" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mrl::RunDaemonMain("mrl-coordinator", Run, argc, argv); }
