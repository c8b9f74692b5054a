#include "coordinator/http_api.h"
#include "coordinator/owner_state.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>
#include <optional>
#include <regex>
#include <set>
#include <unordered_map>

#include "coordinator/rebalance_plan.h"
#include "coordinator/json_vectors.h"
#include "coordinator/ui_assets.h"

namespace mrl::coord {
namespace {

using json = nlohmann::json;

int HttpStatusOf(const Status& s) {
  switch (s.code()) {
    case Status::Code::kOk:
      return 200;
    case Status::Code::kInvalidArgument:
    case Status::Code::kOutOfRange:
      return 400;
    case Status::Code::kUnauthenticated:
      return 401;
    case Status::Code::kNotFound:
      return 404;
    case Status::Code::kFailedPrecondition:
    case Status::Code::kAborted:
      return 409;
    case Status::Code::kResourceExhausted:
      return 429;
    case Status::Code::kInsufficientStorage:
      return 507;
    case Status::Code::kUnavailable:
      return 503;
    case Status::Code::kDeadlineExceeded:
      return 504;
    default:
      return 500;
  }
}

HttpResponse JsonReply(int status, const json& j) { return {status, "application/json", j.dump()}; }
HttpResponse ErrorReply(const Status& s) {
  return JsonReply(HttpStatusOf(s), {{"error", s.message()}, {"code", CodeName(s.code())}});
}
HttpResponse ErrorReply(int status, const std::string& message) {
  return JsonReply(status, {{"error", message}});
}
HttpResponse Reply(const Result<json>& r) {
  return r.ok() ? JsonReply(200, r.value()) : ErrorReply(r.status());
}
HttpResponse Reply(const Status& st, const json& ok_body) {
  return st.ok() ? JsonReply(200, ok_body) : ErrorReply(st);
}
// A cluster change's answer: a refusal on a coordinator that does not lead names the leader
// ("leader": its URL) so a client can send the change there.
HttpResponse ChangeReply(ClusterState& state, const Status& st, const json& ok_body) {
  if (st.ok()) return JsonReply(200, ok_body);
  HttpResponse r = ErrorReply(st);
  const MetaState m = state.Meta();
  if (!m.leader && !m.current.address.empty()) {
    json j = json::parse(r.body);
    j["leader"] = m.current.address;
    j["leader_id"] = m.current.id;
    r.body = j.dump();
  }
  return r;
}

json MetaJson(ClusterState& state) {
  const MetaState m = state.Meta();
  json members = json::array();
  for (const auto& e : state.StoreMembers()) {
    json mj = {{"endpoint", e.endpoint}, {"healthy", e.healthy}, {"leader", e.leader}};
    if (!e.healthy) mj["error"] = e.error;
    members.push_back(mj);
  }
  // Shard registrations, joined to the map by address: which map member (and group) each is, and
  // which map members have none (a shard that runs without --meta, is down, or is cut off).
  const auto snap = state.Snapshot();
  std::map<std::string, std::pair<std::string, int>> by_address;  // address -> (map id, group)
  for (size_t g = 0; g < snap->map.groups().size(); ++g) {
    for (const auto& id : snap->map.groups()[g].WriteShards()) {
      auto addr = snap->map.AddressOf(id);
      if (addr.ok()) by_address[*addr] = {id, static_cast<int>(g)};
    }
  }
  json shards = json::array();
  std::set<std::string> registered;
  for (const auto& r : m.shards) {
    json sj = {{"id", r.id},         {"address", r.address}, {"state", r.state},
               {"version", r.version}, {"lease", r.lease},     {"revision", r.mod_revision}};
    auto it = by_address.find(r.address);
    if (it != by_address.end()) {
      sj["map_shard"] = it->second.first;
      sj["group"] = it->second.second;
      registered.insert(it->second.first);
    } else {
      sj["map_shard"] = nullptr;  // registered, but not (yet) in the shard map
    }
    shards.push_back(sj);
  }
  json moves = json::object();  // the move journal: id -> its record
  for (const auto& [id, entry] : snap->moves) {
    json v = json::parse(entry.value, nullptr, /*allow_exceptions=*/false);
    moves[id] = v.is_discarded() ? json(entry.value) : v;
  }
  json unregistered = json::array();
  for (const auto& [address, member] : by_address) {
    if (!registered.count(member.first)) unregistered.push_back(member.first);
  }
  return {{"store", m.store},
          {"self", {{"id", m.self_id}, {"address", m.self_address}, {"leader", m.leader},
                    {"follow", m.follow}}},
          {"leader", m.current.id.empty() ? json(nullptr)
                                          : json{{"id", m.current.id},
                                                 {"address", m.current.address},
                                                 {"revision", m.current.revision}}},
          {"coordinators", m.coordinators},
          {"shards", shards},
          {"unregistered_shards", unregistered},
          {"moves", moves},
          {"reachable", m.reachable},
          {"last_error", m.last_error},
          {"revision", m.revision},
          {"watch_restarts", m.watch_restarts},
          {"lease_losses", m.lease_losses},
          {"fenced_writes", m.fenced_writes},
          {"store_requests", m.store_requests},
          {"members", members}};
}

// Appends the rows of "vector" (one) and "vectors" (at most max_rows) to `out`, each checked to
// have `dim` finite numbers.
Status ParseVectors(const json& j, int32_t dim, int32_t max_rows, std::vector<float>* out,
                    size_t* rows) {
  auto add = [&](const json& v) -> Status {
    if (!v.is_array()) return Status::InvalidArgument("a vector must be an array of numbers");
    if (static_cast<int32_t>(v.size()) != dim) {
      return Status::InvalidArgument("vector has " + std::to_string(v.size()) +
                                     " dims, collection has " + std::to_string(dim));
    }
    for (const json& x : v) {
      if (!x.is_number()) return Status::InvalidArgument("vector entries must be numbers");
      const double d = x.get<double>();
      if (!std::isfinite(d)) return Status::InvalidArgument("vector entries must be finite");
      out->push_back(static_cast<float>(d));
    }
    ++*rows;
    return Status::Ok();
  };
  if (j.contains("vector")) MRL_RETURN_IF_ERROR(add(j["vector"]));
  if (j.contains("vectors")) {
    if (!j["vectors"].is_array()) return Status::InvalidArgument("'vectors' must be an array");
    if (static_cast<int32_t>(j["vectors"].size()) > max_rows) {
      return Status::InvalidArgument("at most " + std::to_string(max_rows) +
                                     " query vectors per request");
    }
    for (const json& v : j["vectors"]) MRL_RETURN_IF_ERROR(add(v));
  }
  return Status::Ok();
}

Result<std::vector<uint64_t>> ParseIds(const json& body) {
  if (!body.contains("ids") || !body["ids"].is_array())
    return Status::InvalidArgument("'ids' (array) is required");
  std::vector<uint64_t> ids;
  for (const json& id : body["ids"]) {
    if (!id.is_number_unsigned())
      return Status::InvalidArgument("ids must be non-negative integers");
    ids.push_back(id.get<uint64_t>());
  }
  return ids;
}

// The plan part of a search body: budget, funnel, exact, plan {shortlist_dims, shortlist_k,
// rerank_dims}, ef.
Result<PlanRequest> ParsePlanRequest(const json& body, int32_t k) {
  PlanRequest pr;
  pr.k = k;
  if (body.contains("budget")) pr.budget = body["budget"].get<std::string>();
  if (pr.budget.empty() && body.contains("funnel")) {
    for (const json& st : body["funnel"])
      pr.funnel.push_back({st.at(0).get<int32_t>(), st.at(1).get<int32_t>()});
    if (pr.funnel.empty())
      return Status::InvalidArgument("'funnel' must hold at least one [dims, k] stage");
  }
  pr.exact = body.value("exact", false);
  const json p = body.value("plan", json::object());
  pr.shortlist_dims = p.value("shortlist_dims", 0);
  pr.shortlist_k = p.value("shortlist_k", 0);
  pr.rerank_dims = p.value("rerank_dims", 0);
  if (body.contains("ef") && body["ef"].is_number_integer()) pr.ef = body["ef"].get<int32_t>();
  return pr;
}

json PointJson(uint64_t id, const std::optional<PointIn>& p) {
  if (!p) return {{"id", id}, {"found", false}};
  json j = {{"id", id}, {"found", true}};
  if (!p->vector.empty()) j["vector"] = p->vector;
  if (!p->payload.empty()) j["payload"] = json::parse(p->payload, nullptr, false);
  return j;
}

}  // namespace

HttpResponse HttpApi::Handle(const HttpRequest& req) {
  std::string endpoint = "other";
  HttpResponse r = Route(req, &endpoint);
  c_.metrics().CountRequest(endpoint, r.status);
  return r;
}

HttpResponse HttpApi::Route(const HttpRequest& req, std::string* endpoint) {
  static const std::regex kCollection(R"(/v1/collections/([A-Za-z0-9_.-]{1,64}))");
  static const std::regex kPoints(
      R"(/v1/collections/([A-Za-z0-9_.-]{1,64})/points(/delete|/get)?)");
  static const std::regex kSearch(R"(/v1/collections/([A-Za-z0-9_.-]{1,64})/(search|calibrate))");
  if (req.target == "/healthz") {
    *endpoint = "healthz";
    return {200, "text/plain", "ok\n"};
  }
  if (req.target == "/ui" || req.target.starts_with("/ui/")) {
    // The console's static files: no data in them, so no token (the page asks for one and
    // sends it with every API call it makes).
    *endpoint = "ui";
    if (req.method != "GET") return ErrorReply(405, "method not allowed");
    const UiAsset* a = FindUiAsset(req.target);
    if (a == nullptr) return ErrorReply(404, "no such console file: " + req.target);
    HttpResponse r{200, std::string(a->content_type), std::string(a->body), {}};
    r.headers = {{"Cache-Control", "no-cache"},
                 {"X-Content-Type-Options", "nosniff"},
                 {"Content-Security-Policy",
                  "default-src 'self'; img-src 'self' data:; style-src 'self'; "
                  "script-src 'self'; frame-ancestors 'none'"}};
    return r;
  }
  if (req.target == "/metrics") {
    *endpoint = "metrics";
    return {200, "text/plain; version=0.0.4", c_.PrometheusMetrics()};
  }
  const bool is_read = req.method == "GET" ||
                       (req.method == "POST" &&
                        (req.target.ends_with("/search") || req.target.ends_with("/points/get")));
  std::string token;
  if (auto it = req.headers.find("authorization");
      it != req.headers.end() && it->second.starts_with("Bearer ")) {
    token = it->second.substr(7);
  }
  const bool admin_ok = opt_.admin_token.empty() || token == opt_.admin_token;
  const bool read_ok = admin_ok || opt_.read_token.empty() || token == opt_.read_token;
  if (!opt_.admin_token.empty() || !opt_.read_token.empty()) {
    if (token.empty())
      return ErrorReply(401, "missing token: send 'Authorization: Bearer <token>'");
    if (is_read ? !read_ok : !admin_ok) {
      return ErrorReply(
          token == opt_.read_token ? 403 : 401,
          token == opt_.read_token ? "the read-only token cannot do this" : "wrong token");
    }
  }
  json body;
  // A search's query vectors are most of its body: parsed by the fast path when it can.
  std::optional<ExtractedVectors> fast;
  if (req.method == "POST" && req.target.ends_with("/search")) fast = ExtractVectors(req.body);
  if (fast) {
    body = json::parse(fast->rest, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return ErrorReply(400, "malformed JSON body");
    if (!body.is_object()) return ErrorReply(400, "the JSON body must be an object");
    if (fast->vector) body["vector"] = std::move(*fast->vector);
    if (fast->vectors) body["vectors"] = std::move(*fast->vectors);
  } else if (!req.body.empty()) {
    body = json::parse(req.body, nullptr, /*allow_exceptions=*/false);
    if (body.is_discarded()) return ErrorReply(400, "malformed JSON body");
    if (!body.is_object()) return ErrorReply(400, "the JSON body must be an object");
  }
  const uint32_t deadline =
      body.is_object() && body.contains("deadline_ms") && body["deadline_ms"].is_number_unsigned()
          ? body["deadline_ms"].get<uint32_t>()
          : opt_.default_deadline_ms;
  std::smatch m;
  try {
    if (req.target == "/v1/cluster") {
      *endpoint = "cluster";
      if (req.method == "GET") return {200, "application/json", c_.Snapshot()->map.ToJson()};
      if (req.method != "POST") return ErrorReply(405, "method not allowed");
      std::vector<ShardInfo> group;
      for (const json& s : body.at("group"))
        group.push_back({s.at("id").get<std::string>(), s.at("address").get<std::string>()});
      auto added = c_.AddGroup(group);
      return ChangeReply(c_.state(), added.status(), {{"epoch", c_.Snapshot()->map.epoch()}});
    }
    if (req.target.starts_with("/v1/cluster/") || req.target.starts_with("/v1/moves")) {
      return ClusterChange(req, body, endpoint);
    }
    if (req.target == "/v1/shards/health") {
      *endpoint = "shards_health";
      if (req.method != "GET") return ErrorReply(405, "method not allowed");
      json shards = json::array();
      for (const ShardHealthReport& r : c_.ShardHealthReports()) {
        shards.push_back({{"shard", r.shard},
                          {"state", ShardStateName(r.state)},
                          {"reason", r.reason},
                          {"down_for_s", r.down_for_s},
                          {"probe_ms", r.probe_ms},
                          {"probes_missed", r.probes_missed},
                          {"p50_ms", r.p50_ms},
                          {"p99_ms", r.p99_ms},
                          {"hedge_delay_ms", r.hedge_delay_ms},
                          {"in_flight", r.in_flight},
                          {"calls", r.calls},
                          {"failures", r.failures},
                          {"hedges", r.hedges}});
      }
      return JsonReply(200, {{"shards", shards}});
    }
    if (req.target == "/v1/meta/state") {  // every key of the store: followers on other hosts
      *endpoint = "meta_state";
      if (req.method != "GET") return ErrorReply(405, "method not allowed");
      return {200, "application/json", OwnerStateJson(c_.state().StateKvs())};
    }
    if (req.target == "/v1/meta") {
      *endpoint = "meta";
      if (req.method != "GET") return ErrorReply(405, "method not allowed");
      return JsonReply(200, MetaJson(c_.state()));
    }
    if (req.target == "/v1/collections") {
      *endpoint = "collections";
      if (req.method != "GET") return ErrorReply(405, "method not allowed");
      json list = json::array();
      for (const auto& [name, s] : c_.Snapshot()->specs) list.push_back(CollectionSpecToJson(s));
      return JsonReply(200, {{"collections", list}});
    }
    if (std::regex_match(req.target, m, kCollection)) {
      *endpoint = "collection";
      const std::string name = m[1];
      if (req.method == "GET") {
        return Reply(c_.WithSnapshot(name, [&](const ClusterSnapshot& snap) -> Result<json> {
          auto spec = snap.Spec(name);
          if (!spec.ok()) return spec.status();
          json j = CollectionSpecToJson(*spec.value());
          // The calibrated budgets (empty before a calibration): each one's plan and what
          // calibration measured for it.
          json budgets = json::object();
          if (auto it = snap.budgets.find(name); it != snap.budgets.end()) {
            for (const auto& [b, plan] : it->second) {
              json stages = json::array();
              for (const Stage& st : plan.stages) stages.push_back({st.dims, st.k});
              budgets[b] = {{"plan", plan.name}, {"stages", stages}, {"exact", plan.exact},
                            {"one_trip", plan.one_trip},
                            {"recall", plan.calibrated_recall >= 0 ? json(plan.calibrated_recall)
                                                                   : json(nullptr)},
                            {"latency_us", plan.calibrated_latency_us >= 0
                                               ? json(plan.calibrated_latency_us)
                                               : json(nullptr)}};
            }
          }
          j["budgets"] = budgets;
          return j;
        }));
      }
      if (req.method == "DELETE") {
        auto dropped = c_.DropCollection(name);
        return ChangeReply(c_.state(), dropped.status(),
                           {{"result", "dropped"},
                            {"shards", dropped.ok() ? *dropped : 0},
                            {"epoch", c_.Snapshot()->map.epoch()}});
      }
      if (req.method != "PUT") return ErrorReply(405, "method not allowed");
      auto spec = CollectionSpecFromJson(body, name);
      if (!spec.ok()) return ErrorReply(spec.status());
      return ChangeReply(c_.state(), c_.CreateCollection(spec.value()), {{"result", "created"}});
    }
    if (std::regex_match(req.target, m, kPoints)) {
      const std::string name = m[1], op = m[2];
      if (op.empty()) {
        *endpoint = "upsert";
        if (req.method != "PUT" && req.method != "POST")
          return ErrorReply(405, "method not allowed");
        if (!body.contains("points") || !body["points"].is_array())
          return ErrorReply(400, "'points' (array) is required");
        return Reply(c_.WithSnapshot(
            name, [&](const ClusterSnapshot& snap) { return Upsert(snap, name, body, deadline); }));
      }
      if (req.method != "POST") return ErrorReply(405, "method not allowed");
      auto ids = ParseIds(body);
      if (!ids.ok()) return ErrorReply(ids.status());
      if (op == "/delete") {
        *endpoint = "delete";
        return Reply(c_.WithSnapshot(name,
                                     [&](const ClusterSnapshot& snap) {
                                       return c_.Delete(snap, name, ids.value(), deadline);
                                     }),
                     {{"result", "acknowledged"}});
      }
      *endpoint = "get";
      const bool with_vector = body.value("with_vector", false);
      return Reply(c_.WithSnapshot(name, [&](const ClusterSnapshot& snap) -> Result<json> {
        auto got = c_.Get(snap, name, ids.value(), with_vector, deadline);
        if (!got.ok()) return got.status();
        json pts = json::array();
        for (size_t i = 0; i < ids->size(); ++i)
          pts.push_back(PointJson(ids.value()[i], got.value()[i]));
        return json{{"points", pts}};
      }));
    }
    if (std::regex_match(req.target, m, kSearch)) {
      const std::string name = m[1];
      *endpoint = m[2] == "calibrate" ? "calibrate" : "search";
      if (req.method != "POST") return ErrorReply(405, "method not allowed");
      if (m[2] == "calibrate") {
        auto cal = c_.Calibrate(name, body.value("sample", 200), body.value("k", 10));
        if (!cal.ok()) return ChangeReply(c_.state(), cal.status(), {});
        json out = json::array();
        for (const auto& p : cal->candidates) {
          out.push_back(
              {{"plan", p.plan.name}, {"recall", p.recall}, {"latency_us", p.latency_us}});
        }
        json budgets = json::object();
        for (const auto& [b, plan] : cal->budgets) budgets[b] = plan.name;
        return JsonReply(200, {{"candidates", out}, {"budgets", budgets}});
      }
      return Reply(c_.WithSnapshot(
          name, [&](const ClusterSnapshot& snap) { return Search(snap, name, body, deadline); }));
    }
  } catch (const json::exception& e) {
    return ErrorReply(400, std::string("bad request: ") + e.what());
  }
  return ErrorReply(404, "no such endpoint: " + req.method + " " + req.target);
}

namespace {

json MoveJson(const MoveView& v) {
  json j = json::parse(ToJson(v.record));
  j["revision"] = v.revision;
  j["progress"] = {{"percent", v.percent},
                   {"points_per_s", v.points_per_s},
                   {"eta_s", v.eta_s ? json(*v.eta_s) : json(nullptr)},
                   {"bucket_points", v.bucket_points}};
  if (!v.waiting_on.empty()) j["waiting_on"] = v.waiting_on;
  return j;
}

json MoveJson(const MoveRecord& r) {
  MoveView v;
  v.record = r;
  return MoveJson(v);
}

}  // namespace

HttpResponse HttpApi::ClusterChange(const HttpRequest& req, const json& body,
                                    std::string* endpoint) {
  static const std::regex kAbort(R"(/v1/moves/([A-Za-z0-9_.:-]{1,64})/abort)");
  static const std::regex kRemove(R"(/v1/cluster/groups/([0-9]{1,9})/remove)");
  static const std::regex kReplicas(R"(/v1/cluster/groups/([0-9]{1,9})/replicas(?:/([A-Za-z0-9_.-]{1,64}))?)");
  static const std::regex kShard(R"(/v1/cluster/shards/([A-Za-z0-9_.-]{1,64})(/replace)?)");
  std::smatch m;
  MoveExecutor& moves = c_.moves();
  auto shard_of = [&](const json& j) {
    return ShardInfo{j.at("id").get<std::string>(), j.at("address").get<std::string>()};
  };
  if (std::regex_match(req.target, m, kReplicas)) {
    *endpoint = "replicas";
    const uint32_t group = static_cast<uint32_t>(std::stoul(m[1]));
    if (m[2].matched) {  // DELETE .../replicas/{id}: lower the factor by one
      if (req.method != "DELETE") return ErrorReply(405, "method not allowed");
      const std::string id = m[2];
      auto g = c_.Snapshot()->map.GroupOfShard(id);
      if (!g.ok()) return ErrorReply(g.status());
      if (*g != group) {
        return ErrorReply(Status::NotFound("shard '" + id + "' is in group " + std::to_string(*g) +
                                           ", not in group " + std::to_string(group)));
      }
      const Status st = c_.RemoveReplica(id, /*lower_factor=*/true);
      return ChangeReply(c_.state(), st, {{"epoch", c_.Snapshot()->map.epoch()}, {"removed", id}});
    }
    if (req.method != "POST") return ErrorReply(405, "method not allowed");
    const ShardInfo shard = shard_of(body);
    const Status st = c_.AddReplica(group, shard);
    return ChangeReply(c_.state(), st,
                       {{"epoch", c_.Snapshot()->map.epoch()}, {"group", group},
                        {"shard", shard.id}, {"state", "filling"}});
  }
  if (std::regex_match(req.target, m, kShard)) {
    const std::string id = m[1];
    if (m[2].matched) {
      *endpoint = "replace_shard";
      if (req.method != "POST") return ErrorReply(405, "method not allowed");
      const ShardInfo fresh = shard_of(body);
      const Status st = c_.ReplaceShard(id, fresh);
      const auto snap = c_.Snapshot();
      auto group = snap->map.GroupOfShard(fresh.id);
      return ChangeReply(c_.state(), st,
                         {{"epoch", snap->map.epoch()}, {"removed", id}, {"shard", fresh.id},
                          {"group", group.ok() ? json(*group) : json(nullptr)},
                          {"state", "filling"}});
    }
    *endpoint = "remove_shard";
    if (req.method != "DELETE") return ErrorReply(405, "method not allowed");
    const Status st = c_.RemoveReplica(id, /*lower_factor=*/false);
    return ChangeReply(c_.state(), st, {{"epoch", c_.Snapshot()->map.epoch()}, {"removed", id}});
  }
  if (req.target == "/v1/cluster/fills") {
    *endpoint = "fills";
    if (req.method != "GET") return ErrorReply(405, "method not allowed");
    json fills = json::array();
    const auto snap = c_.Snapshot();
    const auto current = c_.fills().Current();
    json out_of_sync = json::array();
    for (uint32_t g = 0; g < snap->map.groups().size(); ++g) {
      const ReplicaGroup& group = snap->map.groups()[g];
      for (const std::string& id : group.out_of_sync) {
        json o = {{"group", g}, {"shard", id}};
        if (auto c = group.catch_up.find(id); c != group.catch_up.end()) {
          o["from_version"] = c->second.from_version;
        }
        out_of_sync.push_back(o);
      }
      for (const std::string& id : group.filling) {
        json f = {{"group", g}, {"shard", id}};
        const auto c = group.catch_up.find(id);
        f["catch_up"] = c != group.catch_up.end();
        if (c != group.catch_up.end()) f["from_version"] = c->second.from_version;
        if (current && current->group == g && current->shard == id) {
          f["buckets_done"] = current->buckets_done;
          f["buckets_total"] = current->buckets_total;
          f["points_copied"] = current->points_copied;
          f["seconds"] = current->seconds;
          f["points_per_s"] = current->seconds > 0 ? current->points_copied / current->seconds : 0.0;
          f["buckets_copied_whole"] = current->buckets_copied_whole;
          if (!current->waiting_on.empty()) f["waiting_on"] = current->waiting_on;
        } else {
          f["waiting_on"] = current ? "queued behind the fill of '" + current->shard + "'"
                                    : std::string("starting (the leader fills one replica at a time)");
        }
        fills.push_back(f);
      }
    }
    return JsonReply(200, {{"fills", fills},
                           {"out_of_sync", out_of_sync},
                           {"in_sync_taken_out", c_.in_sync().taken_out()},
                           {"catch_ups_started", c_.in_sync().catch_ups_started()}});
  }
  if (req.target == "/v1/moves") {
    *endpoint = "moves";
    if (req.method == "GET") {
      json list = json::array();
      for (const MoveView& v : moves.List()) list.push_back(MoveJson(v));
      return JsonReply(200, {{"moves", list}});
    }
    if (req.method != "POST") return ErrorReply(405, "method not allowed");
    MoveRequest mr;
    mr.id = body.value("id", std::string());
    mr.collection = body.at("collection").get<std::string>();
    mr.bucket = body.at("bucket").get<uint32_t>();
    mr.target_group = body.at("target_group").get<uint32_t>();
    auto planned = moves.Submit(mr);
    if (!planned.ok()) return ChangeReply(c_.state(), planned.status(), {});
    return JsonReply(200, {{"move", MoveJson(*planned)}});
  }
  if (std::regex_match(req.target, m, kAbort)) {
    *endpoint = "move_abort";
    if (req.method != "POST") return ErrorReply(405, "method not allowed");
    auto r = moves.AbortMove(m[1], body.value("reason", std::string()));
    if (!r.ok()) return ChangeReply(c_.state(), r.status(), {});
    return JsonReply(200, {{"move", MoveJson(r->aborted)},
                           {"reverse", r->reverse ? MoveJson(*r->reverse) : json(nullptr)}});
  }
  if (req.target == "/v1/cluster/groups") {
    *endpoint = "cluster_groups";
    if (req.method != "POST") return ErrorReply(405, "method not allowed");
    std::vector<ShardInfo> group;
    for (const json& s : body.at("group"))
      group.push_back({s.at("id").get<std::string>(), s.at("address").get<std::string>()});
    auto added = c_.AddGroup(group);
    if (!added.ok()) return ChangeReply(c_.state(), added.status(), {});
    return JsonReply(200, {{"epoch", c_.Snapshot()->map.epoch()}, {"group", *added}});
  }
  if (std::regex_match(req.target, m, kRemove)) {
    *endpoint = "cluster_groups";
    if (req.method != "POST") return ErrorReply(405, "method not allowed");
    const Status st = c_.RetireGroup(static_cast<uint32_t>(std::stoul(m[1])));
    return ChangeReply(c_.state(), st, {{"epoch", c_.Snapshot()->map.epoch()}});
  }
  const bool rebalance = req.target == "/v1/cluster/rebalance";
  if (!rebalance && req.target != "/v1/cluster/drain") {
    return ErrorReply(404, "no such endpoint: " + req.method + " " + req.target);
  }
  *endpoint = rebalance ? "rebalance" : "drain";
  if (req.method != "POST") return ErrorReply(405, "method not allowed");
  const bool dry_run = body.value("dry_run", false);
  if (!dry_run) {
    if (Status st = c_.state().AdmitChange(*endpoint); !st.ok()) {
      return ChangeReply(c_.state(), st, {});
    }
  }
  const std::string by = body.value("by", std::string("vectors"));
  if (by != "vectors" && by != "buckets") {
    return ErrorReply(400, "'by' must be \"vectors\" or \"buckets\"");
  }
  const auto snap = c_.Snapshot();
  std::vector<std::string> collections;
  if (body.contains("collection")) {
    collections.push_back(body.at("collection").get<std::string>());
    if (!snap->specs.count(collections[0])) {
      return ErrorReply(Status::NotFound("unknown collection '" + collections[0] + "'"));
    }
  } else {
    for (const auto& [name, spec] : snap->specs) collections.push_back(name);
  }
  const uint32_t group = rebalance ? 0 : body.at("group").get<uint32_t>();
  struct Planned {
    std::string collection;
    PlannedMove move;
    uint64_t points;
  };
  std::vector<Planned> plan;
  for (const std::string& name : collections) {
    std::vector<uint64_t> weights;
    if (by == "vectors") {
      auto w = moves.BucketWeights(snap->map, name);
      if (!w.ok()) return ErrorReply(w.status());
      weights = std::move(w).value();
    } else {
      weights.assign(snap->map.Placement(name).value()->num_buckets, 1);
    }
    auto p = rebalance ? PlanRebalance(snap->map, name, weights)
                       : PlanDrain(snap->map, name, group, weights);
    if (!p.ok()) return ChangeReply(c_.state(), p.status(), {});
    for (const PlannedMove& pm : *p) plan.push_back({name, pm, weights[pm.bucket]});
  }
  json plan_json = json::array();
  for (const Planned& p : plan) {
    plan_json.push_back({{"collection", p.collection},
                         {"bucket", p.move.bucket},
                         {"from_group", p.move.from_group},
                         {"to_group", p.move.to_group},
                         {"points", p.points}});
  }
  json started = json::array();
  if (!dry_run) {
    for (const Planned& p : plan) {
      MoveRequest mr;
      mr.collection = p.collection;
      mr.bucket = p.move.bucket;
      mr.target_group = p.move.to_group;
      auto r = moves.Submit(mr);
      if (!r.ok()) {
        HttpResponse reply = ChangeReply(c_.state(), r.status(), {});
        json j = json::parse(reply.body);
        j["plan"] = plan_json;
        j["started"] = started;  // what did start keeps running
        reply.body = j.dump();
        return reply;
      }
      started.push_back(r->id);
    }
  }
  return JsonReply(200, {{"dry_run", dry_run}, {"plan", plan_json}, {"started", started}});
}

Result<json> HttpApi::Upsert(const ClusterSnapshot& snap, const std::string& name, const json& body,
                             uint32_t deadline) {
  auto spec = snap.Spec(name);
  if (!spec.ok()) return spec.status();
  std::vector<PointIn> points;
  for (const json& p : body["points"]) {
    if (!p.is_object() || !p.contains("id") || !p["id"].is_number_unsigned()) {
      return Status::InvalidArgument("every point needs a non-negative integer 'id'");
    }
    PointIn in;
    in.id = p["id"].get<uint64_t>();
    size_t rows = 0;
    const json v = {{"vector", p.value("vector", json())}};
    const Status st = ParseVectors(v, spec.value()->dim, 1, &in.vector, &rows);
    if (!st.ok())
      return Status::InvalidArgument("point " + std::to_string(in.id) + ": " + st.message());
    if (p.contains("payload")) in.payload = p["payload"].dump();
    points.push_back(std::move(in));
  }
  MRL_RETURN_IF_ERROR(c_.Upsert(snap, name, points, deadline));
  return json{{"result", "acknowledged"}, {"count", points.size()}};
}

Result<json> HttpApi::Search(const ClusterSnapshot& snap, const std::string& name, const json& body,
                             uint32_t deadline) {
  auto spec = snap.Spec(name);
  if (!spec.ok()) return spec.status();
  const int32_t dim = spec.value()->dim;
  if (!body.contains("k") || !body["k"].is_number_integer())
    return Status::InvalidArgument("'k' (integer) is required");
  const int64_t k = body["k"].get<int64_t>();
  if (k < 1 || k > opt_.max_k)
    return Status::InvalidArgument("'k' must be in [1, " + std::to_string(opt_.max_k) + "]");
  SearchSpec s;
  s.collection = name;
  s.dims = dim;
  s.deadline_ms = deadline;
  s.one_trip = body.value("one_trip", false);
  size_t rows = 0;
  if (body.contains("id")) {
    if (!body["id"].is_number_unsigned())
      return Status::InvalidArgument("'id' must be a non-negative integer");
    auto got = c_.Get(snap, name, {body["id"].get<uint64_t>()}, true, deadline);
    if (!got.ok()) return got.status();
    if (!got.value()[0]) return Status::NotFound("no point with id " + body["id"].dump());
    s.queries = got.value()[0]->vector;
    rows = 1;
  } else {
    MRL_RETURN_IF_ERROR(ParseVectors(body, dim, opt_.max_queries, &s.queries, &rows));
  }
  if (rows == 0) return Status::InvalidArgument("give 'vector', 'vectors' or 'id'");
  auto pr = ParsePlanRequest(body, static_cast<int32_t>(k));
  if (!pr.ok()) return pr.status();
  auto plan = ResolvePlan(pr.value(), *spec.value(),
                          [&](const std::string& b) { return snap.Budget(name, b); });
  if (!plan.ok()) return plan.status();
  s.plan = std::move(plan).value();
  auto r = c_.Search(snap, s);
  if (!r.ok()) return r.status();
  // "with_payload": true adds each hit's payload (one Get of the distinct hit ids).
  std::unordered_map<uint64_t, std::string> payloads;
  if (body.value("with_payload", false)) {
    std::vector<uint64_t> ids;
    for (const auto& hits : r->hits)
      for (const auto& h : hits) ids.push_back(h.id);
    std::sort(ids.begin(), ids.end());
    ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
    const size_t chunk = static_cast<size_t>(opt_.max_points);
    for (size_t at = 0; at < ids.size(); at += chunk) {
      const std::vector<uint64_t> part(
          ids.begin() + static_cast<std::ptrdiff_t>(at),
          ids.begin() + static_cast<std::ptrdiff_t>(std::min(ids.size(), at + chunk)));
      auto got = c_.Get(snap, name, part, false, deadline);
      if (!got.ok()) return got.status();
      for (size_t i = 0; i < part.size(); ++i) {
        if (got.value()[i]) payloads[part[i]] = got.value()[i]->payload;
      }
    }
  }
  json results = json::array();
  for (const auto& hits : r->hits) {
    json list = json::array();
    for (const auto& h : hits) {
      json hit = {{"id", h.id}, {"score", h.score}};
      if (auto it = payloads.find(h.id); it != payloads.end() && !it->second.empty()) {
        hit["payload"] = json::parse(it->second, nullptr, false);
        if (hit["payload"].is_discarded()) hit["payload"] = it->second;
      }
      list.push_back(hit);
    }
    results.push_back(list);
  }
  return json{{"results", results},
              {"coverage", r->coverage},
              {"partial", r->coverage < 1.0},
              {"failed_shards", r->failed_shards},
              {"plan", s.plan.name},
              {"timing_ms", {{"shortlist", r->shortlist_ms}, {"rerank", r->rerank_ms}}}};
}

}  // namespace mrl::coord
