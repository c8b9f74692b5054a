#include "meta/etcd_watch.h"

#include <chrono>
#include <iostream>
#include <vector>

#include "meta/base64.h"
#include "meta/etcd_json.h"
#include "meta/etcd_store.h"

namespace mrl::meta {

using json = nlohmann::json;
using etcd_json::B64Field;
using etcd_json::Int;

EtcdWatch::EtcdWatch(EtcdStore* store, std::string prefix, int64_t after, WatchCallback cb)
    : store_(store), prefix_(std::move(prefix)), next_(after + 1), cb_(std::move(cb)) {
  thread_ = std::thread([this] { Loop(); });
}

EtcdWatch::~EtcdWatch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cancel_.Cancel();  // unblocks the stream's read
  cv_.notify_all();
  thread_.join();
}

void EtcdWatch::Loop() {
  int backoff_ms = 50;
  size_t endpoint = 0;
  bool renewed = false;  // reconnected at once for a new token, and nothing streamed since
  while (!Stopped()) {
    streamed_ = false;
    const Status st = StreamOnce(endpoint);
    if (ended_ || Stopped()) return;
    if (streamed_) {
      renewed = false;
      backoff_ms = 50;
    }
    // etcd refused the token (StreamOnce forgot it): reconnect at once with a new one.
    if (st.code() == Status::Code::kUnauthenticated && !renewed) {
      renewed = true;
      continue;
    }
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

bool EtcdWatch::Stopped() {
  std::lock_guard<std::mutex> lock(mu_);
  return stop_;
}

void EtcdWatch::End(const Status& st) {
  cb_(st, {});
  ended_ = true;
}

Status EtcdWatch::OnMessage(const std::string& endpoint, const json& m) {
  if (!m.contains("result")) {
    if (!m.contains("error")) return Status::Ok();
    const json& e = m["error"];
    const std::string why = e.is_object() ? e.value("message", e.dump()) : e.dump();
    return IsTokenRejection(why) ? Status::Unauthenticated(why) : Status::Unavailable(why);
  }
  const json& r = m["result"];
  if (r.value("canceled", false)) {
    const int64_t compact = Int(r, "compact_revision");
    if (compact > 0) {
      const Status st =
          Status::OutOfRange("etcd compacted revision " + std::to_string(next_) +
                             " (oldest kept: " + std::to_string(compact) + "): re-read");
      End(st);
      return st;
    }
    const std::string why = r.value("cancel_reason", std::string());
    if (IsTokenRejection(why)) return Status::Unauthenticated("watch refused: " + why);
    if (Status refused = store_->AuthRefusal(endpoint, why); !refused.ok()) {
      if (!store_->options_.user.empty()) return Status::Unavailable(refused.message());
      End(refused);  // no credentials: retrying cannot help
      return refused;
    }
    return Status::Unavailable("watch canceled: " + why);
  }
  if (!r.contains("events")) return Status::Ok();
  std::vector<WatchEvent> batch;
  const std::string& full = store_->options_.prefix;
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
  return Status::Ok();
}

Status EtcdWatch::StreamOnce(size_t endpoint) {
  const EtcdOptions& opts = store_->options_;
  const std::string& ep = opts.endpoints[endpoint % opts.endpoints.size()];
  auto token = store_->Token(endpoint, opts.request_timeout_ms);
  if (!token.ok()) {
    // A refused user or password does not get better by retrying: the watch ends.
    if (token.status().code() == Status::Code::kUnauthenticated) End(token.status());
    return token.status();
  }
  const std::string key = opts.prefix + prefix_;
  const json body = {{"create_request",
                      {{"key", Base64Encode(key)},
                       {"range_end", Base64Encode(PrefixEnd(key))},
                       {"start_revision", std::to_string(next_)}}}};
  const etcd_http::Request request{"/v3/watch", body.dump(), token.value()};
  return store_->client_->PostStream(
      ep, request, opts.request_timeout_ms, &cancel_, [&](const std::string& line) -> Status {
        const json m = json::parse(line, nullptr, /*allow_exceptions=*/false);
        if (m.is_discarded()) return Status::Corruption("watch stream: a line that is not JSON");
        Status st;
        try {
          st = OnMessage(ep, m);
        } catch (const std::exception& e) {
          return Status::Unavailable(std::string("watch on ") + ep + ": " + e.what());
        }
        if (st.ok()) {
          warned_ = false;
          streamed_ = true;
        } else if (st.code() == Status::Code::kUnauthenticated && !ended_) {
          store_->ForgetToken(token.value());
        }
        return st;
      });
}

}  // namespace mrl::meta
