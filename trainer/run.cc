#include "trainer/run.h"

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <numeric>

#include <nlohmann/json.hpp>

#include "common/atomic_file.h"
#include "common/npy.h"
#include "trainer/data.h"
#include "trainer/eval.h"
#include "trainer/export.h"
#include "trainer/mpi_comm.h"
#include "trainer/shard_plan.h"
#include "trainer/train.h"

namespace mrl {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

json DimsToJson(const std::vector<DimEval>& rows) {
  json out = json::array();
  for (const DimEval& e : rows) {
    json r = {{"dim", e.dim}, {"knn_top1", e.knn_top1}, {"map_at_10", e.map_at_10}};
    r["linear_top1"] = e.linear_top1 >= 0 ? json(e.linear_top1) : json(nullptr);
    out.push_back(r);
  }
  return out;
}

void PrintTable(const char* title, const std::vector<DimEval>& rows) {
  std::printf("\n%s\n%8s %12s %10s %10s\n", title, "dim", "linear top1", "1-NN top1", "mAP@10");
  for (const DimEval& e : rows) {
    char lin[16] = "-";
    if (e.linear_top1 >= 0) std::snprintf(lin, sizeof(lin), "%.2f", 100 * e.linear_top1);
    std::printf("%8lld %12s %10.2f %10.2f\n", static_cast<long long>(e.dim), lin,
                100 * e.knn_top1, 100 * e.map_at_10);
  }
}

std::vector<uint64_t> Iota(int64_t n) {
  std::vector<uint64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), 0);
  return v;
}

}  // namespace

Status RunTraining(const TrainConfig& config, const nlohmann::json& provenance) {
  using Clk = std::chrono::steady_clock;
  Communicator& comm = Communicator::Get();
  const bool leader = comm.world().rank == 0;
  MRL_RETURN_IF_ERROR(EnsureWritableDir(config.out_dir));
  if (leader) {
    std::printf("[mrl-trainer] effective config:\n%s\n", ConfigToJson(config).c_str());
    std::printf("[mrl-trainer] ranks %d (MPI %s), global batch %lld\n", comm.world().size,
                comm.world().mpi ? "on" : "off",
                static_cast<long long>(config.batch_size * comm.world().size * config.dist.grad_accum));
    std::fflush(stdout);
  }

  auto loaded = LoadData(config.data);
  if (!loaded.ok()) return loaded.status();
  DataSplits& data = loaded.value();
  if (data.shards && data.train.is_image == (config.model.encoder == "mlp")) {
    return Status::InvalidArgument(std::string("shards '") + config.data.train_shards + "' hold " +
                                   (data.train.is_image ? "images; use a conv/resnet encoder"
                                                        : ".npy features; use model.encoder=mlp"));
  }
  if (config.model.num_classes > 0 && config.model.num_classes < data.num_classes) {
    return Status::InvalidArgument("labels go up to " + std::to_string(data.num_classes - 1) +
                                   " but model.num_classes is " +
                                   std::to_string(config.model.num_classes));
  }
  const int64_t test_size = data.shards ? data.shards->test_size : data.test.size();
  if (leader) std::printf("[data] %s: train %lld (%lld trained on, %lld held out), test %lld, classes %lld\n",
              config.data.kind.c_str(), static_cast<long long>(data.train_size()),
              static_cast<long long>(data.train_used),
              static_cast<long long>(data.train_size() - data.train_used),
              static_cast<long long>(test_size), static_cast<long long>(data.num_classes));
  const int64_t global_batch = config.batch_size * comm.world().size * config.dist.grad_accum;
  if (data.train_used < global_batch) {
    return Status::InvalidArgument("only " + std::to_string(data.train_used) +
                                   " training samples for a global batch of " +
                                   std::to_string(global_batch));
  }
  if (data.shards) {
    const int64_t per_rank_step = config.batch_size * config.dist.grad_accum;
    const int64_t steps = ShardStepsPerEpoch(data.shards->train_counts, config.seed, config.epochs,
                                             comm.world().size, per_rank_step);
    if (steps == 0) {
      return Status::InvalidArgument(
          "in some epoch a rank's shards hold fewer than one step (" +
          std::to_string(per_rank_step) + " samples): " +
          std::to_string(data.shards->train.shards.size()) + " shards for " +
          std::to_string(comm.world().size) + " ranks; write more, smaller shards");
    }
    if (leader) {
      std::printf("[data] shards: %zu train shards, %lld steps per epoch on each of %d ranks "
                  "(%lld of %lld samples per epoch used; the rest of each rank's share is dropped)\n",
                  data.shards->train.shards.size(), static_cast<long long>(steps),
                  comm.world().size, static_cast<long long>(steps * global_batch),
                  static_cast<long long>(data.train_used));
    }
  }

  if (leader) {
    MRL_RETURN_IF_ERROR(WriteFileAtomic((fs::path(config.out_dir) / "config.json").string(),
                                        ConfigToJson(config)));
  }
  Trainer trainer(config, data);
  MRL_RETURN_IF_ERROR(trainer.MaybeResume());
  const int64_t start_step = trainer.global_step();
  const auto t0 = Clk::now();
  MRL_RETURN_IF_ERROR(trainer.Train());
  const double train_s = std::chrono::duration<double>(Clk::now() - t0).count();
  const int64_t steps_run = trainer.global_step() - start_step;
  const double img_per_s =
      train_s > 0 ? static_cast<double>(steps_run * global_batch) / train_s : 0;
  if (data.shards && comm.distributed()) {
    // One line per rank: uneven shards must not leave any rank with fewer steps.
    std::printf("[data] rank %d ran %lld steps\n", comm.world().rank, static_cast<long long>(steps_run));
    std::fflush(stdout);
  }
  if (comm.distributed()) {
    auto divergence = ParameterDivergence(*trainer.model(), comm, config.dist.timeout_s);
    if (!divergence.ok()) return divergence.status();
    if (leader) {
      std::printf("[dist] replicas agree: max |param - rank 0 param| = %.3g over %d ranks\n",
                  divergence.value(), comm.world().size);
    }
  }
  if (!leader) return Status::Ok();  // rank 0 evaluates, exports and reports

  // Per-step losses (appended across resumes) for curves and the resume test.
  {
    std::string log;
    for (const StepRecord& r : trainer.history()) {
      log += json({{"step", r.step}, {"epoch", r.epoch}, {"loss", r.loss}, {"lr", r.lr}}).dump() + "\n";
    }
    const std::string path = (fs::path(config.out_dir) / "train_log.jsonl").string();
    std::string previous;
    if (start_step > 0) {
      if (auto old = ReadFile(path); old.ok()) previous = old.value();
    }
    MRL_RETURN_IF_ERROR(WriteFileAtomic(path, previous + log));
  }
  if (!trainer.finished()) {
    std::printf("[train] stopped at step %lld of %lld (stop_after_steps); rerun to resume\n",
                static_cast<long long>(trainer.global_step()),
                static_cast<long long>(trainer.total_steps()));
    return Status::Ok();
  }

  json results;
  if (!provenance.is_null()) results["provenance"] = provenance;
  results["config"] = json::parse(ConfigToJson(config));
  results["train"] = {{"steps", trainer.global_step()},
                      {"steps_this_invocation", steps_run},
                      {"seconds_this_invocation", train_s},
                      {"images_per_second", img_per_s},
                      {"final_loss", trainer.history().empty() ? json(nullptr)
                                                               : json(trainer.history().back().loss)}};
  MrlModel& model = trainer.model();
  // Evaluation and export run on the CPU (the database embeddings live in host memory).
  model->to(torch::kCPU);
  if (config.evaluate || config.export_embeddings) {
    const auto te = Clk::now();
    if (data.shards) {
      std::printf("[eval] reading train + test shards with the eval transform\n");
      std::fflush(stdout);
      MRL_RETURN_IF_ERROR(LoadShardEvalSplits(config.data, &data));
    }
    std::printf("[eval] embedding %lld train + %lld test samples\n",
                static_cast<long long>(data.train.size()), static_cast<long long>(data.test.size()));
    std::fflush(stdout);
    const torch::Tensor db = EmbedSplit(model, data.train, 0, data.train.size());
    const torch::Tensor q = EmbedSplit(model, data.test, 0, data.test.size());
    if (!torch::isfinite(db).all().item<bool>() || !torch::isfinite(q).all().item<bool>()) {
      return Status::FailedPrecondition("the trained model produces non-finite embeddings");
    }
    if (config.evaluate) {
      const auto per_dim =
          EvaluatePerDim(model, db, data.train.labels, q, data.test.labels, config.eval_dims);
      results["per_dim"] = DimsToJson(per_dim);
      PrintTable("Per-dim evaluation (test set; 1-NN / mAP@10 against the train set, cosine)",
                 per_dim);
      if (config.eval_svd) {
        const std::vector<int64_t> fit_labels(data.train.labels.begin(),
                                              data.train.labels.begin() + data.train_used);
        const std::vector<int64_t> ho_labels(data.train.labels.begin() + data.train_used,
                                             data.train.labels.end());
        const auto svd = EvaluateSvd(
            db.narrow(0, 0, data.train_used), fit_labels,
            db.narrow(0, data.train_used, data.train.size() - data.train_used), ho_labels, db,
            data.train.labels, q, data.test.labels, config.eval_dims, data.num_classes,
            config.seed);
        results["svd"] = DimsToJson(svd);
        // Which probe gave svd's linear_top1 (reports written before it said nothing: those
        // standardized each coordinate and overfit at high dims).
        results["svd_probe"] = "uniform scale, early-stopped on " +
                               std::to_string(ho_labels.size()) + " held-out samples";
        PrintTable("SVD baseline (this model's full embedding on its top-m principal directions)",
                   svd);
      }
      if (config.model.head != "ff" && data.train.size() > data.train_used) {
        const std::vector<int64_t> ho_labels(data.train.labels.begin() + data.train_used,
                                             data.train.labels.end());
        const AdaptiveReport a = EvaluateAdaptive(
            model, db.narrow(0, data.train_used, data.train.size() - data.train_used), ho_labels,
            q, data.test.labels);
        json curve = json::array();
        std::printf("\nAdaptive classification (thresholds learned on %lld held-out samples)\n",
                    static_cast<long long>(a.heldout));
        std::printf("%8s %10s %14s   (full-dim head: %.2f)\n", "slack", "top1", "expected dim",
                    100 * a.full_dim_accuracy);
        for (const AdaptivePoint& p : a.curve) {
          curve.push_back({{"slack", p.slack}, {"accuracy", p.accuracy}, {"expected_dim", p.expected_dim}});
          std::printf("%8.3f %10.2f %14.1f\n", p.slack, 100 * p.accuracy, p.expected_dim);
        }
        results["adaptive"] = {{"dims", a.dims},
                               {"thresholds", a.thresholds},
                               {"full_dim_accuracy", a.full_dim_accuracy},
                               {"heldout", a.heldout},
                               {"curve", curve}};
      }
    }
    if (config.export_embeddings) {
      const std::string dir = (fs::path(config.out_dir) / "export").string();
      MRL_RETURN_IF_ERROR(EnsureWritableDir(dir));
      MRL_RETURN_IF_ERROR(ExportEmbeddings(dir, "db", db, Iota(data.train.size()), data.train.labels));
      MRL_RETURN_IF_ERROR(ExportEmbeddings(dir, "query", q, Iota(data.test.size()), data.test.labels));
      // The images themselves, uint8 [N, H, W] (or [N, H, W, C]) in the embeddings' row order:
      // `mrlctl ingest --images` stores each as a PNG in its point's payload, so the web console
      // shows search results as pictures. Composite and dense splits hold no pixels to write.
      // A stale file from an earlier run into the same folder would pair other images with
      // these rows: removed when this run has none.
      for (const auto& [name, split] : {std::pair{"db", &data.train}, std::pair{"query", &data.test}}) {
        const std::string file = (fs::path(dir) / (std::string(name) + "_images.npy")).string();
        if (!split->is_image || split->pixels.empty()) {
          std::error_code ec;
          fs::remove(file, ec);
          continue;
        }
        std::vector<int64_t> shape = {split->size(), split->height, split->width};
        if (split->channels != 1) shape.push_back(split->channels);
        MRL_RETURN_IF_ERROR(WriteNpy(file, NpyDtype::kUInt8, shape, split->pixels.data()));
      }
      json mj = json::parse(ConfigToJson(config))["model"];
      mj["num_classes"] = data.num_classes;
      mj["in_channels"] = data.train.channels;
      mj["in_features"] = data.train.features;
      mj["input_normalization"] = {{"mean", 0.2860}, {"std", 0.3530}, {"scale", 1.0 / 255}};
      MRL_RETURN_IF_ERROR(ExportModel(dir, model, mj.dump(2)));
      std::printf("[export] %s: db/query embeddings (.npy), images where the data has them, model_state.pt, model.json\n", dir.c_str());
    }
    results["eval_seconds"] = std::chrono::duration<double>(Clk::now() - te).count();
  }
  MRL_RETURN_IF_ERROR(
      WriteFileAtomic((fs::path(config.out_dir) / "results.json").string(), results.dump(2)));
  std::printf("[mrl-trainer] done: %s\n", (fs::path(config.out_dir) / "results.json").c_str());
  return Status::Ok();
}

}  // namespace mrl
