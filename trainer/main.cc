// mrl-trainer: trains Matryoshka (MRL / MRL-E / FF-k) embeddings, evaluates every nesting dim,
// exports embeddings and the model. Usage: mrl-trainer [--config FILE] [--set key=value]...
#include <torch/torch.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "trainer/config.h"
#include "trainer/run.h"

int main(int argc, char** argv) {
  CLI::App app{"mrl-trainer: Matryoshka Representation Learning trainer"};
  std::string config_path, out_dir, head;
  std::vector<std::string> overrides;
  int64_t epochs = 0, dim = 0, train_limit = -1;
  bool print_only = false;
  app.add_option("--config", config_path, "JSON config file (fields: see trainer/config.h)");
  app.add_option("--set", overrides, "Override a config field, e.g. --set optim.lr=0.05");
  app.add_option("--out", out_dir, "Output directory (out_dir)");
  app.add_option("--epochs", epochs, "Training epochs");
  app.add_option("--head", head, "mrl | mrl-e | ff");
  app.add_option("--dim", dim, "Embedding size d");
  app.add_option("--train-limit", train_limit, "Use only the first N training samples");
  app.add_flag("--print-config", print_only, "Print the effective config and exit");
  CLI11_PARSE(app, argc, argv);

  try {
    mrl::TrainConfig config;
    if (!config_path.empty()) {
      auto loaded = mrl::LoadConfigFile(config_path);
      if (!loaded.ok()) {
        std::fprintf(stderr, "mrl-trainer: %s\n", loaded.status().ToString().c_str());
        return 2;
      }
      config = loaded.value();
    }
    if (!out_dir.empty()) overrides.push_back("out_dir=\"" + out_dir + "\"");
    if (epochs > 0) overrides.push_back("epochs=" + std::to_string(epochs));
    if (!head.empty()) overrides.push_back("model.head=\"" + head + "\"");
    if (dim > 0) overrides.push_back("model.dim=" + std::to_string(dim));
    if (train_limit >= 0) overrides.push_back("data.train_limit=" + std::to_string(train_limit));
    for (const std::string& o : overrides) {
      mrl::Status st = mrl::ApplyOverride(&config, o);
      if (!st.ok()) {
        std::fprintf(stderr, "mrl-trainer: %s\n", st.ToString().c_str());
        return 2;
      }
    }
    mrl::Status st = mrl::FinalizeConfig(&config);
    if (!st.ok()) {
      std::fprintf(stderr, "mrl-trainer: %s\n", st.ToString().c_str());
      return 2;
    }
    if (print_only) {
      std::printf("%s\n", mrl::ConfigToJson(config).c_str());
      return 0;
    }
    const int threads = config.threads > 0 ? config.threads
                                           : static_cast<int>(std::thread::hardware_concurrency());
    torch::set_num_threads(threads);
    st = mrl::RunTraining(config);
    if (!st.ok()) {
      std::fprintf(stderr, "mrl-trainer: error: %s\n", st.ToString().c_str());
      return 1;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "mrl-trainer: internal error: %s\n", e.what());
    return 3;
  }
  return 0;
}
