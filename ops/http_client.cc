#include "ops/http_client.h"

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it (Boost 1.74, C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <iostream>

namespace mrl::ops {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;

struct HttpClient::Impl {
  asio::io_context io;
  std::unique_ptr<beast::tcp_stream> stream;
};

HttpClient::~HttpClient() = default;

HttpClient::HttpClient(const std::string& url, std::string token)
    : host_("127.0.0.1"), port_("8080"), token_(std::move(token)), impl_(std::make_unique<Impl>()) {
  const size_t scheme = url.find("://");
  std::string rest = url.substr(scheme == std::string::npos ? 0 : scheme + 3);
  if (auto slash = rest.find('/'); slash != std::string::npos) rest = rest.substr(0, slash);
  const size_t colon = rest.rfind(':');
  host_ = rest.substr(0, colon);
  if (colon != std::string::npos) port_ = rest.substr(colon + 1);
}

HttpReply HttpClient::Call(http::verb verb, const std::string& path, const std::string& body) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    try {
      auto& stream = impl_->stream;
      if (!stream) {
        stream = std::make_unique<beast::tcp_stream>(impl_->io);
        asio::ip::tcp::resolver resolver(impl_->io);
        stream->connect(resolver.resolve(host_, port_));
        stream->socket().set_option(asio::ip::tcp::no_delay(true));  // requests go out at once
      }
      http::request<http::string_body> req{verb, path, 11};
      req.set(http::field::host, host_);
      req.set(http::field::content_type, "application/json");
      if (!token_.empty()) req.set(http::field::authorization, "Bearer " + token_);
      req.keep_alive(true);
      req.body() = body;
      req.prepare_payload();
      http::write(*stream, req);
      beast::flat_buffer buf;
      http::response_parser<http::string_body> parser;
      parser.body_limit(1ull << 30);
      http::read(*stream, buf, parser);
      auto res = parser.release();
      if (!res.keep_alive()) stream.reset();
      return {static_cast<int>(res.result_int()), res.body()};
    } catch (const std::exception&) {
      impl_->stream.reset();  // Boost.Asio/Beast report socket errors as exceptions; retried once
    }
  }
  return {0, "cannot reach " + host_ + ":" + port_};
}

Result<json> HttpClient::CallJson(http::verb verb, const std::string& path, const std::string& body,
                                  const std::string& what, json* refusal) {
  HttpReply r = Call(verb, path, body);
  if (r.status == 0) return Status::Unavailable(what + ": " + r.body);
  json j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  // A cluster change sent to a coordinator that does not lead is refused with 409 and the
  // leader's URL (docs/metadata.md): send it there, once (the leader's own answer stands).
  if (r.status == 409 && j.is_object() && j.contains("leader") && j["leader"].is_string() &&
      !j["leader"].get<std::string>().empty()) {
    const std::string leader = j["leader"].get<std::string>();
    std::cerr << "mrlctl: " << host_ << ":" << port_ << " does not lead cluster changes; sending "
              << what << " to the leader '" << j.value("leader_id", std::string()) << "' at "
              << leader << std::endl;
    HttpClient to_leader(leader, token_);
    r = to_leader.Call(verb, path, body);
    if (r.status == 0) return Status::Unavailable(what + " (at the leader): " + r.body);
    j = json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  }
  if (r.status != 200) {
    if (refusal != nullptr) *refusal = j.is_discarded() ? json() : j;
    const std::string message = j.is_object() && j.contains("error") && j["error"].is_string()
                                    ? j["error"].get<std::string>()
                                    : r.body;
    return Status::FailedPrecondition(what + ": HTTP " + std::to_string(r.status) + " " + message);
  }
  if (j.is_discarded()) return Status::Corruption(what + ": the coordinator's answer is not JSON");
  return j;
}

Result<rpc::ClientOptions> BinaryClientOptions(const std::string& address) {
  rpc::ClientOptions o;
  const size_t colon = address.rfind(':');
  const std::string port = colon == std::string::npos ? "" : address.substr(colon + 1);
  if (colon == std::string::npos || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoi(port) > 65535) {
    return Status::InvalidArgument("--binary wants host:port, got '" + address + "'");
  }
  o.host = address.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(port));
  return o;
}

}  // namespace mrl::ops
