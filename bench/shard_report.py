#!/usr/bin/python3
"""Renders a `shard_bench --json` file as markdown (bench/results/shard*.md).

Every figure on the page comes from the JSON. What the JSON of shard_bench cannot know (where the
data came from, what changed since the previous page) is passed as --about / --changes and is
written back into the JSON beside the figures, so the page still holds nothing its JSON does not.

  bench/shard_report.py --json bench/results/shard-240000.json --out bench/results/shard-240000.md \
      --about "..." [--changes bench/results/shard_changes.json]

--changes: {"label": "...", "notes": ["..."], "before": {"<figure>": value, ...}} where figures are
keys of the summary this script computes (best_engine_qps, best_engine_recall, hnsw_qps,
qps_ratio, ram_ratio, build_ratio, map_at_10_best, map_at_10_faiss).
"""
import argparse, json, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance

ap = argparse.ArgumentParser()
ap.add_argument("--json", required=True, help="shard_bench --json output (updated in place)")
ap.add_argument("--out", required=True, help="markdown page to write")
ap.add_argument("--about", default=None, help="where the data came from (kept in the JSON)")
ap.add_argument("--changes", default=None, help="JSON: what changed since the previous page")
ap.add_argument("--note", action="append", default=None,
                help="an observation about this run (repeatable; kept in the JSON as run_notes)")
args = ap.parse_args()

j = json.load(open(args.json))
if args.about is not None:
    j["about"] = args.about
if args.changes:
    j["changes"] = json.load(open(args.changes))
if args.note:
    j["run_notes"] = args.note
prov = j["provenance"]
n, d = j["n"], j["d"]


def fmt_qps(x):
    return f"{x:.0f}" if x >= 10 else f"{x:.2f}"


def fmt_ms(x):
    return f"{x:.3f}" if x < 10 else f"{x:.1f}"


def fmt_map(x):
    return "-" if x is None or x < 0 else f"{x:.4f}"


rows = j.get("rows", [])
engine_rows = [r for r in rows if r["method"].startswith("shard engine")]
hnsw_rows = [r for r in rows if r["method"] == "hnswlib HNSW, full d"]
faiss_rows = [r for r in rows if r["method"].startswith("FAISS")]
best = max((r for r in engine_rows if r["recall_at_10"] >= 0.95), key=lambda r: r["qps"], default=None)
hnsw = j.get("hnsw_full") or {}
cheapest = hnsw.get("cheapest_ef_recall_095")
hnsw_best = next((r for r in hnsw_rows if r["plan"] == f"ef={cheapest}"), None)
s = j.get("summary") or {}

# The figures a page compares with its predecessor (and the closing notes quote).
now = {}
if best:
    now.update(best_engine_plan=best["method"] + ": " + best["plan"], best_engine_qps=best["qps"],
               best_engine_recall=best["recall_at_10"], map_at_10_best=best["map_at_10"])
if hnsw_best:
    now.update(hnsw_qps=hnsw_best["qps"], hnsw_recall=hnsw_best["recall_at_10"], hnsw_ef=cheapest)
for key, name in (("qps_ratio", "qps_ratio"), ("ram_ratio_hnsw_over_engine_index", "ram_ratio"),
                  ("build_ratio_hnsw_over_engine_index", "build_ratio")):
    if key in s:
        now[name] = s[key]
if faiss_rows:
    now["map_at_10_faiss"] = faiss_rows[0]["map_at_10"]
j["headline"] = now

m = prov["machine"]
L = [f"# mrl-shard engine at N = {n:,} x d = {d} vs hnswlib full-d and FAISS exact", "",
     provenance.line(prov), "",
     f"Reproduce: `{prov['command']}` (after `bash ops/build.sh`), then "
     f"`bench/shard_report.py --json {os.path.relpath(args.json)} --out {os.path.relpath(args.out)}`.", ""]
if j.get("about"):
    L += [f"**Data.** {j['about']}", ""]
L += [f"{j['queries']} queries, k = {j['k']}, single-threaded, p50/p99 per query; grid order shuffled "
      f"(seed {j.get('grid_seed')}; the run order of each row is in the JSON), each plan warmed up by "
      f"{j.get('warmup_queries', 50)} queries before its timed pass. Recall@10 against "
      f"{j['truth']}; recall: {j['metrics']['recall']}; mAP@10: {j['metrics']['map']}. Engine: RocksDB block "
      f"cache {j['block_cache_mb']} MB, mmap reads {'on' if j.get('mmap_reads') else 'off'}, "
      f"low-d indexes {'int8' if j.get('int8_index') else 'fp32'}, rerank from "
      f"{'the rows file' if j['engine'].get('rerank_rows') else 'RocksDB'}; kernels "
      f"{', '.join(j['kernels'])}; index builds on {j.get('build_threads')} threads.", "",
      "## Queries (single thread)", "",
      "| method | plan | recall@10 | mAP@10 | QPS | p50 ms | p99 ms | note |",
      "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
for r in rows:
    plan = r["plan"]
    qps = fmt_qps(r["qps"])
    if r is best:
        plan, qps = f"**{plan} (fastest engine plan with recall >= 0.95)**", f"**{qps}**"
    elif r is hnsw_best:
        plan, qps = f"**{plan} (cheapest ef with recall >= 0.95)**", f"**{qps}**"
    L.append(f"| {r['method']} | {plan} | {r['recall_at_10']:.3f} | {fmt_map(r['map_at_10'])} | {qps} | "
             f"{fmt_ms(r['p50_ms'])} | {fmt_ms(r['p99_ms'])} | {r.get('note', '')} |")

e = j["engine"]
L += ["", "## Build, RAM and disk", "",
      "| component | build | RAM bytes/vector | disk bytes/vector |", "| --- | ---: | ---: | ---: |"]
ingest = "reused data dir (no ingest)" if e.get("reused") else f"ingest {e['ingest_s']:.1f} s ({n / e['ingest_s']:.0f} vec/s)"
L.append(f"| shard engine, RocksDB (fp16 vectors; disk: live SST + WAL) with {len(e.get('indexes', []))} HNSW "
         f"indexes and the rows file | {ingest}, checkpoint {e['checkpoint_s']:.1f} s, reopen {e['reopen_s']:.2f} s "
         f"| block cache {j['block_cache_mb']} MB | {e['disk_bytes_per_vector']:.0f} |")
L.append(f"| engine rerank rows file (fp16 rows, mmap) | (in ingest) | "
         f"{e['rows']['table_ram_bytes_per_vector']:.0f} (id tables) | {e['rows']['file_bytes_per_vector']:.0f} |")
for ix in e.get("indexes", []):
    L.append(f"| engine HNSW index Ds={ix['dims']} (live, grows by doubling) | (in ingest) | "
             f"{ix['ram_bytes_per_vector']:.0f} | persisted |")
for b in j.get("low_d_builds", []):
    L.append(f"| HNSW Ds={b['dims']}{' int8' if b.get('int8') else ''} built alone from the prefixes | "
             f"{b['seconds']:.1f} s | {b['ram_bytes_per_vector']:.0f} | - |")
if hnsw:
    L.append(f"| hnswlib HNSW full d = {d} (M={hnsw['m']}, efc={hnsw['ef_construction']}) | "
             f"{hnsw['build_s']:.1f} s | {hnsw['ram_bytes_per_vector']:.0f} | - |")
ff = j.get("faiss_flat") or {}
if ff:
    L.append(f"| FAISS IndexFlatIP full d | {ff['build_s']:.2f} s (copy) | {ff['ram_bytes_per_vector']:.0f} | - |")
L.append(f"\nThe rows file's pages in the OS page cache at reopen: "
         f"{e['rows']['resident_bytes_per_vector_at_reopen']:.0f} B/vector (not process RAM).")

L += ["", "## Against the targets (equal recall@10 >= 0.95; hnswlib full d at its cheapest ef reaching it)", ""]
if best and hnsw_best:
    L += ["| target | measured | verdict |", "| --- | --- | --- |"]
    bp = s.get("best_engine_plan", {})
    L.append(f"| QPS >= 2x full-d HNSW | {best['plan']}: {best['qps']:.0f} QPS at recall {best['recall_at_10']:.3f} "
             f"vs ef={cheapest}: {hnsw_best['qps']:.0f} QPS at {hnsw_best['recall_at_10']:.3f}: "
             f"**{s['qps_ratio']:.2f}x** | {'met' if s['qps_ratio'] >= 2 else 'missed'} |")
    if s.get("ram_ratio_hnsw_over_engine_index", -1) > 0:
        L.append(f"| index RAM <= 1/30 | that plan's Ds={bp.get('shortlist_dims')} index built alone "
                 f"{bp.get('index_ram_bytes_per_vector', 0):.0f} of {hnsw['ram_bytes_per_vector']:.0f} B/vector: "
                 f"1/{s['ram_ratio_hnsw_over_engine_index']:.1f} | "
                 f"{'met' if s['ram_ratio_hnsw_over_engine_index'] >= 30 else 'missed'} |")
    if s.get("build_ratio_hnsw_over_engine_index", -1) > 0:
        L.append(f"| build time <= 1/10 | {bp.get('index_build_s', 0):.1f} of {hnsw['build_s']:.1f} s: "
                 f"1/{s['build_ratio_hnsw_over_engine_index']:.1f} | "
                 f"{'met' if s['build_ratio_hnsw_over_engine_index'] >= 10 else 'missed'} |")
elif not best:
    L.append("No engine plan reached recall@10 >= 0.95.")
else:
    L.append("hnswlib full d was not run (or reached no 0.95 ef).")

by_type = s.get("by_index_type") or {}
if by_type and hnsw_best:
    L += ["", "### The low-d index's vector type: fp32 vs int8 (per-dim scale), same points, same run", "",
          "The best plan at recall@10 >= 0.95 using each index type, against hnswlib full d at "
          f"ef={cheapest} ({hnsw_best['qps']:.0f} QPS, {hnsw['ram_bytes_per_vector']:.0f} B/vector, "
          f"built in {hnsw['build_s']:.1f} s):", "",
          "| index type | best plan | recall@10 | QPS | QPS ratio | index B/vector | RAM ratio | build s | build ratio |",
          "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for t in ("fp32", "int8"):
        sm = by_type.get(t) or {}
        bp = sm.get("best_engine_plan")
        if not bp:
            L.append(f"| {t} | no plan reached 0.95 | | | | | | | |")
            continue
        L.append(f"| {t} | Ds={bp['shortlist_dims']}: {bp['plan']} | {bp['recall_at_10']:.3f} | {bp['qps']:.0f} | "
                 f"{sm.get('qps_ratio', -1):.2f}x | {bp['index_ram_bytes_per_vector']:.0f} | "
                 f"1/{sm.get('ram_ratio_hnsw_over_engine_index', -1):.1f} | {bp['index_build_s']:.1f} | "
                 f"1/{sm.get('build_ratio_hnsw_over_engine_index', -1):.1f} |")
    # Recall cost of int8 per Ds x K: the warm rows-file grid of each collection.
    warm = {}
    for r in engine_rows:
        if "cold" in r["method"] or "RocksDB" in r["method"] or "mmap" in r["method"] or "pread" in r["method"]:
            continue
        if not r["plan"].startswith("Ds=") or "exact" in r["plan"]:
            continue
        warm[(r["plan"], bool(r.get("int8_index")))] = r
    plans = sorted({p for p, _ in warm}, key=lambda p: [int(x.split("=")[1]) for x in p.split(" -> ")[0].split(" ")])
    if plans:
        L += ["", "| plan | recall@10 fp32 | recall@10 int8 | QPS fp32 | QPS int8 |", "| --- | ---: | ---: | ---: | ---: |"]
        for p in plans:
            a, b = warm.get((p, False)), warm.get((p, True))
            if not a or not b:
                continue
            L.append(f"| {p} | {a['recall_at_10']:.3f} | {b['recall_at_10']:.3f} | {fmt_qps(a['qps'])} | {fmt_qps(b['qps'])} |")

if j.get("run_notes"):
    L += ["", "## Notes on this run", ""] + [f"- {x}" for x in j["run_notes"]]

ch = j.get("changes")
if ch:
    L += ["", f"## What changed since {ch.get('label', 'the previous page')}", ""]
    L += [f"- {x}" for x in ch.get("notes", [])]
    before = ch.get("before", {})
    shown = [(k, before[k], now.get(k)) for k in before if k in now]
    if shown:
        L += ["", "| figure | before | now |", "| --- | ---: | ---: |"]
        for k, b, a in shown:
            fb = f"{b:.4g}" if isinstance(b, (int, float)) else str(b)
            fa = f"{a:.4g}" if isinstance(a, (int, float)) else str(a)
            L.append(f"| {k} | {fb} | {fa} |")

json.dump(j, open(args.json, "w"), indent=1)
open(args.out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
