// mrl-trainer: trains Matryoshka (MRL / MRL-E / FF-k) embeddings, evaluates every nesting dim,
// exports embeddings and the model. Usage: mrl-trainer [--config FILE] [--set key=value]...
#include <torch/torch.h>
#include <torch/version.h>
#if defined(MRL_WITH_MPI)
#include <mpi.h>
#endif

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "common/build_info.h"
#include "common/provenance.h"
#include "trainer/config.h"
#include "trainer/mpi_comm.h"
#include "trainer/run.h"

namespace {

mrl::BuildInfo TrainerBuildInfo() {
  std::vector<mrl::LibraryVersion> libs = {
      {"LibTorch", mrl::DottedVersion(TORCH_VERSION_MAJOR, TORCH_VERSION_MINOR, TORCH_VERSION_PATCH)},
      {"CUDA", torch::cuda::is_available() ? "available" : "not available"}};
#if defined(MRL_WITH_MPI)
#if defined(OMPI_MAJOR_VERSION)
  libs.push_back({"Open MPI", mrl::DottedVersion(OMPI_MAJOR_VERSION, OMPI_MINOR_VERSION,
                                                 OMPI_RELEASE_VERSION)});
#else
  libs.push_back({"MPI", std::to_string(MPI_VERSION) + "." + std::to_string(MPI_SUBVERSION)});
#endif
#else
  libs.push_back({"MPI", "not built in"});
#endif
#if defined(MRL_WITH_NCCL)
  libs.push_back({"NCCL", "built in"});
#endif
  return mrl::MakeBuildInfo("mrl-trainer", std::move(libs));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // progress reaches a pipe as it is printed
  CLI::App app{"mrl-trainer: Matryoshka Representation Learning trainer"};
  app.set_version_flag("--version", [] { return mrl::VersionText(TrainerBuildInfo()); });
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
  const nlohmann::json provenance = mrl::Provenance(argc, argv);  // before MPI edits argv
  mrl::Communicator& comm = mrl::Communicator::Init(&argc, &argv);
  const std::string who =
      comm.distributed() ? "mrl-trainer[rank " + std::to_string(comm.world().rank) + "]" : "mrl-trainer";
  // On any failure in a distributed run, end every rank now rather than leave peers waiting.
  auto fail = [&](int code) {
    if (comm.distributed()) comm.Abort(code);
    comm.Finalize();
    return code;
  };
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);
    return code == 0 ? (comm.Finalize(), 0) : fail(code);
  }

  try {
    mrl::TrainConfig config;
    if (!config_path.empty()) {
      auto loaded = mrl::LoadConfigFile(config_path);
      if (!loaded.ok()) {
        std::fprintf(stderr, "%s: %s\n", who.c_str(), loaded.status().ToString().c_str());
        return fail(2);
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
        std::fprintf(stderr, "%s: %s\n", who.c_str(), st.ToString().c_str());
        return fail(2);
      }
    }
    mrl::Status st = mrl::FinalizeConfig(&config);
    if (!st.ok()) {
      std::fprintf(stderr, "%s: %s\n", who.c_str(), st.ToString().c_str());
      return fail(2);
    }
    if (print_only) {
      std::printf("%s\n", mrl::ConfigToJson(config).c_str());
      comm.Finalize();
      return 0;
    }
    const int threads = config.threads > 0 ? config.threads
                                           : static_cast<int>(std::thread::hardware_concurrency());
    torch::set_num_threads(threads);
    st = mrl::RunTraining(config, provenance);
    if (!st.ok()) {
      std::fprintf(stderr, "%s: error: %s\n", who.c_str(), st.ToString().c_str());
      return fail(1);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: internal error: %s\n", who.c_str(), e.what());
    return fail(3);
  }
  comm.Finalize();
  return 0;
}
