#include "meta/etcd_store.h"

#include <sys/socket.h>

#include <utility>  // before Boost.Asio: its awaitable.hpp uses std::exchange without it (Boost 1.74, C++20)

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <map>
#include <thread>

#include "meta/base64.h"
#include "meta/etcd_http.h"

namespace mrl::meta {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using json = nlohmann::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;

namespace {

int64_t Int(const json& j, const char* field) {
  if (!j.contains(field)) return 0;  // proto3 JSON omits zero values
  const json& v = j.at(field);
  if (v.is_string()) {  // member ids are uint64s beyond int64's range: keep their bits
    const std::string t = v.get<std::string>();
    char* end = nullptr;
    const int64_t n = t.rfind('-', 0) == 0
                          ? std::strtoll(t.c_str(), &end, 10)
                          : static_cast<int64_t>(std::strtoull(t.c_str(), &end, 10));
    return end != nullptr && *end == '\0' ? n : 0;
  }
  if (v.is_number()) return v.get<int64_t>();
  return 0;
}

std::string B64Field(const json& j, const char* field) {
  if (!j.contains(field) || !j.at(field).is_string()) return "";
  auto d = Base64Decode(j.at(field).get<std::string>());
  return d.ok() ? std::move(d).value() : std::string();
}

// gRPC status codes the gateway returns in {"error", "code", "message"}.
Status FromGrpc(int code, const std::string& message) {
  switch (code) {
    case 3:
      return Status::InvalidArgument("etcd: " + message);
    case 5:
      return Status::NotFound("etcd: " + message);
    case 9:
      return Status::FailedPrecondition("etcd: " + message);
    case 11:
      return Status::OutOfRange("etcd: " + message);
    case 14:
      return Status::Unavailable("etcd: " + message);
    case 4:
      return Status::DeadlineExceeded("etcd: " + message);
    default:
      return Status::Internal("etcd (grpc code " + std::to_string(code) + "): " + message);
  }
}

json CompareJson(const Compare& c, const std::string& prefix) {
  json j = {{"key", Base64Encode(prefix + c.key)}, {"result", "EQUAL"}};
  switch (c.field) {
    case Compare::Field::kModRevision:
      j["target"] = "MOD";
      j["mod_revision"] = std::to_string(c.number);
      break;
    case Compare::Field::kCreateRevision:
      j["target"] = "CREATE";
      j["create_revision"] = std::to_string(c.number);
      break;
    case Compare::Field::kVersion:
      j["target"] = "VERSION";
      j["version"] = std::to_string(c.number);
      break;
    case Compare::Field::kValue:
      j["target"] = "VALUE";
      j["value"] = Base64Encode(c.value);
      break;
  }
  return j;
}

json OpJson(const Op& op, const std::string& prefix) {
  switch (op.kind) {
    case Op::Kind::kPut: {
      json p = {{"key", Base64Encode(prefix + op.key)}, {"value", Base64Encode(op.value)}};
      if (op.lease != 0) p["lease"] = std::to_string(op.lease);
      return {{"request_put", p}};
    }
    case Op::Kind::kDelete:
      return {{"request_delete_range", {{"key", Base64Encode(prefix + op.key)}}}};
    case Op::Kind::kDeletePrefix:
      return {{"request_delete_range",
               {{"key", Base64Encode(prefix + op.key)},
                {"range_end", Base64Encode(PrefixEnd(prefix + op.key))}}}};
  }
  return {};
}

// The watch: a thread reading /v3/watch's stream (one JSON message per line), reconnecting on
// any endpoint from the revision after the last one delivered.
class EtcdWatch final : public Watch {
 public:
  EtcdWatch(EtcdStore* store, std::string prefix, int64_t after, WatchCallback cb)
      : store_(store), prefix_(std::move(prefix)), next_(after + 1), cb_(std::move(cb)) {
    thread_ = std::thread([this] { Loop(); });
  }
  ~EtcdWatch() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (fd_ >= 0) ::shutdown(fd_, SHUT_RDWR);  // unblocks the read
    }
    cv_.notify_all();
    thread_.join();
  }

 private:
  void Loop() {
    int backoff_ms = 50;
    size_t endpoint = 0;
    const auto& opts = store_->options();
    while (!Stopped()) {
      const Status st = StreamOnce(opts.endpoints[endpoint % opts.endpoints.size()]);
      if (ended_ || Stopped()) return;
      if (!st.ok() && !warned_) {
        std::cerr << "[meta] etcd watch of '" << prefix_ << "': " << st.ToString()
                  << "; reconnecting (from revision " << next_ << ")" << std::endl;
        warned_ = true;
      }
      ++endpoint;
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(backoff_ms), [this] { return stop_; });
      backoff_ms = std::min(1000, backoff_ms * 2);
    }
  }

  bool Stopped() {
    std::lock_guard<std::mutex> lock(mu_);
    return stop_;
  }

  // Handles one stream message; false when the watch ended (compacted).
  bool OnMessage(const json& m) {
    if (!m.contains("result")) {
      if (m.contains("error")) throw std::runtime_error(m["error"].dump());
      return true;
    }
    const json& r = m["result"];
    if (r.value("canceled", false)) {
      const int64_t compact = Int(r, "compact_revision");
      if (compact > 0) {
        cb_(Status::OutOfRange("etcd compacted revision " + std::to_string(next_) +
                               " (oldest kept: " + std::to_string(compact) + "): re-read"),
            {});
        ended_ = true;
        return false;
      }
      throw std::runtime_error("watch canceled: " + r.value("cancel_reason", std::string()));
    }
    if (!r.contains("events")) return true;
    std::vector<WatchEvent> batch;
    const std::string& full = store_->options().prefix;
    for (const json& e : r["events"]) {
      WatchEvent ev;
      ev.type = e.value("type", std::string("PUT")) == "DELETE" ? WatchEvent::Type::kDelete
                                                                : WatchEvent::Type::kPut;
      const json& kv = e.at("kv");
      ev.kv.key = B64Field(kv, "key").substr(full.size());
      ev.kv.value = B64Field(kv, "value");
      ev.kv.create_revision = Int(kv, "create_revision");
      ev.kv.mod_revision = Int(kv, "mod_revision");
      ev.kv.version = Int(kv, "version");
      ev.kv.lease = Int(kv, "lease");
      if (!batch.empty() && batch.back().kv.mod_revision != ev.kv.mod_revision) {
        cb_(Status::Ok(), batch);
        next_ = batch.back().kv.mod_revision + 1;
        batch.clear();
      }
      batch.push_back(std::move(ev));
    }
    if (!batch.empty()) {
      cb_(Status::Ok(), batch);
      next_ = batch.back().kv.mod_revision + 1;
    }
    return true;
  }

  Status StreamOnce(const std::string& endpoint) {
    const auto [host, port] = etcd_http::HostPort(endpoint);
    asio::io_context io;
    tcp::socket sock(io);
    beast::error_code ec;
    tcp::resolver resolver(io);
    auto eps = resolver.resolve(host, port, ec);
    if (ec) return Status::Unavailable("resolve " + endpoint + ": " + ec.message());
    asio::connect(sock, eps, ec);
    if (ec) return Status::Unavailable("connect " + endpoint + ": " + ec.message());
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) return Status::Ok();
      fd_ = sock.native_handle();
    }
    struct ClearFd {
      EtcdWatch* w;
      ~ClearFd() {
        std::lock_guard<std::mutex> lock(w->mu_);
        w->fd_ = -1;
      }
    } clear{this};
    const std::string key = store_->options().prefix + prefix_;
    const json body = {{"create_request",
                        {{"key", Base64Encode(key)},
                         {"range_end", Base64Encode(PrefixEnd(key))},
                         {"start_revision", std::to_string(next_)}}}};
    http::request<http::string_body> req{http::verb::post, "/v3/watch", 11};
    req.set(http::field::host, host);
    req.set(http::field::content_type, "application/json");
    req.body() = body.dump();
    req.prepare_payload();
    http::write(sock, req, ec);
    if (ec) return Status::Unavailable("watch request to " + endpoint + ": " + ec.message());
    beast::flat_buffer buf;
    http::response_parser<http::buffer_body> parser;
    parser.body_limit(boost::none);
    http::read_header(sock, buf, parser, ec);
    if (ec) return Status::Unavailable("watch answer from " + endpoint + ": " + ec.message());
    if (parser.get().result_int() != 200) {
      return Status::Unavailable("watch on " + endpoint + ": HTTP " +
                                 std::to_string(parser.get().result_int()));
    }
    std::string pending;
    char chunk[16384];
    try {
      while (!parser.is_done()) {
        parser.get().body().data = chunk;
        parser.get().body().size = sizeof(chunk);
        http::read_some(sock, buf, parser, ec);
        if (ec == http::error::need_buffer) ec = {};
        if (ec) return Status::Unavailable("watch stream from " + endpoint + ": " + ec.message());
        pending.append(chunk, sizeof(chunk) - parser.get().body().size);
        for (size_t nl; (nl = pending.find('\n')) != std::string::npos;) {
          const std::string line = pending.substr(0, nl);
          pending.erase(0, nl + 1);
          if (line.find_first_not_of(" \r\t") == std::string::npos) continue;
          const json m = json::parse(line, nullptr, /*allow_exceptions=*/false);
          if (m.is_discarded()) return Status::Corruption("watch stream: a line that is not JSON");
          if (!OnMessage(m)) return Status::Ok();
          warned_ = false;
        }
      }
    } catch (const std::exception& e) {
      return Status::Unavailable(std::string("watch on ") + endpoint + ": " + e.what());
    }
    return Status::Unavailable("watch stream from " + endpoint + " ended");
  }

  EtcdStore* const store_;
  const std::string prefix_;
  int64_t next_;  // the first revision not yet delivered (watch thread only)
  const WatchCallback cb_;
  bool ended_ = false;   // watch thread only
  bool warned_ = false;  // watch thread only
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;  // guarded by mu_
  int fd_ = -1;        // guarded by mu_: the socket being read
  std::thread thread_;
};

}  // namespace

Result<EtcdOptions> ParseEtcdUrl(const std::string& url) {
  const std::string scheme = "etcd://";
  if (url.rfind(scheme, 0) != 0) return Status::InvalidArgument("not an etcd:// url: " + url);
  std::string rest = url.substr(scheme.size());
  EtcdOptions o;
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    o.prefix = rest.substr(slash);
    if (o.prefix.back() != '/') o.prefix += '/';
    rest = rest.substr(0, slash);
  }
  size_t at = 0;
  while (at <= rest.size()) {
    const size_t comma = rest.find(',', at);
    const std::string ep =
        rest.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const size_t colon = ep.rfind(':');
    if (ep.empty() || colon == std::string::npos || colon == 0 || colon + 1 == ep.size() ||
        ep.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
      return Status::InvalidArgument("etcd endpoint '" + ep + "' in '" + url + "': want host:port");
    }
    o.endpoints.push_back(ep);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (o.endpoints.empty()) return Status::InvalidArgument("no etcd endpoint in '" + url + "'");
  return o;
}

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(EtcdOptions options) {
  if (options.endpoints.empty()) return Status::InvalidArgument("etcd: no endpoints");
  if (options.prefix.empty() || options.prefix.back() != '/') options.prefix += '/';
  return std::unique_ptr<EtcdStore>(new EtcdStore(std::move(options)));
}

EtcdStore::~EtcdStore() = default;

std::string EtcdStore::Describe() const {
  std::string eps;
  for (const auto& e : options_.endpoints) eps += (eps.empty() ? "" : ",") + e;
  return "etcd " + eps + " prefix " + options_.prefix;
}

Result<json> EtcdStore::Exchange(size_t endpoint, const std::string& path, const std::string& body,
                                 int timeout_ms) {
  const std::string& ep = options_.endpoints[endpoint % options_.endpoints.size()];
  int status = 0;
  auto text = etcd_http::Post(ep, path, body, timeout_ms, &status);
  if (!text.ok()) return text.status();
  json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::Corruption("etcd " + ep + path + ": answer is not JSON");
  if (status != 200 || j.contains("error")) {
    const int code = j.is_object() && j.contains("code") ? j["code"].get<int>() : 14;
    const std::string msg = j.is_object() && j.contains("message") && j["message"].is_string()
                                ? j["message"].get<std::string>()
                                : text.value();
    return FromGrpc(code, msg + " (" + ep + ")");
  }
  return j;
}

Result<json> EtcdStore::Call(const std::string& path, const json& body) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.retry_ms);
  const std::string text = body.dump();
  int backoff_ms = 50;
  Status last;
  for (size_t tries = 0;; ++tries) {
    const size_t ep = current_.load();
    ++exchanges_;
    auto r = Exchange(ep, path, text, options_.request_timeout_ms);
    if (r.ok() || r.status().code() != Status::Code::kUnavailable) return r;
    last = r.status();
    size_t expected = ep;
    current_.compare_exchange_strong(expected, ep + 1);
    if (Clock::now() + std::chrono::milliseconds(backoff_ms) >= deadline) break;
    // Every endpoint once without waiting, then back off between rounds.
    if ((tries + 1) % options_.endpoints.size() == 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(backoff_ms));
      backoff_ms = std::min(500, backoff_ms * 2);
    }
  }
  return Status::Unavailable("metadata store unreachable for " + std::to_string(options_.retry_ms) +
                             " ms (" + Describe() + "); last error: " + last.message());
}

KeyValue EtcdStore::ToKeyValue(const json& kv) const {
  KeyValue out;
  out.key = B64Field(kv, "key").substr(options_.prefix.size());
  out.value = B64Field(kv, "value");
  out.create_revision = Int(kv, "create_revision");
  out.mod_revision = Int(kv, "mod_revision");
  out.version = Int(kv, "version");
  out.lease = Int(kv, "lease");
  return out;
}

ReadResult EtcdStore::ToRead(const json& answer) const {
  ReadResult r;
  r.revision = Int(answer.value("header", json::object()), "revision");
  if (answer.contains("kvs")) {
    for (const json& kv : answer["kvs"]) r.kvs.push_back(ToKeyValue(kv));
  }
  return r;
}

Result<ReadResult> EtcdStore::Get(const std::string& key) {
  auto a = Call("/v3/kv/range", {{"key", Base64Encode(options_.prefix + key)}});
  if (!a.ok()) return a.status();
  return ToRead(a.value());
}

Result<ReadResult> EtcdStore::GetPrefix(const std::string& prefix) {
  const std::string key = options_.prefix + prefix;
  auto a = Call("/v3/kv/range",
                {{"key", Base64Encode(key)}, {"range_end", Base64Encode(PrefixEnd(key))}});
  if (!a.ok()) return a.status();
  return ToRead(a.value());
}

Result<TxnResult> EtcdStore::Txn(const std::vector<Compare>& compares, const std::vector<Op>& then,
                                 const std::vector<Op>& otherwise) {
  json body = {{"compare", json::array()}, {"success", json::array()}, {"failure", json::array()}};
  for (const Compare& c : compares) body["compare"].push_back(CompareJson(c, options_.prefix));
  for (const Op& op : then) body["success"].push_back(OpJson(op, options_.prefix));
  for (const Op& op : otherwise) body["failure"].push_back(OpJson(op, options_.prefix));
  auto a = Call("/v3/kv/txn", body);
  if (!a.ok()) return a.status();
  TxnResult r;
  r.succeeded = a->value("succeeded", false);
  r.revision = Int(a->value("header", json::object()), "revision");
  return r;
}

Result<int64_t> EtcdStore::GrantLease(int64_t ttl_s) {
  if (ttl_s < 1) return Status::InvalidArgument("lease TTL must be >= 1 s");
  auto a = Call("/v3/lease/grant", {{"TTL", std::to_string(ttl_s)}});
  if (!a.ok()) return a.status();
  const int64_t id = Int(a.value(), "ID");
  if (id == 0) return Status::Internal("etcd lease grant: no ID in " + a->dump());
  return id;
}

Status EtcdStore::KeepAlive(int64_t lease) {
  auto a = Call("/v3/lease/keepalive", {{"ID", std::to_string(lease)}});
  if (!a.ok()) return a.status();
  const json r = a->value("result", a.value());
  if (Int(r, "TTL") <= 0) return Status::NotFound("lease " + std::to_string(lease) + " not found");
  return Status::Ok();
}

Status EtcdStore::RevokeLease(int64_t lease) {
  auto a = Call("/v3/lease/revoke", {{"ID", std::to_string(lease)}});
  return a.status();
}

Result<std::unique_ptr<Watch>> EtcdStore::WatchPrefix(const std::string& prefix,
                                                      int64_t after_revision,
                                                      WatchCallback callback) {
  return std::unique_ptr<Watch>(new EtcdWatch(this, prefix, after_revision, std::move(callback)));
}

std::vector<EtcdMember> EtcdStore::Members() {
  std::vector<EtcdMember> out;
  for (size_t i = 0; i < options_.endpoints.size(); ++i) {
    EtcdMember m;
    m.endpoint = options_.endpoints[i];
    auto a = Exchange(i, "/v3/maintenance/status", "{}", options_.request_timeout_ms);
    if (!a.ok()) {
      m.error = a.status().message();
    } else {
      m.healthy = true;
      m.raft_term = Int(*a, "raftTerm") ? Int(*a, "raftTerm") : Int(*a, "raft_term");
      const int64_t leader = Int(*a, "leader");
      const int64_t self = Int(a->value("header", json::object()), "member_id");
      m.leader = leader != 0 && leader == self;
    }
    out.push_back(std::move(m));
  }
  return out;
}

}  // namespace mrl::meta
