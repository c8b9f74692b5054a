// Reading etcd's proto3 JSON (internal to meta/): int64s arrive as strings, zero values are
// omitted, bytes are base64.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <string>

#include "meta/base64.h"

namespace mrl::meta::etcd_json {

inline int64_t Int(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field)) return 0;  // proto3 JSON omits zero values
  const nlohmann::json& v = j.at(field);
  if (v.is_string()) {  // member ids are uint64s beyond int64's range: keep their bits
    const std::string t = v.get<std::string>();
    char* end = nullptr;
    const int64_t n = t.rfind('-', 0) == 0
                          ? std::strtoll(t.c_str(), &end, 10)
                          : static_cast<int64_t>(std::strtoull(t.c_str(), &end, 10));
    return end != nullptr && *end == '\0' ? n : 0;
  }
  if (v.is_number()) return v.get<int64_t>();
  return 0;
}

inline std::string B64Field(const nlohmann::json& j, const char* field) {
  if (!j.is_object() || !j.contains(field) || !j.at(field).is_string()) return "";
  auto d = Base64Decode(j.at(field).get<std::string>());
  return d.ok() ? std::move(d).value() : std::string();
}

}  // namespace mrl::meta::etcd_json
