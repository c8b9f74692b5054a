// Starting and supervising a daemon process (mrl-shard, mrl-coordinator): the one launcher that
// mrlctl's local cluster and the tests share. The child's stdout and stderr go to a log file;
// its OS-chosen port is read from the --port-file it writes once it listens.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace mrl {

struct SpawnOptions {
  bool append_log = false;   // append to the log instead of truncating it
  bool new_session = false;  // setsid: the child outlives its parent's exit and its Ctrl-C
};

// Starts argv[0] (a path) with `argv`, this process's environment, stdout and stderr to `log`.
Result<pid_t> SpawnProcess(const std::vector<std::string>& argv, const std::string& log,
                           const SpawnOptions& options = {});

// Waits until `port_file` exists and returns the port in it. FailedPrecondition when `pid`
// exits first, DeadlineExceeded after `timeout_s`; both name `log`.
Result<int> WaitForPortFile(const std::string& port_file, pid_t pid, const std::string& log,
                            double timeout_s);

// Reaps a child: its exit code, or 128 + the signal that ended it.
int WaitForExit(pid_t pid);

}  // namespace mrl
