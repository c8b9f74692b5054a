// Engine::Open, start-up (collections from RocksDB, their indexes), collection create / drop,
// stats and checkpoints. The layout of the implementation: shard/engine_impl.h.
#include "shard/engine_impl.h"

#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"

namespace mrl::shard::engine_internal {

namespace fs = std::filesystem;

Status EngineImpl::Init() {
  MRL_RETURN_IF_ERROR(EnsureWritableDir(options_.data_dir));
  index_dir_ = (fs::path(options_.data_dir) / "index").string();
  MRL_RETURN_IF_ERROR(EnsureWritableDir(index_dir_));
  auto st = Storage::Open((fs::path(options_.data_dir) / "db").string(), options_.block_cache_mb,
                          options_.sync_writes, options_.mmap_reads);
  if (!st.ok()) return st.status();
  storage_ = std::move(st.value());
  MRL_RETURN_IF_ERROR(ValidateDiskMarks(options_.disk));
  disk_ = std::make_unique<DiskGuard>(options_.data_dir, "shard at '" + options_.data_dir + "'",
                                      options_.disk);

  std::unique_ptr<rocksdb::Iterator> it(
      storage_->db->NewIterator(rocksdb::ReadOptions(), storage_->meta));
  std::vector<std::pair<uint32_t, CollectionSpec>> found;
  for (it->Seek(std::string(kCollectionMetaPrefix)); it->Valid(); it->Next()) {
    if (!it->key().starts_with(
            rocksdb::Slice(kCollectionMetaPrefix.data(), kCollectionMetaPrefix.size()))) {
      break;
    }
    uint32_t cid = 0;
    CollectionSpec spec;
    MRL_RETURN_IF_ERROR(DecodeCollectionRecord(it->value().ToStringView(), &cid, &spec));
    found.emplace_back(cid, std::move(spec));
  }
  MRL_RETURN_IF_ERROR(FromRocks(it->status(), "reading collection metadata"));
  it.reset();

  std::unordered_set<std::string> keep_files;
  for (auto& [cid, spec] : found) {
    auto state = std::make_shared<CollectionState>(cid, spec);
    std::string gen_bytes;
    rocksdb::Status s = storage_->db->Get(rocksdb::ReadOptions(), storage_->meta,
                                          GenerationMetaKey(cid), &gen_bytes);
    if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading generation");
    state->generation = s.ok() ? DecodeU64(gen_bytes) : 0;
    MRL_RETURN_IF_ERROR(OpenIndexes(state.get(), &keep_files));
    collections_[spec.name] = std::move(state);
  }
  RemoveIndexFilesExcept(keep_files, /*cid_prefix=*/"");
  return Status::Ok();
}

Status EngineImpl::CreateCollection(const CollectionSpec& spec) {
  MRL_RETURN_IF_ERROR(ValidateCollectionSpec(spec));
  std::lock_guard admin(admin_mu_);
  {
    std::shared_lock lock(mu_);
    auto it = collections_.find(spec.name);
    if (it != collections_.end()) {
      if (it->second->spec == spec) return Status::Ok();
      return Status::FailedPrecondition("collection '" + spec.name +
                                        "' already exists with another spec");
    }
  }
  std::string next_bytes;
  rocksdb::Status s = storage_->db->Get(rocksdb::ReadOptions(), storage_->meta,
                                        std::string(kNextCollectionIdKey), &next_bytes);
  if (!s.ok() && !s.IsNotFound()) return FromRocks(s, "reading next collection id");
  uint32_t cid = 1;
  if (s.ok() && next_bytes.size() == 4) std::memcpy(&cid, next_bytes.data(), 4);
  const uint32_t next = cid + 1;
  rocksdb::WriteBatch batch;
  batch.Put(storage_->meta, CollectionMetaKey(spec.name), EncodeCollectionRecord(cid, spec));
  batch.Put(storage_->meta, GenerationMetaKey(cid), EncodeU64(0));
  batch.Put(storage_->meta, std::string(kNextCollectionIdKey),
            rocksdb::Slice(reinterpret_cast<const char*>(&next), 4));
  rocksdb::WriteOptions wo = storage_->write_options;
  wo.sync = true;  // collection definitions are always durable
  MRL_RETURN_IF_ERROR(FromRocks(storage_->db->Write(wo, &batch), "creating collection"));

  auto state = std::make_shared<CollectionState>(cid, spec);
  for (const auto& ix : spec.indexes) {
    auto is = std::make_unique<IndexState>();
    is->spec = ix;
    is->index = MakeLowDIndex(ix, state->index_metric(), 1024);
    is->sequence = storage_->db->GetLatestSequenceNumber();
    state->indexes.push_back(std::move(is));
  }
  if (options_.rerank_rows) {
    bool loaded = false;
    std::string reason;
    auto rows = RowStore::Open((fs::path(index_dir_) / RowsFileName(cid)).string(),
                               state->codec.blob_bytes(), "", &loaded, &reason);
    if (rows.ok()) {
      state->rows = std::move(rows.value());
      state->rows_ok = true;
    } else {  // derived state: serve without it, reranks read RocksDB
      Warn("collection '%s': no rerank rows (%s); reranks read RocksDB", spec.name.c_str(),
           rows.status().ToString().c_str());
    }
  }
  std::unique_lock lock(mu_);
  collections_[spec.name] = std::move(state);
  return Status::Ok();
}

Result<CollectionSpec> EngineImpl::DescribeCollection(const std::string& name) const {
  auto c = Find(name);
  if (!c.ok()) return c.status();
  return c.value()->spec;
}

std::vector<CollectionSpec> EngineImpl::ListCollections() const {
  std::shared_lock lock(mu_);
  std::vector<CollectionSpec> out;
  for (const auto& [name, c] : collections_) out.push_back(c->spec);
  return out;
}

Status EngineImpl::DropCollection(const std::string& name) {
  std::lock_guard admin(admin_mu_);
  auto found = Find(name);
  if (!found.ok()) return found.status();
  auto c = found.value();
  {
    std::lock_guard w(c->write_mu);
    rocksdb::WriteBatch batch;
    batch.DeleteRange(storage_->points, CollectionPrefix(c->id), CollectionPrefix(c->id + 1));
    batch.DeleteRange(storage_->tombstones, CollectionPrefix(c->id), CollectionPrefix(c->id + 1));
    batch.Delete(storage_->meta, CollectionMetaKey(name));
    batch.Delete(storage_->meta, GenerationMetaKey(c->id));
    rocksdb::WriteOptions wo = storage_->write_options;
    wo.sync = true;
    MRL_RETURN_IF_ERROR(FromRocks(storage_->db->Write(wo, &batch), "dropping collection"));
    c->dropped = true;
  }
  {
    std::unique_lock lock(mu_);
    collections_.erase(name);
  }
  RemoveIndexFilesExcept({}, "c" + std::to_string(c->id) + "_");
  return Status::Ok();
}

EngineStats EngineImpl::Stats() const {
  EngineStats out;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, c] : collections_) {
      EngineStats::Collection sc;
      sc.name = name;
      sc.points = c->points.load();
      for (const auto& ix : c->indexes) {
        EngineStats::Collection::Index si;
        si.dims = ix->spec.dims;
        si.kind = ix->spec.kind;
        si.size = ix->index->size();
        si.memory_bytes = ix->index->memory_bytes();
        si.sequence = ix->sequence.load();
        si.loaded = ix->loaded;
        si.rebuild_reason = ix->rebuild_reason;
        sc.indexes.push_back(si);
      }
      if (c->rows) {
        sc.rows.enabled = c->rows_ok.load();
        sc.rows.rows = c->rows->size();
        sc.rows.file_bytes = c->rows->file_bytes();
        sc.rows.resident_bytes = c->rows->resident_bytes();
        sc.rows.table_bytes = c->rows->table_bytes();
        sc.rows.loaded = c->rows_loaded;
        sc.rows.rebuild_reason = c->rows_rebuild_reason;
      }
      out.collections.push_back(std::move(sc));
    }
  }
  rocksdb::DB* db = storage_->db.get();
  for (auto* cf : {storage_->points, storage_->meta, storage_->tombstones}) {
    uint64_t v = 0;
    if (db->GetIntProperty(cf, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
      out.disk_bytes += v;
    }
    if (db->GetIntProperty(cf, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
      out.memtable_bytes += v;
    }
  }
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(fs::path(options_.data_dir) / "db", ec)) {
    if (e.path().extension() == ".log") out.disk_bytes += e.file_size(ec);
  }
  out.block_cache_bytes = storage_->block_cache->GetUsage();
  const DiskUsage du = disk_->Sample();
  out.fs_total_bytes = du.total_bytes;
  out.fs_free_bytes = du.free_bytes;
  out.refusing_writes = disk_->refusing();
  out.write_refusals = disk_->refusals();
  {
    std::lock_guard lock(store_mu_);
    out.store_failed = store_failed_;
    out.store_error = store_error_;
    out.store_failed_since_unix_ms = store_failed_since_ms_;
  }
  return out;
}

Status EngineImpl::Checkpoint() {
  std::lock_guard cp(checkpoint_mu_);
  // After a disk error the WAL cannot be synced until the store has resumed.
  MRL_RETURN_IF_ERROR(ResumeIfFailed());
  rocksdb::DB* db = storage_->db.get();
  MRL_RETURN_IF_ERROR(FromRocks(db->FlushWAL(/*sync=*/true), "syncing the WAL"));
  rocksdb::FlushOptions fo;
  fo.wait = true;
  MRL_RETURN_IF_ERROR(
      FromRocks(db->Flush(fo, {storage_->points, storage_->meta, storage_->tombstones}),
                "flushing memtables"));
  std::vector<std::shared_ptr<CollectionState>> all;
  {
    std::shared_lock lock(mu_);
    for (const auto& [name, c] : collections_) all.push_back(c);
  }
  for (const auto& c : all) {
    // No write can interleave: the files reflect exactly generation c->generation.
    std::lock_guard w(c->write_mu);
    if (c->dropped) continue;
    for (const auto& ix : c->indexes) {
      const std::string name = IndexFileName(c->id, ix->spec, c->generation);
      const std::string path = (fs::path(index_dir_) / name).string();
      if (!fs::exists(path)) MRL_RETURN_IF_ERROR(ix->index->Save(path));
      RemoveIndexFilesExcept({name}, IndexFileStem(c->id, ix->spec.dims));
    }
    if (c->rows && c->rows_ok) {
      const std::string name = RowTableName(c->id, c->generation);
      const std::string path = (fs::path(index_dir_) / name).string();
      if (!fs::exists(path)) MRL_RETURN_IF_ERROR(c->rows->Persist(path));
      RemoveIndexFilesExcept({name}, RowTableStem(c->id));
    }
  }
  return Status::Ok();
}

Status EngineImpl::EvictRows(const std::string& collection) {
  auto c = Find(collection);
  if (!c.ok()) return c.status();
  return c.value()->rows ? c.value()->rows->Evict() : Status::Ok();
}

Result<std::shared_ptr<CollectionState>> EngineImpl::Find(const std::string& name) const {
  std::shared_lock lock(mu_);
  auto it = collections_.find(name);
  if (it == collections_.end()) return Status::NotFound("unknown collection '" + name + "'");
  return it->second;
}

Status EngineImpl::CheckQuery(const CollectionState& c, std::span<const float> q,
                              const char* what) const {
  if (!c.IsNestingDim(static_cast<int32_t>(q.size()))) {
    return Status::InvalidArgument(std::string(what) + " query has " + std::to_string(q.size()) +
                                   " dims, which is not a nesting dim of '" + c.spec.name + "' " +
                                   NestingString(c.spec.nesting));
  }
  return CheckFinite(q, std::string(what) + " query");
}

Status EngineImpl::CheckK(int32_t k, bool allow_zero) const {
  if (k < 0 || (k == 0 && !allow_zero)) {
    return Status::InvalidArgument("k = " + std::to_string(k) +
                                   " must be >= " + (allow_zero ? "0" : "1"));
  }
  if (k > options_.max_k) {
    return Status::OutOfRange("k = " + std::to_string(k) + " exceeds max_k " +
                              std::to_string(options_.max_k));
  }
  return Status::Ok();
}

Status EngineImpl::CheckEf(int32_t ef) const {
  if (ef < 0 || ef > 100000) {
    return Status::OutOfRange("ef = " + std::to_string(ef) + " not in [0, 100000]");
  }
  return Status::Ok();
}

}  // namespace mrl::shard::engine_internal

namespace mrl::shard {

Result<std::unique_ptr<Engine>> Engine::Open(const EngineOptions& options) {
  if (options.data_dir.empty()) return Status::InvalidArgument("engine: data_dir is empty");
  if (options.max_k < 1 || options.max_batch < 1) {
    return Status::InvalidArgument("engine: max_k and max_batch must be >= 1");
  }
  auto engine = std::make_unique<engine_internal::EngineImpl>(options);
  MRL_RETURN_IF_ERROR(engine->Init());
  return std::unique_ptr<Engine>(std::move(engine));
}

}  // namespace mrl::shard
