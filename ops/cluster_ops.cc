#include "ops/cluster_ops.h"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>
#include <thread>

namespace mrl::ops {
namespace {

namespace http = boost::beast::http;
using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Set by SIGINT while a wait or a watch runs; the loop polls it between requests.
volatile std::sig_atomic_t g_interrupted = 0;
extern "C" void OnInterrupt(int) { g_interrupted = 1; }

// While alive, Ctrl-C sets g_interrupted instead of killing mrlctl, so the wait can say what
// keeps running on the coordinator.
class InterruptCatcher {
 public:
  InterruptCatcher() {
    g_interrupted = 0;
    struct sigaction sa = {};
    sa.sa_handler = OnInterrupt;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &previous_);
  }
  ~InterruptCatcher() { sigaction(SIGINT, &previous_, nullptr); }
  InterruptCatcher(const InterruptCatcher&) = delete;
  InterruptCatcher& operator=(const InterruptCatcher&) = delete;

 private:
  struct sigaction previous_ = {};
};

// Sleeps up to `d` in short slices; false when Ctrl-C came.
bool SleepUnlessInterrupted(std::chrono::milliseconds d) {
  const auto until = Clock::now() + d;
  while (Clock::now() < until) {
    if (g_interrupted) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return !g_interrupted;
}

std::string Duration(double s) {
  char buf[32];
  const long t = static_cast<long>(s + 0.5);
  if (t < 60) {
    std::snprintf(buf, sizeof(buf), "%lds", t);
  } else if (t < 3600) {
    std::snprintf(buf, sizeof(buf), "%ldm%02lds", t / 60, t % 60);
  } else {
    std::snprintf(buf, sizeof(buf), "%ldh%02ldm", t / 3600, (t / 60) % 60);
  }
  return buf;
}

std::string Fixed(double v, int decimals) {
  char buf[48];
  std::snprintf(buf, sizeof(buf), "%.*f", decimals, v);
  return buf;
}

// The coordinator's answer reached but not of the shape this mrlctl knows.
Status BadAnswer(const std::string& what, const json::exception& e) {
  return Status::Corruption("the coordinator's answer to " + what + ": " + e.what());
}

Result<json> GetMoves(HttpClient& c) {
  auto r = c.CallJson(http::verb::get, "/v1/moves", "", "moves");
  if (!r.ok()) return r.status();
  if (!r->contains("moves") || !(*r)["moves"].is_array()) {
    return Status::Corruption("the coordinator's /v1/moves has no 'moves' list");
  }
  return r;
}

std::string MoveLine(const json& m) {
  return "move " + m.at("id").get<std::string>() + ": bucket " + m.at("bucket").dump() + " of '" +
         m.at("collection").get<std::string>() + "', group " + m.at("source_group").dump() +
         " -> " + m.at("target_group").dump() + ", " + m.at("phase").get<std::string>();
}

// Polls GET /v1/moves each second until every one of `ids` is DONE; prints a progress line to
// `out` when the figures change. FailedPrecondition naming the first ABORTED one; Aborted on
// Ctrl-C (the moves keep running).
Status WaitForMoves(HttpClient& c, const std::vector<std::string>& ids, std::ostream& out) {
  if (ids.empty()) return Status::Ok();
  InterruptCatcher catcher;
  const Clock::time_point t0 = Clock::now();
  std::optional<double> percent_at_start;
  std::string last_figures;
  Clock::time_point last_line = t0;
  int failures = 0, missing_polls = 0;
  const std::string still_running =
      "; the moves not done keep running on the coordinator (mrlctl moves --watch follows them, "
      "mrlctl abort-move --id ID stops one)";
  for (;;) {
    auto list = GetMoves(c);
    if (!list.ok()) {
      // A leader change or a restart is brief: keep asking for a while.
      if (++failures >= 30)
        return list.status().WithContext("waiting for the moves" + still_running);
      out << "[wait] " << list.status().ToString() << "; asking again" << std::endl;
    } else {
      failures = 0;
      MoveProgress p;
      try {
        p = MoveProgressOf(list.value()["moves"], ids);
      } catch (const json::exception& e) {
        return BadAnswer("GET /v1/moves", e);
      }
      const double elapsed = std::chrono::duration<double>(Clock::now() - t0).count();
      if (!p.aborted.empty()) {
        return Status::FailedPrecondition(
            "move " + p.aborted + " was ABORTED" +
            (p.aborted_error.empty() ? "" : " (" + p.aborted_error + ")") + " after " +
            Duration(elapsed) + "; " + std::to_string(p.done) + " of " + std::to_string(p.total) +
            " moves done" + (p.done + 1 < p.total ? still_running : ""));
      }
      missing_polls = p.missing.empty() ? 0 : missing_polls + 1;
      if (missing_polls >= 5) {
        return Status::NotFound("the coordinator no longer lists move " + p.missing[0] +
                                still_running);
      }
      if (p.done == p.total) {
        out << "all " << p.total << (p.total == 1 ? " move" : " moves") << " done in "
            << Duration(elapsed) << std::endl;
        return Status::Ok();
      }
      if (!percent_at_start) percent_at_start = p.percent;
      // ETA: the plan's mean percent at the pace it has kept since the wait began.
      std::string eta = "-";
      if (p.percent > *percent_at_start && elapsed > 0) {
        eta = Duration(elapsed * (100.0 - p.percent) / (p.percent - *percent_at_start));
      }
      const std::string figures = std::to_string(p.done) + " of " + std::to_string(p.total) +
                                  " moves done, " + Fixed(p.percent, 1) + "%, " +
                                  Fixed(p.points_per_s, 0) + " points/s";
      if (figures != last_figures || Clock::now() - last_line >= std::chrono::seconds(10)) {
        out << "[wait " << Duration(elapsed) << "] " << figures << ", ETA " << eta << std::endl;
        last_figures = figures;
        last_line = Clock::now();
      }
    }
    if (!SleepUnlessInterrupted(std::chrono::seconds(1))) {
      return Status::Aborted("interrupted: stopped waiting" + still_running);
    }
  }
}

}  // namespace

bool IsFinishedPhase(const std::string& phase) { return phase == "DONE" || phase == "ABORTED"; }

std::string MovesTable(const json& moves, bool all) {
  std::vector<std::vector<std::string>> rows = {{"ID", "COLLECTION", "BUCKET", "FROM->TO", "PHASE",
                                                 "PERCENT", "POINTS/S", "ETA", "WAITING_ON"}};
  size_t active = 0;
  for (const json& m : moves) {
    const std::string phase = m.at("phase").get<std::string>();
    if (!IsFinishedPhase(phase)) ++active;
    if (!all && IsFinishedPhase(phase)) continue;
    const json progress = m.value("progress", json::object());
    const double rate = progress.value("points_per_s", 0.0);
    const json eta = progress.value("eta_s", json());
    rows.push_back({m.at("id").get<std::string>(), m.at("collection").get<std::string>(),
                    m.at("bucket").dump(),
                    m.at("source_group").dump() + "->" + m.at("target_group").dump(), phase,
                    Fixed(progress.value("percent", 0.0), 1) + "%", rate > 0 ? Fixed(rate, 0) : "-",
                    eta.is_number() ? Duration(eta.get<double>()) : "-",
                    m.value("waiting_on", phase == "ABORTED" ? m.value("error", "") : "")});
  }
  std::string out = std::to_string(active) + (active == 1 ? " active move" : " active moves") +
                    (all ? ", " + std::to_string(moves.size()) + " in all" : "") + "\n";
  if (rows.size() == 1) return out;
  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i < r.size(); ++i) width[i] = std::max(width[i], r[i].size());
  for (const auto& r : rows) {
    std::string line;
    for (size_t i = 0; i < r.size(); ++i) {
      line += r[i];
      if (i + 1 < r.size()) line += std::string(width[i] - r[i].size() + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line + "\n";
  }
  return out;
}

std::string GroupsSummary(const json& map) {
  const json& groups = map.at("groups");
  const json cols = map.value("collections", json::object());
  std::string out;
  for (size_t g = 0; g < groups.size(); ++g) {
    out += "group " + std::to_string(g) + ": ";
    if (groups[g].empty()) {
      out += "retired\n";
      continue;
    }
    std::string shards;
    for (const json& id : groups[g]) shards += (shards.empty() ? "" : ", ") + id.get<std::string>();
    // Replicas being filled (replicate, replace-shard) take writes but serve nothing yet.
    const std::string key = std::to_string(g);
    if (map.contains("filling") && map.at("filling").contains(key)) {
      for (const json& id : map.at("filling").at(key)) {
        const bool catch_up = map.contains("catch_up") && map.at("catch_up").contains(id.get<std::string>());
        shards += ", " + id.get<std::string>() + (catch_up ? " (catching up)" : " (filling)");
      }
    }
    // Members out of the in-sync set (issue 20): no writes, reads or searches until they catch up.
    if (map.contains("out_of_sync") && map.at("out_of_sync").contains(key)) {
      for (const json& id : map.at("out_of_sync").at(key)) shards += ", " + id.get<std::string>() + " (out of sync)";
    }
    out += shards;
    for (const auto& [name, placement] : cols.items()) {
      const json& owners = placement.at("group_of_bucket");
      const auto owned = std::count_if(owners.begin(), owners.end(), [&](const json& o) {
        return o.get<size_t>() == g;
      });
      out += "; " + name + ": " + std::to_string(owned) + " of " + std::to_string(owners.size()) +
             " buckets";
    }
    out += "\n";
  }
  return out;
}

MoveProgress MoveProgressOf(const json& moves, const std::vector<std::string>& ids) {
  MoveProgress p;
  p.total = ids.size();
  double percent_sum = 0;
  for (const std::string& id : ids) {
    const auto it = std::find_if(moves.begin(), moves.end(), [&](const json& m) {
      return m.at("id").get<std::string>() == id;
    });
    if (it == moves.end()) {
      p.missing.push_back(id);
      continue;
    }
    const std::string phase = it->at("phase").get<std::string>();
    const json progress = it->value("progress", json::object());
    if (phase == "DONE") {
      ++p.done;
      percent_sum += 100;
      continue;
    }
    if (phase == "ABORTED" && p.aborted.empty()) {
      p.aborted = id;
      p.aborted_error = it->value("error", "");
    }
    percent_sum += progress.value("percent", 0.0);
    p.points_per_s += progress.value("points_per_s", 0.0);
  }
  p.percent = p.total == 0 ? 100 : percent_sum / static_cast<double>(p.total);
  return p;
}

namespace {

// "ID=HOST:PORT" -> {"id", "address"}.
Result<json> ShardArg(const std::string& s, const std::string& flag) {
  const size_t eq = s.find('=');
  if (eq == std::string::npos || eq == 0 || eq + 1 == s.size() ||
      s.find(':', eq) == std::string::npos) {
    return Status::InvalidArgument(flag + " wants ID=HOST:PORT, got '" + s + "'");
  }
  return json{{"id", s.substr(0, eq)}, {"address", s.substr(eq + 1)}};
}

// Until `shard` serves in its group (GET /v1/cluster), with the fill's progress on `out`.
Status WaitForFill(HttpClient& c, const std::string& shard, std::ostream& out) {
  InterruptCatcher catcher;
  std::string last;
  for (;;) {
    auto map = c.CallJson(http::verb::get, "/v1/cluster", "", "reading the shard map");
    if (!map.ok()) return map.status();
    try {
      bool serving = false, known = false;
      for (const json& g : map->at("groups")) {
        for (const json& id : g) serving |= id.get<std::string>() == shard;
      }
      known = serving;
      if (map->contains("filling")) {
        for (const auto& [g, ids] : map->at("filling").items()) {
          for (const json& id : ids) known |= id.get<std::string>() == shard;
        }
      }
      if (serving) {
        out << "shard '" << shard << "' is filled and serves (shard map epoch " << map->at("epoch")
            << ")\n";
        return Status::Ok();
      }
      if (!known) return Status::NotFound("shard '" + shard + "' left the shard map while filling");
      auto fills = c.CallJson(http::verb::get, "/v1/cluster/fills", "", "reading the fills");
      if (!fills.ok()) return fills.status();
      std::string line = "filling '" + shard + "'";
      for (const json& f : fills->at("fills")) {
        if (f.at("shard").get<std::string>() != shard) continue;
        if (f.contains("buckets_total")) {
          line += ": " + std::to_string(f.at("buckets_done").get<uint64_t>()) + "/" +
                  std::to_string(f.at("buckets_total").get<uint64_t>()) + " buckets, " +
                  std::to_string(f.at("points_copied").get<uint64_t>()) + " points";
        }
        if (f.contains("waiting_on")) line += " (" + f.at("waiting_on").get<std::string>() + ")";
      }
      if (line != last) out << line << "\n" << std::flush;
      last = line;
    } catch (const json::exception& e) {
      return BadAnswer("the fill's progress", e);
    }
    if (!SleepUnlessInterrupted(std::chrono::milliseconds(500))) {
      out << "stopped watching; the fill goes on (mrlctl status)\n";
      return Status::Ok();
    }
  }
}

// Prints a replica change's reply; waits for the fill when asked.
Status ReplicaReply(HttpClient& c, const Result<json>& r, const std::string& added, bool wait,
                    bool as_json) {
  if (!r.ok()) return r.status();
  if (as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    if (r->contains("removed")) std::cout << "removed shard '" << r->at("removed").get<std::string>() << "'";
    if (!added.empty()) {
      std::cout << (r->contains("removed") ? "; " : "") << "shard '" << added
                << "' joined group " << r->value("group", json("?")) << " and is being filled";
    }
    std::cout << "; shard map epoch " << r->value("epoch", json()) << "\n";
  }
  if (!wait || added.empty()) return Status::Ok();
  return WaitForFill(c, added, as_json ? std::cerr : std::cout);
}

}  // namespace

Status Replicate(HttpClient& c, const ReplicateArgs& a) {
  if (a.add.empty() == a.remove.empty()) {
    return Status::InvalidArgument("replicate wants one of --add ID=HOST:PORT or --remove ID");
  }
  const std::string path = "/v1/cluster/groups/" + std::to_string(a.group) + "/replicas";
  if (!a.remove.empty()) {
    auto r = c.CallJson(http::verb::delete_, path + "/" + a.remove, "",
                        "removing shard '" + a.remove + "' from group " + std::to_string(a.group));
    return ReplicaReply(c, r, "", false, a.json);
  }
  auto shard = ShardArg(a.add, "--add");
  if (!shard.ok()) return shard.status();
  auto r = c.CallJson(http::verb::post, path, shard->dump(),
                      "adding a replica to group " + std::to_string(a.group));
  return ReplicaReply(c, r, shard->at("id").get<std::string>(), a.wait, a.json);
}

Status ReplaceShard(HttpClient& c, const std::string& dead, const std::string& with, bool wait,
                    bool as_json) {
  auto shard = ShardArg(with, "--with");
  if (!shard.ok()) return shard.status();
  auto r = c.CallJson(http::verb::post, "/v1/cluster/shards/" + dead + "/replace", shard->dump(),
                      "replacing shard '" + dead + "'");
  return ReplicaReply(c, r, shard->at("id").get<std::string>(), wait, as_json);
}

Status RemoveShard(HttpClient& c, const std::string& id, bool as_json) {
  auto r = c.CallJson(http::verb::delete_, "/v1/cluster/shards/" + id, "",
                      "removing shard '" + id + "'");
  return ReplicaReply(c, r, "", false, as_json);
}

Status AddGroup(HttpClient& c, const std::vector<std::string>& shards, bool as_json) {
  if (shards.empty()) return Status::InvalidArgument("add-group needs --shard ID=HOST:PORT");
  json group = json::array();
  std::string names;
  for (const std::string& s : shards) {
    auto shard = ShardArg(s, "--shard");
    if (!shard.ok()) return shard.status();
    group.push_back(*shard);
    names += (names.empty() ? "" : ", ") + s;
  }
  auto r = c.CallJson(http::verb::post, "/v1/cluster/groups", json{{"group", group}}.dump(),
                      "adding a replica group");
  if (!r.ok()) return r.status();
  if (as_json) {
    std::cout << r->dump(2) << "\n";
    return Status::Ok();
  }
  try {
    std::cout << "added group " << r->at("group") << " (" << names << "); shard map epoch "
              << r->at("epoch") << "\n"
              << "it holds no buckets yet: mrlctl rebalance moves some onto it\n";
  } catch (const json::exception& e) {
    return BadAnswer("adding a group", e);
  }
  return Status::Ok();
}

Status RemoveGroup(HttpClient& c, uint32_t group, bool as_json) {
  auto r = c.CallJson(http::verb::post, "/v1/cluster/groups/" + std::to_string(group) + "/remove",
                      "{}", "retiring group " + std::to_string(group));
  if (!r.ok()) return r.status();
  if (as_json) {
    std::cout << r->dump(2) << "\n";
  } else {
    std::cout << "retired group " << group << "; shard map epoch " << r->value("epoch", json())
              << "\n";
  }
  return Status::Ok();
}

Status StartMove(HttpClient& c, const MoveArgs& a) {
  const json body = {
      {"collection", a.collection}, {"bucket", a.bucket}, {"target_group", a.target_group}};
  auto r = c.CallJson(http::verb::post, "/v1/moves", body.dump(),
                      "moving bucket " + std::to_string(a.bucket) + " of '" + a.collection +
                          "' to group " + std::to_string(a.target_group));
  if (!r.ok()) return r.status();
  std::string id;
  try {
    id = r->at("move").at("id").get<std::string>();
    if (a.json) {
      std::cout << r->dump(2) << "\n";
    } else {
      std::cout << "started " << MoveLine(r->at("move")) << "\n";
    }
  } catch (const json::exception& e) {
    return BadAnswer("the move", e);
  }
  if (!a.wait) return Status::Ok();
  return WaitForMoves(c, {id}, a.json ? std::cerr : std::cout);
}

Status ListMoves(HttpClient& c, const ListMovesArgs& a) {
  InterruptCatcher catcher;  // Ctrl-C ends a watch quietly
  // A terminal is redrawn each second; a pipe or a log gets the table again only when it changed.
  const bool tty = ::isatty(STDOUT_FILENO) == 1;
  std::string last;
  for (;;) {
    auto r = GetMoves(c);
    if (!r.ok()) return r.status();
    size_t active = 0;
    std::string text;
    try {
      for (const json& m : (*r)["moves"])
        if (!IsFinishedPhase(m.at("phase").get<std::string>())) ++active;
      text = a.json ? r->dump(a.watch ? -1 : 2) + "\n" : MovesTable((*r)["moves"], a.all);
    } catch (const json::exception& e) {
      return BadAnswer("GET /v1/moves", e);
    }
    if (!a.watch) {
      std::cout << text;
      return Status::Ok();
    }
    if (tty && !a.json) {
      std::cout << "\033[H\033[2J" << text << std::flush;  // redraw in place
    } else if (text != last) {
      std::cout << (last.empty() || a.json ? "" : "\n") << text << std::flush;
    }
    last = text;
    if (active == 0) return Status::Ok();
    if (!SleepUnlessInterrupted(std::chrono::seconds(1))) return Status::Ok();
  }
}

Status AbortMove(HttpClient& c, const std::string& id, const std::string& reason, bool as_json) {
  json body = json::object();
  if (!reason.empty()) body["reason"] = reason;
  auto r = c.CallJson(http::verb::post, "/v1/moves/" + id + "/abort", body.dump(),
                      "aborting move '" + id + "'");
  if (!r.ok()) return r.status();
  if (as_json) {
    std::cout << r->dump(2) << "\n";
    return Status::Ok();
  }
  try {
    const json& m = r->at("move");
    std::cout << "aborted " << MoveLine(m) << "\n";
    const json reverse = r->value("reverse", json());
    if (reverse.is_object()) {
      std::cout << "it had flipped: " << MoveLine(reverse) << " takes the bucket back\n";
    } else {
      std::cout << "bucket " << m.at("bucket") << " stays on group " << m.at("source_group")
                << "; group " << m.at("target_group") << "'s copy is discarded\n";
    }
  } catch (const json::exception& e) {
    return BadAnswer("the abort", e);
  }
  return Status::Ok();
}

Status RunPlan(HttpClient& c, const PlanArgs& a) {
  json body = {{"dry_run", a.dry_run}};
  if (!a.by.empty()) body["by"] = a.by;
  if (a.drain) body["group"] = a.group;
  if (!a.drain && !a.collection.empty()) body["collection"] = a.collection;
  const std::string what = a.drain ? "draining group " + std::to_string(a.group) : "rebalancing";
  json refusal;
  auto r = c.CallJson(http::verb::post, a.drain ? "/v1/cluster/drain" : "/v1/cluster/rebalance",
                      body.dump(), what, &refusal);
  if (!r.ok()) {
    // A refusal part-way through a plan: the moves started before it keep running.
    const json started = refusal.is_object() ? refusal.value("started", json::array()) : json();
    if (started.is_array() && !started.empty()) {
      std::string ids;
      for (const json& id : started) ids += (ids.empty() ? "" : ", ") + id.get<std::string>();
      return r.status().WithContext(std::to_string(started.size()) +
                                    " moves of the plan started before the refusal and keep "
                                    "running (" +
                                    ids + ")");
    }
    return r.status();
  }
  std::ostream& progress = a.json ? std::cerr : std::cout;
  std::vector<std::string> started;
  try {
    for (const json& id : r->at("started")) started.push_back(id.get<std::string>());
    if (a.json) {
      std::cout << r->dump(2) << "\n";
    } else {
      const json& plan = r->at("plan");
      uint64_t points = 0;
      std::cout << (a.drain ? "drain plan for group " + std::to_string(a.group) : "rebalance plan")
                << (a.by.empty() ? "" : " (by " + a.by + ")") << ":\n";
      for (const json& m : plan) {
        points += m.at("points").get<uint64_t>();
        std::cout << "  " << m.at("collection").get<std::string>() << " bucket " << m.at("bucket")
                  << ": group " << m.at("from_group") << " -> " << m.at("to_group") << ", "
                  << m.at("points") << " points\n";
      }
      std::cout << "total: " << plan.size() << (plan.size() == 1 ? " move, " : " moves, ") << points
                << " points\n";
      if (plan.empty()) {
        std::cout << (a.drain ? "nothing to move: group " + std::to_string(a.group) +
                                    " holds no buckets"
                              : "nothing to move: the groups are balanced")
                  << "\n";
      }
      if (a.dry_run) {
        std::cout << "dry run: nothing started\n";
      } else if (!started.empty()) {
        std::cout << "started " << started.size() << (started.size() == 1 ? " move" : " moves")
                  << (a.wait || a.remove ? "" : "; follow them with mrlctl moves --watch") << "\n";
      }
    }
  } catch (const json::exception& e) {
    return BadAnswer(what, e);
  }
  if (a.dry_run || !(a.wait || a.remove)) return Status::Ok();
  MRL_RETURN_IF_ERROR(WaitForMoves(c, started, progress));
  if (!a.remove) return Status::Ok();
  return RemoveGroup(c, a.group, a.json);
}

}  // namespace mrl::ops
