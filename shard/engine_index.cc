// The in-RAM indexes' life at start-up: load the file persisted for the collection's current
// generation, else rebuild from one scan of RocksDB (bulk, with progress); remove stale files.
#include "shard/engine_impl.h"

#include <cinttypes>
#include <filesystem>

namespace mrl::shard::engine_internal {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

Status EngineImpl::OpenIndexes(CollectionState* c, std::unordered_set<std::string>* keep) {
  std::vector<IndexState*> stale;
  for (const auto& spec : c->spec.indexes) {
    auto is = std::make_unique<IndexState>();
    is->spec = spec;
    const std::string name = IndexFileName(c->id, spec, c->generation);
    const std::string path = (fs::path(index_dir_) / name).string();
    if (fs::exists(path)) {
      auto loaded = LoadLowDIndex(path, spec, c->index_metric());
      if (loaded.ok()) {
        is->index = std::move(loaded.value());
        is->loaded = true;
        keep->insert(name);
        Log("collection '%s': loaded index d=%d (%s, %" PRIu64 " points) from %s",
            c->spec.name.c_str(), spec.dims, KindName(spec.kind), is->index->size(), name.c_str());
      } else {
        is->rebuild_reason = loaded.status().message();
      }
    } else {
      is->rebuild_reason = MissingIndexReason(*c, spec);
    }
    if (!is->loaded) {
      Warn("collection '%s': index d=%d (%s) not loaded: %s; rebuilding it from RocksDB",
           c->spec.name.c_str(), spec.dims, KindName(spec.kind), is->rebuild_reason.c_str());
    }
    if (!is->index) {
      is->index = MakeLowDIndex(spec, c->index_metric(), 1024);
      stale.push_back(is.get());
    }
    c->indexes.push_back(std::move(is));
  }
  const uint64_t seq = storage_->db->GetLatestSequenceNumber();
  for (auto& ix : c->indexes) ix->sequence = seq;
  MRL_RETURN_IF_ERROR(OpenRows(c, keep));
  const bool fill_rows = c->rows && !c->rows_loaded;
  if (stale.empty() && !c->indexes.empty() && !fill_rows) {
    c->points = c->indexes[0]->index->size();
    return Status::Ok();
  }
  return Rebuild(c, stale, fill_rows);
}

Status EngineImpl::OpenRows(CollectionState* c, std::unordered_set<std::string>* keep) {
  if (!options_.rerank_rows) return Status::Ok();
  const std::string rows_name = RowsFileName(c->id);
  const std::string table_name = RowTableName(c->id, c->generation);
  bool loaded = false;
  std::string reason;
  auto rows = RowStore::Open((fs::path(index_dir_) / rows_name).string(), c->codec.blob_bytes(),
                             (fs::path(index_dir_) / table_name).string(), &loaded, &reason);
  if (!rows.ok()) return rows.status();
  c->rows = std::move(rows.value());
  c->rows_loaded = loaded;
  keep->insert(rows_name);
  if (loaded) {
    keep->insert(table_name);
    c->rows_ok = true;
    Log("collection '%s': loaded %" PRIu64 " rerank rows from %s", c->spec.name.c_str(),
        c->rows->size(), rows_name.c_str());
  } else {
    c->rows_rebuild_reason = reason + " (RocksDB is at generation " +
                             std::to_string(c->generation) + ")";
    Warn("collection '%s': rerank rows not loaded: %s; rewriting them from RocksDB",
         c->spec.name.c_str(), c->rows_rebuild_reason.c_str());
  }
  return Status::Ok();
}

std::string EngineImpl::MissingIndexReason(const CollectionState& c, const IndexSpec& spec) const {
  // Files of this index for other generations: the persisted one is stale.
  const std::string stem = IndexFileStem(c.id, spec.dims);
  const std::string ext = spec.kind == IndexKind::kHnsw ? ".hnsw" : ".exact";
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(index_dir_, ec)) {
    const std::string f = e.path().filename().string();
    if (f.rfind(stem, 0) != 0 || f.size() <= stem.size() + ext.size() ||
        f.compare(f.size() - ext.size(), ext.size(), ext) != 0) {
      continue;
    }
    const std::string gen = f.substr(stem.size(), f.size() - stem.size() - ext.size());
    if (gen.empty() || gen.find_first_not_of("0123456789") != std::string::npos) continue;
    return "stale: the last checkpoint saved it at generation " + gen +
           ", RocksDB is at generation " + std::to_string(c.generation) +
           " (writes after the last checkpoint, or a crash)";
  }
  return "missing: no index file for generation " + std::to_string(c.generation) +
         " (never checkpointed, or removed)";
}

Status EngineImpl::Rebuild(CollectionState* c, const std::vector<IndexState*>& stale,
                           bool fill_rows) {
  int32_t max_dims = 0;
  for (auto* ix : stale) max_dims = std::max(max_dims, ix->spec.dims);
  const size_t md = static_cast<size_t>(max_dims);
  constexpr size_t kChunk = 8192;
  std::vector<uint64_t> ids;
  std::vector<float> prefixes;
  std::vector<float> prepared;
  ids.reserve(kChunk);
  prefixes.reserve(kChunk * md);
  uint64_t total = 0;
  const auto start = Clock::now();
  auto last_report = start;
  auto flush = [&] {
    for (auto* ix : stale) {
      const size_t d = static_cast<size_t>(ix->spec.dims);
      prepared.resize(ids.size() * d);
      for (size_t i = 0; i < ids.size(); ++i) {
        std::copy_n(&prefixes[i * md], d, &prepared[i * d]);
        PrepareForMetric(c->spec.metric, &prepared[i * d], d);
      }
      ix->index->AddBulk(ids, prepared.data(), options_.threads);
    }
    total += ids.size();
    ids.clear();
    prefixes.clear();
    const auto now = Clock::now();
    if (now - last_report > std::chrono::seconds(2)) {
      const double s = std::chrono::duration<double>(now - start).count();
      Log("collection '%s': indexed %" PRIu64 " points (%.0f/s)", c->spec.name.c_str(), total,
          total / s);
      last_report = now;
    }
  };
  const std::string upper = CollectionPrefix(c->id + 1);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
  try {
    for (it->Seek(CollectionPrefix(c->id)); it->Valid(); it->Next()) {
      const uint64_t id = PointKeyId(it->key().ToStringView());
      if (max_dims > 0 || fill_rows) {
        const std::string_view v = it->value().ToStringView();
        MRL_RETURN_IF_ERROR(c->codec.Check(v));
        if (max_dims > 0) {
          prefixes.resize(prefixes.size() + md);
          c->codec.DecodePrefix(v, max_dims, &prefixes[prefixes.size() - md]);
        }
        if (fill_rows) {
          // Derived state: a rows file that cannot be written (disk full) leaves the shard
          // serving, with reranks read from RocksDB.
          const Status put = c->rows->Put(id, c->codec.Blob(v).data());
          if (!put.ok()) {
            Warn("collection '%s': rerank rows not rebuilt (%s); reranks read RocksDB",
                 c->spec.name.c_str(), put.ToString().c_str());
            fill_rows = false;
            c->rows_rebuild_reason += "; rewriting failed: " + put.message();
          }
        }
      }
      ids.push_back(id);
      if (ids.size() == kChunk) flush();
    }
    MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning collection for an index build"));
    if (!ids.empty()) flush();
  } catch (const std::exception& e) {
    return Status::Internal("index build of '" + c->spec.name + "' failed: " + e.what());
  }
  if (fill_rows) c->rows_ok = true;
  c->points = total;
  if (!stale.empty()) {
    Log("collection '%s': rebuilt %zu index(es) over %" PRIu64 " points in %.1f s",
        c->spec.name.c_str(), stale.size(), total,
        std::chrono::duration<double>(Clock::now() - start).count());
  }
  return Status::Ok();
}

void EngineImpl::RemoveIndexFilesExcept(const std::unordered_set<std::string>& keep,
                                        const std::string& prefix) {
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(index_dir_, ec)) {
    const std::string name = e.path().filename().string();
    // A kept file keeps its checksum sidecar.
    const std::string sum = ".sum";
    const bool sidecar = name.size() > sum.size() &&
                         name.compare(name.size() - sum.size(), sum.size(), sum) == 0;
    const std::string file = sidecar ? name.substr(0, name.size() - sum.size()) : name;
    if (name.rfind(prefix, 0) != 0 || keep.count(file)) continue;
    fs::remove(e.path(), ec);
  }
}

}  // namespace mrl::shard::engine_internal
