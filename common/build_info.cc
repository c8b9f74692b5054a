#include "common/build_info.h"

#include <cctype>

// Generated at build time into the build tree (cmake/write_version.cmake).
#include <mrl_version.h>

#ifndef MRL_PROJECT_VERSION
#error "MRL_PROJECT_VERSION is set by common/CMakeLists.txt"
#endif

namespace mrl {
namespace {

std::string LabelValue(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '"' || c == '\\') out += '\\';
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out += c;
  }
  return out;
}

}  // namespace

BuildInfo MakeBuildInfo(std::string program, std::vector<LibraryVersion> libraries) {
  BuildInfo b;
  b.program = std::move(program);
  b.version = MRL_PROJECT_VERSION;
  b.git = MRL_GIT_DESCRIBE;
  b.build_type = MRL_BUILD_TYPE;
  b.libraries = std::move(libraries);
  return b;
}

std::string VersionText(const BuildInfo& b) {
  std::string out = b.program + " " + b.version + " (git " + b.git + "), " + b.build_type +
                    " build";
  for (const LibraryVersion& l : b.libraries) out += "\n  " + l.name + " " + l.version;
  return out;
}

std::string VersionSummary(const BuildInfo& b) {
  std::string out = b.version + " (git " + b.git + ") " + b.build_type;
  for (size_t i = 0; i < b.libraries.size(); ++i) {
    out += (i == 0 ? "; " : ", ") + b.libraries[i].name + " " + b.libraries[i].version;
  }
  return out;
}

std::string BuildInfoGauge(const BuildInfo& b) {
  std::string out = "# HELP mrl_build_info What this process was built from (always 1).\n";
  out += "# TYPE mrl_build_info gauge\n";
  out += "mrl_build_info{program=\"" + LabelValue(b.program) + "\",version=\"" +
         LabelValue(b.version) + "\",git=\"" + LabelValue(b.git) + "\",build_type=\"" +
         LabelValue(b.build_type) + "\"";
  for (const LibraryVersion& l : b.libraries) {
    std::string name;
    for (char c : l.name) name += std::isalnum(static_cast<unsigned char>(c)) ? std::tolower(c) : '_';
    out += "," + name + "=\"" + LabelValue(l.version) + "\"";
  }
  out += "} 1\n";
  return out;
}

std::string DottedVersion(int major, int minor, int patch) {
  return std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
}

}  // namespace mrl
