// etcd's JSON gateway over HTTP/1.1 or HTTPS (Boost.Beast, OpenSSL): one POST with a deadline on
// every step (connect, TLS handshake, write, read: each connection has its own io_context, run
// for the time left), over connections kept alive per endpoint; and the streaming POST a watch
// reads line by line.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "common/status.h"
#include "meta/etcd_tls_files.h"

namespace mrl::meta::etcd_http {

// "host:port" -> {host, port}.
std::pair<std::string, std::string> HostPort(const std::string& endpoint);

struct Request {
  std::string path;           // "/v3/kv/range"
  std::string body;           // JSON
  std::string authorization;  // etcd's auth token, sent as the Authorization header ("": none)
};

// Lets another thread end a blocking PostStream: Cancel() shuts its socket down, and a
// PostStream begun after Cancel() returns at once. Thread-safe.
class StreamCancel {
 public:
  void Cancel();
  bool cancelled() const;

 private:
  friend class Client;
  bool Attach(int fd);  // false when already cancelled
  void Detach();
  mutable std::mutex mu_;
  bool cancelled_ = false;  // guarded by mu_
  int fd_ = -1;             // guarded by mu_: the socket being read
};

// Connections to etcd endpoints. Thread-safe; one exchange per connection at a time, idle
// connections kept (up to 8 per endpoint) for the next call.
class Client {
 public:
  // Plain HTTP. One client for the process: every plain store shares its idle connections.
  static std::shared_ptr<Client> Plain();
  // HTTPS: each server's certificate must chain to a CA of files.ca_file and name the host or IP
  // address dialled; files.cert_file/key_file are presented when given. The files are loaded now
  // (InvalidArgument naming the one that does not). Its connections are its own.
  static Result<std::shared_ptr<Client>> Tls(const etcd_tls::TlsFiles& files);
  ~Client();

  bool tls() const;

  // POSTs the request to `endpoint`: the answer's body and *http_status. Unavailable on a
  // transport or TLS error ("etcd 127.0.0.1:2379: TLS handshake failed: certificate verify
  // failed: ...") or when no answer came within timeout_ms.
  Result<std::string> Post(const std::string& endpoint, const Request& request, int timeout_ms,
                           int* http_status);

  // POSTs the request on a connection of its own (connecting and the TLS handshake within
  // timeout_ms; the stream itself has no deadline) and hands each non-blank line of a 200
  // answer's body to on_line. Returns the first non-ok status on_line returns, Ok when `cancel`
  // ended it, else Unavailable (transport or TLS error, another HTTP status, the stream ended).
  Status PostStream(const std::string& endpoint, const Request& request, int timeout_ms,
                    StreamCancel* cancel, const std::function<Status(const std::string&)>& on_line);

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mrl::meta::etcd_http
