#include "common/provenance.h"

#include <unistd.h>

#include <array>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

#ifndef MRL_SOURCE_DIR
#define MRL_SOURCE_DIR "."
#endif

namespace mrl {
namespace {

std::string RunAndRead(const std::string& cmd) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (p == nullptr) return out;
  std::array<char, 256> buf{};
  while (std::fgets(buf.data(), buf.size(), p) != nullptr) out += buf.data();
  if (::pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out;
}

std::string ShellQuote(const std::string& s) {
  if (!s.empty() &&
      s.find_first_not_of("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                          "-_./=:,+@%") == std::string::npos) {
    return s;
  }
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string CpuModel() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line
                                        : line.substr(line.find_first_not_of(' ', colon + 1));
    }
  }
  return "unknown";
}

}  // namespace

nlohmann::json Provenance(int argc, const char* const* argv) {
  nlohmann::json stamp;
  std::string commit =
      RunAndRead("git -C '" MRL_SOURCE_DIR "' describe --always --dirty --tags 2>/dev/null");
  stamp["commit"] = commit.empty() ? "unknown" : commit;
  std::string command;
  for (int i = 0; i < argc; ++i) {
    if (i > 0) command.push_back(' ');
    command.append(ShellQuote(argv[i]));
  }
  stamp["command"] = command;
  nlohmann::json machine;
  machine["cores"] = std::thread::hardware_concurrency();
  machine["cpu"] = CpuModel();
  machine["mem_gib"] = static_cast<double>(::sysconf(_SC_PHYS_PAGES)) *
                       static_cast<double>(::sysconf(_SC_PAGESIZE)) / (1 << 30);
  std::ifstream load("/proc/loadavg");
  double l1 = 0, l5 = 0, l15 = 0;
  load >> l1 >> l5 >> l15;
  machine["loadavg_start"] = {l1, l5, l15};
  stamp["machine"] = machine;
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", &tm);
  stamp["date"] = date;
  return stamp;
}

std::string ProvenanceLine(const nlohmann::json& s) {
  std::ostringstream o;
  const auto& m = s.at("machine");
  const auto& l = m.at("loadavg_start");
  char load[64];
  std::snprintf(load, sizeof(load), "%.2f %.2f %.2f", l.at(0).get<double>(), l.at(1).get<double>(),
                l.at(2).get<double>());
  o << "commit `" << s.at("commit").get<std::string>() << "` · `"
    << s.at("command").get<std::string>() << "` · " << m.at("cores").get<int>() << " cores ("
    << m.at("cpu").get<std::string>() << "), load average " << load << " at start · "
    << s.at("date").get<std::string>();
  return o.str();
}

}  // namespace mrl
