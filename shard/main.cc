// mrl-shard: one shard daemon. Parse config, open the engine, serve until SIGTERM/SIGINT, then
// drain in-flight requests, checkpoint the engine and exit 0.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

#include <CLI/CLI.hpp>
#include <rocksdb/version.h>

#include "common/atomic_file.h"
#include "common/build_info.h"
#include "common/daemon.h"
#include "rpc/library_versions.h"
#include "rpc/server.h"
#include "shard/config.h"
#include "shard/engine.h"
#include "shard/registration.h"
#include "shard/service.h"

namespace {

std::string FlagName(std::string field) {
  std::replace(field.begin(), field.end(), '_', '-');
  return "--" + field;
}

mrl::BuildInfo ShardBuildInfo() {
  std::vector<mrl::LibraryVersion> libs = {
      {"RocksDB", mrl::DottedVersion(ROCKSDB_MAJOR, ROCKSDB_MINOR, ROCKSDB_PATCH)}};
  for (auto& l : mrl::rpc::LibraryVersions()) libs.push_back(std::move(l));
  return mrl::MakeBuildInfo("mrl-shard", std::move(libs));
}

int Run(int argc, char** argv) {
  using namespace mrl::shard;
  CLI::App app{"mrl-shard: one shard of the MRL serving system"};
  const mrl::BuildInfo build = ShardBuildInfo();
  app.set_version_flag("--version", mrl::VersionText(build));
  std::string config_file;
  app.add_option("--config", config_file, "JSON config file (flags override it)");
  ShardConfig flags;
#define MRL_FLAG_(type, name, def, help) \
  auto* opt_##name = app.add_option(FlagName(#name), flags.name, help);
  MRL_SHARD_CONFIG_FIELDS(MRL_FLAG_)
#undef MRL_FLAG_
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }

  ShardConfig cfg;
  if (!config_file.empty()) {
    mrl::Status st = LoadConfigFile(config_file, &cfg);
    if (!st.ok()) {
      std::cerr << "mrl-shard: " << st.ToString() << "\n";
      return 2;
    }
  }
#define MRL_OVERRIDE_(type, name, def, help) \
  if (opt_##name->count() > 0) cfg.name = flags.name;
  MRL_SHARD_CONFIG_FIELDS(MRL_OVERRIDE_)
#undef MRL_OVERRIDE_
  if (cfg.data_dir.empty()) {
    std::cerr << "mrl-shard: --data-dir (or data_dir in the config file) is required\n";
    return 2;
  }
  if (cfg.port < 0 || cfg.port > 65535) {
    std::cerr << "mrl-shard: bad port " << cfg.port << "\n";
    return 2;
  }
  std::cout << "mrl-shard " << mrl::VersionSummary(build) << std::endl;
  std::cout << "mrl-shard config: " << ConfigToJson(cfg) << std::endl;

  // Every thread started from here on inherits the blocked mask; main collects the signal.
  const sigset_t signals = mrl::BlockTerminationSignals();

  EngineOptions eo;
  eo.data_dir = cfg.data_dir;
  eo.block_cache_mb = static_cast<size_t>(cfg.block_cache_mb);
  eo.sync_writes = cfg.sync_writes;
  eo.mmap_reads = cfg.mmap_reads;
  eo.rerank_rows = cfg.rerank_rows;
  eo.rows_readahead = cfg.rows_readahead;
  eo.threads = cfg.threads;
  eo.max_k = cfg.max_k;
  eo.max_batch = cfg.max_batch;
  eo.verbose = cfg.verbose;
  eo.disk.refuse_above_percent = cfg.disk_refuse_above_percent;
  eo.disk.release_below_percent = cfg.disk_release_below_percent;
  eo.disk.min_free_bytes = cfg.disk_min_free_mb << 20;
  eo.disk.release_free_bytes = cfg.disk_release_free_mb << 20;
  const auto t0 = std::chrono::steady_clock::now();
  auto engine = Engine::Open(eo);
  if (!engine.ok()) {
    std::cerr << "mrl-shard: cannot open engine: " << engine.status().ToString() << "\n";
    return 1;
  }
  const double open_s =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const EngineStats es = engine.value()->Stats();
  std::cout << "mrl-shard engine open in " << open_s << " s: " << es.collections.size()
            << " collections" << std::endl;
  for (const auto& c : es.collections) {
    std::cout << "mrl-shard collection " << c.name << ": " << c.points << " points";
    for (const auto& i : c.indexes) {
      std::cout << ", index dims=" << i.dims << " size=" << i.size << " seq=" << i.sequence
                << (i.loaded ? " (loaded from disk)"
                             : " (built from RocksDB: " + i.rebuild_reason + ")");
    }
    std::cout << std::endl;
  }

  ServiceLimits limits;
  limits.max_queries = cfg.max_queries;
  limits.epoch_file = (std::filesystem::path(cfg.data_dir) / "map_epoch").string();
  limits.version = mrl::VersionSummary(build);
  auto opened_service = ShardService::Open(*engine.value(), limits);
  if (!opened_service.ok()) {
    std::cerr << "mrl-shard: " << opened_service.status().ToString() << std::endl;
    return 1;
  }
  ShardService& service = *opened_service.value();
  mrl::rpc::ServerOptions so;
  so.name = "mrl-shard";
  so.host = cfg.host;
  so.port = static_cast<uint16_t>(cfg.port);
  so.threads = cfg.threads;
  so.max_frame_bytes = cfg.max_frame_bytes;
  so.max_in_flight_per_connection = cfg.max_in_flight_per_connection;
  so.max_queued_requests = cfg.max_queued_requests;
  so.max_connections = cfg.max_connections;
  so.drain_timeout_ms = cfg.drain_timeout_ms;
  if (!cfg.auth_secret_file.empty()) so.auth_secret = mrl::ReadSecretFile(cfg.auth_secret_file);
  mrl::rpc::Server server(so, service);
  mrl::Status st = server.Start();
  if (!st.ok()) {
    std::cerr << "mrl-shard: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << "mrl-shard listening on " << cfg.host << ":" << server.port()
            << (so.auth_secret.empty() ? "" : " (shared-secret auth)") << std::endl;
  if (!cfg.port_file.empty()) {
    st = mrl::WritePortFile(cfg.port_file, server.port());
    if (!st.ok()) {
      std::cerr << "mrl-shard: " << st.ToString() << "\n";
      return 1;
    }
  }

  // Registration in the shared metadata store (optional): after the port is known, so the
  // address it advertises answers.
  std::unique_ptr<ShardRegistration> registration;
  if (!cfg.meta.empty()) {
    auto id = ResolveShardId(cfg.shard_id, cfg.data_dir);
    if (!id.ok()) {
      std::cerr << "mrl-shard: " << id.status().ToString() << "\n";
      return 2;
    }
    if (cfg.advertise.empty() && (cfg.host == "0.0.0.0" || cfg.host == "::")) {
      std::cerr << "mrl-shard: --advertise host:port is needed with --meta when listening on "
                << cfg.host << "\n";
      return 2;
    }
    RegistrationOptions ro;
    ro.meta_url = cfg.meta;
    ro.id = *id;
    ro.address = cfg.advertise.empty() ? cfg.host + ":" + std::to_string(server.port())
                                       : cfg.advertise;
    ro.version = limits.version;
    ro.ttl_s = cfg.meta_ttl_s;
    Engine* eng = engine.value().get();
    auto started = ShardRegistration::Start(ro, [eng] {
      const EngineStats s = eng->Stats();
      return s.refusing_writes || s.store_failed;
    });
    if (!started.ok()) {
      std::cerr << "mrl-shard: " << started.status().ToString() << "\n";
      return 2;
    }
    registration = std::move(started).value();
    std::cout << "mrl-shard registering as " << registration->key() << " (" << ro.address
              << ") on " << registration->Describe() << std::endl;
  }

  const int sig = mrl::WaitForTerminationSignal(signals);
  std::cout << "mrl-shard: signal " << sig << ", draining" << std::endl;
  if (registration) registration->SetDraining();
  server.Shutdown();
  st = engine.value()->Checkpoint();
  if (registration) {
    const mrl::Status released = registration->Release();
    if (!released.ok()) {
      std::cerr << "mrl-shard: registration left to its TTL: " << released.ToString() << "\n";
    }
  }
  if (!st.ok()) {
    std::cerr << "mrl-shard: checkpoint failed: " << st.ToString() << "\n";
    return 1;
  }
  std::cout << "mrl-shard: checkpointed, bye" << std::endl;
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return mrl::RunDaemonMain("mrl-shard", Run, argc, argv); }
