#include "shard/service.h"

#include "common/atomic_file.h"
#include "common/collection_spec.h"

#include <algorithm>
#include <bit>
#include <climits>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>

namespace mrl::shard {
namespace {

std::string_view Str(const flatbuffers::String* s) {
  return s ? std::string_view(s->data(), s->size()) : std::string_view();
}

template <typename T>
std::span<const T> Span(const flatbuffers::Vector<T>* v) {
  return v ? std::span<const T>(v->data(), v->size()) : std::span<const T>();
}

std::vector<uint8_t> Finish(flatbuffers::FlatBufferBuilder& fbb) {
  return std::vector<uint8_t>(fbb.GetBufferPointer(), fbb.GetBufferPointer() + fbb.GetSize());
}

// n queries of `dims` floats packed in one array.
Result<size_t> QueryCount(int32_t dims, size_t floats, int32_t max_queries) {
  if (dims <= 0) return Status::InvalidArgument("dims must be positive");
  if (floats == 0 || floats % static_cast<size_t>(dims) != 0) {
    return Status::InvalidArgument("queries must hold n * dims floats with n >= 1 (got " +
                                   std::to_string(floats) + " floats, dims " +
                                   std::to_string(dims) + ")");
  }
  const size_t n = floats / static_cast<size_t>(dims);
  if (n > static_cast<size_t>(max_queries)) {
    return Status::OutOfRange("at most " + std::to_string(max_queries) +
                              " queries per request (got " + std::to_string(n) + ")");
  }
  return n;
}

// A write's versions: none, or one per id.
Status CheckVersions(const char* what, size_t versions, size_t ids) {
  if (versions != 0 && versions != ids) {
    return Status::InvalidArgument(std::string(what) + ": versions must be empty or one per id (" +
                                   std::to_string(versions) + " versions for " +
                                   std::to_string(ids) + " ids)");
  }
  return Status::Ok();
}

flatbuffers::Offset<wire::CandidateList> PackCandidates(flatbuffers::FlatBufferBuilder& fbb,
                                                        const std::vector<Candidate>& cands) {
  std::vector<wire::Candidate> out;
  out.reserve(cands.size());
  for (const auto& c : cands) out.emplace_back(c.id, c.score);
  return wire::CreateCandidateList(fbb, fbb.CreateVectorOfStructs(out));
}

}  // namespace

ShardService::ShardService(Engine& engine, ServiceLimits limits)
    : engine_(engine), limits_(std::move(limits)) {}

Result<std::unique_ptr<ShardService>> ShardService::Open(Engine& engine, ServiceLimits limits) {
  auto service = std::make_unique<ShardService>(engine, limits);
  if (!limits.epoch_file.empty() && std::filesystem::exists(limits.epoch_file)) {
    std::ifstream in(limits.epoch_file);
    uint64_t e = 0;
    if (!(in >> e) || e > UINT32_MAX) {
      return Status::Corruption("epoch file '" + limits.epoch_file +
                                "' does not hold a shard-map epoch");
    }
    service->epoch_.store(static_cast<uint32_t>(e));
  }
  return service;
}

Status ShardService::CheckEpoch(uint32_t epoch, bool write) {
  if (!write && epoch == epoch_.load(std::memory_order_acquire)) return Status::Ok();
  std::lock_guard lock(epoch_mu_);
  MRL_RETURN_IF_ERROR(CheckEpochLocked(epoch));
  if (write) ++writes_in_flight_[epoch];
  return Status::Ok();
}

Status ShardService::CheckEpochLocked(uint32_t epoch) {
  const uint32_t seen = epoch_.load(std::memory_order_acquire);
  if (epoch > seen) {
    if (!limits_.epoch_file.empty()) {
      MRL_RETURN_IF_ERROR(WriteFileAtomic(limits_.epoch_file, std::to_string(epoch) + "\n"));
    }
    epoch_.store(epoch, std::memory_order_release);
    return Status::Ok();
  }
  if (epoch < seen) {
    return Status::Aborted("request routed by shard-map epoch " + std::to_string(epoch) +
                           ", but this shard has seen epoch " + std::to_string(seen) +
                           "; refresh the shard map");
  }
  return Status::Ok();
}

void ShardService::EndWrite(uint32_t epoch) {
  std::lock_guard lock(epoch_mu_);
  auto it = writes_in_flight_.find(epoch);
  if (it != writes_in_flight_.end() && --it->second == 0) writes_in_flight_.erase(it);
}

uint32_t ShardService::drained_epoch() const {
  std::lock_guard lock(epoch_mu_);
  const uint32_t seen = epoch_.load(std::memory_order_acquire);
  if (writes_in_flight_.empty()) return seen;
  return std::min(seen, writes_in_flight_.begin()->first);
}

Result<std::vector<uint8_t>> ShardService::Handle(wire::MessageType type,
                                                  std::span<const uint8_t> body,
                                                  const rpc::RequestContext& context) {
  using MT = wire::MessageType;
  // A stamped write stays counted in flight until its engine call has returned (drained_epoch).
  const bool write = type == MT::UpsertRequest || type == MT::DeleteRequest;
  if (context.epoch != 0) MRL_RETURN_IF_ERROR(CheckEpoch(context.epoch, write));
  struct InFlight {
    ShardService* service;
    uint32_t epoch;
    ~InFlight() {
      if (service != nullptr) service->EndWrite(epoch);
    }
  } in_flight{write && context.epoch != 0 ? this : nullptr, context.epoch};
  switch (type) {
    case MT::PingRequest:
      return wire::PackBody(wire::PingResponseT{});
    case MT::AuthRequest:
      return wire::PackBody(wire::AuthResponseT{});
    case MT::CreateCollectionRequest:
      return CreateCollection(*wire::RootAs<wire::CreateCollectionRequest>(body));
    case MT::DescribeCollectionRequest:
      return DescribeCollection(*wire::RootAs<wire::DescribeCollectionRequest>(body));
    case MT::DropCollectionRequest:
      return DropCollection(*wire::RootAs<wire::DropCollectionRequest>(body));
    case MT::UpsertRequest:
      return Upsert(*wire::RootAs<wire::UpsertRequest>(body));
    case MT::DeleteRequest:
      return Delete(*wire::RootAs<wire::DeleteRequest>(body));
    case MT::GetRequest:
      return Get(*wire::RootAs<wire::GetRequest>(body));
    case MT::ShortlistRequest:
      return Shortlist(*wire::RootAs<wire::ShortlistRequest>(body));
    case MT::RerankRequest:
      return Rerank(*wire::RootAs<wire::RerankRequest>(body));
    case MT::SearchRequest:
      return Search(*wire::RootAs<wire::SearchRequest>(body));
    case MT::StatsRequest:
      return Stats(context.server);
    case MT::ScanBucketRequest:
      return ScanBucket(*wire::RootAs<wire::ScanBucketRequest>(body));
    case MT::DropBucketRequest:
      return DropBucket(*wire::RootAs<wire::DropBucketRequest>(body));
    case MT::BucketChecksumRequest:
      return BucketChecksum(*wire::RootAs<wire::BucketChecksumRequest>(body));
    case MT::PurgeTombstonesRequest:
      return PurgeTombstones(*wire::RootAs<wire::PurgeTombstonesRequest>(body));
    default:
      return Status::InvalidArgument(std::string("not a request: ") +
                                     wire::EnumNameMessageType(type));
  }
}

Result<std::vector<uint8_t>> ShardService::CreateCollection(
    const wire::CreateCollectionRequest& req) {
  if (!req.spec()) return Status::InvalidArgument("CreateCollection without a spec");
  auto spec = CollectionSpecFromWire(*req.spec());
  if (!spec.ok()) return spec.status();
  MRL_RETURN_IF_ERROR(engine_.CreateCollection(spec.value()));
  return wire::PackBody(wire::CreateCollectionResponseT{});
}

Result<std::vector<uint8_t>> ShardService::DescribeCollection(
    const wire::DescribeCollectionRequest& req) {
  wire::DescribeCollectionResponseT resp;
  const std::string_view name = Str(req.name());
  if (name.empty()) {
    for (const CollectionSpec& s : engine_.ListCollections()) {
      resp.collections.push_back(std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(s)));
    }
  } else {
    Result<CollectionSpec> s = engine_.DescribeCollection(std::string(name));
    if (!s.ok()) return s.status();
    resp.collections.push_back(std::make_unique<wire::CollectionSpecT>(CollectionSpecToWire(s.value())));
  }
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> ShardService::DropCollection(const wire::DropCollectionRequest& req) {
  MRL_RETURN_IF_ERROR(engine_.DropCollection(std::string(Str(req.name()))));
  return wire::PackBody(wire::DropCollectionResponseT{});
}

Result<std::vector<uint8_t>> ShardService::Upsert(const wire::UpsertRequest& req) {
  const auto ids = Span(req.ids());
  const auto vectors = Span(req.vectors());
  const int32_t dims = req.dims();
  if (dims <= 0) return Status::InvalidArgument("dims must be positive");
  if (vectors.size() != ids.size() * static_cast<size_t>(dims)) {
    return Status::InvalidArgument("vectors must hold len(ids) * dims floats");
  }
  const auto* payloads = req.payloads();
  if (payloads && payloads->size() != 0 && payloads->size() != ids.size()) {
    return Status::InvalidArgument("payloads must be empty or one per id");
  }
  const auto versions = Span(req.versions());
  MRL_RETURN_IF_ERROR(CheckVersions("upsert", versions.size(), ids.size()));
  std::vector<PointView> points(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    points[i].id = ids[i];
    if (!versions.empty()) points[i].version = versions[i];
    points[i].vector = vectors.subspan(i * dims, dims);
    if (payloads && payloads->size() != 0) {
      const auto* data = payloads->Get(i)->data();
      if (data) {
        points[i].payload =
            std::string_view(reinterpret_cast<const char*>(data->data()), data->size());
      }
    }
  }
  WriteCounts counts;
  MRL_RETURN_IF_ERROR(engine_.Upsert(std::string(Str(req.collection())), points, &counts));
  wire::UpsertResponseT resp;
  resp.count = static_cast<uint32_t>(ids.size());
  resp.skipped = counts.skipped;
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> ShardService::Delete(const wire::DeleteRequest& req) {
  const auto ids = Span(req.ids());
  const auto versions = Span(req.versions());
  MRL_RETURN_IF_ERROR(CheckVersions("delete", versions.size(), ids.size()));
  WriteCounts counts;
  MRL_RETURN_IF_ERROR(engine_.Delete(std::string(Str(req.collection())), ids, versions, &counts));
  wire::DeleteResponseT resp;
  resp.count = static_cast<uint32_t>(ids.size());
  resp.skipped = counts.skipped;
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> ShardService::Get(const wire::GetRequest& req) {
  const auto ids = Span(req.ids());
  auto got = engine_.Get(std::string(Str(req.collection())), ids, req.with_vector());
  if (!got.ok()) return got.status();
  flatbuffers::FlatBufferBuilder fbb(4096);
  std::vector<flatbuffers::Offset<wire::Point>> points;
  points.reserve(ids.size());
  for (size_t i = 0; i < ids.size(); ++i) {
    const auto& p = got.value()[i];
    if (!p) {
      points.push_back(wire::CreatePoint(fbb, ids[i], false));
      continue;
    }
    auto vec = p->vector.empty() ? 0 : fbb.CreateVector(p->vector);
    auto payload = p->payload.empty()
                       ? 0
                       : fbb.CreateVector(reinterpret_cast<const uint8_t*>(p->payload.data()),
                                          p->payload.size());
    points.push_back(wire::CreatePoint(fbb, ids[i], true, vec, payload, p->version));
  }
  fbb.Finish(wire::CreateGetResponse(fbb, fbb.CreateVector(points)));
  return Finish(fbb);
}

namespace {

// One CandidateList per query, answered by `one(i)`; Root is the response table.
template <typename CreateRoot, typename Fn>
Result<std::vector<uint8_t>> AnswerPerQuery(size_t n, Fn one, CreateRoot create_root) {
  flatbuffers::FlatBufferBuilder fbb(4096);
  std::vector<flatbuffers::Offset<wire::CandidateList>> lists;
  lists.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    Result<std::vector<Candidate>> r = one(i);
    if (!r.ok()) return r.status();
    lists.push_back(PackCandidates(fbb, r.value()));
  }
  fbb.Finish(create_root(fbb, fbb.CreateVector(lists)));
  return Finish(fbb);
}

}  // namespace

Result<std::vector<uint8_t>> ShardService::Shortlist(const wire::ShortlistRequest& req) {
  const auto queries = Span(req.queries());
  Result<size_t> n = QueryCount(req.dims(), queries.size(), limits_.max_queries);
  if (!n.ok()) return n.status();
  const std::string collection(Str(req.collection()));
  const size_t dims = static_cast<size_t>(req.dims());
  return AnswerPerQuery(
      n.value(),
      [&](size_t i) {
        return engine_.Shortlist(collection, queries.subspan(i * dims, dims), req.k(), req.ef(),
                                 req.exact());
      },
      [](flatbuffers::FlatBufferBuilder& fbb, auto lists) {
        return wire::CreateShortlistResponse(fbb, lists);
      });
}

Result<std::vector<uint8_t>> ShardService::Rerank(const wire::RerankRequest& req) {
  const auto queries = Span(req.queries());
  Result<size_t> n = QueryCount(req.dims(), queries.size(), limits_.max_queries);
  if (!n.ok()) return n.status();
  const auto* id_lists = req.id_lists();
  if (!id_lists || id_lists->size() != n.value()) {
    return Status::InvalidArgument("id_lists must have one entry per query");
  }
  const std::string collection(Str(req.collection()));
  const size_t dims = static_cast<size_t>(req.dims());
  return AnswerPerQuery(
      n.value(),
      [&](size_t i) {
        return engine_.Rerank(collection, queries.subspan(i * dims, dims),
                              Span(id_lists->Get(i)->ids()), req.k());
      },
      [](flatbuffers::FlatBufferBuilder& fbb, auto lists) {
        return wire::CreateRerankResponse(fbb, lists);
      });
}

Result<std::vector<uint8_t>> ShardService::Search(const wire::SearchRequest& req) {
  const auto queries = Span(req.queries());
  Result<size_t> n = QueryCount(req.dims(), queries.size(), limits_.max_queries);
  if (!n.ok()) return n.status();
  std::vector<SearchStage> stages;
  if (req.stages()) {
    for (const wire::SearchStage* s : *req.stages()) stages.push_back({s->dims(), s->k()});
  }
  if (stages.empty()) return Status::InvalidArgument("Search needs at least one stage");
  const std::string collection(Str(req.collection()));
  const size_t dims = static_cast<size_t>(req.dims());
  return AnswerPerQuery(
      n.value(),
      [&](size_t i) {
        return engine_.Search(collection, queries.subspan(i * dims, dims), stages, req.ef(),
                              req.exact());
      },
      [](flatbuffers::FlatBufferBuilder& fbb, auto lists) {
        return wire::CreateSearchResponse(fbb, lists);
      });
}

Result<std::vector<uint8_t>> ShardService::Stats(const rpc::ServerMetrics* server) {
  wire::StatsResponseT resp;
  resp.uptime_ms = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                             std::chrono::steady_clock::now() - started_)
                                             .count());
  if (server) server->FillStats(&resp);
  const EngineStats es = engine_.Stats();
  for (const auto& c : es.collections) {
    auto cs = std::make_unique<wire::CollectionStatsT>();
    cs->name = c.name;
    cs->points = c.points;
    for (const auto& i : c.indexes) {
      auto is = std::make_unique<wire::IndexStatsT>();
      is->dims = i.dims;
      is->kind = static_cast<wire::IndexKind>(i.kind);
      is->size = i.size;
      is->memory_bytes = i.memory_bytes;
      is->sequence = i.sequence;
      is->loaded = i.loaded;
      cs->indexes.push_back(std::move(is));
    }
    resp.collections.push_back(std::move(cs));
  }
  resp.disk_bytes = es.disk_bytes;
  resp.block_cache_bytes = es.block_cache_bytes;
  resp.memtable_bytes = es.memtable_bytes;
  resp.fs_total_bytes = es.fs_total_bytes;
  resp.version = limits_.version;
  resp.fs_free_bytes = es.fs_free_bytes;
  resp.refusing_writes = es.refusing_writes;
  resp.write_refusals = es.write_refusals;
  resp.store_failed = es.store_failed;
  resp.store_error = es.store_error;
  resp.store_failed_since_unix_ms = es.store_failed_since_unix_ms;
  resp.map_epoch = drained_epoch();
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> ShardService::ScanBucket(const wire::ScanBucketRequest& req) {
  std::optional<uint64_t> after;
  if (req.has_after()) after = req.after();
  auto page =
      engine_.ScanBucket(std::string(Str(req.collection())), req.bucket(), after, req.limit(),
                         req.min_version());
  if (!page.ok()) return page.status();
  flatbuffers::FlatBufferBuilder fbb(4096);
  std::vector<flatbuffers::Offset<wire::Point>> points;
  for (const StoredPoint& p : page->points) {
    auto vec = fbb.CreateVector(p.vector);
    auto payload = p.payload.empty()
                       ? 0
                       : fbb.CreateVector(reinterpret_cast<const uint8_t*>(p.payload.data()),
                                          p.payload.size());
    points.push_back(wire::CreatePoint(fbb, p.id, true, vec, payload, p.version));
  }
  auto points_offset = fbb.CreateVector(points);
  std::vector<wire::Tombstone> tombstones;
  tombstones.reserve(page->tombstones.size());
  for (const Tombstone& t : page->tombstones) tombstones.emplace_back(t.id, t.version);
  auto tombstones_offset = fbb.CreateVectorOfStructs(tombstones);
  fbb.Finish(wire::CreateScanBucketResponse(fbb, points_offset, page->next_after.has_value(),
                                            page->next_after.value_or(0), tombstones_offset));
  return Finish(fbb);
}

Result<std::vector<uint8_t>> ShardService::DropBucket(const wire::DropBucketRequest& req) {
  MRL_RETURN_IF_ERROR(engine_.DropBucket(std::string(Str(req.collection())), req.bucket()));
  return wire::PackBody(wire::DropBucketResponseT{});
}

Result<std::vector<uint8_t>> ShardService::BucketChecksum(const wire::BucketChecksumRequest& req) {
  auto f = engine_.BucketChecksum(std::string(Str(req.collection())), req.bucket());
  if (!f.ok()) return f.status();
  wire::BucketChecksumResponseT resp;
  resp.count = f->count;
  resp.checksum = f->checksum;
  resp.tombstone_count = f->tombstone_count;
  resp.tombstone_checksum = f->tombstone_checksum;
  return wire::PackBody(resp);
}

Result<std::vector<uint8_t>> ShardService::PurgeTombstones(
    const wire::PurgeTombstonesRequest& req) {
  MRL_RETURN_IF_ERROR(engine_.PurgeTombstones(std::string(Str(req.collection())), req.bucket()));
  return wire::PackBody(wire::PurgeTombstonesResponseT{});
}

}  // namespace mrl::shard
