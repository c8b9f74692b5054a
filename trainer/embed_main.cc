// mrl-embed: embeds a dataset with a trained run's model, optionally as several augmented copies
// of every image, and streams the embeddings to .npy (fp16 or fp32) without holding them in RAM.
// This is how the serving benchmarks get >= 1M real model outputs from Fashion-MNIST's 70k
// images: copy 0 is the image itself, copy c > 0 is a random flip + shift drawn from (seed, c).
// For fmnist3 runs copy c is the composites of epoch c (the same classes, other items).
//
//   mrl-embed --run runs/main --split train --copies 17 --dtype f2 --out /data/fmnist1m_db
//
// writes <out>_embeddings.npy [N*copies, d], <out>_labels.npy (int64) and <out>_ids.npy (uint64,
// id = copy * N + index).
#include <torch/torch.h>
#include <torch/version.h>

#include <CLI/CLI.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "common/build_info.h"
#include "common/atomic_file.h"
#include "common/npy.h"
#include "trainer/config.h"
#include "trainer/data.h"
#include "trainer/model.h"
#include "trainer/train.h"

namespace fs = std::filesystem;

namespace {

mrl::Status Run(const std::string& run_dir, std::string checkpoint, const std::string& split_name,
                int64_t copies, int64_t limit, const std::string& dtype, int64_t max_shift,
                const std::string& out) {
  auto config = mrl::LoadConfigFile((fs::path(run_dir) / "config.json").string());
  if (!config.ok()) return config.status();
  mrl::TrainConfig cfg = config.value();
  cfg.data.train_limit = 0;
  cfg.data.test_limit = 0;
  MRL_RETURN_IF_ERROR(mrl::FinalizeConfig(&cfg));
  if (checkpoint.empty()) checkpoint = mrl::Trainer::LatestCheckpoint(run_dir);
  if (checkpoint.empty()) return mrl::Status::NotFound("no checkpoint in '" + run_dir + "'");
  auto loaded = mrl::LoadData(cfg.data);
  if (!loaded.ok()) return loaded.status();
  const mrl::DataSplits& data = loaded.value();
  const mrl::Split& split = split_name == "test" ? data.test : data.train;
  mrl::MrlModel model(cfg.model, split.is_image ? split.channels : 0,
                      split.is_image ? 0 : split.features, data.num_classes);
  MRL_RETURN_IF_ERROR(mrl::Trainer::LoadModelWeights(checkpoint, model));
  model->eval();
  torch::NoGradGuard no_grad;

  const int64_t n = limit > 0 ? std::min(limit, split.size()) : split.size();
  const int64_t total = n * copies, d = cfg.model.dim;
  const bool half = dtype == "f2";
  const mrl::NpyDtype npy_dtype = half ? mrl::NpyDtype::kFloat16 : mrl::NpyDtype::kFloat32;
  const std::string emb_path = out + "_embeddings.npy", tmp = mrl::TempPathFor(emb_path);
  std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
  if (!f) return mrl::Status::IoError("cannot write '" + tmp + "'");
  const std::string header = mrl::EncodeNpyHeader(npy_dtype, {total, d});
  f.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<int64_t> labels(static_cast<size_t>(total));
  std::vector<uint64_t> ids(static_cast<size_t>(total));
  std::vector<int64_t> idx(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) idx[static_cast<size_t>(i)] = i;

  const auto t0 = std::chrono::steady_clock::now();
  const int64_t chunk = 1024;
  int64_t done = 0;
  for (int64_t c = 0; c < copies; ++c) {
    for (int64_t s = 0; s < n; s += chunk) {
      const int64_t m = std::min(chunk, n - s);
      // Copy 0 is the plain image; copy c draws its flip + shift from (seed = 1, epoch = c). A
      // composite split (fmnist3) is not augmented: copy c is epoch c's composites, other items
      // of the same classes.
      mrl::Batch b = mrl::MakeBatch(split, idx.data() + s, m,
                                    /*augment=*/c > 0 && !split.composites, max_shift,
                                    /*seed=*/1, /*epoch=*/c);
      torch::Tensor z = model->Embed(model->PrepareInput(b.x)).contiguous();
      if (half) z = z.to(torch::kHalf).contiguous();
      f.write(static_cast<const char*>(z.data_ptr()), static_cast<std::streamsize>(z.nbytes()));
      if (!f) return mrl::Status::IoError("write to '" + tmp + "' failed (disk full?)");
      for (int64_t i = 0; i < m; ++i) {
        const size_t row = static_cast<size_t>(c * n + s + i);
        labels[row] = split.labels[static_cast<size_t>(s + i)];
        ids[row] = static_cast<uint64_t>(c * n + s + i);
      }
      done += m;
      if (done % (chunk * 50) < chunk || done == total) {
        const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::fprintf(stderr, "[mrl-embed] %lld / %lld (%.0f img/s, ETA %.0f s)\n",
                     static_cast<long long>(done), static_cast<long long>(total), done / sec,
                     (total - done) / (done / sec));
      }
    }
  }
  f.flush();
  f.close();
  if (!f) return mrl::Status::IoError("closing '" + tmp + "' failed");
  MRL_RETURN_IF_ERROR(mrl::CommitTempFile(tmp, emb_path));
  MRL_RETURN_IF_ERROR(mrl::WriteNpy(out + "_labels.npy", mrl::NpyDtype::kInt64, {total}, labels.data()));
  MRL_RETURN_IF_ERROR(mrl::WriteNpy(out + "_ids.npy", mrl::NpyDtype::kUInt64, {total}, ids.data()));
  std::printf("[mrl-embed] wrote %s [%lld, %lld] %s from %s\n", emb_path.c_str(),
              static_cast<long long>(total), static_cast<long long>(d), dtype.c_str(),
              checkpoint.c_str());
  return mrl::Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"mrl-embed: embed a dataset (with augmented copies) using a trained run"};
  app.set_version_flag("--version", mrl::VersionText(mrl::MakeBuildInfo(
      "mrl-embed", {{"LibTorch", mrl::DottedVersion(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR,
                                                  TORCH_VERSION_PATCH)}})));
  std::string run_dir, checkpoint, split = "train", dtype = "f2", out;
  int64_t copies = 1, limit = 0, max_shift = 2;
  int threads = 0;
  app.add_option("--run", run_dir, "Training output directory (config.json + checkpoints)")->required();
  app.add_option("--checkpoint", checkpoint, "Checkpoint file (default: the run's newest)");
  app.add_option("--split", split, "train | test")->check(CLI::IsMember({"train", "test"}));
  app.add_option("--copies", copies, "Copies of every image (copy 0 plain, others augmented)")
      ->check(CLI::Range(int64_t{1}, int64_t{1000}));
  app.add_option("--limit", limit, "Embed only the first N images of the split");
  app.add_option("--max-shift", max_shift, "Augmentation: shift by up to this many pixels");
  app.add_option("--dtype", dtype, "f2 (fp16) | f4 (fp32)")->check(CLI::IsMember({"f2", "f4"}));
  app.add_option("--threads", threads, "Intra-op threads (0 = all cores)");
  app.add_option("--out", out, "Output prefix")->required();
  CLI11_PARSE(app, argc, argv);
  torch::set_num_threads(threads > 0 ? threads : static_cast<int>(std::thread::hardware_concurrency()));
  try {
    mrl::Status st = Run(run_dir, checkpoint, split, copies, limit, dtype, max_shift, out);
    if (!st.ok()) {
      std::fprintf(stderr, "mrl-embed: error: %s\n", st.ToString().c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mrl-embed: internal error: %s\n", e.what());
    return 1;
  }
  return 0;
}
