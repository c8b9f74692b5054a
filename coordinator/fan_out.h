// One query stage's calls to the shards, completed through the channels' callbacks (no thread
// per call, issue 13 item 4). Every target (one replica group's part of the stage) is sent to
// its first replica; a failure that is not the request's own fault moves it to the next healthy
// replica of its group; a call with no answer after the channel's hedge delay for that shard is
// also sent to the next healthy replica when the hedge budget allows (issue 20 item 3: the first
// answer wins, the other is ignored); the stage ends when every target has an answer or has run
// out of replicas, or at the deadline, keeping whatever arrived by then (a late target is
// reported timed out and its buckets count as uncovered).
//
// Replies stay the verified frame bodies the channel delivered: callers read them in place
// through FlatBuffers accessors (ReadLists), with no object-API copies.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/protocol.h"
#include "common/status.h"
#include "coordinator/query_plan.h"
#include "rpc/client.h"

namespace mrl::coord {

// Where calls to a shard go: a ShardPool's RpcClients, or, in tests, a handler in the process.
// Thread safety: every method may be called from any thread, callbacks included.
class ShardChannels {
 public:
  virtual ~ShardChannels() = default;
  virtual bool Healthy(const std::string& shard) = 0;
  // The outcome of a call: failures that mean "the shard is gone" mark it down.
  virtual void Report(const std::string& shard, const Status& status) = 0;
  // Sends one request body of `type`; `done` runs exactly once, on a channel thread, with the
  // verified response body or the error. It must not block.
  virtual void Call(const std::string& shard, wire::MessageType type, std::vector<uint8_t> body,
                    uint32_t deadline_ms, rpc::RpcClient::Callback done) = 0;
  // Which replica to ask: lower is better; infinity = do not ask. Default: 0 when Healthy.
  virtual double RouteCost(const std::string& shard);
  // After how long an unanswered call of `type` to `shard` is hedged to another replica
  // (max() = never, the default), and whether the hedge budget allows one now (spends it).
  virtual std::chrono::microseconds HedgeDelay(const std::string& shard, wire::MessageType type);
  virtual bool TakeHedge(const std::string& shard);
};

struct FanOutTarget {
  std::vector<std::string> replicas;  // in order of preference; after the first, unhealthy ones
                                      // are skipped
  wire::MessageType type = wire::MessageType::Invalid;
  std::vector<uint8_t> body;
};

struct FanOutReply {
  std::optional<std::string> shard;  // the replica that answered
  std::vector<uint8_t> body;         // its verified response body
  Status error;                      // when none answered: the first failure (or the deadline)
  std::vector<std::string> failed;   // replicas whose call failed
  bool hedged = false;               // a hedge was sent for it
};

// Errors that say the request itself is wrong: every replica would say the same.
bool IsRequestError(const Status& s);

// Runs the calls and blocks until every target is settled or `deadline`.
std::vector<FanOutReply> FanOut(ShardChannels& channels, std::vector<FanOutTarget> targets,
                                std::chrono::steady_clock::time_point deadline);

// The result lists of a Shortlist, Rerank or Search response body (the same shape: one
// CandidateList per query), read in place. Corruption unless it holds `n` lists.
Result<std::vector<std::vector<ScoredId>>> ReadLists(wire::MessageType type,
                                                     const std::vector<uint8_t>& body, size_t n);

}  // namespace mrl::coord
