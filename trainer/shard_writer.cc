#include "trainer/shard_writer.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <functional>

#include "common/atomic_file.h"
#include "common/npy.h"
#include "trainer/image_codec.h"
#include "trainer/shard_set.h"
#include "trainer/tar_shard.h"

namespace mrl {
namespace fs = std::filesystem;

namespace {

std::string Key(int64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%09lld", static_cast<long long>(i));
  return buf;
}

// Writes samples [0, n) with `encode(i, &ext, &payload)`; fills set->shards.
Status WriteAll(int64_t n, const std::vector<int64_t>& labels, const ShardWriteOptions& o,
                const std::function<Status(int64_t, std::string*, std::string*)>& encode,
                ShardSet* set) {
  auto sizes = ShardSizes(n, o);
  if (!sizes.ok()) return sizes.status();
  MRL_RETURN_IF_ERROR(EnsureWritableDir(o.out_dir));
  int64_t i = 0;
  int64_t max_label = -1;
  for (size_t s = 0; s < sizes->size(); ++s) {
    char name[32];
    std::snprintf(name, sizeof(name), "shard-%06zu.tar", s);
    const std::string path = (fs::path(o.out_dir) / name).string();
    auto w = TarShardWriter::Create(path);
    if (!w.ok()) return w.status();
    for (int64_t k = 0; k < (*sizes)[s]; ++k, ++i) {
      std::string ext, payload;
      MRL_RETURN_IF_ERROR(encode(i, &ext, &payload));
      MRL_RETURN_IF_ERROR(w.value()->Add(Key(i), ext, payload, labels[static_cast<size_t>(i)]));
      max_label = std::max(max_label, labels[static_cast<size_t>(i)]);
    }
    MRL_RETURN_IF_ERROR(w.value()->Finish());
    set->shards.push_back({path, (*sizes)[s]});
  }
  set->num_classes = max_label + 1;
  return WriteFileAtomic((fs::path(o.out_dir) / kManifestName).string(), ManifestJson(*set));
}

}  // namespace

Result<std::vector<int64_t>> ShardSizes(int64_t n, const ShardWriteOptions& o) {
  std::vector<int64_t> sizes;
  if (!o.shard_sizes.empty()) {
    int64_t sum = 0;
    for (int64_t v : o.shard_sizes) {
      if (v <= 0) return Status::InvalidArgument("shard sizes must be positive");
      sum += v;
    }
    if (sum != n) {
      return Status::InvalidArgument("shard sizes sum to " + std::to_string(sum) + " but there are " +
                                     std::to_string(n) + " samples");
    }
    return o.shard_sizes;
  }
  if (o.shards > 0) {
    if (o.shards > n) return Status::InvalidArgument("more shards than samples");
    for (int64_t s = 0; s < o.shards; ++s) sizes.push_back((s + 1) * n / o.shards - s * n / o.shards);
    return sizes;
  }
  if (o.samples_per_shard > 0) {
    for (int64_t i = 0; i < n; i += o.samples_per_shard) sizes.push_back(std::min(o.samples_per_shard, n - i));
    return sizes;
  }
  return Status::InvalidArgument("give a number of shards, samples per shard, or shard sizes");
}

Status WriteImageShards(const ImageSet& images, const ShardWriteOptions& o) {
  if (o.format != "png" && o.format != "jpg") {
    return Status::InvalidArgument("format must be png or jpg (got '" + o.format + "')");
  }
  if (o.quality < 1 || o.quality > 100) return Status::InvalidArgument("quality must be in [1, 100]");
  const int64_t n = o.limit > 0 ? std::min(o.limit, images.count) : images.count;
  const int64_t per = images.height * images.width * images.channels;
  ShardSet set;
  set.format = o.format;
  set.height = images.height;
  set.width = images.width;
  set.channels = images.channels;
  auto encode = [&](int64_t i, std::string* ext, std::string* payload) -> Status {
    Image img;
    img.height = images.height;
    img.width = images.width;
    img.channels = images.channels;
    img.pixels.assign(images.pixels.begin() + i * per, images.pixels.begin() + (i + 1) * per);
    auto bytes = o.format == "png" ? EncodePng(img) : EncodeJpeg(img, o.quality);
    if (!bytes.ok()) return bytes.status();
    *ext = o.format;
    *payload = std::move(bytes.value());
    return Status::Ok();
  };
  return WriteAll(n, images.labels, o, encode, &set);
}

Status WriteFeatureShards(const float* x, int64_t n, int64_t f, const std::vector<int64_t>& labels,
                          const ShardWriteOptions& o) {
  if (o.limit > 0) n = std::min(n, o.limit);
  ShardSet set;
  set.format = "npy";
  set.features = f;
  auto encode = [&](int64_t i, std::string* ext, std::string* payload) -> Status {
    *ext = "npy";
    *payload = EncodeNpy(NpyDtype::kFloat32, {f}, x + i * f);
    return Status::Ok();
  };
  return WriteAll(n, labels, o, encode, &set);
}

}  // namespace mrl
