#include "common/daemon.h"

#include <pthread.h>

#include <exception>
#include <fstream>
#include <iostream>
#include <sstream>
#include <stdexcept>

#include "common/atomic_file.h"

namespace mrl {

std::string ReadSecretFile(const std::string& path) {
  if (path.empty()) return "";
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read secret file " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  if (s.empty()) throw std::runtime_error("secret file " + path + " is empty");
  return s;
}

sigset_t BlockTerminationSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  return signals;
}

int WaitForTerminationSignal(const sigset_t& signals) {
  int sig = 0;
  sigwait(&signals, &sig);
  return sig;
}

Status WritePortFile(const std::string& path, uint16_t port) {
  if (path.empty()) return Status::Ok();
  return WriteFileAtomic(path, std::to_string(port) + "\n");
}

int RunDaemonMain(const char* name, int (*run)(int, char**), int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << name << ": " << e.what() << "\n";
    return 1;
  }
}

}  // namespace mrl
