#include "coordinator/shard_health.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mrl::coord {

const char* ShardStateName(ShardState s) {
  switch (s) {
    case ShardState::kUp:
      return "up";
    case ShardState::kSlow:
      return "slow";
    case ShardState::kDown:
      return "down";
  }
  return "?";
}

namespace {

double Ms(ShardHealth::Clock::duration d) {
  return std::chrono::duration<double, std::milli>(d).count();
}

double Quantile(std::vector<double> v, double q) {
  if (v.empty()) return -1;
  const size_t i = std::min(v.size() - 1, static_cast<size_t>(q * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(i), v.end());
  return v[i];
}

// Failures that say the shard (or the way to it) is gone, not that the request was wrong.
bool MeansGone(const Status& s) {
  return s.code() == Status::Code::kUnavailable || s.code() == Status::Code::kDeadlineExceeded;
}

}  // namespace

bool ShardHealth::IsQuery(wire::MessageType type) {
  return type == wire::MessageType::ShortlistRequest || type == wire::MessageType::RerankRequest ||
         type == wire::MessageType::SearchRequest;
}

void ShardHealth::MarkDownLocked(Entry& e, const std::string& reason, Clock::time_point now) {
  if (!e.down) e.down_since = now;
  e.down = true;
  e.down_reason = reason;
}

std::chrono::microseconds ShardHealth::HedgeDelayLocked(Entry& e, wire::MessageType type) const {
  const auto max = std::chrono::microseconds(opt_.hedge_max_ms * 1000ull);
  auto it = e.latency.find(type);
  if (it == e.latency.end() || it->second.quantile_ms < 0) return max;
  const double us = std::clamp(it->second.quantile_ms * 1000.0, opt_.hedge_min_ms * 1000.0,
                               opt_.hedge_max_ms * 1000.0);
  return std::chrono::microseconds(static_cast<int64_t>(us));
}

uint64_t ShardHealth::CallSent(const std::string& shard, wire::MessageType type,
                               Clock::time_point now) {
  std::lock_guard lock(mu_);
  Entry& e = shards_[shard];
  const uint64_t token = next_token_++;
  const auto delay = IsQuery(type) ? HedgeDelayLocked(e, type)
                                   : std::chrono::microseconds(opt_.hedge_max_ms * 1000ull);
  e.outstanding[token] = {now, now + delay, type};
  ++e.calls;
  if (IsQuery(type)) {
    ++hedgeable_calls_;
    hedge_tokens_ = std::min(opt_.hedge_burst, hedge_tokens_ + opt_.hedge_budget);
  }
  return token;
}

void ShardHealth::CallDone(const std::string& shard, uint64_t token, const Status& status,
                           Clock::time_point now) {
  std::lock_guard lock(mu_);
  Entry& e = shards_[shard];
  auto it = e.outstanding.find(token);
  if (it == e.outstanding.end()) return;
  const Outstanding call = it->second;
  e.outstanding.erase(it);
  if (MeansGone(status)) {
    ++e.failures;
    MarkDownLocked(e, status.ToString(), now);
    return;
  }
  // The shard answered (a result or its own error): it is alive.
  e.last_answer = std::max(e.last_answer, now);
  e.down = false;
  e.probes_missed = 0;
  if (!status.ok()) ++e.failures;
  if (!status.ok() || !IsQuery(call.type)) return;
  const double ms = Ms(now - call.sent);
  Samples& s = e.latency[call.type];
  if (s.ms.size() < Samples::kWindow) {
    s.ms.push_back(ms);
  } else {
    s.ms[s.next] = ms;
  }
  s.next = (s.next + 1) % Samples::kWindow;
  if (++s.added % 16 == 0) s.quantile_ms = Quantile(s.ms, opt_.hedge_quantile);
  e.ewma_ms = e.ewma_ms < 0 ? ms : 0.9 * e.ewma_ms + 0.1 * ms;
}

void ShardHealth::Report(const std::string& shard, const Status& status, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Entry& e = shards_[shard];
  if (MeansGone(status)) {
    MarkDownLocked(e, status.ToString(), now);
  } else {
    e.last_answer = std::max(e.last_answer, now);
    e.down = false;
    e.probes_missed = 0;
  }
}

bool ShardHealth::ProbeDone(const std::string& shard, const Status& status, double rtt_ms,
                            Clock::time_point now) {
  std::lock_guard lock(mu_);
  Entry& e = shards_[shard];
  if (status.ok()) {
    const bool came_back = e.down;
    e.probe_ms = rtt_ms;
    e.probes_missed = 0;
    e.last_answer = std::max(e.last_answer, now);
    e.down = false;
    return came_back;
  }
  if (++e.probes_missed >= static_cast<uint64_t>(std::max(1, opt_.probe_misses_to_down))) {
    MarkDownLocked(e, std::to_string(e.probes_missed) + " probes missed (" + status.ToString() + ")",
                   now);
  }
  return false;
}

ShardState ShardHealth::StateLocked(Entry& e, Clock::time_point now, std::string* reason) const {
  if (e.down && opt_.probe_interval_ms == 0 &&
      now - e.down_since > std::chrono::milliseconds(opt_.retry_after_ms)) {
    e.down = false;  // no probes: give it another chance; the next failure marks it down again
  }
  if (e.down) {
    if (reason) *reason = e.down_reason;
    return ShardState::kDown;
  }
  // The oldest call still out: past its hedge delay with nothing heard from the shard since it
  // was sent (a shard busy with one slow call still answers the others).
  if (!e.outstanding.empty()) {
    const Outstanding& o = e.outstanding.begin()->second;
    if (now > o.slow_at && e.last_answer <= o.sent) {
      if (reason) {
        *reason = "no answer for " + std::to_string(static_cast<int64_t>(Ms(now - o.sent))) +
                  " ms to a call";
      }
      return ShardState::kSlow;
    }
  }
  return ShardState::kUp;
}

ShardState ShardHealth::State(const std::string& shard, Clock::time_point now) {
  std::lock_guard lock(mu_);
  return StateLocked(shards_[shard], now);
}

double ShardHealth::RouteCost(const std::string& shard, Clock::time_point now) {
  std::lock_guard lock(mu_);
  Entry& e = shards_[shard];
  switch (StateLocked(e, now)) {
    case ShardState::kDown:
      return std::numeric_limits<double>::infinity();
    case ShardState::kSlow:
      return 1e12;
    case ShardState::kUp:
      break;
  }
  // Unmeasured shards look as fast as 1 ms, so each gets tried and measured.
  const double latency = e.ewma_ms < 0 ? 1.0 : std::max(e.ewma_ms, 0.01);
  return latency * (1.0 + static_cast<double>(e.outstanding.size()));
}

std::chrono::microseconds ShardHealth::HedgeDelay(const std::string& shard, wire::MessageType type) {
  std::lock_guard lock(mu_);
  return HedgeDelayLocked(shards_[shard], type);
}

bool ShardHealth::TakeHedge(const std::string& shard) {
  std::lock_guard lock(mu_);
  if (!opt_.hedge || hedge_tokens_ < 1.0) return false;
  hedge_tokens_ -= 1.0;
  ++hedges_;
  ++shards_[shard].hedges;
  return true;
}

std::vector<ShardHealthReport> ShardHealth::Reports(Clock::time_point now) {
  std::lock_guard lock(mu_);
  std::vector<ShardHealthReport> out;
  for (auto& [id, e] : shards_) {
    ShardHealthReport r;
    r.shard = id;
    r.state = StateLocked(e, now, &r.reason);
    r.down_for_s = r.state == ShardState::kDown
                       ? std::chrono::duration<double>(now - e.down_since).count()
                       : 0.0;
    r.probe_ms = e.probe_ms;
    r.probes_missed = e.probes_missed;
    std::vector<double> all;
    const Samples* most = nullptr;
    for (const auto& [type, s] : e.latency) {
      all.insert(all.end(), s.ms.begin(), s.ms.end());
      if (!most || s.added > most->added) most = &s;
    }
    r.p50_ms = Quantile(all, 0.5);
    r.p99_ms = Quantile(all, 0.99);
    if (most) {
      for (const auto& [type, s] : e.latency) {
        if (&s == most) r.hedge_delay_ms = HedgeDelayLocked(e, type).count() / 1000.0;
      }
    }
    r.in_flight = e.outstanding.size();
    r.calls = e.calls;
    r.failures = e.failures;
    r.hedges = e.hedges;
    out.push_back(std::move(r));
  }
  return out;
}

uint64_t ShardHealth::hedges() const {
  std::lock_guard lock(mu_);
  return hedges_;
}

uint64_t ShardHealth::hedgeable_calls() const {
  std::lock_guard lock(mu_);
  return hedgeable_calls_;
}

}  // namespace mrl::coord
