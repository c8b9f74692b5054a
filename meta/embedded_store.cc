#include "meta/embedded_store.h"

#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "meta/base64.h"

namespace mrl::meta {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct EmbeddedStore::Watcher {
  std::string prefix;
  WatchCallback callback;
  std::mutex cb_mu;        // held while the callback runs; the handle's destructor waits on it
  bool cancelled = false;  // guarded by cb_mu
  bool ended = false;      // guarded by the store's mu_: an error was delivered
};

namespace {

bool HasPrefix(const std::string& key, const std::string& prefix) {
  return key.compare(0, prefix.size(), prefix) == 0;
}

class EmbeddedWatch final : public Watch {
 public:
  EmbeddedWatch(std::function<void()> remove, std::shared_ptr<EmbeddedStore::Watcher> w)
      : remove_(std::move(remove)), w_(std::move(w)) {}
  ~EmbeddedWatch() override {
    remove_();
    std::lock_guard<std::mutex> lock(w_->cb_mu);  // waits for a callback in progress
    w_->cancelled = true;
  }

 private:
  std::function<void()> remove_;
  std::shared_ptr<EmbeddedStore::Watcher> w_;
};

}  // namespace

Result<std::unique_ptr<EmbeddedStore>> EmbeddedStore::Open(const std::string& dir) {
  MRL_RETURN_IF_ERROR(EnsureWritableDir(dir));
  std::unique_ptr<EmbeddedStore> s(new EmbeddedStore((fs::path(dir) / "meta.json").string()));
  MRL_RETURN_IF_ERROR(s->Load());
  s->expiry_ = std::thread([p = s.get()] { p->ExpiryLoop(); });
  s->dispatch_ = std::thread([p = s.get()] { p->DispatchLoop(); });
  return s;
}

Result<ReadResult> EmbeddedStore::ReadSnapshot(const std::string& dir) {
  EmbeddedStore s((fs::path(dir) / "meta.json").string());  // no threads: Open starts them
  MRL_RETURN_IF_ERROR(s.Load());
  ReadResult out;
  out.revision = s.revision_;
  for (auto& [key, kv] : s.kvs_) out.kvs.push_back(kv);
  return out;
}

EmbeddedStore::~EmbeddedStore() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (expiry_.joinable()) expiry_.join();
  if (dispatch_.joinable()) dispatch_.join();
}

Status EmbeddedStore::Load() {
  if (!fs::exists(path_)) return Status::Ok();
  auto text = ReadFile(path_);
  if (!text.ok()) return text.status();
  const json j = json::parse(text.value(), nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) { return Status::Corruption("'" + path_ + "': " + why); };
  if (!j.is_object()) return bad("not a JSON object");
  try {
    revision_ = j.at("revision").get<int64_t>();
    next_lease_ = j.at("next_lease").get<int64_t>();
    compacted_ = revision_;  // the history is not persisted: watch from an older revision = re-read
    const auto now = Clock::now();
    for (const json& l : j.at("leases")) {
      const int64_t ttl = l.at("ttl").get<int64_t>();
      leases_[l.at("id").get<int64_t>()] = {ttl, now + std::chrono::seconds(ttl)};
    }
    for (const json& e : j.at("kvs")) {
      KeyValue kv;
      auto k = Base64Decode(e.at("key").get<std::string>());
      auto v = Base64Decode(e.at("value").get<std::string>());
      if (!k.ok() || !v.ok()) return bad("a key or value is not base64");
      kv.key = std::move(k).value();
      kv.value = std::move(v).value();
      kv.create_revision = e.at("create").get<int64_t>();
      kv.mod_revision = e.at("mod").get<int64_t>();
      kv.version = e.at("version").get<int64_t>();
      kv.lease = e.at("lease").get<int64_t>();
      kvs_[kv.key] = std::move(kv);
    }
  } catch (const json::exception& e) {
    return bad(e.what());
  }
  return Status::Ok();
}

Status EmbeddedStore::PersistLocked() const {
  json kvs = json::array(), leases = json::array();
  for (const auto& [k, kv] : kvs_) {
    kvs.push_back({{"key", Base64Encode(kv.key)},
                   {"value", Base64Encode(kv.value)},
                   {"create", kv.create_revision},
                   {"mod", kv.mod_revision},
                   {"version", kv.version},
                   {"lease", kv.lease}});
  }
  for (const auto& [id, l] : leases_) leases.push_back({{"id", id}, {"ttl", l.ttl_s}});
  const json j = {
      {"revision", revision_}, {"next_lease", next_lease_}, {"leases", leases}, {"kvs", kvs}};
  return WriteFileAtomic(path_, j.dump(1));
}

Result<ReadResult> EmbeddedStore::Get(const std::string& key) {
  std::lock_guard<std::mutex> lock(mu_);
  ReadResult r;
  r.revision = revision_;
  if (auto it = kvs_.find(key); it != kvs_.end()) r.kvs.push_back(it->second);
  return r;
}

Result<ReadResult> EmbeddedStore::GetPrefix(const std::string& prefix) {
  std::lock_guard<std::mutex> lock(mu_);
  ReadResult r;
  r.revision = revision_;
  for (auto it = kvs_.lower_bound(prefix); it != kvs_.end() && HasPrefix(it->first, prefix); ++it) {
    r.kvs.push_back(it->second);
  }
  return r;
}

void EmbeddedStore::DeleteKeyLocked(std::map<std::string, KeyValue>::iterator it,
                                    std::vector<WatchEvent>* out) {
  WatchEvent e;
  e.type = WatchEvent::Type::kDelete;
  e.kv.key = it->first;
  e.kv.mod_revision = revision_ + 1;
  out->push_back(std::move(e));
  kvs_.erase(it);
}

void EmbeddedStore::ApplyLocked(const Op& op, std::vector<WatchEvent>* out) {
  const int64_t rev = revision_ + 1;  // every op of one transaction shares its revision
  switch (op.kind) {
    case Op::Kind::kPut: {
      KeyValue& kv = kvs_[op.key];
      if (kv.create_revision == 0) {
        kv.key = op.key;
        kv.create_revision = rev;
        kv.version = 0;
      }
      kv.value = op.value;
      kv.mod_revision = rev;
      ++kv.version;
      kv.lease = op.lease;
      out->push_back({WatchEvent::Type::kPut, kv});
      break;
    }
    case Op::Kind::kDelete:
      if (auto it = kvs_.find(op.key); it != kvs_.end()) DeleteKeyLocked(it, out);
      break;
    case Op::Kind::kDeletePrefix:
      for (auto it = kvs_.lower_bound(op.key); it != kvs_.end() && HasPrefix(it->first, op.key);) {
        auto next = std::next(it);
        DeleteKeyLocked(it, out);
        it = next;
      }
      break;
  }
}

void EmbeddedStore::PublishLocked(std::vector<WatchEvent> events) {
  if (events.empty()) return;
  ++revision_;
  for (const WatchEvent& e : events) history_.push_back(e);
  while (history_.size() > kHistory) {
    compacted_ = history_.front().kv.mod_revision;
    history_.pop_front();
  }
  for (const auto& w : watchers_) {
    if (w->ended) continue;
    std::vector<WatchEvent> mine;
    for (const WatchEvent& e : events) {
      if (HasPrefix(e.kv.key, w->prefix)) mine.push_back(e);
    }
    if (!mine.empty()) pending_.push_back({w, Status::Ok(), std::move(mine)});
  }
  cv_.notify_all();
}

Result<TxnResult> EmbeddedStore::Txn(const std::vector<Compare>& compares,
                                     const std::vector<Op>& then,
                                     const std::vector<Op>& otherwise) {
  std::lock_guard<std::mutex> lock(mu_);
  bool ok = true;
  for (const Compare& c : compares) {
    auto it = kvs_.find(c.key);
    const KeyValue* kv = it == kvs_.end() ? nullptr : &it->second;
    switch (c.field) {
      case Compare::Field::kModRevision:
        ok = ok && (kv ? kv->mod_revision : 0) == c.number;
        break;
      case Compare::Field::kCreateRevision:
        ok = ok && (kv ? kv->create_revision : 0) == c.number;
        break;
      case Compare::Field::kVersion:
        ok = ok && (kv ? kv->version : 0) == c.number;
        break;
      case Compare::Field::kValue:
        ok = ok && kv != nullptr && kv->value == c.value;  // etcd: an absent key fails it
        break;
    }
  }
  const std::vector<Op>& ops = ok ? then : otherwise;
  for (const Op& op : ops) {
    if (op.kind == Op::Kind::kPut && op.lease != 0 && !leases_.count(op.lease)) {
      return Status::NotFound("lease " + std::to_string(op.lease) + " not found");
    }
  }
  // Apply to a copy first: a failed write to disk changes nothing.
  const auto saved_kvs = kvs_;
  std::vector<WatchEvent> events;
  for (const Op& op : ops) ApplyLocked(op, &events);
  if (!events.empty()) {
    ++revision_;
    Status st = PersistLocked();
    --revision_;
    if (!st.ok()) {
      kvs_ = saved_kvs;
      return st.WithContext("metadata store");
    }
  }
  PublishLocked(std::move(events));
  return TxnResult{ok, revision_};
}

Result<int64_t> EmbeddedStore::GrantLease(int64_t ttl_s) {
  if (ttl_s < 1) return Status::InvalidArgument("lease TTL must be >= 1 s");
  std::lock_guard<std::mutex> lock(mu_);
  const int64_t id = next_lease_++;
  leases_[id] = {ttl_s, Clock::now() + std::chrono::seconds(ttl_s)};
  Status st = PersistLocked();
  if (!st.ok()) {
    leases_.erase(id);
    return st.WithContext("metadata store");
  }
  cv_.notify_all();
  return id;
}

Status EmbeddedStore::KeepAlive(int64_t lease) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = leases_.find(lease);
  if (it == leases_.end()) return Status::NotFound("lease " + std::to_string(lease) + " not found");
  it->second.expires = Clock::now() + std::chrono::seconds(it->second.ttl_s);
  return Status::Ok();
}

Status EmbeddedStore::RevokeLease(int64_t lease) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!leases_.count(lease)) {
    return Status::NotFound("lease " + std::to_string(lease) + " not found");
  }
  return DropLeaseLocked(lease);
}

Status EmbeddedStore::DropLeaseLocked(int64_t lease) {
  leases_.erase(lease);
  std::vector<WatchEvent> events;
  for (auto it = kvs_.begin(); it != kvs_.end();) {
    auto next = std::next(it);
    if (it->second.lease == lease) DeleteKeyLocked(it, &events);
    it = next;
  }
  if (!events.empty()) ++revision_;  // persisted with the revision its deletions get
  Status st = PersistLocked();
  if (!events.empty()) --revision_;
  PublishLocked(std::move(events));
  return st;
}

void EmbeddedStore::ExpiryLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stop_) {
    const auto now = Clock::now();
    auto next = now + std::chrono::seconds(1);
    std::vector<int64_t> expired;
    for (const auto& [id, l] : leases_) {
      if (l.expires <= now) {
        expired.push_back(id);
      } else {
        next = std::min(next, l.expires);
      }
    }
    // A failed write leaves the file behind the memory state; the next change rewrites it.
    for (int64_t id : expired) (void)DropLeaseLocked(id);
    cv_.wait_until(lock, next, [this] { return stop_; });
  }
}

void EmbeddedStore::DispatchLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    cv_.wait(lock, [this] { return stop_ || !pending_.empty(); });
    if (stop_) return;
    Delivery d = std::move(pending_.front());
    pending_.pop_front();
    lock.unlock();
    {
      std::lock_guard<std::mutex> cb(d.watcher->cb_mu);
      if (!d.watcher->cancelled) d.watcher->callback(d.status, d.events);
    }
    lock.lock();
  }
}

Result<std::unique_ptr<Watch>> EmbeddedStore::WatchPrefix(const std::string& prefix,
                                                          int64_t after_revision,
                                                          WatchCallback callback) {
  auto w = std::make_shared<Watcher>();
  w->prefix = prefix;
  w->callback = std::move(callback);
  std::lock_guard<std::mutex> lock(mu_);
  if (after_revision < compacted_) {
    w->ended = true;
    pending_.push_back({w,
                        Status::OutOfRange("revision " + std::to_string(after_revision + 1) +
                                           " was compacted (oldest kept: " +
                                           std::to_string(compacted_ + 1) + "): re-read"),
                        {}});
  } else {
    // The kept history after `after_revision`, one delivery per revision.
    std::vector<WatchEvent> batch;
    for (const WatchEvent& e : history_) {
      if (e.kv.mod_revision <= after_revision || !HasPrefix(e.kv.key, prefix)) continue;
      if (!batch.empty() && batch.back().kv.mod_revision != e.kv.mod_revision) {
        pending_.push_back({w, Status::Ok(), std::move(batch)});
        batch.clear();
      }
      batch.push_back(e);
    }
    if (!batch.empty()) pending_.push_back({w, Status::Ok(), std::move(batch)});
  }
  watchers_.push_back(w);
  cv_.notify_all();
  auto remove = [this, raw = w.get()] {
    std::lock_guard<std::mutex> l(mu_);
    std::erase_if(watchers_, [raw](const auto& p) { return p.get() == raw; });
  };
  return std::unique_ptr<Watch>(new EmbeddedWatch(std::move(remove), w));
}

}  // namespace mrl::meta
