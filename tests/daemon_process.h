// A daemon under test (mrl-shard, mrl-coordinator): started with posix_spawn, its stdout and
// stderr in a log file, its OS-chosen port read from the --port-file it writes once listening.
// The destructor kills it if it still runs.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace mrl::test_util {

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class DaemonProcess {
 public:
  // `args` excludes --port-file, which Start adds (port_file = <log_dir>/<name>.port).
  DaemonProcess(std::string name, std::string binary, std::vector<std::string> args,
                std::string log_dir)
      : name_(std::move(name)),
        binary_(std::move(binary)),
        args_(std::move(args)),
        dir_(std::move(log_dir)) {}
  ~DaemonProcess() {
    if (pid_ > 0) Kill(SIGKILL);
  }

  // Starts and waits (up to `timeout`) for the port file. Fails the test if the daemon exits.
  void Start(std::chrono::seconds timeout = std::chrono::seconds(120)) {
    ++starts_;
    const std::string port_file = dir_ + "/" + name_ + ".port";
    std::filesystem::remove(port_file);
    log_ = dir_ + "/" + name_ + ".log." + std::to_string(starts_);
    std::vector<std::string> all = {binary_};
    all.insert(all.end(), args_.begin(), args_.end());
    all.push_back("--port-file");
    all.push_back(port_file);
    std::vector<char*> argv;
    for (auto& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, log_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    ASSERT_EQ(posix_spawn(&pid_, argv[0], &fa, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&fa);
    const auto until = std::chrono::steady_clock::now() + timeout;
    while (!std::filesystem::exists(port_file)) {
      int status = 0;
      ASSERT_EQ(waitpid(pid_, &status, WNOHANG), 0) << name_ << " exited early:\n" << Log();
      ASSERT_LT(std::chrono::steady_clock::now(), until) << name_ << " wrote no port file:\n"
                                                         << Log();
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    port_ = static_cast<uint16_t>(std::stoi(Slurp(port_file)));
  }

  // Sends `sig` and waits: the exit code, or 128 + signal.
  int Kill(int sig) {
    Signal(sig);
    return Wait();
  }
  // Sends `sig` without waiting for the exit (Wait collects it).
  void Signal(int sig) {
    if (pid_ > 0) kill(pid_, sig);
  }
  // Waits for the daemon to exit: the exit code, or 128 + signal.
  int Wait() {
    if (pid_ <= 0) return -1;
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  }

  bool running() const { return pid_ > 0; }
  uint16_t port() const { return port_; }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string Log() const { return Slurp(log_); }

 private:
  std::string name_, binary_;
  std::vector<std::string> args_;
  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  int starts_ = 0;
  std::string log_;
};

}  // namespace mrl::test_util
