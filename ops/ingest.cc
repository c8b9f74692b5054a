#include "ops/ingest.h"

#include <chrono>
#include <deque>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/npy.h"
#include "ops/embeddings_file.h"

namespace mrl::ops {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace http = boost::beast::http;

}  // namespace

Status Ingest(HttpClient& c, const IngestArgs& a) {
  if (a.batch < 1) return Status::InvalidArgument("--batch must be positive");
  auto emb = ReadEmbeddings(a.embeddings);
  if (!emb.ok()) return emb.status();
  const int64_t n = emb->rows, d = emb->dims;
  const std::vector<float>& v = emb->data;
  std::vector<int64_t> labels;
  if (!a.labels.empty()) {
    auto l = ReadNpyLabels(a.labels);
    if (!l.ok()) return l.status();
    if (static_cast<int64_t>(l->size()) != n) {
      return Status::InvalidArgument("'" + a.labels + "' has " + std::to_string(l->size()) +
                                     " labels for " + std::to_string(n) + " embeddings");
    }
    labels = std::move(l).value();
  }
  std::vector<uint64_t> ids(static_cast<size_t>(n));
  if (!a.ids.empty()) {
    auto r = ReadIds(a.ids, n);
    if (!r.ok()) return r.status();
    ids = std::move(r).value();
  } else {
    for (int64_t i = 0; i < n; ++i) ids[static_cast<size_t>(i)] = static_cast<uint64_t>(i);
  }
  if (a.create) {
    json spec = {{"dim", d},
                 {"storage", a.storage},
                 {"indexes", {{{"dims", a.index_dims}, {"kind", "hnsw"}, {"int8", a.index_int8}}}}};
    if (a.num_buckets > 0) spec["num_buckets"] = a.num_buckets;
    auto r = c.CallJson(http::verb::put, "/v1/collections/" + a.collection, spec.dump(),
                        "create collection");
    if (!r.ok()) return r.status();
  }
  const auto t0 = Clock::now();
  auto progress = [&](int64_t done) {
    const double sec = std::max(1e-9, std::chrono::duration<double>(Clock::now() - t0).count());
    std::cout << "[mrlctl] ingested " << done << " / " << n << " ("
              << static_cast<int64_t>(done / sec) << " points/s, "
              << (a.binary.empty() ? "HTTP/JSON" : "binary API") << ")" << std::endl;
  };
  auto payload_of = [&](int64_t i) { return json{{"label", labels[static_cast<size_t>(i)]}}; };
  if (!a.binary.empty()) {
    auto options = BinaryClientOptions(a.binary);
    if (!options.ok()) return options.status();
    rpc::RpcClient client(options.value());
    std::deque<std::pair<int64_t, std::future<Result<wire::UpsertResponseT>>>> inflight;
    auto wait_one = [&]() -> Status {
      auto r = inflight.front().second.get();
      const int64_t row = inflight.front().first;
      inflight.pop_front();
      return r.status().WithContext("upsert at row " + std::to_string(row));
    };
    for (int64_t start = 0; start < n; start += a.batch) {
      const int64_t end = std::min(n, start + a.batch);
      wire::UpsertRequestT req;
      req.collection = a.collection;
      req.dims = static_cast<int32_t>(d);
      req.ids.assign(ids.begin() + start, ids.begin() + end);
      req.vectors.assign(v.begin() + start * d, v.begin() + end * d);
      for (int64_t i = start; i < end && !labels.empty(); ++i) {
        auto pl = std::make_unique<wire::PayloadT>();
        const std::string text = payload_of(i).dump();
        pl->data.assign(text.begin(), text.end());
        req.payloads.push_back(std::move(pl));
      }
      if (inflight.size() >= 4) MRL_RETURN_IF_ERROR(wait_one());
      inflight.emplace_back(start, client.CallFuture(req, 60000));
      if ((start / a.batch) % 20 == 0) progress(start);
    }
    while (!inflight.empty()) MRL_RETURN_IF_ERROR(wait_one());
    progress(n);
    return Status::Ok();
  }
  for (int64_t start = 0; start < n; start += a.batch) {
    const int64_t end = std::min(n, start + a.batch);
    json pts = json::array();
    for (int64_t i = start; i < end; ++i) {
      json p = {{"id", ids[static_cast<size_t>(i)]},
                {"vector", std::vector<float>(v.begin() + i * d, v.begin() + (i + 1) * d)}};
      if (!labels.empty()) p["payload"] = payload_of(i);
      pts.push_back(std::move(p));
    }
    auto r = c.CallJson(http::verb::put, "/v1/collections/" + a.collection + "/points",
                        json{{"points", pts}}.dump(), "upsert at row " + std::to_string(start));
    if (!r.ok()) return r.status();
    if ((start / a.batch) % 20 == 0 || end == n) progress(end);
  }
  return Status::Ok();
}

}  // namespace mrl::ops
