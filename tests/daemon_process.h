// A daemon under test (mrl-shard, mrl-coordinator): started by common/process.h (the launcher
// mrlctl uses too), its stdout and stderr in a log file, its OS-chosen port read from the --port-file it writes once listening.
// The destructor kills it if it still runs.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "common/process.h"

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
    if (pid_ <= 0) return;
    // A daemon that ended by itself while the test still counted on it: say how, with its log's
    // tail, so a failure elsewhere in the test (an empty reply, a refused connection) explains
    // itself in the CI output.
    if (!Alive()) {
      std::string log = Log();
      if (log.size() > 4000) log = "..." + log.substr(log.size() - 4000);
      std::cerr << "[daemon] " << name_ << " (pid " << pid_ << ") ended by itself: "
                << DescribeExit(exit_status_) << "; its log " << log_ << " ends:\n" << log << std::endl;
      return;
    }
    Kill(SIGKILL);
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
    auto pid = SpawnProcess(all, log_);
    ASSERT_TRUE(pid.ok()) << pid.status().ToString();
    pid_ = pid.value();
    exited_ = false;
    auto port = WaitForPortFile(port_file, pid_, log_,
                                std::chrono::duration<double>(timeout).count());
    if (!port.ok()) {
      if (port.status().code() == Status::Code::kFailedPrecondition) pid_ = -1;  // reaped
      FAIL() << name_ << ": " << port.status().ToString() << ":\n" << Log();
    }
    port_ = static_cast<uint16_t>(port.value());
  }

  // Sends `sig` and waits: the exit code, or 128 + signal.
  int Kill(int sig) {
    Signal(sig);
    return Wait();
  }
  // Sends `sig` without waiting for the exit (Wait collects it).
  void Signal(int sig) {
    if (pid_ > 0 && !exited_) kill(pid_, sig);
  }
  // Waits for the daemon to exit: the exit code, or 128 + signal.
  int Wait() {
    if (pid_ <= 0) return -1;
    const int code = exited_ ? ExitCode(exit_status_) : WaitForExit(pid_);
    pid_ = -1;
    exited_ = false;
    return code;
  }

  // Later starts listen on the port the daemon has now (peers that know its address, such as a
  // shard map, reach it again after a restart).
  void PinPort() {
    for (size_t i = 0; i + 1 < args_.size(); ++i) {
      if (args_[i] == "--port") args_[i + 1] = std::to_string(port_);
    }
  }

  bool running() const { return pid_ > 0; }
  // Still running (not exited, not killed) without having been restarted since Start.
  bool Alive() const {
    if (pid_ <= 0) return false;
    if (exited_) return false;
    int status = 0;
    if (waitpid(pid_, &status, WNOHANG) == 0) return true;
    exited_ = true;  // reaped here: remember how, and never signal the (reusable) pid again
    exit_status_ = status;
    return false;
  }
  int starts() const { return starts_; }
  uint16_t port() const { return port_; }
  // The address it listens on: 127.0.0.1 unless set_host named another (a lab host's).
  std::string address() const { return host_ + ":" + std::to_string(port_); }
  const std::string& host() const { return host_; }
  void set_host(std::string host) { host_ = std::move(host); }
  std::string Log() const { return Slurp(log_); }

 private:
  static int ExitCode(int status) {
    return WIFSIGNALED(status) ? 128 + WTERMSIG(status) : WEXITSTATUS(status);
  }
  static std::string DescribeExit(int status) {
    if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
    return "exit code " + std::to_string(WEXITSTATUS(status));
  }

  std::string name_, binary_;
  std::vector<std::string> args_;
  std::string dir_;
  pid_t pid_ = -1;
  uint16_t port_ = 0;
  std::string host_ = "127.0.0.1";
  int starts_ = 0;
  std::string log_;
  mutable bool exited_ = false;  // reaped by Alive(); exit_status_ is its wait status
  mutable int exit_status_ = 0;
};

}  // namespace mrl::test_util
