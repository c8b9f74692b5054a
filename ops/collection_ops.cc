#include "ops/collection_ops.h"

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <iostream>

namespace mrl::ops {
namespace {

namespace http = boost::beast::http;
using json = nlohmann::json;

Status BadAnswer(const std::string& what, const json::exception& e) {
  return Status::Corruption("the coordinator's answer to " + what + ": " + e.what());
}

std::string Fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// Strict integer parse of one --plan field.
Result<int> PlanInt(const std::string& s, const std::string& plan) {
  char* end = nullptr;
  errno = 0;
  const long v = std::strtol(s.c_str(), &end, 10);
  if (s.empty() || *end != '\0' || errno != 0 || v <= 0 || v > (1 << 30)) {
    return Status::InvalidArgument("--plan '" + plan + "': '" + s + "' is not a positive integer");
  }
  return static_cast<int>(v);
}

std::vector<std::string> Split(const std::string& s, char sep) {
  std::vector<std::string> parts;
  size_t at = 0;
  for (;;) {
    const size_t next = s.find(sep, at);
    parts.push_back(s.substr(at, next == std::string::npos ? std::string::npos : next - at));
    if (next == std::string::npos) return parts;
    at = next + 1;
  }
}

std::string Trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\n") - b + 1);
}

void PrintSpec(const json& spec) {
  std::string nesting, indexes;
  for (const json& n : spec.at("nesting")) {
    if (!nesting.empty()) nesting += ",";
    nesting += n.dump();
  }
  for (const json& i : spec.at("indexes")) {
    if (!indexes.empty()) indexes += ", ";
    indexes += i.at("kind").get<std::string>() + " over " + i.at("dims").dump() + " dims";
  }
  std::cout << "collection " << spec.at("name").get<std::string>() << ": dim " << spec.at("dim")
            << ", " << spec.at("storage").get<std::string>() << ", "
            << spec.at("metric").get<std::string>() << ", " << spec.at("num_buckets")
            << " buckets\n"
            << "  nesting: " << nesting << "\n"
            << "  indexes: " << (indexes.empty() ? "-" : indexes) << "\n";
}

}  // namespace

Status CreateCollection(HttpClient& c, const CreateCollectionArgs& a) {
  if (a.dim <= 0) return Status::InvalidArgument("collection create needs --dim > 0");
  json spec = {{"dim", a.dim},
               {"storage", a.storage},
               {"indexes", {{{"dims", a.index_dims}, {"kind", "hnsw"}, {"int8", a.index_int8}}}}};
  if (a.num_buckets > 0) spec["num_buckets"] = a.num_buckets;
  auto r = c.CallJson(http::verb::put, "/v1/collections/" + a.collection, spec.dump(),
                      "creating collection '" + a.collection + "'");
  if (!r.ok()) return r.status();
  auto stored = c.CallJson(http::verb::get, "/v1/collections/" + a.collection, "",
                           "collection '" + a.collection + "'");
  if (!stored.ok()) return stored.status();
  if (a.json) {
    std::cout << stored->dump(2) << "\n";
    return Status::Ok();
  }
  try {
    std::cout << "created ";
    PrintSpec(stored.value());
  } catch (const json::exception& e) {
    return BadAnswer("creating the collection", e);
  }
  return Status::Ok();
}

Status DescribeCollection(HttpClient& c, const std::string& name, bool as_json) {
  auto spec =
      c.CallJson(http::verb::get, "/v1/collections/" + name, "", "collection '" + name + "'");
  if (!spec.ok()) return spec.status();
  // The placement needs the admin token; without it the spec alone is still an answer.
  auto map = c.CallJson(http::verb::get, "/v1/cluster", "", "shard map");
  if (as_json) {
    json out = {{"collection", spec.value()}};
    if (map.ok()) out["placement"] = map->at("collections").value(name, json());
    std::cout << out.dump(2) << "\n";
    return Status::Ok();
  }
  try {
    PrintSpec(spec.value());
    if (!map.ok()) {
      std::cout << "  placement: " << map.status().ToString() << "\n";
      return Status::Ok();
    }
    const json placement = map->at("collections").value(name, json());
    if (!placement.is_object()) return Status::Ok();
    const json& groups = map->at("groups");
    std::vector<size_t> owned(groups.size(), 0);
    for (const json& g : placement.at("group_of_bucket")) {
      const size_t i = g.get<size_t>();
      if (i >= owned.size()) owned.resize(i + 1, 0);
      ++owned[i];
    }
    for (size_t g = 0; g < owned.size(); ++g) {
      if (g < groups.size() && groups[g].empty() && owned[g] == 0) continue;  // retired
      std::cout << "  group " << g << ": " << owned[g] << " buckets\n";
    }
    const json moving = placement.value("moving", json::array());
    if (!moving.empty()) std::cout << "  " << moving.size() << " buckets moving\n";
  } catch (const json::exception& e) {
    return BadAnswer("describing the collection", e);
  }
  return Status::Ok();
}

Status DropCollection(HttpClient& c, const std::string& name, bool as_json) {
  auto r = c.CallJson(http::verb::delete_, "/v1/collections/" + name, "",
                      "dropping collection '" + name + "'");
  if (!r.ok() && r.status().message().find("HTTP 405") != std::string::npos) {
    return r.status().WithContext(
        "this coordinator (an older version) cannot drop a collection; '" + name + "' is unchanged");
  }
  if (!r.ok()) return r.status();
  if (as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "dropped collection " << name << " (its points deleted on "
              << r->value("shards", json(0)) << " shards); shard map epoch " << r->value("epoch", json())
              << "\n";
  }
  return Status::Ok();
}

Result<std::vector<float>> ParseVector(const std::string& text) {
  std::vector<float> v;
  const std::vector<std::string> parts = Split(text, ',');
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string s = Trim(parts[i]);
    char* end = nullptr;
    errno = 0;
    const float x = std::strtof(s.c_str(), &end);
    if (s.empty() || *end != '\0' || errno != 0) {
      return Status::InvalidArgument("--vector: element " + std::to_string(i) + " ('" + s +
                                     "') is not a number");
    }
    v.push_back(x);
  }
  return v;
}

Result<json> PlanFields(const std::string& plan) {
  if (plan.empty()) return json::object();
  if (plan == "exact") return json{{"exact", true}};
  if (plan.rfind("budget:", 0) == 0) return json{{"budget", plan.substr(7)}};
  if (plan.rfind("funnel:", 0) == 0) {
    json stages = json::array();
    for (const std::string& st : Split(plan.substr(7), ',')) {
      const std::vector<std::string> dk = Split(Trim(st), 'x');
      if (dk.size() != 2) {
        return Status::InvalidArgument("--plan '" + plan + "': a funnel stage is DIMSxK, got '" +
                                       st + "'");
      }
      auto d = PlanInt(dk[0], plan);
      if (!d.ok()) return d.status();
      auto k = PlanInt(dk[1], plan);
      if (!k.ok()) return k.status();
      stages.push_back({d.value(), k.value()});
    }
    return json{{"funnel", stages}};
  }
  const std::vector<std::string> f = Split(plan, ':');
  if (f.size() != 3) {
    return Status::InvalidArgument(
        "--plan '" + plan +
        "': want exact, budget:NAME, DS:K:DR (adaptive) or funnel:D1xK1,D2xK2,...");
  }
  json p = json::object();
  const char* names[] = {"shortlist_dims", "shortlist_k", "rerank_dims"};
  for (size_t i = 0; i < 3; ++i) {
    auto v = PlanInt(f[i], plan);
    if (!v.ok()) return v.status();
    p[names[i]] = v.value();
  }
  return json{{"plan", p}};
}

Status Search(HttpClient& c, const SearchArgs& a) {
  auto vector = ParseVector(a.vector);
  if (!vector.ok()) return vector.status();
  auto body = PlanFields(a.plan);
  if (!body.ok()) return body.status();
  json req = std::move(body).value();
  req["vector"] = vector.value();
  req["k"] = a.k;
  if (a.one_trip) req["one_trip"] = true;
  if (a.ef > 0) req["ef"] = a.ef;
  if (a.with_payload) req["with_payload"] = true;
  auto r = c.CallJson(http::verb::post, "/v1/collections/" + a.collection + "/search", req.dump(),
                      "searching '" + a.collection + "'");
  if (!r.ok()) return r.status();
  if (a.json) {
    std::cout << r->dump(2) << "\n";
    return Status::Ok();
  }
  try {
    const json& hits = r->at("results").at(0);
    std::cout << "plan: " << r->value("plan", std::string("-")) << "; coverage "
              << Fixed(r->value("coverage", 1.0), 3)
              << (r->value("partial", false) ? " (PARTIAL)" : "") << "\n";
    const json failed = r->value("failed_shards", json::array());
    if (!failed.empty()) std::cout << "failed shards: " << failed.dump() << "\n";
    // Each stage's time as the coordinator reports it (timing_ms: {stage: ms}).
    const json timing = r->value("timing_ms", json::object());
    if (!timing.empty()) {
      std::string t;
      for (const auto& [stage, ms] : timing.items()) {
        if (!t.empty()) t += ", ";
        t += stage + " " + Fixed(ms.get<double>(), 3) + " ms";
      }
      std::cout << "timing: " << t << "\n";
    }
    std::cout << hits.size() << (hits.size() == 1 ? " hit" : " hits") << "\n";
    size_t rank = 0;
    for (const json& h : hits) {
      std::cout << "  " << ++rank << "  id " << h.at("id") << "  score "
                << Fixed(h.at("score").get<double>(), 6);
      if (h.contains("payload")) std::cout << "  " << h["payload"].dump();
      std::cout << "\n";
    }
  } catch (const json::exception& e) {
    return BadAnswer("the search", e);
  }
  return Status::Ok();
}

}  // namespace mrl::ops
