// The engine's write path: validate, encode outside the lock, one atomic WriteBatch (with the
// collection's generation bump) under write_mu, then the in-RAM indexes in the same order.
#include "shard/engine_impl.h"

#include <chrono>
#include <unordered_set>

namespace mrl::shard::engine_internal {

Status EngineImpl::Upsert(const std::string& collection, std::span<const PointView> points) {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  if (points.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::OutOfRange("upsert batch of " + std::to_string(points.size()) +
                              " points exceeds max_batch " + std::to_string(options_.max_batch));
  }
  for (const auto& p : points) {
    if (p.vector.size() != static_cast<size_t>(c.spec.dim)) {
      return Status::InvalidArgument("point " + std::to_string(p.id) + ": vector has " +
                                     std::to_string(p.vector.size()) + " floats, collection '" +
                                     collection + "' has dim " + std::to_string(c.spec.dim));
    }
    MRL_RETURN_IF_ERROR(CheckFinite(p.vector, "point " + std::to_string(p.id) + ": vector"));
    if (p.payload.size() > c.spec.max_payload_bytes) {
      return Status::OutOfRange("point " + std::to_string(p.id) + ": payload of " +
                                std::to_string(p.payload.size()) + " bytes exceeds " +
                                std::to_string(c.spec.max_payload_bytes));
    }
  }
  if (points.empty()) return Status::Ok();
  // Above the disk's high watermark: refused before anything is written (deletes still pass).
  MRL_RETURN_IF_ERROR(disk_->CheckWrite());

  // Encode outside the lock; the index sees the decoded stored vector (what a rebuild sees).
  const int32_t max_dims = c.MaxIndexDims();
  std::vector<float> prefixes(points.size() * static_cast<size_t>(max_dims));
  rocksdb::WriteBatch batch;
  std::string value;
  for (size_t i = 0; i < points.size(); ++i) {
    const auto& p = points[i];
    c.codec.Encode(p.vector, p.payload, &value);
    const PointKey key = EncodePointKey(c.id, BucketOf(p.id, c.spec.num_buckets), p.id);
    batch.Put(storage_->points, rocksdb::Slice(key.data(), key.size()), value);
    if (max_dims > 0) c.codec.DecodePrefix(value, max_dims, &prefixes[i * max_dims]);
  }

  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  Existing existing;
  if (c.indexes.empty()) {
    auto ex = CountExisting(c, points.size(), [&](size_t i) { return points[i].id; });
    if (!ex.ok()) return ex.status();
    existing = ex.value();
  }
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
  try {
    ApplyUpsertToIndexes(c, points, prefixes, max_dims);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("index update failed after the write: ") + e.what());
  }
  AfterWrite(c, existing, /*is_delete=*/false);
  return Status::Ok();
}

Status EngineImpl::Delete(const std::string& collection, std::span<const uint64_t> ids) {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  if (ids.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::OutOfRange("delete batch of " + std::to_string(ids.size()) +
                              " ids exceeds max_batch " + std::to_string(options_.max_batch));
  }
  if (ids.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  for (uint64_t id : ids) {
    const PointKey key = EncodePointKey(c.id, BucketOf(id, c.spec.num_buckets), id);
    batch.Delete(storage_->points, rocksdb::Slice(key.data(), key.size()));
  }
  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  Existing existing;
  if (c.indexes.empty()) {
    auto ex = CountExisting(c, ids.size(), [&](size_t i) { return ids[i]; });
    if (!ex.ok()) return ex.status();
    existing = ex.value();
  }
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
  for (auto& ix : c.indexes) {
    for (uint64_t id : ids) ix->index->Remove(id);
  }
  AfterWrite(c, existing, /*is_delete=*/true);
  return Status::Ok();
}

Status EngineImpl::DropBucket(const std::string& collection, uint32_t bucket) {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  if (bucket >= c.spec.num_buckets) {
    return Status::OutOfRange("bucket " + std::to_string(bucket) + " >= num_buckets " +
                              std::to_string(c.spec.num_buckets));
  }
  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  const std::string lower = BucketPrefix(c.id, bucket);
  const std::string upper = BucketPrefix(c.id, bucket + 1);
  std::vector<uint64_t> ids;
  {
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions ro;
    ro.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
    for (it->Seek(lower); it->Valid(); it->Next()) {
      ids.push_back(PointKeyId(it->key().ToStringView()));
    }
    MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning bucket"));
  }
  if (ids.empty()) return Status::Ok();
  rocksdb::WriteBatch batch;
  batch.DeleteRange(storage_->points, lower, upper);
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
  for (auto& ix : c.indexes) {
    for (uint64_t id : ids) ix->index->Remove(id);
  }
  AfterWrite(c, Existing{ids.size(), ids.size()}, /*is_delete=*/true);
  return Status::Ok();
}

void EngineImpl::ApplyUpsertToIndexes(CollectionState& c, std::span<const PointView> points,
                                      const std::vector<float>& prefixes, int32_t max_dims) {
  if (c.indexes.empty()) return;
  const size_t n = points.size();
  const size_t md = static_cast<size_t>(max_dims);
  bool bulk = n >= 256 && options_.threads > 1;
  std::vector<uint64_t> ids(n);
  for (size_t i = 0; i < n; ++i) ids[i] = points[i].id;
  if (bulk) {
    std::unordered_set<uint64_t> seen(ids.begin(), ids.end());
    bulk = seen.size() == n;
    for (size_t i = 0; bulk && i < n; ++i) bulk = !c.indexes[0]->index->Contains(ids[i]);
  }
  std::vector<float> prepared;
  for (auto& ix : c.indexes) {
    const size_t d = static_cast<size_t>(ix->spec.dims);
    prepared.resize(n * d);
    for (size_t i = 0; i < n; ++i) {
      std::copy_n(&prefixes[i * md], d, &prepared[i * d]);
      PrepareForMetric(c.spec.metric, &prepared[i * d], d);
    }
    if (bulk) {
      ix->index->AddBulk(ids, prepared.data(), options_.threads);
    } else {
      for (size_t i = 0; i < n; ++i) ix->index->Upsert(ids[i], &prepared[i * d]);
    }
  }
}

Status EngineImpl::WriteWithGeneration(CollectionState& c, rocksdb::WriteBatch* batch) {
  MRL_RETURN_IF_ERROR(ResumeIfFailed());
  const uint64_t gen = c.generation + 1;
  batch->Put(storage_->meta, GenerationMetaKey(c.id), EncodeU64(gen));
  const Status written =
      FromRocks(storage_->db->Write(storage_->write_options, batch), "writing to RocksDB");
  if (!written.ok()) {
    RecordStoreError(written);
    return written;
  }
  c.generation = gen;
  return Status::Ok();
}

void EngineImpl::RecordStoreError(const Status& error) {
  std::lock_guard lock(store_mu_);
  if (!store_failed_) {
    store_failed_since_ms_ = std::chrono::duration_cast<std::chrono::milliseconds>(
                                 std::chrono::system_clock::now().time_since_epoch())
                                 .count();
    Log("store refused a write, read-only until resumed: %s", error.ToString().c_str());
  }
  store_failed_ = true;
  store_error_ = error.message();
}

Status EngineImpl::ResumeIfFailed() {
  std::lock_guard lock(store_mu_);
  if (!store_failed_) return Status::Ok();
  const rocksdb::Status r = storage_->db->Resume();
  if (!r.ok()) {
    return Status::IoError("the store is read-only since an I/O error at unix ms " +
                           std::to_string(store_failed_since_ms_) + " (" + store_error_ +
                           "); resuming failed: " + r.ToString());
  }
  Log("store resumed after its I/O error (%s)", store_error_.c_str());
  store_failed_ = false;
  return Status::Ok();
}

void EngineImpl::AfterWrite(CollectionState& c, const Existing& e, bool is_delete) {
  const uint64_t seq = storage_->db->GetLatestSequenceNumber();
  for (auto& ix : c.indexes) ix->sequence = seq;
  if (!c.indexes.empty()) {
    c.points = c.indexes[0]->index->size();
  } else if (is_delete) {
    c.points -= std::min<uint64_t>(e.present, c.points.load());
  } else {
    c.points += e.distinct - e.present;
  }
}

}  // namespace mrl::shard::engine_internal
