#include "coordinator/cluster_keys.h"

#include <nlohmann/json.hpp>

#include "coordinator/cluster_state.h"
#include "meta/leased_key.h"

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
    out[name] = {{"name", p.name}, {"stages", stages}, {"ef", p.ef}, {"exact", p.exact},
                 {"one_trip", p.one_trip}};
    if (p.calibrated_recall >= 0) out[name]["recall"] = p.calibrated_recall;
    if (p.calibrated_latency_us >= 0) out[name]["latency_us"] = p.calibrated_latency_us;
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
      plan.one_trip = p.value("one_trip", false);  // absent in budgets stored before it
      plan.calibrated_recall = p.value("recall", -1.0);  // absent before the console showed them
      plan.calibrated_latency_us = p.value("latency_us", -1.0);
      out.emplace(name, std::move(plan));
    }
  } catch (const json::exception& e) {
    return Status::Corruption(std::string("budgets: ") + e.what());
  }
  return out;
}

ShardRegistrationInfo ParseShardRegistration(const std::string& id, const meta::KeyValue& kv) {
  ShardRegistrationInfo r;
  r.id = id;
  r.lease = kv.lease;
  r.mod_revision = kv.mod_revision;
  const json j = json::parse(kv.value, nullptr, /*allow_exceptions=*/false);
  if (!j.is_object() || !j.contains("address") || !j["address"].is_string()) {
    r.state = "unparseable";
    return r;
  }
  r.address = j["address"].get<std::string>();
  r.state = j.value("state", std::string("unknown"));
  r.version = j.value("version", std::string());
  return r;
}

bool ValidCoordinatorId(const std::string& id) { return meta::ValidMemberId(id); }

std::string RandomCoordinatorId() { return meta::RandomMemberId("coord-"); }

}  // namespace mrl::coord
