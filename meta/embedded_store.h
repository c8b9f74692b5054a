// The metadata store in one process, persisted to DIR/meta.json (written atomically after every
// change, fsync'ed: a change is durable once the call returns). The default for `mrlctl up` and
// the main job, which must run without etcd; one coordinator owns it. Same semantics as etcd
// where the store suite checks them: revisions, compares, leases (timers restart at open, as
// etcd's do after a leader change), watches from a revision (the last kHistory events are kept;
// an older start revision is OutOfRange, like etcd's compaction).
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <thread>

#include "meta/store.h"

namespace mrl::meta {

class EmbeddedStore final : public Store {
 public:
  static constexpr size_t kHistory = 10000;

  static Result<std::unique_ptr<EmbeddedStore>> Open(const std::string& dir);
  // What DIR/meta.json holds now, read without opening the store (a follower process reading the
  // owner's file); an empty result when there is no file.
  static Result<ReadResult> ReadSnapshot(const std::string& dir);
  ~EmbeddedStore() override;

  Result<ReadResult> Get(const std::string& key) override;
  Result<ReadResult> GetPrefix(const std::string& prefix) override;
  Result<TxnResult> Txn(const std::vector<Compare>& compares, const std::vector<Op>& then,
                        const std::vector<Op>& otherwise) override;
  Result<int64_t> GrantLease(int64_t ttl_s) override;
  Status KeepAlive(int64_t lease) override;
  Status RevokeLease(int64_t lease) override;
  Result<std::unique_ptr<Watch>> WatchPrefix(const std::string& prefix, int64_t after_revision,
                                             WatchCallback callback) override;
  std::string Describe() const override { return "embedded file:" + path_; }

  struct Watcher;  // internal

 private:
  using Clock = std::chrono::steady_clock;
  struct Lease {
    int64_t ttl_s = 0;
    Clock::time_point expires;
  };
  explicit EmbeddedStore(std::string path) : path_(std::move(path)) {}
  Status Load();
  Status PersistLocked() const;                                  // REQUIRES: mu_
  void ApplyLocked(const Op& op, std::vector<WatchEvent>* out);  // REQUIRES: mu_
  void DeleteKeyLocked(std::map<std::string, KeyValue>::iterator it,
                       std::vector<WatchEvent>* out);  // REQUIRES: mu_
  void PublishLocked(std::vector<WatchEvent> events);  // REQUIRES: mu_
  Status DropLeaseLocked(int64_t lease);               // deletes it and its keys; REQUIRES: mu_
  void ExpiryLoop();
  void DispatchLoop();

  const std::string path_;
  mutable std::mutex mu_;
  std::condition_variable cv_;  // wakes both loops
  bool stop_ = false;
  int64_t revision_ = 1;  // etcd starts at 1
  int64_t next_lease_ = 1;
  std::map<std::string, KeyValue> kvs_;
  std::map<int64_t, Lease> leases_;
  std::deque<WatchEvent> history_;  // the last kHistory events, in revision order
  int64_t compacted_ = 0;           // events at or below this revision are gone
  std::vector<std::shared_ptr<Watcher>> watchers_;
  // Pending deliveries: (watcher, status, events), delivered in order by dispatch_.
  struct Delivery {
    std::shared_ptr<Watcher> watcher;
    Status status;
    std::vector<WatchEvent> events;
  };
  std::deque<Delivery> pending_;
  std::thread expiry_, dispatch_;
};

}  // namespace mrl::meta
