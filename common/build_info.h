// What a binary was built from: the project version, `git describe` of the source tree at build
// time, the build type (with any sanitizer) and the versions of the libraries it was compiled
// against (each binary names its own: the trainer LibTorch, the shard RocksDB, ...). Printed by
// every binary's --version, kept in a shard's StatsResponse and in the coordinator's /metrics.
#pragma once

#include <string>
#include <vector>

namespace mrl {

struct LibraryVersion {
  std::string name;     // "RocksDB"
  std::string version;  // "7.8.3"
};

struct BuildInfo {
  std::string program;     // "mrl-shard"
  std::string version;     // the project's version (CMake project(VERSION)), e.g. "0.1.0"
  std::string git;         // git describe --always --dirty --tags at build time, or "unknown"
  std::string build_type;  // "Release", "Debug+ASan+UBSan", ...
  std::vector<LibraryVersion> libraries;
};

BuildInfo MakeBuildInfo(std::string program, std::vector<LibraryVersion> libraries);

// "mrl-shard 0.1.0 (git f1ffaea-dirty), Release build\n  RocksDB 7.8.3\n  Boost 1.74.0..." (no
// final newline)
std::string VersionText(const BuildInfo& b);
// One line: "0.1.0 (git f1ffaea) Release; RocksDB 7.8.3, Boost 1.74.0, FlatBuffers 2.0.8".
std::string VersionSummary(const BuildInfo& b);
// Prometheus: "# TYPE mrl_build_info gauge\nmrl_build_info{program=...,version=...,git=...,
// build_type=...,rocksdb=...} 1\n" (label names: the libraries' names in lower case).
std::string BuildInfoGauge(const BuildInfo& b);

// "1.74.0" from BOOST_VERSION-style integers; helpers for the headers' version macros.
std::string DottedVersion(int major, int minor, int patch);

}  // namespace mrl
