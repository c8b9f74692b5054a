#include "coordinator/coordinator_metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace mrl::coord {

void CoordinatorMetrics::CountRequest(const std::string& endpoint, int http_status) {
  std::lock_guard<std::mutex> lock(mu_);
  ++requests_[endpoint + " " + std::to_string(http_status)];
}

void CoordinatorMetrics::Observe(const std::string& stage, double ms) {
  const double us = std::max(1.0, ms * 1000.0);
  const size_t b = std::min<size_t>(30, static_cast<size_t>(std::log2(us)));
  auto& h = latency_[stage];
  if (h.empty()) h.assign(31, 0);
  ++h[b];
}

void CoordinatorMetrics::ObserveSearch(double total_ms, const SearchOutcome* outcome) {
  std::lock_guard<std::mutex> lock(mu_);
  Observe("total", total_ms);
  if (outcome) {
    Observe("shortlist", outcome->shortlist_ms);
    Observe("rerank", outcome->rerank_ms);
    candidates_ += outcome->candidates;
    queries_ += outcome->hits.size();
    for (const std::string& s : outcome->failed_shards) ++shard_errors_[s];
  }
  ++searches_;
}

std::string CoordinatorMetrics::Render(uint64_t map_epoch, uint64_t map_refreshes) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  out += "# TYPE mrl_coordinator_requests_total counter\n";
  for (const auto& [key, n] : requests_) {
    const size_t sp = key.rfind(' ');
    out += "mrl_coordinator_requests_total{endpoint=\"" + key.substr(0, sp) + "\",status=\"" +
           key.substr(sp + 1) + "\"} " + std::to_string(n) + "\n";
  }
  out += "# TYPE mrl_coordinator_searches_total counter\nmrl_coordinator_searches_total " +
         std::to_string(searches_) + "\n";
  out += "# TYPE mrl_coordinator_map_epoch gauge\nmrl_coordinator_map_epoch " +
         std::to_string(map_epoch) + "\n";
  out +=
      "# TYPE mrl_coordinator_map_refreshes_total counter\nmrl_coordinator_map_refreshes_total " +
      std::to_string(map_refreshes) + "\n";
  out += "# TYPE mrl_coordinator_queries_total counter\nmrl_coordinator_queries_total " +
         std::to_string(queries_) + "\n";
  out +=
      "# TYPE mrl_coordinator_shortlist_candidates_total "
      "counter\nmrl_coordinator_shortlist_candidates_total " +
      std::to_string(candidates_) + "\n";
  out += "# TYPE mrl_coordinator_shard_errors_total counter\n";
  for (const auto& [s, n] : shard_errors_) {
    out += "mrl_coordinator_shard_errors_total{shard=\"" + s + "\"} " + std::to_string(n) + "\n";
  }
  out += "# TYPE mrl_coordinator_stage_latency_seconds histogram\n";
  for (const auto& [stage, h] : latency_) {
    uint64_t cum = 0;
    for (size_t b = 0; b < h.size(); ++b) {
      cum += h[b];
      char le[32];
      std::snprintf(le, sizeof(le), "%.6g", std::ldexp(1.0, static_cast<int>(b) + 1) / 1e6);
      out += "mrl_coordinator_stage_latency_seconds_bucket{stage=\"" + stage + "\",le=\"" + le +
             "\"} " + std::to_string(cum) + "\n";
    }
    out += "mrl_coordinator_stage_latency_seconds_bucket{stage=\"" + stage + "\",le=\"+Inf\"} " +
           std::to_string(cum) + "\n";
    out += "mrl_coordinator_stage_latency_seconds_count{stage=\"" + stage + "\"} " +
           std::to_string(cum) + "\n";
  }
  return out;
}

std::string MetaMetrics(const MetaState& m) {
  auto line = [](const std::string& name, const std::string& type, const std::string& help,
                 uint64_t v) {
    return "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " +
           std::to_string(v) + "\n";
  };
  return line("mrl_meta_leader", "gauge", "1 while this coordinator leads cluster changes.",
              m.leader ? 1 : 0) +
         line("mrl_meta_store_reachable", "gauge", "1 when the last metadata store call succeeded.",
              m.reachable ? 1 : 0) +
         line("mrl_meta_revision", "gauge", "The store revision the served cluster state reflects.",
              static_cast<uint64_t>(m.revision)) +
         line("mrl_meta_watch_restarts_total", "counter",
              "Watches of the cluster state that ended and were re-established after a re-read.",
              m.watch_restarts) +
         line("mrl_meta_lease_losses_total", "counter", "Session leases that expired.",
              m.lease_losses) +
         line("mrl_meta_fenced_writes_total", "counter",
              "Cluster changes refused because a newer leader holds the leader key.",
              m.fenced_writes) +
         line("mrl_meta_registered_shards", "gauge",
              "Shards whose registration (shards/<id>, under the shard's lease) is live.",
              m.shards.size());
}

}  // namespace mrl::coord

namespace mrl::coord {

std::string ShardHealthMetrics(const std::vector<ShardHealthReport>& shards, uint64_t hedges,
                               uint64_t hedgeable_calls) {
  std::string state, probe, missed, latency, delay, in_flight, shard_hedges;
  for (const ShardHealthReport& r : shards) {
    const std::string l = "shard=\"" + r.shard + "\"";
    for (ShardState s : {ShardState::kUp, ShardState::kSlow, ShardState::kDown}) {
      state += "mrl_coordinator_shard_state{" + l + ",state=\"" + ShardStateName(s) + "\"} " +
               (r.state == s ? "1" : "0") + "\n";
    }
    if (r.probe_ms >= 0) {
      probe += "mrl_coordinator_shard_probe_seconds{" + l + "} " + std::to_string(r.probe_ms / 1e3) + "\n";
    }
    missed += "mrl_coordinator_shard_probes_missed{" + l + "} " + std::to_string(r.probes_missed) + "\n";
    if (r.p50_ms >= 0) {
      latency += "mrl_coordinator_shard_latency_seconds{" + l + ",quantile=\"0.5\"} " +
                 std::to_string(r.p50_ms / 1e3) + "\n";
      latency += "mrl_coordinator_shard_latency_seconds{" + l + ",quantile=\"0.99\"} " +
                 std::to_string(r.p99_ms / 1e3) + "\n";
    }
    if (r.hedge_delay_ms >= 0) {
      delay += "mrl_coordinator_shard_hedge_delay_seconds{" + l + "} " +
               std::to_string(r.hedge_delay_ms / 1e3) + "\n";
    }
    in_flight += "mrl_coordinator_shard_in_flight{" + l + "} " + std::to_string(r.in_flight) + "\n";
    shard_hedges += "mrl_coordinator_shard_hedges_total{" + l + "} " + std::to_string(r.hedges) + "\n";
  }
  return "# HELP mrl_coordinator_shard_state 1 for the shard's state as this coordinator sees it: "
         "up, slow (a call past its hedge delay, nothing heard since) or down (connection failed, "
         "call timed out or probes missed).\n# TYPE mrl_coordinator_shard_state gauge\n" +
         state + "# TYPE mrl_coordinator_shard_probe_seconds gauge\n" + probe +
         "# TYPE mrl_coordinator_shard_probes_missed gauge\n" + missed +
         "# HELP mrl_coordinator_shard_latency_seconds Over the shard's last query calls.\n"
         "# TYPE mrl_coordinator_shard_latency_seconds gauge\n" +
         latency + "# TYPE mrl_coordinator_shard_hedge_delay_seconds gauge\n" + delay +
         "# TYPE mrl_coordinator_shard_in_flight gauge\n" + in_flight +
         "# TYPE mrl_coordinator_shard_hedges_total counter\n" + shard_hedges +
         "# HELP mrl_coordinator_hedges_total Query calls also sent to another replica.\n"
         "# TYPE mrl_coordinator_hedges_total counter\nmrl_coordinator_hedges_total " +
         std::to_string(hedges) +
         "\n# TYPE mrl_coordinator_hedgeable_calls_total counter\nmrl_coordinator_hedgeable_calls_total " +
         std::to_string(hedgeable_calls) + "\n";
}

}  // namespace mrl::coord
