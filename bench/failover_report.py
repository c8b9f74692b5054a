#!/usr/bin/python3
"""Renders a `failover_bench --json` file as markdown (bench/results/failover.md).

  bench/failover_report.py --json bench/results/failover.json --out bench/results/failover.md
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
prov, setup, runs = j["provenance"], j["setup"], j["runs"]


def ms(x):
    return "-" if x is None or x < 0 else (f"{x:.2f}" if x < 10 else f"{x:.0f}")


def window(run, lo, hi):
    return [s for s in run["seconds"] if lo <= s["second"] < hi]


L = ["# Searches and writes around a silent shard, hedging off and on", "",
     provenance.line(prov), "",
     f"Reproduce: `{prov['command']}` (after `bash ops/build.sh`), then "
     f"`bench/failover_report.py --json {os.path.relpath(args.json)} --out {os.path.relpath(args.out)}`.", "",
     f"**Setup.** {setup['shards']} mrl-shard processes in replica groups of {setup['replication']} and one "
     f"mrl-coordinator on loopback (`mrlctl up`'s launcher), {setup['points']} random points of d = {setup['dim']}, "
     f"an HNSW index at {setup['index_dims']} dims, coordinator deadline {setup['deadline_ms']} ms. Searches: "
     f"{setup['search']}. Writes: {setup['writes']}. After {setup['before_s']:.0f} s the member of group 0 "
     f"that had served the most calls is stopped (SIGSTOP: its sockets stay open and nothing answers, as with "
     f"a hung host or a cut link); {setup['stopped_s']:.0f} s later it is resumed (SIGCONT); "
     f"{setup['after_s']:.0f} s more follow. The two runs (hedging off, then on) are separate clusters in one "
     "invocation, on the same 2 cores that run the client.", "",
     "## Summary", "",
     "| hedging | stopped | searches healthy p99 ms | while stopped: p99 ms | max ms | lowest coverage | failed searches | writes acked | writes failed | hedges / query calls (whole run) |",
     "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
for r in runs:
    L.append(f"| {'on' if r['hedge'] else 'off'} | {r['stopped_shard']} | {ms(r['healthy_p99_ms'])} | "
             f"{ms(r['stopped_p99_ms'])} | {ms(r['stopped_max_ms'])} | {r['stopped_lowest_coverage']:.3f} | "
             f"{r['stopped_failed_searches']} | {r['stopped_writes_acked']} | {r['stopped_writes_failed']} | "
             f"{r['hedges']:.0f} / {r['hedgeable_calls']:.0f} |")
L += ["", "## The stopped member: out of the in-sync set, catch-up, back", "",
      "| hedging | stopped at s | out of sync at s | resumed at s | catch-up started at s | serving again at s | points copied | copy s | points/s |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
for r in runs:
    def at(k):
        v = r.get(k, -1)
        return "-" if v is None or v < 0 else f"{v:.1f}"
    L.append(f"| {'on' if r['hedge'] else 'off'} | {r['stopped_at_s']:.1f} | {at('out_of_sync_at_s')} | "
             f"{r['resumed_at_s']:.1f} | {at('catch_up_started_at_s')} | {at('serving_again_at_s')} | "
             f"{r.get('catch_up_points_copied', 0)} | {at('catch_up_copy_seconds')} | "
             f"{ms(r.get('catch_up_points_per_s', -1))} |")
L += ["", "Sampled every 100 ms from `GET /v1/cluster` and `GET /v1/cluster/fills` (the figures `mrlctl status` "
      "prints). The catch-up copies every entry of the member's group written since 60 s (`--catch-up-margin-ms`) "
      "before it left the set: in this run that includes the ingest, so it is close to a whole copy; "
      "points/s is the copy's own rate (points copied over the fill's seconds)."]
L += ["", "\"While stopped\": every search running at some moment between the stop and the resume (one sent "
      "just before the stop meets it too), every write that completed in that time. Per second below: searches by "
      "the second they started, writes by the second they completed.", "",
      "## Per second", ""]
head = "| s | " + " | ".join(
    f"{'on' if r['hedge'] else 'off'}: member | searches | p50 | p99 | max ms | coverage | writes acked / failed" for r in runs) + " |"
L += [head, "| ---: | " + " | ".join(["--- | ---: | ---: | ---: | ---: | ---: | ---:"] * len(runs)) + " |"]
n = max(len(r["seconds"]) for r in runs)
for i in range(n):
    cells = []
    for r in runs:
        s = r["seconds"][i] if i < len(r["seconds"]) else None
        if not s:
            cells.append(" | | | | | | ")
            continue
        mark = ""
        if int(r["stopped_at_s"]) <= i <= int(r["resumed_at_s"]):
            mark = " (stopped)" if i < int(r["resumed_at_s"]) or i == int(r["stopped_at_s"]) else ""
        cov = "-" if s["lowest_coverage"] < 0 else f"{s['lowest_coverage']:.2f}"
        cells.append(f"{s.get('member', '') or '-'} | {s['searches']}{mark} | {ms(s['p50_ms'])} | {ms(s['p99_ms'])} | {ms(s['max_ms'])} | {cov} | "
                     f"{s['writes_acked']} / {s['writes_failed']}")
    L.append(f"| {i} | " + " | ".join(cells) + " |")
if j.get("run_notes"):
    L += ["", "## Notes on this run", ""] + [f"- {x}" for x in j["run_notes"]]
json.dump(j, open(args.json, "w"), indent=1)
open(args.out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
