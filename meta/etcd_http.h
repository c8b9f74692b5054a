// etcd's JSON gateway over HTTP/1.1 (Boost.Beast): one POST with a deadline on every step
// (connect, write, read: each connection has its own io_context, run for the time left), over
// connections kept alive per endpoint and shared by every store of the process.
#pragma once

#include <string>
#include <utility>

#include "common/status.h"

namespace mrl::meta::etcd_http {

// "host:port" -> {host, port}.
std::pair<std::string, std::string> HostPort(const std::string& endpoint);

// POSTs `body` (JSON) to http://endpoint/path: the answer's body and *http_status; Unavailable
// on a transport error or when no answer came within timeout_ms.
Result<std::string> Post(const std::string& endpoint, const std::string& path,
                         const std::string& body, int timeout_ms, int* http_status);

}  // namespace mrl::meta::etcd_http
