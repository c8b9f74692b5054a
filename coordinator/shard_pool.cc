#include "coordinator/shard_pool.h"

#include <algorithm>
#include <limits>

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
  o.connect_timeout_ms = std::max<uint32_t>(1, options_.health.probe_timeout_ms);
  o.max_in_flight = 4;
  entries_[info.id].probe = std::make_unique<rpc::RpcClient>(o);
}

ShardPool::ShardPool(PoolOptions options)
    : options_(std::move(options)), health_(options_.health) {
  if (options_.health.probe_interval_ms > 0) prober_ = std::thread([this] { ProbeLoop(); });
}

void ShardPool::ProbeLoop() {
  const auto interval = std::chrono::milliseconds(options_.health.probe_interval_ms);
  std::unique_lock lock(probe_mu_);
  while (!probe_cv_.wait_for(lock, interval, [this] { return stop_probes_; })) {
    lock.unlock();
    std::vector<std::pair<std::string, rpc::RpcClient*>> due;
    {
      std::lock_guard<std::mutex> pool_lock(mu_);
      for (auto& [id, e] : entries_) {
        if (e.probe_out) continue;  // the last one is still out: its timeout counts the miss
        e.probe_out = true;
        due.emplace_back(id, e.probe.get());
      }
    }
    for (auto& [id, client] : due) {
      const auto sent = std::chrono::steady_clock::now();
      client->CallAsync(wire::MessageType::PingRequest, wire::PackBody(wire::PingRequestT{}),
                        options_.health.probe_timeout_ms,
                        [this, id = id, sent](Result<rpc::RawReply> r) {
                          const auto now = std::chrono::steady_clock::now();
                          {
                            std::lock_guard<std::mutex> pool_lock(mu_);
                            if (closing_) return;
                            auto it = entries_.find(id);
                            if (it != entries_.end()) it->second.probe_out = false;
                          }
                          const bool came_back = health_.ProbeDone(
                              id, r.status(),
                              std::chrono::duration<double, std::milli>(now - sent).count(), now);
                          if (!came_back) return;
                          // Connection attempts the calls made while it was away are still
                          // waiting on the kernel's backed-off SYN retries: start them afresh.
                          std::lock_guard<std::mutex> pool_lock(mu_);
                          if (closing_) return;
                          auto it = entries_.find(id);
                          if (it == entries_.end()) return;
                          for (auto& c : it->second.clients) c->Kick();
                        });
    }
    lock.lock();
  }
}

ShardPool::~ShardPool() {
  {
    std::lock_guard lock(probe_mu_);
    stop_probes_ = true;
  }
  probe_cv_.notify_all();
  if (prober_.joinable()) prober_.join();
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
  const uint64_t token = health_.CallSent(shard, type, std::chrono::steady_clock::now());
  client->CallAsync(type, std::move(body), deadline_ms,
                    [this, shard, token, done = std::move(done)](Result<rpc::RawReply> r) {
                      {
                        std::lock_guard<std::mutex> lock(mu_);
                        if (closing_) {
                          done(std::move(r));
                          return;
                        }
                      }
                      health_.CallDone(shard, token, r.status(), std::chrono::steady_clock::now());
                      done(std::move(r));
                    });
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
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!entries_.count(shard)) return false;
  }
  return health_.Usable(shard, std::chrono::steady_clock::now());
}

double ShardPool::RouteCost(const std::string& shard) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!entries_.count(shard)) return std::numeric_limits<double>::infinity();
  }
  return health_.RouteCost(shard, std::chrono::steady_clock::now());
}

std::chrono::microseconds ShardPool::HedgeDelay(const std::string& shard, wire::MessageType type) {
  if (!options_.health.hedge) return std::chrono::microseconds::max();
  return health_.HedgeDelay(shard, type);
}

bool ShardPool::TakeHedge(const std::string& shard) { return health_.TakeHedge(shard); }

std::vector<ShardHealthReport> ShardPool::HealthReports() {
  return health_.Reports(std::chrono::steady_clock::now());
}

void ShardPool::Report(const std::string& shard, const Status& status) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closing_) return;
    auto it = entries_.find(shard);
    if (it == entries_.end()) return;
    if (status.code() == Status::Code::kInsufficientStorage) {
      it->second.write_refusal = status;
      it->second.refused_at = std::chrono::steady_clock::now();
    }
  }
  health_.Report(shard, status, std::chrono::steady_clock::now());
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
