// Copying one bucket's key range between shards, a page at a time, and the figures that verify
// a copy: what a bucket move (move_executor) and a replica fill (replica_fill) both do. A page is
// read with ScanBucket on a source shard and written to every target with versioned Upsert and
// Delete (tombstones), so a re-run page changes nothing (a shard keeps the newer version of a
// point) and a copy never resurrects a deleted point.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "coordinator/move.h"
#include "coordinator/shard_pool.h"

namespace mrl::coord {

struct CopiedPage {
  uint64_t points = 0;  // points (not tombstones) written to each target
  uint64_t bytes = 0;   // bytes of the page (vectors, payloads, ids and versions)
  // Where the next page starts (ScanBucket's `after`); nullopt when the page was empty.
  std::optional<uint64_t> cursor;
  bool finished = false;  // the source has no further page
};

// One page of `bucket` of `collection` after `after` (nullopt: from the start), at most `limit`
// ids, from `source` to every shard of `targets` (in parallel). `throttle(bytes)` is called
// before the page is sent. With min_version > 0 only entries of that version or newer are
// copied (a catch-up; Engine::ScanBucket). Errors name the shard that failed; nothing is undone
// (re-run it).
Result<CopiedPage> CopyBucketPage(ShardPool& pool, const std::string& source,
                                  const std::vector<std::string>& targets,
                                  const std::string& collection, uint32_t bucket,
                                  std::optional<uint64_t> after, int32_t limit,
                                  uint32_t deadline_ms,
                                  const std::function<void(uint64_t)>& throttle = {},
                                  uint64_t min_version = 0);

// Count and order-independent checksum of (id, version) over the bucket's points and tombstones
// on `shard` (BucketChecksum): equal on two shards when they hold the same versions.
Result<VerifyFigures> BucketFigures(ShardPool& pool, const std::string& shard,
                                    const std::string& collection, uint32_t bucket,
                                    uint32_t deadline_ms);

}  // namespace mrl::coord
