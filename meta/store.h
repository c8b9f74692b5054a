// The metadata store: where a cluster keeps its truth (collection specs, the shard map and its
// epoch, the move journal, shard registrations, coordinator sessions), behind one interface with
// etcd's model: keys in one ordered space, a store-wide revision that grows with every change,
// multi-key transactions guarded by compares (compare-and-swap on a key's mod revision), leases
// whose keys vanish when they expire, and watches of a prefix from a revision.
//
// Two implementations: EmbeddedStore (a file in a data dir: one process, no etcd; the default for
// `mrlctl up` and the main job) and EtcdStore (etcd's v3 JSON gateway over HTTP, with failover
// across endpoints). Both pass the one store suite (tests/meta_store_test.cc).
//
// Thread safety: every method of a Store may be called concurrently.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl::meta {

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;  // the revision that created the key (0: absent)
  int64_t mod_revision = 0;     // the revision of its last change
  int64_t version = 0;          // changes since creation (1 after the first put)
  int64_t lease = 0;            // the lease it is attached to (0: none)
};

struct ReadResult {
  std::vector<KeyValue> kvs;  // in key order
  int64_t revision = 0;       // the store's revision when it was read
};

// A transaction's guard: every compare must hold for `then` to run, else `otherwise` runs.
struct Compare {
  enum class Field { kModRevision, kCreateRevision, kVersion, kValue };
  std::string key;
  Field field = Field::kModRevision;
  int64_t number = 0;  // kModRevision / kCreateRevision / kVersion (0: the key is absent)
  std::string value;   // kValue
  // Equality: the guard etcd's election and compare-and-swap patterns need.
  static Compare ModRevisionIs(std::string key, int64_t rev) {
    return {std::move(key), Field::kModRevision, rev, {}};
  }
  static Compare Absent(std::string key) { return {std::move(key), Field::kCreateRevision, 0, {}}; }
  static Compare ValueIs(std::string key, std::string value) {
    return {std::move(key), Field::kValue, 0, std::move(value)};
  }
};

struct Op {
  enum class Kind { kPut, kDelete, kDeletePrefix };
  Kind kind = Kind::kPut;
  std::string key;
  std::string value;
  int64_t lease = 0;  // kPut: attach to this lease (0: none)
  static Op Put(std::string key, std::string value, int64_t lease = 0) {
    return {Kind::kPut, std::move(key), std::move(value), lease};
  }
  static Op Delete(std::string key) { return {Kind::kDelete, std::move(key), {}, 0}; }
  static Op DeletePrefix(std::string prefix) {
    return {Kind::kDeletePrefix, std::move(prefix), {}, 0};
  }
};

struct TxnResult {
  bool succeeded = false;  // the compares held and `then` ran
  int64_t revision = 0;    // the store's revision after the transaction
};

struct WatchEvent {
  enum class Type { kPut, kDelete };
  Type type = Type::kPut;
  KeyValue kv;  // for kDelete: key and mod_revision (the deleting revision)
};

// A running watch; destroying it cancels it (no callback runs after the destructor returns).
// Destroy it outside its own callback, and before the store.
class Watch {
 public:
  virtual ~Watch() = default;
};

// Receives the events of one revision at a time, in revision order. A non-ok status ends the
// watch: OutOfRange when the start revision was compacted away (re-read, then watch from the
// read's revision + 1), Unavailable when the store cannot be reached for longer than the
// watch's retry allows.
using WatchCallback = std::function<void(const Status&, const std::vector<WatchEvent>&)>;

class Store {
 public:
  virtual ~Store() = default;

  // One key (an empty kvs when it is absent), or every key starting with `prefix`.
  virtual Result<ReadResult> Get(const std::string& key) = 0;
  virtual Result<ReadResult> GetPrefix(const std::string& prefix) = 0;

  // Atomically: if every compare holds, apply `then`, else `otherwise`.
  virtual Result<TxnResult> Txn(const std::vector<Compare>& compares, const std::vector<Op>& then,
                                const std::vector<Op>& otherwise = {}) = 0;
  Result<int64_t> Put(const std::string& key, const std::string& value, int64_t lease = 0);

  // Leases: keys put with a lease are deleted when it expires (no keep-alive for ttl_s) or is
  // revoked. KeepAlive renews it once; NotFound when it has already expired.
  virtual Result<int64_t> GrantLease(int64_t ttl_s) = 0;
  virtual Status KeepAlive(int64_t lease) = 0;
  virtual Status RevokeLease(int64_t lease) = 0;

  // Events of keys under `prefix` with revision > after_revision, on a thread of the store.
  virtual Result<std::unique_ptr<Watch>> WatchPrefix(const std::string& prefix,
                                                     int64_t after_revision,
                                                     WatchCallback callback) = 0;

  // "embedded file:/var/lib/mrl/coord/meta.json", "etcd 127.0.0.1:2379,... prefix /mrl/".
  virtual std::string Describe() const = 0;
};

// "file:DIR" (or a plain directory path): EmbeddedStore in DIR. "etcd://h:p[,h:p...][/prefix]":
// EtcdStore, every key under the prefix (default "/mrl/"), with TLS and user/password from the
// URL's parameters (meta/etcd_store.h, ParseEtcdUrl). InvalidArgument for anything else.
Result<std::unique_ptr<Store>> OpenStore(const std::string& url);

// The smallest key greater than every key starting with `prefix` (etcd's range_end).
std::string PrefixEnd(const std::string& prefix);

}  // namespace mrl::meta
