// Disk watermarks for a shard's data filesystem, in the manner of Elasticsearch's flood stage:
// once the filesystem is fuller than the refuse mark (or has less than min_free_bytes free), new
// writes are refused with InsufficientStorage, a message naming the shard, its free bytes and
// the mark; once it is back below the release mark (and has release_bytes() free) writes are
// accepted again by themselves. Deletes are never refused (they free space), nor are reads.
//
// DiskWatermark is the decision alone (tested without a filesystem); DiskGuard samples
// statvfs(2) at most every refresh_ms on the write path.
//
// Thread safety: DiskWatermark none; DiskGuard every method.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

#include "common/status.h"

namespace mrl::shard {

struct DiskMarks {
  double refuse_above_percent = 95;   // used % at which writes are refused; >= 100: off
  double release_below_percent = 90;  // used % below which they are accepted again
  uint64_t min_free_bytes = 0;        // also refuse below this many free bytes; 0: off
  uint64_t release_free_bytes = 0;    // ... and accept again from this many; 0: 1.25 x min_free
  uint64_t release_bytes() const {
    return release_free_bytes > 0 ? release_free_bytes : min_free_bytes + min_free_bytes / 4;
  }
};
Status ValidateDiskMarks(const DiskMarks& marks);

struct DiskUsage {
  uint64_t total_bytes = 0;  // used + free, as df(1)'s Use% counts them
  uint64_t free_bytes = 0;  // available to an unprivileged writer (f_bavail)
  double used_percent() const {
    return total_bytes == 0 ? 0
                            : 100.0 * static_cast<double>(total_bytes - free_bytes) / total_bytes;
  }
};
// statvfs(2) of the filesystem holding `path`.
Result<DiskUsage> StatFilesystem(const std::string& path);

class DiskWatermark {
 public:
  explicit DiskWatermark(DiskMarks marks) : marks_(marks) {}
  // Moves between accepting and refusing; returns refusing(). Each mark has its own hysteresis:
  // one that tripped releases at its own release level, so a refusal caused by the byte mark
  // ends once the bytes are back even on a disk that sits between the two percent marks.
  bool Observe(const DiskUsage& usage);
  bool refusing() const { return by_percent_ || by_bytes_; }
  // "N bytes free of M (U% used); writes are refused above R% used until below L%"
  std::string Explain(const DiskUsage& usage) const;

 private:
  const DiskMarks marks_;
  bool by_percent_ = false, by_bytes_ = false;
};

class DiskGuard {
 public:
  // owner: named in refusals ("shard at <data dir>").
  DiskGuard(std::string path, std::string owner, DiskMarks marks, uint32_t refresh_ms = 200)
      : path_(std::move(path)),
        owner_(std::move(owner)),
        watermark_(marks),
        refresh_ms_(refresh_ms) {}

  // Ok, or InsufficientStorage while refusing. A statvfs error is logged once and not fatal.
  Status CheckWrite();
  // Samples now (for stats).
  DiskUsage Sample();
  bool refusing() const { return refusing_.load(); }
  uint64_t refusals() const { return refusals_.load(); }

 private:
  void RefreshLocked(std::chrono::steady_clock::time_point now);  // REQUIRES: mu_

  const std::string path_, owner_;
  std::mutex mu_;
  DiskWatermark watermark_;  // guarded by mu_
  DiskUsage last_;           // guarded by mu_
  std::chrono::steady_clock::time_point sampled_{};
  bool stat_error_logged_ = false;
  const uint32_t refresh_ms_;
  std::atomic<bool> refusing_{false};
  std::atomic<uint64_t> refusals_{0};
};

}  // namespace mrl::shard
