// The coordinator's binary API: the serving protocol (docs/protocol.md) on its own port, for
// high-throughput clients. It speaks exactly the frames a shard speaks, so rpc::RpcClient is its
// client library: Search (explicit stages, a budget by name, exact, one-trip; many queries per
// request; answers carry coverage), Upsert / Delete / Get (routed and replicated as over HTTP),
// DescribeCollection, Stats and Ping. Frames are verified, deadlines and back-pressure enforced
// and peers authenticated by the network layer that serves it (rpc::Server, as on a shard).
#pragma once

#include <chrono>
#include <span>
#include <vector>

#include "coordinator/coordinator.h"
#include "rpc/frame_handler.h"

namespace mrl::coord {

class BinaryApi : public rpc::FrameHandler {
 public:
  // Limits and the default deadline are the coordinator's options.
  explicit BinaryApi(Coordinator& coordinator)
      : c_(coordinator),
        deadline_ms_(coordinator.options().default_deadline_ms),
        max_k_(coordinator.options().max_k),
        max_queries_(coordinator.options().max_queries) {}

  // Clients do not route by the shard map: the context's epoch is ignored.
  Result<std::vector<uint8_t>> Handle(wire::MessageType type, std::span<const uint8_t> body,
                                      const rpc::RequestContext& context) override;

 private:
  // handler(snapshot, req) on one snapshot of the cluster (Coordinator::WithSnapshot), the
  // collection named by (req.*collection)().
  template <typename Req>
  Result<std::vector<uint8_t>> OnOneSnapshot(
      const Req& req, const flatbuffers::String* (Req::*collection)() const,
      Result<std::vector<uint8_t>> (BinaryApi::*handler)(const ClusterSnapshot&, const Req&)) {
    const std::string name = (req.*collection)() ? (req.*collection)()->str() : std::string();
    return c_.WithSnapshot(
        name, [&](const ClusterSnapshot& snap) { return (this->*handler)(snap, req); });
  }

  // Each decides on the one snapshot it is given.
  Result<std::vector<uint8_t>> Search(const ClusterSnapshot& snap, const wire::SearchRequest& req);
  Result<std::vector<uint8_t>> Upsert(const ClusterSnapshot& snap, const wire::UpsertRequest& req);
  Result<std::vector<uint8_t>> Delete(const ClusterSnapshot& snap, const wire::DeleteRequest& req);
  Result<std::vector<uint8_t>> Get(const ClusterSnapshot& snap, const wire::GetRequest& req);
  Result<std::vector<uint8_t>> Describe(const ClusterSnapshot& snap,
                                        const wire::DescribeCollectionRequest& req);
  Result<std::vector<uint8_t>> Stats(const rpc::ServerMetrics* server);

  Coordinator& c_;
  uint32_t deadline_ms_;
  int32_t max_k_;
  int32_t max_queries_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

}  // namespace mrl::coord
