#include "coordinator/shard_pool.h"

#include <algorithm>

namespace mrl::coord {

void ShardPool::AddLocked(const ShardInfo& info) {
  if (entries_.count(info.id)) return;
  rpc::ClientOptions o;
  const size_t colon = info.address.rfind(':');
  o.host = info.address.substr(0, colon);
  o.port = static_cast<uint16_t>(std::stoi(info.address.substr(colon + 1)));
  o.auth_secret = options_.auth_secret;
  o.connect_timeout_ms = options_.connect_timeout_ms;
  o.max_in_flight = options_.max_in_flight_per_connection;
  for (int c = 0; c < std::max(1, options_.connections_per_shard); ++c) {
    entries_[info.id].clients.push_back(std::make_unique<rpc::RpcClient>(o));
  }
}

ShardPool::~ShardPool() {
  std::map<std::string, Entry> doomed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    doomed.swap(entries_);
  }
  doomed.clear();  // each client fails its calls in flight: their callbacks find closing_
}

void ShardPool::Call(const std::string& shard, wire::MessageType type, std::vector<uint8_t> body,
                     uint32_t deadline_ms, rpc::RpcClient::Callback done) {
  rpc::RpcClient* client = Client(shard);
  if (client == nullptr) {
    done(Status::Unavailable("no connection to shard '" + shard + "'"));
    return;
  }
  client->CallAsync(type, std::move(body), deadline_ms, std::move(done));
}

void ShardPool::Sync(const ShardMap& map) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, info] : map.shards()) AddLocked(info);
  for (auto& [id, e] : entries_) {
    for (auto& c : e.clients) c->set_epoch(static_cast<uint32_t>(map.epoch()));
  }
}

void ShardPool::Ensure(const ShardInfo& shard) {
  std::lock_guard<std::mutex> lock(mu_);
  AddLocked(shard);
}

rpc::RpcClient* ShardPool::Client(const std::string& shard) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(shard);
  if (it == entries_.end()) return nullptr;
  Entry& e = it->second;
  return e.clients[e.next++ % e.clients.size()].get();
}

bool ShardPool::Healthy(const std::string& shard) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(shard);
  if (it == entries_.end()) return false;
  Entry& e = it->second;
  if (e.down && std::chrono::steady_clock::now() - e.down_since >
                    std::chrono::milliseconds(options_.retry_after_ms)) {
    e.down = false;  // give it another chance; the next failure marks it down again
  }
  return !e.down;
}

void ShardPool::Report(const std::string& shard, const Status& status) {
  const bool gone = status.code() == Status::Code::kUnavailable ||
                    status.code() == Status::Code::kDeadlineExceeded;
  std::lock_guard<std::mutex> lock(mu_);
  if (closing_) return;
  auto it = entries_.find(shard);
  if (it == entries_.end()) return;
  if (gone) {
    it->second.down = true;
    it->second.down_since = std::chrono::steady_clock::now();
  }
  if (status.code() == Status::Code::kInsufficientStorage) {
    it->second.write_refusal = status;
    it->second.refused_at = std::chrono::steady_clock::now();
  }
}

Status ShardPool::WriteRefusal(const std::string& shard) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(shard);
  if (it == entries_.end() || it->second.write_refusal.ok()) return Status::Ok();
  if (std::chrono::steady_clock::now() - it->second.refused_at >
      std::chrono::milliseconds(options_.retry_after_ms)) {
    it->second.write_refusal = Status::Ok();  // ask the shard again
    return Status::Ok();
  }
  return it->second.write_refusal;
}

}  // namespace mrl::coord
