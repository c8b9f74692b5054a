// The engine's bucket-wide calls for moves: ScanBucket (points and tombstones, one snapshot per
// page), BucketChecksum (VERIFY's figures), DropBucket and PurgeTombstones.
#include "shard/engine_impl.h"

#include "common/move_checksum.h"

namespace mrl::shard::engine_internal {
namespace {

// Releases a RocksDB snapshot when the read is done.
class SnapshotHolder {
 public:
  explicit SnapshotHolder(rocksdb::DB* db) : db_(db), snapshot_(db->GetSnapshot()) {}
  ~SnapshotHolder() { db_->ReleaseSnapshot(snapshot_); }
  SnapshotHolder(const SnapshotHolder&) = delete;
  SnapshotHolder& operator=(const SnapshotHolder&) = delete;
  const rocksdb::Snapshot* get() const { return snapshot_; }

 private:
  rocksdb::DB* db_;
  const rocksdb::Snapshot* snapshot_;
};

// An iterator over one bucket's keys of one column family, positioned at the first id > after
// (or the bucket's first key), reading `snapshot`.
class BucketCursor {
 public:
  BucketCursor(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* cf, const rocksdb::Snapshot* snapshot,
               uint32_t cid, uint32_t bucket, std::optional<uint64_t> after)
      : upper_(BucketPrefix(cid, bucket + 1)), upper_slice_(upper_) {
    rocksdb::ReadOptions ro;
    ro.snapshot = snapshot;
    ro.iterate_upper_bound = &upper_slice_;
    ro.fill_cache = false;  // a move's one pass over the bucket should not evict the hot rows
    it_.reset(db->NewIterator(ro, cf));
    if (after) {
      const PointKey k = EncodePointKey(cid, bucket, *after);
      it_->Seek(rocksdb::Slice(k.data(), k.size()));
      if (it_->Valid() && id() == *after) it_->Next();
    } else {
      it_->Seek(BucketPrefix(cid, bucket));
    }
  }
  bool valid() const { return it_->Valid(); }
  uint64_t id() const { return PointKeyId(it_->key().ToStringView()); }
  std::string_view value() const { return it_->value().ToStringView(); }
  void Next() { it_->Next(); }
  Status status() const { return FromRocks(it_->status(), "scanning bucket"); }

 private:
  std::string upper_;
  rocksdb::Slice upper_slice_;
  std::unique_ptr<rocksdb::Iterator> it_;
};

}  // namespace

Status EngineImpl::CheckBucket(const CollectionState& c, uint32_t bucket) const {
  if (bucket >= c.spec.num_buckets) {
    return Status::OutOfRange("bucket " + std::to_string(bucket) + " >= num_buckets " +
                              std::to_string(c.spec.num_buckets));
  }
  return Status::Ok();
}

Result<ScanPage> EngineImpl::ScanBucket(const std::string& collection, uint32_t bucket,
                                        std::optional<uint64_t> after, int32_t limit,
                                        uint64_t min_version) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckBucket(c, bucket));
  if (limit < 1 || limit > options_.max_batch) {
    return Status::OutOfRange("scan limit " + std::to_string(limit) + " not in [1, " +
                              std::to_string(options_.max_batch) + "]");
  }
  rocksdb::DB* db = storage_->db.get();
  const SnapshotHolder snapshot(db);
  BucketCursor points(db, storage_->points, snapshot.get(), c.id, bucket, after);
  BucketCursor tombstones(db, storage_->tombstones, snapshot.get(), c.id, bucket, after);
  ScanPage page;
  // Merge the two id-ordered ranges; one id (its point, its tombstone or both) is one entry.
  int32_t entries = 0;
  int64_t examined = 0;
  const int64_t max_examined = min_version > 0 ? int64_t{64} * limit : limit;
  uint64_t last = 0;
  while (entries < limit && examined < max_examined && (points.valid() || tombstones.valid())) {
    uint64_t id = 0;
    if (points.valid() && tombstones.valid()) {
      id = std::min(points.id(), tombstones.id());
    } else {
      id = points.valid() ? points.id() : tombstones.id();
    }
    bool taken = false;
    if (points.valid() && points.id() == id) {
      const std::string_view v = points.value();
      MRL_RETURN_IF_ERROR(c.codec.Check(v));
      if (ValueCodec::Version(v) < min_version) {
        points.Next();
      } else {
      taken = true;
      StoredPoint p;
      p.id = id;
      p.version = ValueCodec::Version(v);
      p.vector.resize(static_cast<size_t>(c.spec.dim));
      c.codec.DecodePrefix(v, c.spec.dim, p.vector.data());
      p.payload = std::string(c.codec.Payload(v));
      page.points.push_back(std::move(p));
      points.Next();
      }
    }
    if (tombstones.valid() && tombstones.id() == id) {
      Tombstone t;
      t.id = id;
      MRL_RETURN_IF_ERROR(DecodeTombstone(tombstones.value(), &t.version));
      if (t.version >= min_version) {
        page.tombstones.push_back(t);
        taken = true;
      }
      tombstones.Next();
    }
    last = id;
    ++examined;
    if (taken) ++entries;
  }
  MRL_RETURN_IF_ERROR(points.status());
  MRL_RETURN_IF_ERROR(tombstones.status());
  if (entries > 0 && (points.valid() || tombstones.valid())) page.next_after = last;
  return page;
}

Result<BucketFigures> EngineImpl::BucketChecksum(const std::string& collection,
                                                 uint32_t bucket) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckBucket(c, bucket));
  rocksdb::DB* db = storage_->db.get();
  const SnapshotHolder snapshot(db);
  BucketFigures f;
  for (BucketCursor it(db, storage_->points, snapshot.get(), c.id, bucket, std::nullopt);
       it.valid(); it.Next()) {
    MRL_RETURN_IF_ERROR(c.codec.Check(it.value()));
    ++f.count;
    f.checksum += MoveChecksumTerm(it.id(), ValueCodec::Version(it.value()));
  }
  for (BucketCursor it(db, storage_->tombstones, snapshot.get(), c.id, bucket, std::nullopt);
       it.valid(); it.Next()) {
    uint64_t version = 0;
    MRL_RETURN_IF_ERROR(DecodeTombstone(it.value(), &version));
    ++f.tombstone_count;
    f.tombstone_checksum += MoveChecksumTerm(it.id(), version);
  }
  return f;
}

Status EngineImpl::DropBucket(const std::string& collection, uint32_t bucket) {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckBucket(c, bucket));
  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  const std::string lower = BucketPrefix(c.id, bucket);
  const std::string upper = BucketPrefix(c.id, bucket + 1);
  std::vector<uint64_t> ids;
  bool any_tombstone = false;
  {
    rocksdb::DB* db = storage_->db.get();
    const SnapshotHolder snapshot(db);
    BucketCursor points(db, storage_->points, snapshot.get(), c.id, bucket, std::nullopt);
    for (; points.valid(); points.Next()) ids.push_back(points.id());
    MRL_RETURN_IF_ERROR(points.status());
    BucketCursor tombstones(db, storage_->tombstones, snapshot.get(), c.id, bucket, std::nullopt);
    any_tombstone = tombstones.valid();
    MRL_RETURN_IF_ERROR(tombstones.status());
  }
  if (ids.empty() && !any_tombstone) return Status::Ok();
  rocksdb::WriteBatch batch;
  if (!ids.empty()) batch.DeleteRange(storage_->points, lower, upper);
  if (any_tombstone) batch.DeleteRange(storage_->tombstones, lower, upper);
  const bool rows = c.rows && c.rows_ok && !ids.empty();
  if (rows) MRL_RETURN_IF_ERROR(c.rows->Invalidate());
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch, /*points_changed=*/!ids.empty()));
  for (auto& ix : c.indexes) {
    for (uint64_t id : ids) ix->index->Remove(id);
  }
  for (size_t i = 0; rows && i < ids.size(); ++i) c.rows->Remove(ids[i]);
  AfterWrite(c, Existing{ids.size(), ids.size()}, /*is_delete=*/true);
  return Status::Ok();
}

Status EngineImpl::PurgeTombstones(const std::string& collection, uint32_t bucket) {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckBucket(c, bucket));
  std::lock_guard w(c.write_mu);
  if (c.dropped) return Status::NotFound("unknown collection '" + collection + "'");
  {
    rocksdb::DB* db = storage_->db.get();
    const SnapshotHolder snapshot(db);
    BucketCursor tombstones(db, storage_->tombstones, snapshot.get(), c.id, bucket, std::nullopt);
    MRL_RETURN_IF_ERROR(tombstones.status());
    if (!tombstones.valid()) return Status::Ok();
  }
  rocksdb::WriteBatch batch;
  batch.DeleteRange(storage_->tombstones, BucketPrefix(c.id, bucket),
                    BucketPrefix(c.id, bucket + 1));
  MRL_RETURN_IF_ERROR(WriteWithGeneration(c, &batch, /*points_changed=*/false));
  AfterWrite(c, Existing{}, /*is_delete=*/true);
  return Status::Ok();
}

}  // namespace mrl::shard::engine_internal
