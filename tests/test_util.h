// Helpers shared by the test files.
#pragma once

#include <unistd.h>

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

}  // namespace mrl::test_util
