// mrl-make-shards: converts Fashion-MNIST (IDX) or .npy features into WebDataset-style tar
// shards + manifest.json for `mrl-trainer --set data.kind="shards"`.
// Usage: mrl-make-shards --from fmnist --split train --out DIR --shards 24 [--format png|jpg]
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/build_info.h"
#include "common/npy.h"
#include "trainer/idx.h"
#include "trainer/shard_writer.h"

int main(int argc, char** argv) {
  CLI::App app{"mrl-make-shards: write Fashion-MNIST or .npy features as tar shards"};
  app.set_version_flag("--version", mrl::VersionText(mrl::MakeBuildInfo("mrl-make-shards", {})));
  std::string from = "fmnist", split = "train", fmnist_dir = "/usr/share/datasets/fashion-mnist";
  std::string features, labels;
  mrl::ShardWriteOptions o;
  app.add_option("--from", from, "fmnist | npy")->check(CLI::IsMember({"fmnist", "npy"}));
  app.add_option("--split", split, "fmnist: train | test")->check(CLI::IsMember({"train", "test"}));
  app.add_option("--fmnist-dir", fmnist_dir, "Directory of the IDX files");
  app.add_option("--features", features, "npy: float32 [N, F] features");
  app.add_option("--labels", labels, "npy: integer [N] labels");
  app.add_option("--out", o.out_dir, "Output directory")->required();
  app.add_option("--shards", o.shards, "Number of shards (equal sizes)");
  app.add_option("--samples-per-shard", o.samples_per_shard, "Samples per shard");
  app.add_option("--shard-sizes", o.shard_sizes, "Exact shard sizes, e.g. 3000,1000,500");
  app.add_option("--format", o.format, "png | jpg")->check(CLI::IsMember({"png", "jpg"}));
  app.add_option("--quality", o.quality, "JPEG quality (1..100)");
  app.add_option("--limit", o.limit, "Only the first N samples");
  app.get_option("--shard-sizes")->delimiter(',');
  CLI11_PARSE(app, argc, argv);

  mrl::Status st;
  int64_t n = 0;
  if (from == "fmnist") {
    auto fm = mrl::LoadFashionMnist(fmnist_dir);
    if (!fm.ok()) {
      std::fprintf(stderr, "mrl-make-shards: %s\n", fm.status().ToString().c_str());
      return 2;
    }
    const mrl::ImageSet& set = split == "train" ? fm->train : fm->test;
    n = set.count;
    st = mrl::WriteImageShards(set, o);
  } else {
    auto x = mrl::ReadNpy(features);
    auto y = x.ok() ? mrl::ReadNpyLabels(labels) : mrl::Result<std::vector<int64_t>>(x.status());
    if (!y.ok()) {
      std::fprintf(stderr, "mrl-make-shards: %s\n", y.status().ToString().c_str());
      return 2;
    }
    if (x->dtype != mrl::NpyDtype::kFloat32 || x->shape.size() != 2 ||
        x->shape[0] != static_cast<int64_t>(y->size())) {
      std::fprintf(stderr, "mrl-make-shards: '%s' must be float32 [N, F] with N = labels in '%s'\n",
                   features.c_str(), labels.c_str());
      return 2;
    }
    n = x->shape[0];
    st = mrl::WriteFeatureShards(x->as<float>(), n, x->shape[1], y.value(), o);
  }
  if (!st.ok()) {
    std::fprintf(stderr, "mrl-make-shards: %s\n", st.ToString().c_str());
    return 1;
  }
  if (o.limit > 0 && o.limit < n) n = o.limit;
  std::printf("mrl-make-shards: wrote %lld samples to %s (manifest.json)\n",
              static_cast<long long>(n), o.out_dir.c_str());
  return 0;
}
