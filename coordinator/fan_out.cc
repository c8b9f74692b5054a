#include "coordinator/fan_out.h"

#include <condition_variable>
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

namespace {

using Clock = std::chrono::steady_clock;

// Shared by the caller and the callbacks; a callback that arrives after the caller gave up
// (deadline) finds `closed` and only drops its answer.
struct FanOutState {
  ShardChannels* channels = nullptr;
  Clock::time_point deadline;
  std::vector<FanOutTarget> targets;
  std::mutex mu;
  std::condition_variable cv;
  std::vector<FanOutReply> replies;  // guarded by mu
  std::vector<size_t> tried;         // replicas tried per target; guarded by mu
  size_t pending = 0;                // targets not yet settled; guarded by mu
  bool closed = false;               // guarded by mu
};

void Settle(FanOutState& st) {  // REQUIRES: st.mu held
  if (--st.pending == 0) st.cv.notify_all();
}

void Send(const std::shared_ptr<FanOutState>& st, size_t t);

void OnReply(const std::shared_ptr<FanOutState>& st, size_t t, const std::string& shard,
             Result<rpc::RawReply> r) {
  {
    std::lock_guard lock(st->mu);
    if (st->closed) return;  // the caller has gone on without it
  }
  st->channels->Report(shard, r.status());
  {
    std::lock_guard lock(st->mu);
    if (st->closed) return;
    FanOutReply& reply = st->replies[t];
    if (r.ok()) {
      reply.shard = shard;
      reply.body = std::move(r->body);
      reply.error = Status::Ok();
      Settle(*st);
      return;
    }
    reply.failed.push_back(shard);
    if (reply.error.ok()) reply.error = r.status();
    if (IsRequestError(r.status())) {
      Settle(*st);
      return;
    }
  }
  Send(st, t);  // the next replica of the group
}

void Send(const std::shared_ptr<FanOutState>& st, size_t t) {
  const FanOutTarget& target = st->targets[t];
  std::string shard;
  {
    std::lock_guard lock(st->mu);
    if (st->closed) return;
    size_t& i = st->tried[t];
    // After the first replica (tried even when marked down: the map chose it), skip the ones
    // believed down.
    while (i < target.replicas.size() && i > 0 && !st->channels->Healthy(target.replicas[i])) ++i;
    if (i >= target.replicas.size()) {
      Settle(*st);
      return;
    }
    shard = target.replicas[i++];
  }
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(st->deadline - Clock::now());
  if (left.count() <= 0) {
    std::lock_guard lock(st->mu);
    if (st->replies[t].error.ok()) st->replies[t].error = Status::DeadlineExceeded("query deadline passed");
    Settle(*st);
    return;
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
  st->pending = n;
  for (size_t t = 0; t < n; ++t) Send(st, t);
  std::unique_lock lock(st->mu);
  // A channel's own deadline timer answers each call by `deadline`; the extra moment covers its
  // callback's way back here before the stage gives up on it.
  st->cv.wait_until(lock, deadline + std::chrono::milliseconds(5), [&] { return st->pending == 0; });
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
