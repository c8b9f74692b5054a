// mrlctl's clients: one keep-alive HTTP/1.1 connection to the coordinator's JSON API, and the
// address of its binary API (rpc::RpcClient, the same client the shards' callers use).
//
// Thread safety: an HttpClient is used by one thread at a time.
#pragma once

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it (Boost 1.74, C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "common/status.h"
#include "rpc/client.h"

namespace mrl::ops {

struct HttpReply {
  int status = 0;  // 0: the server could not be reached
  std::string body;
};

class HttpClient {
 public:
  // url: "http://host:port" (a path is ignored); token: sent as "Authorization: Bearer".
  HttpClient(const std::string& url, std::string token);

  // One request; reconnects once when the kept-alive connection has gone.
  HttpReply Call(boost::beast::http::verb verb, const std::string& path, const std::string& body);
  // The same, as a Status: Unavailable when unreachable; the HTTP status and the server's message
  // (prefixed with `what`) otherwise; the parsed body on 200. A 409 naming the leader (a change
  // sent to a coordinator that does not lead) is sent again to the leader, once, with a line on
  // stderr. `refusal`, when given, receives the parsed body of a non-200 answer (null if none):
  // a refusal may say what was done before it (a rebalance's moves already started).
  Result<nlohmann::json> CallJson(boost::beast::http::verb verb, const std::string& path,
                                  const std::string& body, const std::string& what,
                                  nlohmann::json* refusal = nullptr);

 private:
  std::string host_, port_;
  std::string token_;
  boost::asio::io_context io_;
  std::unique_ptr<boost::beast::tcp_stream> stream_;
};

// "host:port" -> client options; InvalidArgument otherwise.
Result<rpc::ClientOptions> BinaryClientOptions(const std::string& address);

}  // namespace mrl::ops
