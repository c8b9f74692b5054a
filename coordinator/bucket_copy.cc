#include "coordinator/bucket_copy.h"

#include <algorithm>
#include <future>

namespace mrl::coord {

Result<CopiedPage> CopyBucketPage(ShardPool& pool, const std::string& source,
                                  const std::vector<std::string>& targets,
                                  const std::string& collection, uint32_t bucket,
                                  std::optional<uint64_t> after, int32_t limit,
                                  uint32_t deadline_ms,
                                  const std::function<void(uint64_t)>& throttle,
                                  uint64_t min_version) {
  wire::ScanBucketRequestT scan;
  scan.collection = collection;
  scan.bucket = bucket;
  scan.has_after = after.has_value();
  scan.after = after.value_or(0);
  scan.limit = limit;
  scan.min_version = min_version;
  auto page = pool.Client(source)->Call(scan, deadline_ms);
  pool.Report(source, page.status());
  if (!page.ok()) return page.status().WithContext("scanning on shard '" + source + "'");

  CopiedPage out;
  wire::UpsertRequestT up;
  up.collection = collection;
  std::optional<uint64_t> last;
  for (const auto& p : page->points) {
    if (!p) continue;
    if (up.dims == 0) up.dims = static_cast<int32_t>(p->vector.size());
    up.ids.push_back(p->id);
    up.vectors.insert(up.vectors.end(), p->vector.begin(), p->vector.end());
    auto payload = std::make_unique<wire::PayloadT>();
    payload->data = p->payload;
    out.bytes += p->vector.size() * sizeof(float) + p->payload.size() + 16;
    up.payloads.push_back(std::move(payload));
    up.versions.push_back(p->version);
    last = std::max(last.value_or(0), p->id);
  }
  wire::DeleteRequestT del;
  del.collection = collection;
  for (const auto& t : page->tombstones) {
    del.ids.push_back(t.id());
    del.versions.push_back(t.version());
    out.bytes += 16;
    last = std::max(last.value_or(0), t.id());
  }
  if (throttle) throttle(out.bytes);
  std::vector<std::future<Status>> sends;
  for (const std::string& s : targets) {
    sends.push_back(std::async(std::launch::async, [&, s]() -> Status {
      if (!up.ids.empty()) {
        auto a = pool.Client(s)->Call(up, deadline_ms);
        pool.Report(s, a.status());
        if (!a.ok()) return a.status().WithContext("copying to shard '" + s + "'");
      }
      if (!del.ids.empty()) {
        auto a = pool.Client(s)->Call(del, deadline_ms);
        pool.Report(s, a.status());
        if (!a.ok()) return a.status().WithContext("copying tombstones to shard '" + s + "'");
      }
      return Status::Ok();
    }));
  }
  Status first;
  for (auto& f : sends) {  // every send finishes before `up` and `del` go out of scope
    const Status st = f.get();
    if (first.ok() && !st.ok()) first = st;
  }
  if (!first.ok()) return first;
  out.points = up.ids.size();
  out.finished = !page->has_next;
  out.cursor = page->has_next ? std::optional<uint64_t>(page->next_after) : last;
  return out;
}

Result<VerifyFigures> BucketFigures(ShardPool& pool, const std::string& shard,
                                    const std::string& collection, uint32_t bucket,
                                    uint32_t deadline_ms) {
  wire::BucketChecksumRequestT req;
  req.collection = collection;
  req.bucket = bucket;
  auto a = pool.Client(shard)->Call(req, deadline_ms);
  pool.Report(shard, a.status());
  if (!a.ok()) return a.status().WithContext("checksum on shard '" + shard + "'");
  VerifyFigures f;
  f.count = a->count + a->tombstone_count;
  f.checksum = a->checksum + a->tombstone_checksum;  // sums mod 2^64: the union's figures
  return f;
}

}  // namespace mrl::coord
