// The coordinator's HTTP/JSON API (docs/api.md): routes, bearer tokens, request parsing and
// response JSON, over the Coordinator. Each request takes one cluster snapshot for all it does.
// Every request is counted per endpoint and HTTP status in the coordinator's metrics.
//
// Tokens: with neither token configured every request is served; otherwise GETs, searches and
// point reads need the read or the admin token, everything else the admin token.
//
// Thread safety: Handle may be called concurrently.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "coordinator/coordinator.h"
#include "coordinator/http_server.h"

namespace mrl::coord {

class HttpApi {
 public:
  explicit HttpApi(Coordinator& coordinator) : c_(coordinator), opt_(coordinator.options()) {}

  HttpResponse Handle(const HttpRequest& request);

 private:
  HttpResponse Route(const HttpRequest& request, std::string* endpoint);
  // /v1/cluster/{groups,rebalance,drain} and /v1/moves: cluster changes and bucket moves.
  HttpResponse ClusterChange(const HttpRequest& request, const nlohmann::json& body,
                             std::string* endpoint);
  // The bodies of the two routes that do most: both decide everything on one snapshot.
  Result<nlohmann::json> Upsert(const ClusterSnapshot& snap, const std::string& collection,
                                const nlohmann::json& body, uint32_t deadline_ms);
  Result<nlohmann::json> Search(const ClusterSnapshot& snap, const std::string& collection,
                                const nlohmann::json& body, uint32_t deadline_ms);

  Coordinator& c_;
  const CoordinatorOptions& opt_;
};

}  // namespace mrl::coord
