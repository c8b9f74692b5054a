#include "rpc/server_metrics.h"

#include <algorithm>
#include <bit>
#include <memory>

namespace mrl::rpc {

void ServerMetrics::RecordRequest(wire::MessageType type, uint64_t micros, bool ok) {
  const auto t = static_cast<size_t>(type);
  if (t >= kTypes) return;
  PerType& p = per_type_[t];
  p.count.fetch_add(1, std::memory_order_relaxed);
  if (!ok) p.errors.fetch_add(1, std::memory_order_relaxed);
  p.total_us.fetch_add(micros, std::memory_order_relaxed);
  const int b =
      micros == 0 ? 0 : std::min(kBuckets - 1, static_cast<int>(std::bit_width(micros)) - 1);
  p.buckets[b].fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::ConnectionOpened() {
  connections_open_.fetch_add(1, std::memory_order_relaxed);
  connections_total_.fetch_add(1, std::memory_order_relaxed);
}

void ServerMetrics::ConnectionClosed() {
  connections_open_.fetch_sub(1, std::memory_order_relaxed);
}

void ServerMetrics::FillStats(wire::StatsResponseT* out) const {
  out->connections_open = connections_open();
  out->connections_total = connections_total();
  for (int t = 0; t < kTypes; ++t) {
    const PerType& p = per_type_[t];
    const uint64_t count = p.count.load(std::memory_order_relaxed);
    if (count == 0) continue;
    auto rs = std::make_unique<wire::RequestStatsT>();
    rs->type = static_cast<wire::MessageType>(t);
    rs->count = count;
    rs->errors = p.errors.load(std::memory_order_relaxed);
    rs->total_us = p.total_us.load(std::memory_order_relaxed);
    int last = kBuckets - 1;
    while (last > 0 && p.buckets[last].load(std::memory_order_relaxed) == 0) --last;
    for (int b = 0; b <= last; ++b) rs->buckets_us.push_back(p.buckets[b].load());
    out->requests.push_back(std::move(rs));
  }
}

}  // namespace mrl::rpc
