// What every mrl daemon (mrl-shard, mrl-coordinator) does around its servers: read a secret
// file, block SIGTERM/SIGINT so that only main collects them, write the bound port for
// supervisors and tests, and turn an escaping exception into a message and exit code 1.
#pragma once

#include <signal.h>

#include <cstdint>
#include <string>

#include "common/status.h"

namespace mrl {

// The file's content without trailing newlines; "" for an empty path. Throws std::runtime_error
// naming the file when it cannot be read or holds nothing.
std::string ReadSecretFile(const std::string& path);

// Blocks SIGTERM and SIGINT in the calling thread (and every thread it starts later) and returns
// the set for WaitForTerminationSignal.
sigset_t BlockTerminationSignals();
int WaitForTerminationSignal(const sigset_t& signals);  // the signal number

// Writes "<port>\n" atomically to `path` (nothing for an empty path).
Status WritePortFile(const std::string& path, uint16_t port);

// Runs `run` and maps an exception escaping it to "<name>: <what>" on stderr and exit code 1.
int RunDaemonMain(const char* name, int (*run)(int, char**), int argc, char** argv);

}  // namespace mrl
