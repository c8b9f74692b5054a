// mrl-shard's configuration: defaults here, overridden by a JSON config file (--config), then by
// command-line flags (--port 0 etc.). Every field is one key of the file and one flag
// (underscores become dashes: max_frame_bytes -> --max-frame-bytes).
#pragma once

#include <cstdint>
#include <string>

#include "common/status.h"

namespace mrl::shard {

// X(type, name, default, help)
#define MRL_SHARD_CONFIG_FIELDS(X)                                                             \
  X(std::string, data_dir, "", "data directory: RocksDB and persisted indexes (required)")     \
  X(std::string, host, "127.0.0.1", "address to listen on")                                    \
  X(int, port, 7400, "TCP port; 0 lets the OS choose (see --port-file)")                       \
  X(std::string, port_file, "", "write the bound port to this file once listening")            \
  X(int, threads, 0, "worker threads for requests and index builds; 0 = cores")                \
  X(int, block_cache_mb, 256, "RocksDB block cache")                                           \
  X(bool, sync_writes, true, "fsync the WAL before acknowledging a write")                     \
  X(bool, mmap_reads, false, "read RocksDB files through mmap (read-heavy, data in page cache)")\
  X(bool, rerank_rows, true, "rerank from a memory-mapped rows file, not RocksDB lookups")    \
  X(bool, rows_readahead, false, "read a rerank's rows concurrently (cold rows file on disk)")  \
  X(std::string, auth_secret_file, "", "file holding the shared secret peers must present")    \
  X(uint32_t, max_frame_bytes, 64u << 20, "largest accepted frame body")                       \
  X(uint32_t, max_in_flight_per_connection, 64, "stop reading a connection beyond this")       \
  X(uint32_t, max_queued_requests, 4096, "answer Overloaded beyond this many queued requests") \
  X(uint32_t, max_connections, 1024, "refuse connections beyond this")                         \
  X(int, max_k, 10000, "largest k or shortlist size per query")                                \
  X(int, max_batch, 10000, "points per Upsert/Delete/Get, ids per Rerank")                     \
  X(int, max_queries, 1024, "queries per Shortlist/Rerank/Search request")                     \
  X(uint32_t, drain_timeout_ms, 30000, "graceful shutdown's bound on in-flight work")          \
  X(double, disk_refuse_above_percent, 95.0, "refuse writes above this % of the disk used (100: off)") \
  X(double, disk_release_below_percent, 90.0, "accept writes again below this % used")         \
  X(uint64_t, disk_min_free_mb, 0, "also refuse writes below this many MiB free (0: off)")   \
  X(uint64_t, disk_release_free_mb, 0, "accept writes again from this many MiB free (0: 1.25x min)") \
  X(std::string, meta, "", "register in this metadata store: etcd://h:p,.../prefix (\"\": none)") \
  X(std::string, shard_id, "", "id in the store (\"\": the one kept in data_dir/shard_id)")    \
  X(std::string, advertise, "", "host:port coordinators reach this shard at (\"\": host:port)") \
  X(int, meta_ttl_s, 10, "registration lease TTL: a dead shard's key outlives it this long")  \
  X(bool, verbose, true, "progress lines on stderr")

struct ShardConfig {
#define MRL_FIELD_(type, name, def, help) type name = def;
  MRL_SHARD_CONFIG_FIELDS(MRL_FIELD_)
#undef MRL_FIELD_
};

// Overrides the fields present in the JSON object in `path`; unknown keys are an error.
Status LoadConfigFile(const std::string& path, ShardConfig* config);
// One JSON object with every field (the secret file's path, never the secret).
std::string ConfigToJson(const ShardConfig& config);

}  // namespace mrl::shard
