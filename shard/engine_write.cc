// The engine's write path: validate, encode outside the lock, decide versioned writes against the
// stored versions and tombstones, one atomic WriteBatch (with the collection's generation bump)
// under write_mu, then the in-RAM indexes in the same order. Bucket-wide calls (scan, checksum,
// DropBucket, PurgeTombstones) are in engine_bucket.cc.
#include "shard/engine_impl.h"

#include <chrono>
#include <cstring>
#include <unordered_set>

namespace mrl::shard::engine_internal {

Status EngineImpl::Upsert(const std::string& collection, std::span<const PointView> points,
                          WriteCounts* counts) {
  WriteCounts ignored;
  WriteCounts& out = counts ? *counts : ignored;
  out = WriteCounts{};
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

  // Encode outside the lock; the index sees the decoded stored vector (what a rebuild sees). An
  // unversioned batch (every point applies) goes straight into the WriteBatch; a versioned one
  // is decided under the lock, against the versions stored then.
  const size_t n = points.size();
  const int32_t max_dims = c.MaxIndexDims();
  const size_t md = static_cast<size_t>(max_dims);
  std::vector<float> prefixes(n * md);
  const bool versioned =
      std::any_of(points.begin(), points.end(), [](const PointView& p) { return p.version != 0; });
  rocksdb::WriteBatch batch;
  std::vector<std::string> values(versioned ? n : 1);
  std::vector<PointKey> keys(n);
  // The rerank rows' bytes of each point (the value's vector blob).
  const size_t bb = c.rows ? c.codec.blob_bytes() : 0;
  std::vector<char> blobs(n * bb);
  for (size_t i = 0; i < n; ++i) {
    const auto& p = points[i];
    std::string& value = values[versioned ? i : 0];
    c.codec.Encode(p.vector, p.payload, p.version, &value);
    if (bb > 0) std::memcpy(&blobs[i * bb], c.codec.Blob(value).data(), bb);
    keys[i] = EncodePointKey(c.id, BucketOf(p.id, c.spec.num_buckets), p.id);
    if (!versioned) {
      batch.Put(storage_->points, rocksdb::Slice(keys[i].data(), kPointKeySize), value);
    }
    if (max_dims > 0) c.codec.DecodePrefix(value, max_dims, &prefixes[i * md]);
  }

  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  std::vector<PointView> kept;  // the applied points of a versioned batch, in batch order
  std::vector<size_t> kept_at;  // their positions in `points`
  std::vector<float> kept_prefixes;
  if (versioned) {
    VersionMap known;
    std::vector<uint64_t> ids(n);
    for (size_t i = 0; i < n; ++i) ids[i] = points[i].id;
    MRL_RETURN_IF_ERROR(ReadVersions(c, std::move(ids), &known));
    for (size_t i = 0; i < n; ++i) {
      const PointView& p = points[i];
      IdVersions& st = known[p.id];
      if (p.version != 0 && p.version <= st.newest()) continue;  // stale, or a replay
      const rocksdb::Slice key(keys[i].data(), kPointKeySize);
      batch.Put(storage_->points, key, values[i]);
      if (p.version != 0 && st.tombstone != 0) {
        batch.Delete(storage_->tombstones, key);  // the point is now the id's newest event
        st.tombstone = 0;
      }
      st.present = true;
      st.point = p.version;
      kept.push_back(p);
      kept_at.push_back(i);
      kept_prefixes.insert(kept_prefixes.end(), prefixes.begin() + i * md,
                           prefixes.begin() + (i + 1) * md);
    }
    out.skipped = static_cast<uint32_t>(n - kept.size());
    if (kept.empty()) return Status::Ok();  // all stale: nothing to write
  }
  const std::span<const PointView> applied = versioned ? std::span<const PointView>(kept) : points;
  const std::vector<float>& applied_prefixes = versioned ? kept_prefixes : prefixes;
  Existing existing;
  if (c.indexes.empty()) {
    auto ex = CountExisting(c, applied.size(), [&](size_t i) { return applied[i].id; });
    if (!ex.ok()) return ex.status();
    existing = ex.value();
  }
  const bool rows = c.rows && c.rows_ok;
  if (rows) {
    // Room for the rows first: a full disk refuses the batch before RocksDB takes it.
    MRL_RETURN_IF_ERROR(c.rows->Invalidate());
    MRL_RETURN_IF_ERROR(c.rows->Reserve(applied.size()));
  }
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch));
  out.applied = static_cast<uint32_t>(applied.size());
  // Rows before the indexes: a point a shortlist finds has its row.
  for (size_t j = 0; rows && j < applied.size(); ++j) {
    const Status put = c.rows->Put(applied[j].id, &blobs[(versioned ? kept_at[j] : j) * bb]);
    if (!put.ok()) RowsOutOfStep(c, put);
  }
  try {
    ApplyUpsertToIndexes(c, applied, applied_prefixes, max_dims);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("index update failed after the write: ") + e.what());
  }
  AfterWrite(c, existing, /*is_delete=*/false);
  return Status::Ok();
}

Status EngineImpl::Delete(const std::string& collection, std::span<const uint64_t> ids,
                          std::span<const uint64_t> versions, WriteCounts* counts) {
  WriteCounts ignored;
  WriteCounts& out = counts ? *counts : ignored;
  out = WriteCounts{};
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  if (ids.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::OutOfRange("delete batch of " + std::to_string(ids.size()) +
                              " ids exceeds max_batch " + std::to_string(options_.max_batch));
  }
  if (!versions.empty() && versions.size() != ids.size()) {
    return Status::InvalidArgument("delete versions must be empty or one per id (got " +
                                   std::to_string(versions.size()) + " versions for " +
                                   std::to_string(ids.size()) + " ids)");
  }
  if (ids.empty()) return Status::Ok();
  const bool versioned =
      std::any_of(versions.begin(), versions.end(), [](uint64_t v) { return v != 0; });
  std::vector<PointKey> keys(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    keys[i] = EncodePointKey(c.id, BucketOf(ids[i], c.spec.num_buckets), ids[i]);
  }
  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  VersionMap known;
  if (versioned) {
    MRL_RETURN_IF_ERROR(ReadVersions(c, std::vector<uint64_t>(ids.begin(), ids.end()), &known));
  }
  rocksdb::WriteBatch batch;
  std::vector<uint64_t> removed;  // ids whose point this batch deletes (index rows to drop)
  bool tombstones_changed = false;
  for (size_t i = 0; i < ids.size(); ++i) {
    const uint64_t v = versions.empty() ? 0 : versions[i];
    const rocksdb::Slice key(keys[i].data(), kPointKeySize);
    if (v == 0) {  // unversioned: as before versions, and no tombstone
      batch.Delete(storage_->points, key);
      removed.push_back(ids[i]);
      if (versioned) {
        known[ids[i]].present = false;
        known[ids[i]].point = 0;
      }
      ++out.applied;
      continue;
    }
    IdVersions& st = known[ids[i]];
    if (v <= st.newest()) {  // stale, or a replay
      ++out.skipped;
      continue;
    }
    if (st.present) {
      batch.Delete(storage_->points, key);
      removed.push_back(ids[i]);
    }
    batch.Put(storage_->tombstones, key, EncodeU64(v));
    tombstones_changed = true;
    st = IdVersions{false, 0, v};
    ++out.applied;
  }
  if (removed.empty() && !tombstones_changed) return Status::Ok();  // all stale
  Existing existing;
  if (c.indexes.empty()) {
    auto ex = CountExisting(c, removed.size(), [&](size_t i) { return removed[i]; });
    if (!ex.ok()) return ex.status();
    existing = ex.value();
  }
  const bool rows = c.rows && c.rows_ok && !removed.empty();
  if (rows) MRL_RETURN_IF_ERROR(c.rows->Invalidate());
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch, /*points_changed=*/!removed.empty()));
  for (auto& ix : c.indexes) {
    for (uint64_t id : removed) ix->index->Remove(id);
  }
  for (size_t i = 0; rows && i < removed.size(); ++i) c.rows->Remove(removed[i]);
  AfterWrite(c, existing, /*is_delete=*/true);
  return Status::Ok();
}

Status EngineImpl::ReadVersions(const CollectionState& c, std::vector<uint64_t> ids,
                                VersionMap* out) const {
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  const size_t n = ids.size();
  std::vector<PointKey> keys(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t i = 0; i < n; ++i) {
    keys[i] = EncodePointKey(c.id, BucketOf(ids[i], c.spec.num_buckets), ids[i]);
    slices[i] = rocksdb::Slice(keys[i].data(), kPointKeySize);
  }
  std::vector<rocksdb::PinnableSlice> points(n), tombstones(n);
  std::vector<rocksdb::Status> point_st(n), tombstone_st(n);
  const rocksdb::ReadOptions ro;
  storage_->db->MultiGet(ro, storage_->points, n, slices.data(), points.data(), point_st.data());
  storage_->db->MultiGet(ro, storage_->tombstones, n, slices.data(), tombstones.data(),
                         tombstone_st.data());
  out->reserve(n);
  for (size_t i = 0; i < n; ++i) {
    IdVersions v;
    if (point_st[i].ok()) {
      const std::string_view value = points[i].ToStringView();
      MRL_RETURN_IF_ERROR(c.codec.Check(value));
      v.present = true;
      v.point = ValueCodec::Version(value);
    } else if (!point_st[i].IsNotFound()) {
      return FromRocks(point_st[i], "reading point " + std::to_string(ids[i]));
    }
    if (tombstone_st[i].ok()) {
      MRL_RETURN_IF_ERROR(DecodeTombstone(tombstones[i].ToStringView(), &v.tombstone));
    } else if (!tombstone_st[i].IsNotFound()) {
      return FromRocks(tombstone_st[i], "reading tombstone " + std::to_string(ids[i]));
    }
    (*out)[ids[i]] = v;
  }
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

Status EngineImpl::WriteWithGeneration(CollectionState& c, rocksdb::WriteBatch* batch,
                                       bool points_changed) {
  MRL_RETURN_IF_ERROR(ResumeIfFailed());
  const uint64_t gen = c.generation + (points_changed ? 1 : 0);
  if (points_changed) batch->Put(storage_->meta, GenerationMetaKey(c.id), EncodeU64(gen));
  const Status written =
      FromRocks(storage_->db->Write(storage_->write_options, batch), "writing to RocksDB");
  if (!written.ok()) {
    RecordStoreError(written);
    return written;
  }
  c.generation = gen;
  return Status::Ok();
}

void EngineImpl::RowsOutOfStep(CollectionState& c, const Status& why) {
  if (c.rows_ok.exchange(false)) {
    Warn("collection '%s': rerank rows out of step with RocksDB (%s): reranks read RocksDB "
         "until the next open rewrites them",
         c.spec.name.c_str(), why.ToString().c_str());
  }
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
