#include "shard/registration.h"

#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/atomic_file.h"

namespace mrl::shard {

Result<std::string> ResolveShardId(const std::string& configured, const std::string& data_dir) {
  std::string id = configured;
  const std::string path = (std::filesystem::path(data_dir) / "shard_id").string();
  if (id.empty()) {
    std::ifstream in(path);
    std::getline(in, id);
    if (id.empty()) {
      id = meta::RandomMemberId("shard-");
      Status st = WriteFileAtomic(path, id + "\n");
      if (!st.ok()) return st;
    }
  }
  if (!meta::ValidMemberId(id)) {
    return Status::InvalidArgument("shard id '" + id +
                                   "' (from --shard-id or " + path +
                                   ") must be 1-64 of [A-Za-z0-9_.:-]");
  }
  return id;
}

Result<std::unique_ptr<ShardRegistration>> ShardRegistration::Start(
    RegistrationOptions options, std::function<bool()> read_only) {
  if (options.meta_url.rfind("etcd", 0) != 0) {
    return Status::InvalidArgument(
        "--meta '" + options.meta_url +
        "': a shard registers in a store the coordinators share (etcd://host:port,.../prefix); "
        "the embedded store is one coordinator's file");
  }
  if (options.ttl_s < 1) return Status::InvalidArgument("--meta-ttl-s must be >= 1");
  auto store = meta::OpenStore(options.meta_url);
  if (!store.ok()) return store.status();
  std::unique_ptr<ShardRegistration> r(new ShardRegistration());
  r->opt_ = std::move(options);
  r->key_ = kShardsPrefix + r->opt_.id;
  r->started_unix_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  r->read_only_ = std::move(read_only);
  r->store_ = std::move(store).value();
  ShardRegistration* self = r.get();
  r->leased_ = std::make_unique<meta::LeasedKey>(
      r->store_.get(), meta::LeasedKeyOptions{r->key_, r->opt_.ttl_s, "mrl-shard"},
      [self] { return self->Value(); });
  return r;
}

ShardRegistration::~ShardRegistration() { leased_.reset(); }

std::string ShardRegistration::Value() const {
  const std::string state = draining_.load()             ? "draining"
                            : read_only_ && read_only_() ? "read_only"
                                                         : "serving";
  return nlohmann::json{{"id", opt_.id},
                        {"address", opt_.address},
                        {"state", state},
                        {"version", opt_.version},
                        {"pid", static_cast<int64_t>(getpid())},
                        {"started_unix_ms", started_unix_ms_}}
      .dump();
}

void ShardRegistration::SetDraining() {
  draining_ = true;
  leased_->Update();
}

Status ShardRegistration::Release() { return leased_->Release(); }

}  // namespace mrl::shard
