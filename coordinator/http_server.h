// The coordinator's HTTP/1.1 front door (Boost.Beast): keep-alive connections on one I/O
// thread, request bodies bounded by max_body_bytes, and every handler run on a worker pool so
// a slow query never blocks the sockets; optionally TLS (OpenSSL) on every connection. Routing
// and JSON live in the handler (HttpApi::Handle, http_api.h).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"

namespace mrl::coord {

struct HttpRequest {
  std::string method;  // "GET", "POST", ...
  std::string target;  // path without the query string
  std::string query;   // after '?', may be empty
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

struct HttpServerOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;  // 0: the OS picks; see port()
  int threads = 0;    // handler pool; 0 = hardware concurrency
  uint64_t max_body_bytes = 64ull << 20;
  uint32_t idle_timeout_ms = 60000;
  // Both set: HTTPS only (TLS 1.2+, PEM certificate chain and private key); both empty: HTTP.
  std::string tls_cert_file;
  std::string tls_key_file;
};

class HttpServer {
 public:
  using Handler = std::function<HttpResponse(const HttpRequest&)>;
  HttpServer(HttpServerOptions options, Handler handler);
  ~HttpServer();
  Status Start();
  uint16_t port() const;
  bool tls() const;  // after Start
  // Stops accepting, lets handlers in flight finish, closes connections, joins threads.
  void Shutdown();

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace mrl::coord
