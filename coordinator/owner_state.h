// A follower coordinator on another host reads the cluster state from the coordinator that owns
// it (issue 16 item 5): GET /v1/meta/state on the owner's HTTP API answers every key of its
// metadata store with the store's revision, and FetchOwnerState reads that answer into what the
// follower's ClusterState rebuilds its snapshot from (the same keys a store read gives).
//
// The answer: {"revision": R, "kvs": [{"key", "value", "create_revision", "mod_revision",
// "version", "lease"}, ...]} (values are the stored JSON texts, as strings).
#pragma once

#include <string>

#include "common/status.h"
#include "meta/store.h"

namespace mrl::coord {

// The JSON text of `state` (the owner's side).
std::string OwnerStateJson(const meta::ReadResult& state);
// Parses it. Corruption naming what is missing.
Result<meta::ReadResult> ParseOwnerState(const std::string& text);

// GETs `url` + "/v1/meta/state" (url: http://host:port; https is not supported here) with
// "Authorization: Bearer <token>" when a token is given, within timeout_ms. Unavailable when the
// owner does not answer (naming it), PermissionDenied-style errors as Unauthenticated.
Result<meta::ReadResult> FetchOwnerState(const std::string& url, const std::string& token,
                                         int timeout_ms);

}  // namespace mrl::coord
