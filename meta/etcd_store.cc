#include "meta/etcd_store.h"

#include <chrono>
#include <thread>

#include "common/atomic_file.h"
#include "meta/base64.h"
#include "meta/etcd_http.h"
#include "meta/etcd_json.h"
#include "meta/etcd_watch.h"

namespace mrl::meta {

using json = nlohmann::json;
using etcd_json::B64Field;
using etcd_json::Int;
using Clock = std::chrono::steady_clock;

namespace {

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
    case 7:
    case 16:
      return Status::Unauthenticated("etcd: " + message);
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

}  // namespace

bool IsTokenRejection(const std::string& message) {
  return message.find("invalid auth token") != std::string::npos ||
         message.find("revision of auth store is old") != std::string::npos;
}

Result<std::unique_ptr<EtcdStore>> EtcdStore::Open(EtcdOptions options) {
  if (options.endpoints.empty()) return Status::InvalidArgument("etcd: no endpoints");
  if (options.prefix.empty() || options.prefix.back() != '/') options.prefix += '/';
  if (options.user.empty() != options.password_file.empty()) {
    return Status::InvalidArgument(
        "etcd: a user needs a password_file, and a password_file a user");
  }
  std::string password;
  if (!options.password_file.empty()) {
    auto text = ReadFile(options.password_file);
    if (!text.ok()) {
      return Status::InvalidArgument("etcd password_file '" + options.password_file +
                                     "': " + text.status().message());
    }
    password = std::move(text).value();
    if (!password.empty() && password.back() == '\n') password.pop_back();
    if (!password.empty() && password.back() == '\r') password.pop_back();
    if (password.empty()) {
      return Status::InvalidArgument("etcd password_file '" + options.password_file + "' is empty");
    }
  }
  if (!options.ca_file.empty() || !options.cert_file.empty() || !options.key_file.empty()) {
    options.tls = true;
  }
  std::shared_ptr<etcd_http::Client> client = etcd_http::Client::Plain();
  if (options.tls) {
    auto c = etcd_http::Client::Tls({options.ca_file, options.cert_file, options.key_file});
    if (!c.ok()) return c.status();
    client = std::move(c).value();
  }
  return std::unique_ptr<EtcdStore>(
      new EtcdStore(std::move(options), std::move(client), std::move(password)));
}

EtcdStore::~EtcdStore() = default;

std::string EtcdStore::Describe() const {
  std::string eps;
  for (const auto& e : options_.endpoints) eps += (eps.empty() ? "" : ",") + e;
  std::string d = "etcd " + eps + " prefix " + options_.prefix;
  if (options_.tls) {
    d += " tls on (ca " + (options_.ca_file.empty() ? "system" : options_.ca_file);
    if (!options_.cert_file.empty()) d += ", client cert " + options_.cert_file;
    d += ")";
  } else {
    d += " tls off";
  }
  if (!options_.user.empty()) d += " user " + options_.user;
  return d;
}

Result<json> EtcdStore::ExchangeOnce(size_t endpoint, const std::string& path,
                                     const std::string& body, const std::string& token,
                                     int timeout_ms, bool* token_rejected) {
  const std::string& ep = options_.endpoints[endpoint % options_.endpoints.size()];
  int status = 0;
  auto text = client_->Post(ep, {path, body, token}, timeout_ms, &status);
  if (!text.ok()) return text.status();
  json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    if (status == 200) return Status::Corruption("etcd " + ep + path + ": answer is not JSON");
    return Status::Internal("etcd " + ep + path + ": HTTP " + std::to_string(status) + ": " +
                            text.value().substr(0, 300));
  }
  if (status != 200 || j.contains("error")) {
    const int code =
        j.is_object() && j.contains("code") && j["code"].is_number() ? j["code"].get<int>() : 14;
    const std::string msg = j.is_object() && j.contains("message") && j["message"].is_string()
                                ? j["message"].get<std::string>()
                                : text.value();
    if (token_rejected != nullptr) *token_rejected = IsTokenRejection(msg);
    MRL_RETURN_IF_ERROR(AuthRefusal(ep, msg));
    return FromGrpc(code, msg + " (" + ep + ")");
  }
  return j;
}

Status EtcdStore::AuthRefusal(const std::string& endpoint, const std::string& why) const {
  const bool no_user = why.find("user name is empty") != std::string::npos;
  const bool denied = why.find("permission denied") != std::string::npos;
  if (!no_user && !denied) return Status::Ok();
  if (options_.user.empty()) {
    return Status::Unauthenticated("etcd " + endpoint + " requires authentication (" + why +
                                   ", to a call without credentials): give user= and "
                                   "password_file= in the store URL");
  }
  return Status::Unauthenticated("etcd " + endpoint + ": user '" + options_.user +
                                 "' lacks a permission (" + why + ")");
}

Result<std::string> EtcdStore::Token(size_t endpoint, int timeout_ms) {
  if (options_.user.empty()) return std::string();
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (!token_.empty()) return token_;
  const json body = {{"name", options_.user}, {"password", password_}};
  auto a = ExchangeOnce(endpoint, "/v3/auth/authenticate", body.dump(), "", timeout_ms, nullptr);
  if (!a.ok()) {
    if (a.status().code() == Status::Code::kUnavailable) return a.status();  // fail over
    return Status::Unauthenticated("etcd authentication failed for user '" + options_.user +
                                   "': " + a.status().message());
  }
  std::string token = a->value("token", std::string());
  if (token.empty()) {
    return Status::Unauthenticated("etcd authentication for user '" + options_.user +
                                   "': no token in the answer");
  }
  token_ = std::move(token);
  ++authentications_;
  return token_;
}

void EtcdStore::ForgetToken(const std::string& token) {
  std::lock_guard<std::mutex> lock(auth_mu_);
  if (token_ == token) token_.clear();
}

Result<json> EtcdStore::Exchange(size_t endpoint, const std::string& path, const std::string& body,
                                 int timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  auto left = [&] {
    return std::max<int>(1, static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                 deadline - Clock::now())
                                                 .count()));
  };
  for (int attempt = 0;; ++attempt) {
    auto token = Token(endpoint, left());
    if (!token.ok()) return token.status();
    bool rejected = false;
    auto a = ExchangeOnce(endpoint, path, body, token.value(), left(), &rejected);
    // A token etcd no longer accepts (expired, or older than an auth change): renew it, once.
    if (!rejected || attempt > 0) return a;
    ForgetToken(token.value());
  }
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
    // The token held, if any, but never a new one: asking for one needs a quorum, and a member
    // without one still answers its status (etcd 3.4 wants no token for it).
    std::string token;
    {
      std::lock_guard<std::mutex> lock(auth_mu_);
      token = token_;
    }
    bool rejected = false;
    auto a = ExchangeOnce(i, "/v3/maintenance/status", "{}", token, options_.request_timeout_ms,
                          &rejected);
    if (rejected) {
      a = ExchangeOnce(i, "/v3/maintenance/status", "{}", "", options_.request_timeout_ms, nullptr);
    }
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
