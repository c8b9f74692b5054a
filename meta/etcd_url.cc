// ParseEtcdUrl (meta/etcd_store.h): "etcd://h1:p1,h2:p2/prefix?param=value&...".
#include <map>
#include <set>

#include "meta/etcd_store.h"

namespace mrl::meta {

namespace {

const char* const kParams = "ca, cert, key, tls, user, password_file";

// %XX escapes decoded ('+' stays '+': these are paths and names, not form fields).
Result<std::string> PercentDecode(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    auto hex = [](char c) {
      if (c >= '0' && c <= '9') return c - '0';
      if (c >= 'a' && c <= 'f') return c - 'a' + 10;
      if (c >= 'A' && c <= 'F') return c - 'A' + 10;
      return -1;
    };
    const int hi = i + 1 < s.size() ? hex(s[i + 1]) : -1;
    const int lo = i + 2 < s.size() ? hex(s[i + 2]) : -1;
    if (hi < 0 || lo < 0) return Status::InvalidArgument("a bad %-escape");
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

Status ParseQuery(const std::string& query, const std::string& shown, EtcdOptions* o) {
  std::map<std::string, std::string> params;
  std::vector<std::string> unknown;
  const std::set<std::string> known = {"ca", "cert", "key", "tls", "user", "password_file"};
  size_t at = 0;
  while (at <= query.size()) {
    const size_t amp = query.find('&', at);
    const std::string item =
        query.substr(at, amp == std::string::npos ? std::string::npos : amp - at);
    at = amp == std::string::npos ? query.size() + 1 : amp + 1;
    if (item.empty()) continue;
    const size_t eq = item.find('=');
    auto name = PercentDecode(item.substr(0, eq));
    if (!name.ok()) return Status::InvalidArgument("etcd url '" + shown + "': a bad %-escape");
    if (name.value() == "password") {
      return Status::InvalidArgument(
          "etcd url '" + shown +
          "': a password is never given in the URL: put it in a file (mode 0600) and give "
          "password_file=FILE");
    }
    if (known.count(name.value()) == 0) {
      unknown.push_back("'" + name.value() + "'");
      continue;
    }
    if (eq == std::string::npos || eq + 1 == item.size()) {
      return Status::InvalidArgument("etcd url '" + shown + "': parameter '" + name.value() +
                                     "' needs a value");
    }
    auto value = PercentDecode(item.substr(eq + 1));
    if (!value.ok()) {
      return Status::InvalidArgument("etcd url '" + shown + "': parameter '" + name.value() +
                                     "': a bad %-escape");
    }
    if (!params.emplace(name.value(), value.value()).second) {
      return Status::InvalidArgument("etcd url '" + shown + "': parameter '" + name.value() +
                                     "' given twice");
    }
  }
  if (!unknown.empty()) {
    std::string names;
    for (const auto& n : unknown) names += (names.empty() ? "" : ", ") + n;
    return Status::InvalidArgument("etcd url '" + shown + "': unknown parameter" +
                                   (unknown.size() > 1 ? "s " : " ") + names +
                                   " (known: " + kParams + ")");
  }
  auto get = [&](const char* name) {
    auto it = params.find(name);
    return it == params.end() ? std::string() : it->second;
  };
  o->ca_file = get("ca");
  o->cert_file = get("cert");
  o->key_file = get("key");
  o->user = get("user");
  o->password_file = get("password_file");
  const bool files = !o->ca_file.empty() || !o->cert_file.empty() || !o->key_file.empty();
  if (params.count("tls")) {
    const std::string t = params["tls"];
    if (t == "1" || t == "true" || t == "on") {
      o->tls = true;
    } else if (t == "0" || t == "false" || t == "off") {
      if (files) {
        return Status::InvalidArgument("etcd url '" + shown + "': tls=" + t +
                                       " with ca/cert/key: choose one");
      }
      o->tls = false;
    } else {
      return Status::InvalidArgument("etcd url '" + shown + "': tls='" + t + "': want 1 or 0");
    }
  }
  o->tls = o->tls || files;
  if (o->cert_file.empty() != o->key_file.empty()) {
    return Status::InvalidArgument("etcd url '" + shown +
                                   "': a client certificate needs both cert= and key=");
  }
  if (o->user.empty() != o->password_file.empty()) {
    return Status::InvalidArgument("etcd url '" + shown +
                                   "': user= and password_file= go together");
  }
  return Status::Ok();
}

}  // namespace

Result<EtcdOptions> ParseEtcdUrl(const std::string& url) {
  const std::string scheme = "etcd://";
  const size_t question = url.find('?');
  // Shown in errors: never the query (its values are paths, but a mistyped one may be a secret).
  const std::string shown = url.substr(0, question);
  if (url.rfind(scheme, 0) != 0) return Status::InvalidArgument("not an etcd:// url: " + shown);
  std::string rest = shown.substr(scheme.size());
  EtcdOptions o;
  if (question != std::string::npos)
    MRL_RETURN_IF_ERROR(ParseQuery(url.substr(question + 1), shown, &o));
  if (const size_t slash = rest.find('/'); slash != std::string::npos) {
    o.prefix = rest.substr(slash);
    if (o.prefix.back() != '/') o.prefix += '/';
    rest = rest.substr(0, slash);
  }
  size_t at = 0;
  while (at <= rest.size()) {
    const size_t comma = rest.find(',', at);
    const std::string ep =
        rest.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    const size_t colon = ep.rfind(':');
    if (ep.empty() || colon == std::string::npos || colon == 0 || colon + 1 == ep.size() ||
        ep.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
      return Status::InvalidArgument("etcd endpoint '" + ep + "' in '" + shown +
                                     "': want host:port");
    }
    o.endpoints.push_back(ep);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  if (o.endpoints.empty()) return Status::InvalidArgument("no etcd endpoint in '" + shown + "'");
  return o;
}

}  // namespace mrl::meta
