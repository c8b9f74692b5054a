#include "trainer/shard_set.h"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <regex>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/npy.h"
#include "trainer/image_codec.h"
#include "trainer/tar_shard.h"

namespace mrl {
namespace fs = std::filesystem;
using nlohmann::json;

int64_t ShardSet::total() const {
  int64_t n = 0;
  for (const ShardInfo& s : shards) n += s.samples;
  return n;
}

namespace {

Result<ShardSet> FromManifest(const fs::path& dir) {
  const std::string path = (dir / kManifestName).string();
  auto text = ReadFile(path);
  if (!text.ok()) return text.status();
  ShardSet set;
  try {
    const json j = json::parse(text.value());
    set.format = j.at("format").get<std::string>();
    set.height = j.value("height", 0);
    set.width = j.value("width", 0);
    set.channels = j.value("channels", 0);
    set.features = j.value("features", 0);
    set.num_classes = j.at("classes").get<int64_t>();
    for (const json& s : j.at("shards")) {
      set.shards.push_back({(dir / s.at("file").get<std::string>()).string(),
                            s.at("samples").get<int64_t>()});
    }
  } catch (const json::exception& e) {
    return Status::Corruption("manifest '" + path + "': " + e.what());
  }
  if (set.shards.empty()) return Status::InvalidArgument("manifest '" + path + "' lists no shards");
  return set;
}

// Counts and classes by scanning; shape from the first sample.
Status ScanAll(ShardSet* set) {
  for (ShardInfo& s : set->shards) {
    auto scan = ScanShard(s.path);
    if (!scan.ok()) return scan.status();
    s.samples = scan->samples;
    set->num_classes = std::max(set->num_classes, scan->max_label + 1);
  }
  auto r = TarShardReader::Open(set->shards.front().path);
  if (!r.ok()) return r.status();
  RawSample first;
  auto more = r.value()->Next(&first);
  if (!more.ok()) return more.status();
  if (!more.value()) return Status::InvalidArgument("shard '" + set->shards.front().path + "' is empty");
  const std::string where = "shard '" + set->shards.front().path + "': sample '" + first.key + "': ";
  if (first.ext == "npy") {
    auto a = ParseNpy(first.payload, first.key + ".npy");
    if (!a.ok()) return Status::Corruption(where + a.status().message());
    set->format = "npy";
    set->features = a->numel();
    return Status::Ok();
  }
  set->format = first.ext == "png" ? "png" : "jpg";
  // Decode as RGB first to learn the size; gray unless some channel differs (cheap heuristic for
  // one sample; a manifest states it exactly).
  Image img;
  Status st = DecodeImage(first.payload, first.ext, 3, &img);
  if (!st.ok()) return Status::Corruption(where + st.message());
  set->height = img.height;
  set->width = img.width;
  set->channels = 1;
  for (size_t i = 0; i + 2 < img.pixels.size(); i += 3) {
    if (img.pixels[i] != img.pixels[i + 1] || img.pixels[i] != img.pixels[i + 2]) {
      set->channels = 3;
      break;
    }
  }
  return Status::Ok();
}

std::regex GlobToRegex(const std::string& glob) {
  std::string re;
  for (char c : glob) {
    if (c == '*') re += "[^/]*";
    else if (c == '?') re += "[^/]";
    else if (std::string("\\^$.|+()[]{}").find(c) != std::string::npos) re += std::string("\\") + c;
    else re += c;
  }
  return std::regex(re);
}

}  // namespace

Result<ShardSet> OpenShardSet(const std::string& spec) {
  if (spec.empty()) return Status::InvalidArgument("no shard set given (data.train_shards / data.test_shards)");
  std::error_code ec;
  ShardSet set;
  const fs::path p(spec);
  if (fs::is_directory(p, ec)) {
    if (fs::exists(p / kManifestName)) return FromManifest(p);
    std::vector<std::string> tars;
    for (const auto& e : fs::directory_iterator(p, ec)) {
      if (e.is_regular_file() && e.path().extension() == ".tar") tars.push_back(e.path().string());
    }
    std::sort(tars.begin(), tars.end());
    for (auto& t : tars) set.shards.push_back({t, 0});
  } else if (spec.find_first_of("*?") != std::string::npos) {
    const fs::path dir = p.parent_path().empty() ? fs::path(".") : p.parent_path();
    const std::regex re = GlobToRegex(p.filename().string());
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      if (e.is_regular_file() && std::regex_match(e.path().filename().string(), re)) {
        files.push_back(e.path().string());
      }
    }
    std::sort(files.begin(), files.end());
    for (auto& f : files) set.shards.push_back({f, 0});
  } else if (fs::is_regular_file(p, ec) &&
             (p.extension() == ".txt" || p.extension() == ".list")) {
    std::ifstream in(p);
    for (std::string line; std::getline(in, line);) {
      while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
      if (line.empty() || line[0] == '#') continue;
      fs::path f(line);
      if (f.is_relative()) f = p.parent_path() / f;
      set.shards.push_back({f.string(), 0});
    }
  } else {
    return Status::NotFound("shard set '" + spec +
                            "' is not a directory, a .txt/.list file of shard paths, or a glob");
  }
  if (set.shards.empty()) return Status::NotFound("shard set '" + spec + "' contains no shards");
  MRL_RETURN_IF_ERROR(ScanAll(&set));
  return set;
}

std::string ManifestJson(const ShardSet& set) {
  json j;
  j["format"] = set.format;
  if (set.is_image()) {
    j["height"] = set.height;
    j["width"] = set.width;
    j["channels"] = set.channels;
  } else {
    j["features"] = set.features;
  }
  j["classes"] = set.num_classes;
  j["samples"] = set.total();
  json shards = json::array();
  for (const ShardInfo& s : set.shards) {
    shards.push_back({{"file", fs::path(s.path).filename().string()}, {"samples", s.samples}});
  }
  j["shards"] = shards;
  return j.dump(2) + "\n";
}

std::vector<int64_t> CountsBelow(const ShardSet& set, int64_t limit) {
  std::vector<int64_t> out;
  int64_t start = 0;
  for (const ShardInfo& s : set.shards) {
    out.push_back(std::clamp<int64_t>(limit - start, 0, s.samples));
    start += s.samples;
  }
  return out;
}

}  // namespace mrl
