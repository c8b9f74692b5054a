// Helpers shared by the test files.
#pragma once

#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace mrl::test_util {

// A fresh, empty directory under the system temp dir, unique to this process and `name`.
inline std::string TempDir(const std::string& name) {
  namespace fs = std::filesystem;
  const fs::path p = fs::temp_directory_path() / ("mrl_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

inline bool HaveMpirun() { return std::system("command -v mpirun >/dev/null 2>&1") == 0; }

// "mpirun -np N ..." as the tests run it: as root, oversubscribed, shared memory transport.
inline std::string Mpirun(int ranks) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -np " +
         std::to_string(ranks) + " --oversubscribe --bind-to none --mca btl self,vader ";
}

struct Outcome {
  int code = -1;
  std::string output;  // stdout and stderr
  double seconds = 0;
};

// Runs a shell command to completion.
inline Outcome RunCommand(const std::string& cmd) {
  const auto t0 = std::chrono::steady_clock::now();
  Outcome o;
  FILE* p = popen((cmd + " 2>&1").c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), p)) > 0) o.output.append(buf, n);
  const int status = pclose(p);
  o.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  o.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return o;
}

}  // namespace mrl::test_util
