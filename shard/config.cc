#include "shard/config.h"

#include <fstream>

#include <nlohmann/json.hpp>

namespace mrl::shard {

Status LoadConfigFile(const std::string& path, ShardConfig* config) {
  std::ifstream in(path);
  if (!in) return Status::IoError("cannot open config file " + path);
  nlohmann::json j;
  try {
    in >> j;
  } catch (const std::exception& e) {
    return Status::InvalidArgument("config file " + path + ": " + e.what());
  }
  if (!j.is_object()) return Status::InvalidArgument("config file " + path + ": not an object");
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    try {
#define MRL_LOAD_(type, name, def, help) \
  if (key == #name) {                    \
    config->name = value.get<type>();    \
    known = true;                        \
  }
      MRL_SHARD_CONFIG_FIELDS(MRL_LOAD_)
#undef MRL_LOAD_
    } catch (const std::exception& e) {
      return Status::InvalidArgument("config file " + path + ": key '" + key + "': " + e.what());
    }
    if (!known)
      return Status::InvalidArgument("config file " + path + ": unknown key '" + key + "'");
  }
  return Status::Ok();
}

std::string ConfigToJson(const ShardConfig& config) {
  nlohmann::json j;
#define MRL_SAVE_(type, name, def, help) j[#name] = config.name;
  MRL_SHARD_CONFIG_FIELDS(MRL_SAVE_)
#undef MRL_SAVE_
  return j.dump();
}

}  // namespace mrl::shard
