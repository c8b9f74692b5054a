#include "meta/store.h"

#include "meta/embedded_store.h"
#include "meta/etcd_store.h"

namespace mrl::meta {

Result<int64_t> Store::Put(const std::string& key, const std::string& value, int64_t lease) {
  auto r = Txn({}, {Op::Put(key, value, lease)}, {});
  if (!r.ok()) return r.status();
  return r->revision;
}

std::string PrefixEnd(const std::string& prefix) {
  std::string end = prefix;
  while (!end.empty()) {
    if (static_cast<unsigned char>(end.back()) < 0xff) {
      end.back() = static_cast<char>(static_cast<unsigned char>(end.back()) + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // etcd: "\0" as range_end means every key >= key
}

Result<std::unique_ptr<Store>> OpenStore(const std::string& url) {
  if (url.rfind("etcd://", 0) == 0) {
    auto options = ParseEtcdUrl(url);
    if (!options.ok()) return options.status();
    auto s = EtcdStore::Open(options.value());
    if (!s.ok()) return s.status();
    return std::unique_ptr<Store>(std::move(s).value());
  }
  std::string dir = url;
  if (dir.rfind("file:", 0) == 0) dir = dir.substr(5);
  if (dir.empty() || dir.find("://") != std::string::npos) {
    return Status::InvalidArgument(
        "metadata store '" + url +
        "': want file:DIR, a directory, or etcd://host:port[,...][/prefix][?ca=...&user=...]");
  }
  auto s = EmbeddedStore::Open(dir);
  if (!s.ok()) return s.status();
  return std::unique_ptr<Store>(std::move(s).value());
}

}  // namespace mrl::meta
