// Crash-safe file replacement: data goes to a temporary name in the same directory, is fsync'ed,
// renamed over the destination, and the directory is fsync'ed. A reader sees either the old file
// or the complete new one, never a prefix; a failure leaves no temporary file behind.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace mrl {

// Atomically replaces `path` with `data`.
Status WriteFileAtomic(const std::string& path, std::string_view data);

// Reads a whole file.
Result<std::string> ReadFile(const std::string& path);

// Creates `dir` (and parents) if needed and checks that a file can be created in it, so that a
// long job fails before it starts instead of after hours of work.
Status EnsureWritableDir(const std::string& dir);

}  // namespace mrl
