// Where a figure came from: every generated result (bench JSON, mrlctl eval, the trainer's
// results.json) carries one of these, and every report prints it, so a number can be traced to
// the commit, the command and the machine (with its load when the run began) that produced it.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace mrl {

// {"commit": `git describe --always --dirty` of the source tree this binary was built from
//  ("unknown" outside a checkout), "command": the argv joined with shell quoting,
//  "machine": {"cores", "cpu", "mem_gib", "loadavg_start": [1, 5, 15 min]}, "date": UTC ISO 8601}.
// Call it when the run starts: the load average is read then.
nlohmann::json Provenance(int argc, const char* const* argv);

// One markdown line from a Provenance() object: "commit ... · `command` · machine · date".
std::string ProvenanceLine(const nlohmann::json& stamp);

}  // namespace mrl
