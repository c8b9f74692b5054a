#include "ops/ingest.h"

#include <chrono>
#include <deque>
#include <future>
#include <iostream>
#include <nlohmann/json.hpp>

#include "common/npy.h"
#include "common/png.h"
#include "meta/base64.h"
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
  NpyArray images;
  int64_t image_bytes = 0;
  if (!a.images.empty()) {
    auto im = ReadNpy(a.images);
    if (!im.ok()) return im.status();
    images = std::move(im).value();
    const auto& sh = images.shape;
    if (images.dtype != NpyDtype::kUInt8 || sh.size() < 3 || sh.size() > 4 ||
        (sh.size() == 4 && sh[3] != 1 && sh[3] != 3)) {
      return Status::InvalidArgument("'" + a.images +
                                     "' must hold uint8 images [n, H, W] or [n, H, W, 1|3]");
    }
    if (sh[0] != n) {
      return Status::InvalidArgument("'" + a.images + "' has " + std::to_string(sh[0]) +
                                     " images for " + std::to_string(n) + " embeddings");
    }
    image_bytes = sh[1] * sh[2] * (sh.size() == 4 ? sh[3] : 1);
  }
  const bool with_payload = !labels.empty() || image_bytes > 0;
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
  auto payload_of = [&](int64_t i) -> Result<json> {
    json p = json::object();
    if (!labels.empty()) p["label"] = labels[static_cast<size_t>(i)];
    if (image_bytes > 0) {
      const auto& sh = images.shape;
      auto png = EncodePng8(
          std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(images.data.data()) + i * image_bytes,
                                   static_cast<size_t>(image_bytes)),
          sh[1], sh[2], sh.size() == 4 ? sh[3] : 1);
      if (!png.ok()) return png.status().WithContext("image " + std::to_string(i));
      p["image_png"] = meta::Base64Encode(png.value());
    }
    return p;
  };
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
      for (int64_t i = start; i < end && with_payload; ++i) {
        auto pl = std::make_unique<wire::PayloadT>();
        auto payload = payload_of(i);
        if (!payload.ok()) return payload.status();
        const std::string text = payload->dump();
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
      if (with_payload) {
        auto payload = payload_of(i);
        if (!payload.ok()) return payload.status();
        p["payload"] = std::move(payload).value();
      }
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
