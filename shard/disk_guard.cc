#include "shard/disk_guard.h"

#include <sys/statvfs.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

namespace mrl::shard {

Status ValidateDiskMarks(const DiskMarks& m) {
  if (!(m.refuse_above_percent > 0) || !(m.release_below_percent > 0) ||
      m.release_below_percent > m.refuse_above_percent ||
      (m.release_free_bytes > 0 && m.release_free_bytes < m.min_free_bytes)) {
    return Status::InvalidArgument(
        "disk marks: need 0 < disk_release_below_percent <= disk_refuse_above_percent and "
        "disk_release_free_mb >= disk_min_free_mb");
  }
  return Status::Ok();
}

Result<DiskUsage> StatFilesystem(const std::string& path) {
  struct statvfs s {};
  if (statvfs(path.c_str(), &s) != 0) {
    return Status::IoError("statvfs '" + path + "': " + std::strerror(errno));
  }
  DiskUsage u;
  // As df(1) computes Use%: blocks in use plus those an unprivileged writer may still take, so
  // root's reserve (and space a VM's host holds back) count neither as used nor as free.
  u.free_bytes = static_cast<uint64_t>(s.f_bavail) * s.f_frsize;
  u.total_bytes = static_cast<uint64_t>(s.f_blocks - s.f_bfree) * s.f_frsize + u.free_bytes;
  return u;
}

bool DiskWatermark::Observe(const DiskUsage& u) {
  const double used = u.used_percent();
  if (marks_.refuse_above_percent >= 100) {
    by_percent_ = false;
  } else {
    by_percent_ =
        by_percent_ ? used >= marks_.release_below_percent : used >= marks_.refuse_above_percent;
  }
  if (marks_.min_free_bytes == 0) {
    by_bytes_ = false;
  } else {
    by_bytes_ =
        by_bytes_ ? u.free_bytes < marks_.release_bytes() : u.free_bytes < marks_.min_free_bytes;
  }
  return refusing();
}

std::string DiskWatermark::Explain(const DiskUsage& u) const {
  char buf[256];
  std::snprintf(buf, sizeof(buf),
                "%llu bytes free of %llu (%.1f%% used); writes are refused above %.0f%% used",
                static_cast<unsigned long long>(u.free_bytes),
                static_cast<unsigned long long>(u.total_bytes), u.used_percent(),
                marks_.refuse_above_percent);
  std::string out = buf;
  if (marks_.min_free_bytes > 0)
    out += " or below " + std::to_string(marks_.min_free_bytes) + " bytes free";
  std::snprintf(buf, sizeof(buf), ", and accepted again below %.0f%% used",
                marks_.release_below_percent);
  out += buf;
  if (marks_.min_free_bytes > 0) {
    out += " with " + std::to_string(marks_.release_bytes()) + " bytes free";
  }
  return out;
}

void DiskGuard::RefreshLocked(std::chrono::steady_clock::time_point now) {
  sampled_ = now;
  auto u = StatFilesystem(path_);
  if (!u.ok()) {
    if (!stat_error_logged_)
      std::cerr << "[disk] " << owner_ << ": " << u.status().ToString() << std::endl;
    stat_error_logged_ = true;
    return;
  }
  last_ = u.value();
  const bool was = watermark_.refusing();
  const bool now_refusing = watermark_.Observe(last_);
  if (was != now_refusing) {
    std::cerr << "[disk] " << owner_ << ": "
              << (now_refusing ? "refusing writes: " : "accepting writes again: ")
              << watermark_.Explain(last_) << std::endl;
  }
  refusing_ = now_refusing;
}

Status DiskGuard::CheckWrite() {
  std::lock_guard<std::mutex> lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - sampled_ >= std::chrono::milliseconds(refresh_ms_)) RefreshLocked(now);
  if (!watermark_.refusing()) return Status::Ok();
  ++refusals_;
  return Status::InsufficientStorage(owner_ + ": disk above its high watermark: " +
                                     watermark_.Explain(last_) + " (deletes are accepted)");
}

DiskUsage DiskGuard::Sample() {
  std::lock_guard<std::mutex> lock(mu_);
  RefreshLocked(std::chrono::steady_clock::now());
  return last_;
}

}  // namespace mrl::shard
