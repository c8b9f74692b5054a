#include "meta/etcd_http.h"

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it (Boost 1.74, C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

namespace mrl::meta::etcd_http {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

std::pair<std::string, std::string> HostPort(const std::string& endpoint) {
  const size_t colon = endpoint.rfind(':');
  return {endpoint.substr(0, colon), endpoint.substr(colon + 1)};
}

namespace {

// One HTTP/1.1 connection with its own io_context, so every step has a deadline (run_for).
struct Conn {
  asio::io_context io;
  beast::tcp_stream stream{io};
  bool connected = false;
};

// Runs `start(done)` on c's io_context for at most timeout_ms; false on timeout (the socket is
// closed and the operation cancelled).
template <typename Start>
bool RunFor(Conn& c, int timeout_ms, Start&& start) {
  bool finished = false;
  c.io.restart();
  start([&finished] { finished = true; });
  c.io.run_for(std::chrono::milliseconds(timeout_ms));
  if (finished) return true;
  beast::error_code ignored;
  c.stream.socket().close(ignored);
  c.io.restart();
  c.io.run();  // the cancelled handler runs (and sets `finished`): still a timeout
  c.connected = false;
  return false;
}

Result<std::string> PostOn(Conn& c, const std::string& endpoint, const std::string& path,
                           const std::string& body, int timeout_ms, int* http_status) {
  const auto [host, port] = HostPort(endpoint);
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left = [&] {
    return std::max<int>(1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - Clock::now())
                                                 .count()));
  };
  beast::error_code ec;
  if (!c.connected) {
    tcp::resolver resolver(c.io);
    auto endpoints = resolver.resolve(host, port, ec);
    if (ec) return Status::Unavailable("resolve " + endpoint + ": " + ec.message());
    if (!RunFor(c, left(), [&](auto done) {
          c.stream.async_connect(endpoints, [&, done](beast::error_code e, const tcp::endpoint&) {
            ec = e;
            done();
          });
        })) {
      return Status::Unavailable("connect " + endpoint + ": timed out");
    }
    if (ec) return Status::Unavailable("connect " + endpoint + ": " + ec.message());
    c.connected = true;
  }
  http::request<http::string_body> req{http::verb::post, path, 11};
  req.set(http::field::host, host);
  req.set(http::field::content_type, "application/json");
  req.keep_alive(true);
  req.body() = body;
  req.prepare_payload();
  beast::flat_buffer buf;
  http::response_parser<http::string_body> parser;
  parser.body_limit(64u << 20);
  const bool ok = RunFor(c, left(), [&](auto done) {
    http::async_write(c.stream, req, [&, done](beast::error_code e, size_t) {
      if (e) {
        ec = e;
        return done();
      }
      http::async_read(c.stream, buf, parser, [&, done](beast::error_code e2, size_t) {
        ec = e2;
        done();
      });
    });
  });
  if (!ok)
    return Status::Unavailable(endpoint + path + ": no answer in " + std::to_string(timeout_ms) +
                               " ms");
  if (ec) {
    c.connected = false;
    beast::error_code ignored;
    c.stream.socket().close(ignored);
    return Status::Unavailable(endpoint + path + ": " + ec.message());
  }
  auto res = parser.release();
  if (!res.keep_alive()) {
    c.connected = false;
    beast::error_code ignored;
    c.stream.socket().close(ignored);
  }
  *http_status = static_cast<int>(res.result_int());
  return std::move(res.body());
}

// Connections kept alive per endpoint, shared by every store in the process.
class Pool {
 public:
  std::unique_ptr<Conn> Take(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[endpoint];
    if (idle.empty()) return std::make_unique<Conn>();
    auto c = std::move(idle.back());
    idle.pop_back();
    return c;
  }
  void Give(const std::string& endpoint, std::unique_ptr<Conn> c) {
    if (!c->connected) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto& idle = idle_[endpoint];
    if (idle.size() < 8) idle.push_back(std::move(c));
  }

 private:
  std::mutex mu_;
  std::map<std::string, std::vector<std::unique_ptr<Conn>>> idle_;
};

Pool& ConnPool() {
  static Pool* pool = new Pool;  // never destroyed: stores may outlive static destruction order
  return *pool;
}

}  // namespace

Result<std::string> Post(const std::string& endpoint, const std::string& path,
                         const std::string& body, int timeout_ms, int* http_status) {
  auto conn = ConnPool().Take(endpoint);
  auto text = PostOn(*conn, endpoint, path, body, timeout_ms, http_status);
  ConnPool().Give(endpoint, std::move(conn));  // kept only while still connected
  return text;
}

}  // namespace mrl::meta::etcd_http
