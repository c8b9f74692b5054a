#include "common/process.h"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <string>
#include <thread>

#include "common/atomic_file.h"

extern char** environ;

namespace mrl {

Result<pid_t> SpawnProcess(const std::vector<std::string>& args, const std::string& log,
                           const SpawnOptions& options) {
  if (args.empty()) return Status::InvalidArgument("SpawnProcess: no program");
  std::vector<std::string> a = args;
  std::vector<char*> argv;
  for (auto& s : a) argv.push_back(s.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  const int flags = O_WRONLY | O_CREAT | (options.append_log ? O_APPEND : O_TRUNC);
  posix_spawn_file_actions_addopen(&fa, 1, log.c_str(), flags, 0644);
  posix_spawn_file_actions_adddup2(&fa, 1, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  if (options.new_session) posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSID);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, &attr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return Status::IoError("cannot start " + args[0] + ": " + std::strerror(rc));
  return pid;
}

Result<int> WaitForPortFile(const std::string& port_file, pid_t pid, const std::string& log,
                            double timeout_s) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s);
  while (!std::filesystem::exists(port_file)) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid || (kill(pid, 0) != 0 && errno == ESRCH)) {
      return Status::FailedPrecondition("process " + std::to_string(pid) +
                                        " exited during start-up; see " + log);
    }
    if (std::chrono::steady_clock::now() > until) {
      return Status::DeadlineExceeded("no port file " + port_file + " after " +
                                      std::to_string(timeout_s) + " s; see " + log);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  auto text = ReadFile(port_file);
  if (!text.ok()) return text.status();
  try {
    return std::stoi(text.value());
  } catch (const std::exception&) {
    return Status::Corruption("port file " + port_file + " holds '" + text.value() + "'");
  }
}

int WaitForExit(pid_t pid) {
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace mrl
