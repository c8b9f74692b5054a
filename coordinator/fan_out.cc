#include "coordinator/fan_out.h"

#include <condition_variable>
#include <limits>
#include <memory>
#include <mutex>

namespace mrl::coord {

bool IsRequestError(const Status& s) {
  switch (s.code()) {
    case Status::Code::kInvalidArgument:
    case Status::Code::kNotFound:
    case Status::Code::kOutOfRange:
    case Status::Code::kFailedPrecondition:
    case Status::Code::kAborted:  // stale shard-map epoch: the coordinator refreshes and retries
      return true;
    default:
      return false;
  }
}

double ShardChannels::RouteCost(const std::string& shard) {
  return Healthy(shard) ? 0.0 : std::numeric_limits<double>::infinity();
}

std::chrono::microseconds ShardChannels::HedgeDelay(const std::string&, wire::MessageType) {
  return std::chrono::microseconds::max();
}

bool ShardChannels::TakeHedge(const std::string&) { return false; }

namespace {

using Clock = std::chrono::steady_clock;

// Shared by the caller and the callbacks; a callback that arrives after the caller gave up
// (deadline) or after its target was settled by another replica (a hedge's loser) only reports
// its outcome to the channels.
struct FanOutState {
  ShardChannels* channels = nullptr;
  Clock::time_point deadline;
  std::vector<FanOutTarget> targets;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<FanOutReply> replies;     // guarded by mu
  std::vector<size_t> tried;            // replicas tried per target; guarded by mu
  std::vector<int> in_flight;           // calls out per target; guarded by mu
  std::vector<bool> settled;            // guarded by mu
  std::vector<Clock::time_point> hedge_at;  // when to hedge the target (max: never); guarded by mu
  size_t pending = 0;                   // targets not yet settled; guarded by mu
  bool closed = false;                  // guarded by mu
};

void Settle(FanOutState& st, size_t t) {  // REQUIRES: st.mu held, !st.settled[t]
  st.settled[t] = true;
  if (--st.pending == 0) st.cv.notify_all();
}

// Sends target `t` to its next replica (a hedge: only if one is healthy and the budget allows).
void Send(const std::shared_ptr<FanOutState>& st, size_t t, bool hedge);

void OnReply(const std::shared_ptr<FanOutState>& st, size_t t, const std::string& shard,
             Result<rpc::RawReply> r) {
  st->channels->Report(shard, r.status());
  {
    std::lock_guard lock(st->mu);
    --st->in_flight[t];
    if (st->closed || st->settled[t]) return;  // the caller has gone on, or another replica won
    FanOutReply& reply = st->replies[t];
    if (r.ok()) {
      reply.shard = shard;
      reply.body = std::move(r->body);
      reply.error = Status::Ok();
      Settle(*st, t);
      return;
    }
    reply.failed.push_back(shard);
    if (reply.error.ok()) reply.error = r.status();
    if (IsRequestError(r.status())) {
      Settle(*st, t);
      return;
    }
    if (st->in_flight[t] > 0) return;  // a hedge to another replica is still out
  }
  Send(st, t, /*hedge=*/false);  // the next replica of the group
}

void Send(const std::shared_ptr<FanOutState>& st, size_t t, bool hedge) {
  const FanOutTarget& target = st->targets[t];
  std::string shard;
  bool first = false;
  {
    std::lock_guard lock(st->mu);
    if (st->closed || st->settled[t]) return;
    size_t& i = st->tried[t];
    // After the first replica (tried even when marked down: the map chose it), skip the ones
    // believed down.
    while (i < target.replicas.size() && i > 0 && !st->channels->Healthy(target.replicas[i])) ++i;
    if (i >= target.replicas.size()) {
      if (!hedge && st->in_flight[t] == 0) Settle(*st, t);
      return;
    }
    if (hedge) {
      if (!st->channels->TakeHedge(target.replicas[0])) return;  // charged to the slow one
      st->replies[t].hedged = true;
    }
    first = i == 0;
    shard = target.replicas[i++];
    ++st->in_flight[t];
  }
  const auto now = Clock::now();
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st->deadline - now);
  if (left.count() <= 0) {
    std::lock_guard lock(st->mu);
    --st->in_flight[t];
    if (st->replies[t].error.ok()) st->replies[t].error = Status::DeadlineExceeded("query deadline passed");
    if (!st->settled[t] && st->in_flight[t] == 0) Settle(*st, t);
    return;
  }
  if (first && target.replicas.size() > 1) {
    const auto delay = st->channels->HedgeDelay(shard, target.type);
    std::lock_guard lock(st->mu);
    // max() means never (and would overflow as nanoseconds): compare in microseconds.
    if (delay != std::chrono::microseconds::max() &&
        delay < std::chrono::duration_cast<std::chrono::microseconds>(st->deadline - now)) {
      st->hedge_at[t] = now + delay;
    }
  }
  st->channels->Call(shard, target.type, target.body, static_cast<uint32_t>(left.count()),
                     [st, t, shard](Result<rpc::RawReply> r) { OnReply(st, t, shard, std::move(r)); });
}

}  // namespace

std::vector<FanOutReply> FanOut(ShardChannels& channels, std::vector<FanOutTarget> targets,
                                Clock::time_point deadline) {
  auto st = std::make_shared<FanOutState>();
  st->channels = &channels;
  st->deadline = deadline;
  st->targets = std::move(targets);
  const size_t n = st->targets.size();
  st->replies.resize(n);
  st->tried.assign(n, 0);
  st->in_flight.assign(n, 0);
  st->settled.assign(n, false);
  st->hedge_at.assign(n, Clock::time_point::max());
  st->pending = n;
  for (size_t t = 0; t < n; ++t) Send(st, t, /*hedge=*/false);
  // A channel's own deadline timer answers each call by `deadline`; the extra moment covers its
  // callback's way back here before the stage gives up on it.
  const Clock::time_point give_up = deadline + std::chrono::milliseconds(5);
  std::unique_lock lock(st->mu);
  while (st->pending > 0) {
    const auto now = Clock::now();
    if (now >= give_up) break;
    // Hedge every unsettled target whose first call is past its hedge delay (once each).
    std::vector<size_t> due;
    Clock::time_point wake = give_up;
    for (size_t t = 0; t < n; ++t) {
      if (st->settled[t] || st->hedge_at[t] == Clock::time_point::max()) continue;
      if (st->hedge_at[t] <= now) {
        due.push_back(t);
        st->hedge_at[t] = Clock::time_point::max();
      } else {
        wake = std::min(wake, st->hedge_at[t]);
      }
    }
    if (!due.empty()) {
      lock.unlock();
      for (size_t t : due) Send(st, t, /*hedge=*/true);
      lock.lock();
      continue;
    }
    st->cv.wait_until(lock, wake);
  }
  st->closed = true;
  for (FanOutReply& r : st->replies) {
    if (!r.shard && r.error.ok()) r.error = Status::DeadlineExceeded("query deadline passed");
  }
  return std::move(st->replies);
}

Result<std::vector<std::vector<ScoredId>>> ReadLists(wire::MessageType type,
                                                     const std::vector<uint8_t>& body, size_t n) {
  const flatbuffers::Vector<flatbuffers::Offset<wire::CandidateList>>* results = nullptr;
  switch (type) {
    case wire::MessageType::ShortlistRequest:
      results = wire::RootAs<wire::ShortlistResponse>(body)->results();
      break;
    case wire::MessageType::RerankRequest:
      results = wire::RootAs<wire::RerankResponse>(body)->results();
      break;
    case wire::MessageType::SearchRequest:
      results = wire::RootAs<wire::SearchResponse>(body)->results();
      break;
    default:
      return Status::Internal("ReadLists: not a candidate-list request type");
  }
  const size_t got = results ? results->size() : 0;
  if (got != n) {
    return Status::Corruption("answered " + std::to_string(got) + " result lists for " +
                              std::to_string(n) + " queries");
  }
  std::vector<std::vector<ScoredId>> out(n);
  for (size_t i = 0; i < n; ++i) {
    const wire::CandidateList* list = results->Get(static_cast<flatbuffers::uoffset_t>(i));
    if (list == nullptr || list->candidates() == nullptr) continue;
    out[i].reserve(list->candidates()->size());
    for (const wire::Candidate* c : *list->candidates()) out[i].push_back({c->id(), c->score()});
  }
  return out;
}

}  // namespace mrl::coord
