#include "coordinator/owner_state.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <nlohmann/json.hpp>

namespace mrl::coord {

namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

std::string OwnerStateJson(const meta::ReadResult& state) {
  json kvs = json::array();
  for (const meta::KeyValue& kv : state.kvs) {
    kvs.push_back({{"key", kv.key},
                   {"value", kv.value},
                   {"create_revision", kv.create_revision},
                   {"mod_revision", kv.mod_revision},
                   {"version", kv.version},
                   {"lease", kv.lease}});
  }
  return json{{"revision", state.revision}, {"kvs", kvs}}.dump();
}

Result<meta::ReadResult> ParseOwnerState(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("the owner's state is not a JSON object");
  try {
    meta::ReadResult r;
    r.revision = j.at("revision").get<int64_t>();
    for (const json& e : j.at("kvs")) {
      meta::KeyValue kv;
      kv.key = e.at("key").get<std::string>();
      kv.value = e.at("value").get<std::string>();
      kv.create_revision = e.at("create_revision").get<int64_t>();
      kv.mod_revision = e.at("mod_revision").get<int64_t>();
      kv.version = e.at("version").get<int64_t>();
      kv.lease = e.at("lease").get<int64_t>();
      r.kvs.push_back(std::move(kv));
    }
    return r;
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("the owner's state: ") + e.what());
  }
}

Result<meta::ReadResult> FetchOwnerState(const std::string& url, const std::string& token,
                                         int timeout_ms) {
  if (!url.starts_with("http://")) {
    return Status::InvalidArgument("--follow-url wants http://host:port, got '" + url + "'");
  }
  std::string hostport = url.substr(7);
  while (!hostport.empty() && hostport.back() == '/') hostport.pop_back();
  const size_t colon = hostport.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("--follow-url has no port: '" + url + "'");
  const std::string host = hostport.substr(0, colon), port = hostport.substr(colon + 1);
  const std::string who = "the owner coordinator at " + url;
  // Asynchronous steps on a private io_context run for the time left: a sync call on a
  // tcp_stream ignores its expiry, and a host whose link is cut never answers a SYN.
  try {
    boost::asio::io_context io;
    beast::tcp_stream stream(io);
    boost::asio::ip::tcp::resolver resolver(io);
    http::request<http::empty_body> req{http::verb::get, "/v1/meta/state", 11};
    req.set(http::field::host, hostport);
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(256u << 20);
    beast::error_code failed;
    bool done = false;
    auto fail = [&](const char* step, beast::error_code ec) {
      failed = ec;
      done = true;
      (void)step;
    };
    stream.expires_after(std::chrono::milliseconds(timeout_ms));
    resolver.async_resolve(host, port, [&](beast::error_code ec, boost::asio::ip::tcp::resolver::results_type eps) {
      if (ec) return fail("resolve", ec);
      stream.async_connect(eps, [&](beast::error_code ec2, const auto&) {
        if (ec2) return fail("connect", ec2);
        http::async_write(stream, req, [&](beast::error_code ec3, size_t) {
          if (ec3) return fail("write", ec3);
          http::async_read(stream, buffer, parser, [&](beast::error_code ec4, size_t) {
            if (ec4) return fail("read", ec4);
            done = true;
          });
        });
      });
    });
    io.run_for(std::chrono::milliseconds(timeout_ms + 100));
    if (!done) return Status::Unavailable(who + ": no answer within " + std::to_string(timeout_ms) + " ms");
    if (failed) return Status::Unavailable(who + ": " + failed.message());
    beast::error_code ignored;
    stream.socket().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    const auto& res = parser.get();
    if (res.result_int() == 401 || res.result_int() == 403) {
      return Status::Unauthenticated(who + " refused the token (" + std::to_string(res.result_int()) +
                                     "): give --follow-token-file a read or admin token of it");
    }
    if (res.result_int() != 200) {
      return Status::Unavailable(who + " answered " + std::to_string(res.result_int()) + ": " + res.body());
    }
    return ParseOwnerState(res.body());
  } catch (const std::exception& e) {
    return Status::Unavailable(who + ": " + e.what());
  }
}

}  // namespace mrl::coord
