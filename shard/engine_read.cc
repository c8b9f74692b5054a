// The engine's read paths: Get, and the three searches composed of the stages of
// shard/engine_stages.h: Shortlist (a shortlister), Rerank (one refine over given ids) and Search
// (a shortlister, then refine stages). Bucket scans: engine_bucket.cc. Per-thread scratch: no
// allocation per candidate.
#include "shard/engine_impl.h"

namespace mrl::shard::engine_internal {

Result<std::vector<std::optional<StoredPoint>>> EngineImpl::Get(const std::string& collection,
                                                                std::span<const uint64_t> ids,
                                                                bool with_vector) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  if (ids.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::OutOfRange("get of " + std::to_string(ids.size()) + " ids exceeds max_batch " +
                              std::to_string(options_.max_batch));
  }
  Scratch& s = TlsScratch();
  UnpinOnExit unpin(&s);
  MRL_RETURN_IF_ERROR(MultiGet(c, ids, &s));
  std::vector<std::optional<StoredPoint>> out(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (s.statuses[i].IsNotFound()) continue;
    MRL_RETURN_IF_ERROR(FromRocks(s.statuses[i], "reading point " + std::to_string(ids[i])));
    const std::string_view v = s.values[i].ToStringView();
    MRL_RETURN_IF_ERROR(c.codec.Check(v));
    StoredPoint p;
    p.id = ids[i];
    p.version = ValueCodec::Version(v);
    p.payload = std::string(c.codec.Payload(v));
    if (with_vector) {
      p.vector.resize(static_cast<size_t>(c.spec.dim));
      c.codec.DecodePrefix(v, c.spec.dim, p.vector.data());
    }
    out[i] = std::move(p);
  }
  return out;
}

Result<std::vector<Candidate>> EngineImpl::Shortlist(const std::string& collection,
                                                     std::span<const float> query, int32_t k,
                                                     int32_t ef, bool exact) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckQuery(c, query, "shortlist"));
  MRL_RETURN_IF_ERROR(CheckK(k, /*allow_zero=*/false));
  MRL_RETURN_IF_ERROR(CheckEf(ef));
  std::vector<Candidate> out;
  const Shortlister sl = Shortlister::For(c, static_cast<int32_t>(query.size()), ef, exact);
  MRL_RETURN_IF_ERROR(RunShortlister(c, sl, query, k, &out));
  return out;
}

Result<std::vector<Candidate>> EngineImpl::Rerank(const std::string& collection,
                                                  std::span<const float> query,
                                                  std::span<const uint64_t> ids, int32_t k) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  MRL_RETURN_IF_ERROR(CheckQuery(c, query, "rerank"));
  MRL_RETURN_IF_ERROR(CheckK(k, /*allow_zero=*/true));
  if (ids.size() > static_cast<size_t>(options_.max_batch)) {
    return Status::OutOfRange("rerank of " + std::to_string(ids.size()) +
                              " ids exceeds max_batch " + std::to_string(options_.max_batch));
  }
  Scratch& s = TlsScratch();
  s.ids.assign(ids.begin(), ids.end());
  std::sort(s.ids.begin(), s.ids.end());
  s.ids.erase(std::unique(s.ids.begin(), s.ids.end()), s.ids.end());
  const std::vector<uint64_t>& unique_ids = s.ids;  // MultiGet does not touch s.ids
  UnpinOnExit unpin(&s);
  Gathered g;
  MRL_RETURN_IF_ERROR(Gather(c, unique_ids, &s, &g));
  std::vector<uint32_t> rows;  // positions in unique_ids (id order) of the points found
  rows.reserve(unique_ids.size());
  for (size_t i = 0; i < unique_ids.size(); ++i) {
    if (g.blob[i] != nullptr) rows.push_back(static_cast<uint32_t>(i));
  }
  RefineStage(c, query, g, RefineSpec{static_cast<int32_t>(query.size()), k}, &rows, &s);
  std::vector<Candidate> out;
  out.reserve(s.heap.size());
  for (const auto& h : s.heap) out.push_back(Candidate{unique_ids[h.id], h.score});
  return out;
}

Result<std::vector<Candidate>> EngineImpl::Search(const std::string& collection,
                                                  std::span<const float> query,
                                                  std::span<const SearchStage> stages, int32_t ef,
                                                  bool exact) const {
  auto found = Find(collection);
  if (!found.ok()) return found.status();
  const CollectionState& c = *found.value();
  if (stages.empty() || stages.size() > kMaxStages) {
    return Status::InvalidArgument("search needs 1 to 16 stages, got " +
                                   std::to_string(stages.size()));
  }
  int32_t max_dims = 0;
  for (const auto& st : stages) {
    if (!c.IsNestingDim(st.dims)) {
      return Status::InvalidArgument("search stage dims " + std::to_string(st.dims) +
                                     " is not a nesting dim of '" + collection + "' " +
                                     NestingString(c.spec.nesting));
    }
    MRL_RETURN_IF_ERROR(CheckK(st.k, /*allow_zero=*/false));
    max_dims = std::max(max_dims, st.dims);
  }
  if (query.size() < static_cast<size_t>(max_dims) ||
      query.size() > static_cast<size_t>(c.spec.dim)) {
    return Status::InvalidArgument("search query has " + std::to_string(query.size()) +
                                   " dims; the stages need " + std::to_string(max_dims) +
                                   " and the collection has " + std::to_string(c.spec.dim));
  }
  MRL_RETURN_IF_ERROR(CheckFinite(query.first(max_dims), "search query"));
  MRL_RETURN_IF_ERROR(CheckEf(ef));

  std::vector<Candidate> cands;
  const Shortlister sl = Shortlister::For(c, stages[0].dims, ef, exact);
  MRL_RETURN_IF_ERROR(RunShortlister(c, sl, query.first(stages[0].dims), stages[0].k, &cands));
  if (stages.size() == 1) return cands;

  // Gather every survivor's stored vector once, then refine stage by stage.
  Scratch& s = TlsScratch();
  std::vector<uint64_t> ids(cands.size());
  for (size_t i = 0; i < cands.size(); ++i) ids[i] = cands[i].id;
  UnpinOnExit unpin(&s);
  Gathered g;
  MRL_RETURN_IF_ERROR(Gather(c, ids, &s, &g));
  std::vector<uint32_t> rows;  // surviving candidates: their position in ids
  rows.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    if (g.blob[i] != nullptr) rows.push_back(static_cast<uint32_t>(i));
  }
  for (size_t st = 1; st < stages.size(); ++st) {
    RefineStage(c, query, g, RefineSpec{stages[st].dims, stages[st].k}, &rows, &s);
  }
  cands.clear();
  for (const auto& h : s.heap) cands.push_back(Candidate{ids[h.id], h.score});
  // Rows were compared by position on equal scores; restore the engine's id tie order.
  std::sort(cands.begin(), cands.end(), BetterCandidate);
  return cands;
}

Shortlister Shortlister::For(const CollectionState& c, int32_t dims, int32_t ef, bool exact) {
  Shortlister s;
  s.dims = dims;
  s.ef = ef;
  s.index = c.FindIndex(dims);
  if (s.index == nullptr) {
    s.kind = ShortlisterKind::kStorageScan;
  } else if (exact || s.index->spec.kind == IndexKind::kExact) {
    s.kind = ShortlisterKind::kIndexScan;
  } else {
    s.kind = ShortlisterKind::kHnsw;
  }
  return s;
}

Status EngineImpl::RunShortlister(const CollectionState& c, const Shortlister& sl,
                                  std::span<const float> query, int32_t k,
                                  std::vector<Candidate>* out) const {
  Scratch& s = TlsScratch();
  const size_t d = static_cast<size_t>(sl.dims);
  s.query.assign(query.begin(), query.begin() + d);
  PrepareForMetric(c.spec.metric, s.query.data(), d);
  switch (sl.kind) {
    case ShortlisterKind::kHnsw:
      sl.index->index->Search(s.query.data(), k, sl.ef, /*exact=*/false, out);
      return Status::Ok();
    case ShortlisterKind::kIndexScan:
      sl.index->index->Search(s.query.data(), k, sl.ef, /*exact=*/true, out);
      return Status::Ok();
    case ShortlisterKind::kStorageScan:
      return ScanStorage(c, s.query.data(), d, k, out);
  }
  return Status::Internal("unknown shortlister");
}

Status EngineImpl::ScanStorage(const CollectionState& c, const float* prepared_query, size_t d,
                               int32_t k, std::vector<Candidate>* out) const {
  Scratch& s = TlsScratch();
  const std::string upper = CollectionPrefix(c.id + 1);
  rocksdb::Slice upper_slice(upper);
  rocksdb::ReadOptions ro;
  ro.iterate_upper_bound = &upper_slice;
  ro.fill_cache = false;
  std::unique_ptr<rocksdb::Iterator> it(storage_->db->NewIterator(ro, storage_->points));
  s.vec.resize(d);
  TopK top;
  top.Reset(static_cast<size_t>(k), &s.heap);
  for (it->Seek(CollectionPrefix(c.id)); it->Valid(); it->Next()) {
    const std::string_view v = it->value().ToStringView();
    MRL_RETURN_IF_ERROR(c.codec.Check(v));
    c.codec.DecodePrefix(v, static_cast<int32_t>(d), s.vec.data());
    PrepareForMetric(c.spec.metric, s.vec.data(), d);
    top.Push(PointKeyId(it->key().ToStringView()),
             ScorePrepared(c.spec.metric, prepared_query, s.vec.data(), d));
  }
  MRL_RETURN_IF_ERROR(FromRocks(it->status(), "scanning collection"));
  top.Finish();
  out->assign(s.heap.begin(), s.heap.end());
  return Status::Ok();
}

Status EngineImpl::MultiGet(const CollectionState& c, std::span<const uint64_t> ids,
                            Scratch* s) const {
  const size_t n = ids.size();
  s->keys.resize(n);
  s->key_slices.resize(n);
  if (s->values.size() < n) s->values.resize(n);
  s->statuses.assign(n, rocksdb::Status());
  for (size_t i = 0; i < n; ++i) {
    s->keys[i] = EncodePointKey(c.id, BucketOf(ids[i], c.spec.num_buckets), ids[i]);
    s->key_slices[i] = rocksdb::Slice(s->keys[i].data(), s->keys[i].size());
    s->values[i].Reset();
  }
  if (n == 0) return Status::Ok();
  storage_->db->MultiGet(rocksdb::ReadOptions(), storage_->points, n, s->key_slices.data(),
                         s->values.data(), s->statuses.data());
  return Status::Ok();
}

}  // namespace mrl::shard::engine_internal
