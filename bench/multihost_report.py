#!/usr/bin/python3
"""Renders a `multihost_bench --json` file as markdown (bench/results/multihost.md).

  bench/multihost_report.py --json bench/results/multihost.json --out bench/results/multihost.md
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance

ap = argparse.ArgumentParser()
ap.add_argument("--json", required=True)
ap.add_argument("--out", required=True)
ap.add_argument("--note", action="append", default=None, help="an observation (kept in the JSON)")
args = ap.parse_args()
j = json.load(open(args.json))
if args.note:
    j["run_notes"] = args.note
prov, setup = j["provenance"], j["setup"]
L = ["# Across hosts (network namespaces) vs loopback: serving and all-reduce", "",
     provenance.line(prov), "",
     f"Reproduce: `bash bench/multihost.sh` (runs `{prov['command']}`), then "
     f"`bench/multihost_report.py --json {os.path.relpath(args.json)} --out {os.path.relpath(args.out)}`.", "",
     "**Hosts.** Each \"host\" is a Linux network namespace with its own address on a private bridge (veth "
     "pairs; tests/netns_lab.h), this process one more host on it. Every packet between hosts crosses two "
     "veth pairs and the bridge; on loopback it does not leave `lo`. Same machine, same 2 cores in both: "
     "this measures the cost of the network path, not of a real wire (no latency or bandwidth limit is "
     "emulated: netem is not available here).", "",
     f"**Serving.** {setup['shards']} mrl-shard processes and one mrl-coordinator (replication "
     f"{setup['replication']}), each on its own host bound to its address, or all on 127.0.0.1; "
     f"{setup['points']} random points of d = {setup['dim']}, HNSW at {setup['index_dims']} dims; searches: "
     f"{setup['search']}; {setup['sequential']} by one client in sequence after a warm-up pass over the 1000 "
     f"queries, then {setup['clients']} clients for {setup['seconds']:.0f} s.", "",
     "Rounds of (loopback, across hosts), each a fresh cluster. Run order matters on this machine: two "
     "earlier one-round tries gave the mode that ran second 1.37x (netns second) and 1.12x (loopback "
     "second) the QPS of the one that ran first; the comparison below is the last round's, and the "
     "rounds show the spread.", "",
     "| round | where | coordinator | c1 p50 ms | c1 p99 ms | c1 max ms | QPS at c" + str(setup['clients']) + " | failed |",
     "| ---: | --- | --- | ---: | ---: | ---: | ---: | ---: |"]
for r in j["serving"]:
    L.append(f"| {r.get('round', 1)} | {r['where']} | {r['coordinator']} | {r['p50_ms']:.3f} | {r['p99_ms']:.3f} | {r['max_ms']:.2f} | "
             f"{r['qps']:.0f} | {r['failed']} |")
lo = [r for r in j["serving"] if r["where"] == "loopback"][-1]
ns = [r for r in j["serving"] if r["where"] == "netns"][-1]
L += ["", f"Last round, across hosts / loopback: p50 {ns['p50_ms'] / lo['p50_ms']:.2f}x, p99 {ns['p99_ms'] / lo['p99_ms']:.2f}x, "
      f"QPS {ns['qps'] / lo['qps']:.2f}x.", "",
      "## All-reduce (mpirun -np 2 allreduce_bench: the trainer's MPI path)", "",
      "Bus bandwidth = size / time x 2(n-1)/n (what a ring moves per rank).", ""]
sizes = [row["size_mb"] for row in j["allreduce"][0]["rows"]]
L += ["| where | " + " | ".join(f"{s:g} MB: ms / busbw GB/s" for s in sizes) + " |",
      "| --- | " + " | ".join(["---:"] * len(sizes)) + " |"]
for a in j["allreduce"]:
    cells = [f"{r['time_ms']:.2f} / {r['busbw_gbs']:.2f}" for r in a["rows"]]
    L.append(f"| {a['where']} | " + " | ".join(cells) + " |")
L += ["", "Commands:", ""] + [f"- {a['where']}: `{a['command']}`" for a in j["allreduce"]]
if j.get("run_notes"):
    L += ["", "## Notes on this run", ""] + [f"- {x}" for x in j["run_notes"]]
json.dump(j, open(args.json, "w"), indent=1)
open(args.out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
