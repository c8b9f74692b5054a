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

// The temporary name next to `path` that the writers above use (path + ".tmp." + pid).
std::string TempPathFor(const std::string& path);

// Publishes a complete temporary file that other code wrote (a library's own writer: hnswlib,
// libarchive, an npy writer): fsyncs `tmp`, renames it over `path`, fsyncs the directory. On
// failure `tmp` is removed and the old `path`, if any, is left as it was.
Status CommitTempFile(const std::string& tmp, const std::string& path);

// Reads a whole file.
Result<std::string> ReadFile(const std::string& path);

// Creates `dir` (and parents) if needed and checks that a file can be created in it, so that a
// long job fails before it starts instead of after hours of work.
Status EnsureWritableDir(const std::string& dir);

}  // namespace mrl
