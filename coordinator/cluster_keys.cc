#include "coordinator/cluster_keys.h"

#include <nlohmann/json.hpp>
#include <random>

#include "coordinator/cluster_state.h"

namespace mrl::coord {

using json = nlohmann::json;

LeaderInfo ParseLeader(const meta::KeyValue& kv) {
  LeaderInfo l;
  const json j = json::parse(kv.value, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("id") || !j["id"].is_string()) return l;
  l.id = j["id"].get<std::string>();
  if (j.contains("address") && j["address"].is_string()) l.address = j["address"].get<std::string>();
  l.revision = kv.mod_revision;
  return l;
}

std::string SessionValue(const std::string& id, const std::string& address) {
  return json{{"id", id}, {"address", address}}.dump();
}

std::string BudgetsToJson(const std::map<std::string, QueryPlan>& budgets) {
  json out = json::object();
  for (const auto& [name, p] : budgets) {
    json stages = json::array();
    for (const Stage& s : p.stages) stages.push_back({s.dims, s.k});
    out[name] = {{"name", p.name}, {"stages", stages}, {"ef", p.ef}, {"exact", p.exact}};
  }
  return out.dump();
}

Result<std::map<std::string, QueryPlan>> BudgetsFromJson(const std::string& text) {
  const json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object()) return Status::Corruption("budgets: not a JSON object");
  std::map<std::string, QueryPlan> out;
  try {
    for (const auto& [name, p] : j.items()) {
      QueryPlan plan;
      plan.name = p.at("name").get<std::string>();
      for (const json& s : p.at("stages")) {
        plan.stages.push_back({s.at(0).get<int32_t>(), s.at(1).get<int32_t>()});
        if (plan.stages.back().dims < 1 || plan.stages.back().k < 1)
          return Status::Corruption("budget '" + name + "': a stage with dims or k < 1");
      }
      if (plan.stages.empty()) return Status::Corruption("budget '" + name + "': no stages");
      plan.ef = p.at("ef").get<int32_t>();
      plan.exact = p.at("exact").get<bool>();
      out.emplace(name, std::move(plan));
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("budgets: ") + e.what());
  }
  return out;
}

bool ValidCoordinatorId(const std::string& id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '.' || c == ':' || c == '-';
    if (!ok) return false;
  }
  return true;
}

std::string RandomCoordinatorId() {
  std::random_device rd;
  std::mt19937_64 g((static_cast<uint64_t>(rd()) << 32) ^ rd());
  static const char* kHex = "0123456789abcdef";
  std::string id = "coord-";
  uint64_t v = g();
  for (int i = 0; i < 12; ++i, v >>= 4) id += kHex[v & 15];
  return id;
}

}  // namespace mrl::coord
