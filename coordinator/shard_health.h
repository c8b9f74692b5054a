// What the coordinator believes about each shard's health and speed, from the outcomes of its
// calls and of a periodic probe (issue 20 items 2 and 3), with no sockets: a plain class the pool
// feeds and the query path asks. It decides
//   - whether a shard may be asked at all (Usable): not after its connection failed, a call to
//     it ran out of time, or it missed `probe_misses_to_down` probes in a row; usable again on
//     its next answered probe or call (or, with probes off, after retry_after_ms);
//   - which replica a query should go to (RouteCost): measured latency x (1 + calls in flight),
//     and a shard that has answered nothing since a call to it passed that call's hedge delay is
//     "slow" and asked only when no other member of its group is usable;
//   - after how long a call is hedged to another replica (HedgeDelay: a high quantile of the
//     shard's recent latencies for that request type, clamped), and whether the hedge budget
//     allows it (TakeHedge: a token bucket refilled by a fraction of each call).
//
// Thread safety: every method may be called from any thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"

namespace mrl::coord {

struct ShardHealthOptions {
  // A Ping every probe_interval_ms on each shard's own probe connection, answered within
  // probe_timeout_ms; 0 = no probes (a shard marked down is then retried after retry_after_ms).
  uint32_t probe_interval_ms = 250;
  uint32_t probe_timeout_ms = 500;
  int probe_misses_to_down = 2;
  uint32_t retry_after_ms = 2000;
  // Hedged reads: a query call with no answer after the hedge delay (the shard's
  // hedge_quantile latency for that request type over its last samples, within
  // [hedge_min_ms, hedge_max_ms]; hedge_max_ms until enough samples) is also sent to another
  // replica; at most hedge_budget hedges per call over time, hedge_burst at once.
  bool hedge = true;
  double hedge_quantile = 0.99;
  uint32_t hedge_min_ms = 3;
  uint32_t hedge_max_ms = 100;
  double hedge_budget = 0.05;
  double hedge_burst = 10;
};

enum class ShardState {
  kUp,
  kSlow,  // a call is past its hedge delay and the shard has answered nothing since it was sent
  kDown,  // its connection failed, a call timed out, or it missed its probes
};
const char* ShardStateName(ShardState s);

struct ShardHealthReport {
  std::string shard;
  ShardState state = ShardState::kUp;
  std::string reason;         // why it is down or slow ("" when up)
  double down_for_s = 0;      // since it was marked down (0 when up)
  double probe_ms = -1;       // last answered probe's round trip (-1: none yet)
  uint64_t probes_missed = 0;  // in a row
  double p50_ms = -1, p99_ms = -1;  // over its recent query calls of every type
  double hedge_delay_ms = -1;       // for its most frequent query type
  uint64_t in_flight = 0;
  uint64_t calls = 0, failures = 0, hedges = 0;  // hedges: calls of this shard's that were hedged
};

class ShardHealth {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ShardHealth(ShardHealthOptions options)
      : opt_(std::move(options)), hedge_tokens_(opt_.hedge_burst) {}
  const ShardHealthOptions& options() const { return opt_; }

  // A call to `shard` is being sent; pass the returned token to CallDone.
  uint64_t CallSent(const std::string& shard, wire::MessageType type, Clock::time_point now);
  // Its outcome: any answer from the shard (success or an error it sent) means it is alive;
  // Unavailable or DeadlineExceeded mark it down.
  void CallDone(const std::string& shard, uint64_t token, const Status& status,
                Clock::time_point now);
  // A failure seen outside a tracked call (e.g. a write path's own client call).
  void Report(const std::string& shard, const Status& status, Clock::time_point now);
  // Returns true when an answered probe brings back a shard that was down.
  bool ProbeDone(const std::string& shard, const Status& status, double rtt_ms,
                 Clock::time_point now);

  ShardState State(const std::string& shard, Clock::time_point now);
  bool Usable(const std::string& shard, Clock::time_point now) {
    return State(shard, now) != ShardState::kDown;
  }
  // Lower is better; infinity when not usable; a slow shard costs more than any usable one.
  double RouteCost(const std::string& shard, Clock::time_point now);
  // When a call of `type` to `shard` that has not answered should be hedged.
  std::chrono::microseconds HedgeDelay(const std::string& shard, wire::MessageType type);
  // Spends one hedge from the budget; false when it is empty (or hedging is off).
  bool TakeHedge(const std::string& shard);

  std::vector<ShardHealthReport> Reports(Clock::time_point now);
  uint64_t hedges() const;
  uint64_t hedgeable_calls() const;

 private:
  struct Samples {  // the last kWindow latencies of one request type, and their cached quantile
    static constexpr size_t kWindow = 256;
    std::vector<double> ms;
    size_t next = 0;
    uint64_t added = 0;
    double quantile_ms = -1;  // recomputed every 16 samples
  };
  struct Outstanding {
    Clock::time_point sent;
    Clock::time_point slow_at;  // sent + the hedge delay at the time
    wire::MessageType type;
  };
  struct Entry {
    std::map<uint64_t, Outstanding> outstanding;  // by token: the oldest first
    Clock::time_point last_answer{};              // any answer from the shard
    bool down = false;
    std::string down_reason;
    Clock::time_point down_since{};
    uint64_t probes_missed = 0;
    double probe_ms = -1;
    std::map<wire::MessageType, Samples> latency;
    double ewma_ms = -1;  // over every query call's latency
    uint64_t calls = 0, failures = 0, hedges = 0;
  };
  static bool IsQuery(wire::MessageType type);
  std::chrono::microseconds HedgeDelayLocked(Entry& e, wire::MessageType type) const;
  ShardState StateLocked(Entry& e, Clock::time_point now, std::string* reason = nullptr) const;
  void MarkDownLocked(Entry& e, const std::string& reason, Clock::time_point now);

  const ShardHealthOptions opt_;
  mutable std::mutex mu_;
  std::map<std::string, Entry> shards_;
  uint64_t next_token_ = 1;
  double hedge_tokens_;  // the budget: +hedge_budget per query call, -1 per hedge
  uint64_t hedges_ = 0, hedgeable_calls_ = 0;
};

}  // namespace mrl::coord
