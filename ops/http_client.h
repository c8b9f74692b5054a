// mrlctl's clients: one keep-alive HTTP/1.1 connection to the coordinator's JSON API, and the
// address of its binary API (rpc::RpcClient, the same client the shards' callers use).
//
// Thread safety: an HttpClient is used by one thread at a time.
#pragma once

// Only the verb enum of Boost.Beast here: the connection lives in the .cc (Impl), so the files
// that use the client do not compile Asio and Beast (each costs tens of seconds on 2 cores).
#include <boost/beast/http/verb.hpp>
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
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

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
  struct Impl;  // the io_context and the kept-alive stream
  std::unique_ptr<Impl> impl_;
};

// "host:port" -> client options; InvalidArgument otherwise.
Result<rpc::ClientOptions> BinaryClientOptions(const std::string& address);

}  // namespace mrl::ops
