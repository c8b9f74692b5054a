// Which tar shards make up a split, how many samples each holds, and what the samples are
// (image shape or feature width, classes). Plain code, no LibTorch.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct ShardInfo {
  std::string path;
  int64_t samples = 0;
};

// A split stored as shards. The order of `shards` defines every sample's global position
// (shard 0's samples first): positional limits such as data.train_limit and data.holdout refer
// to it, exactly as they refer to the row order of the IDX files.
struct ShardSet {
  std::vector<ShardInfo> shards;
  std::string format;          // png | jpg | npy
  int64_t height = 0, width = 0, channels = 0;  // images
  int64_t features = 0;        // npy: feature vector length
  int64_t num_classes = 0;     // max label + 1
  int64_t total() const;
  bool is_image() const { return format != "npy"; }
};

constexpr const char* kManifestName = "manifest.json";

// Resolves `spec` into a shard set:
//  - a directory with manifest.json: the manifest's shard list and counts (no scan);
//  - a directory without one: its *.tar files in name order, counted by scanning tar headers;
//  - a file ending in .txt or .list: one shard path per line (relative to the file's folder);
//  - a pattern containing '*' or '?': the matching files in name order.
// Without a manifest the first sample is decoded to learn the image shape / feature width and the
// labels are read to learn the classes. Errors name the spec or the offending shard.
Result<ShardSet> OpenShardSet(const std::string& spec);

// manifest.json text for `set` (shard paths stored relative to the manifest's directory).
std::string ManifestJson(const ShardSet& set);

// Per-shard counts of the samples whose global position is < `limit` (the samples a run uses).
std::vector<int64_t> CountsBelow(const ShardSet& set, int64_t limit);

}  // namespace mrl
