#!/usr/bin/env bash
# One export, three producers of mAP@10, one definition (common/retrieval_metrics.h): the
# trainer's results.json (exact fp32 cosine in LibTorch), mrlctl eval through mrl-coordinator + 2
# mrl-shard processes (its exact plan and the paper's adaptive plan), and shard_bench (the shard
# engine in process, FAISS exact). Writes bench/results/metric_agreement.{md,json}.
#
#   RUN=runs/main bash bench/metric_agreement.sh    # RUN: an mrl-trainer --out dir with export/
#
# The collection stores fp32 here so that the coordinator's exact plan scans the very vectors the
# trainer scored: the three exact figures must then agree to rounding.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-runs/main}
OUT=${OUT:-bench/runs/agreement}
Q=${Q:-0}   # queries (0: all of the export's test set)
B=./build
E="$RUN/export"
[ -f "$RUN/results.json" ] && [ -f "$E/db_embeddings.npy" ] || { echo "[agreement] no trained run with an export in $RUN"; exit 1; }
mkdir -p "$OUT" bench/results
STAMP=$(/usr/bin/python3 bench/provenance.py "RUN=$RUN Q=$Q bash bench/metric_agreement.sh")
CL="$OUT/cluster"
$B/ops/mrlctl down --dir "$CL" >/dev/null 2>&1 || true
rm -rf "$CL"
$B/ops/mrlctl up --dir "$CL" --shards 2
trap '$B/ops/mrlctl down --dir "$CL"' EXIT
$B/ops/mrlctl ingest --dir "$CL" --collection agree --create --index-dims 16 --storage fp32 \
  --embeddings "$E/db_embeddings.npy" --ids "$E/db_ids.npy" --labels "$E/db_labels.npy"
$B/ops/mrlctl eval --dir "$CL" --collection agree --limit "$Q" --concurrency 1 --plans exact paper \
  --queries "$E/query_embeddings.npy" --query-labels "$E/query_labels.npy" \
  --db-embeddings "$E/db_embeddings.npy" --db-ids "$E/db_ids.npy" --db-labels "$E/db_labels.npy" \
  --json "$OUT/eval.json"
$B/ops/mrlctl down --dir "$CL"
trap - EXIT
NQ=$Q; [ "$NQ" -gt 0 ] || NQ=1000000
$B/bench/shard_bench --db "$E/db_embeddings.npy" --queries "$E/query_embeddings.npy" \
  --db-labels "$E/db_labels.npy" --query-labels "$E/query_labels.npy" --max-queries "$NQ" \
  --faiss-queries "$NQ" --skip-hnsw-full --shortlist-dims 16 --K 200 --json "$OUT/shard_bench.json" \
  | tee "$OUT/shard_bench.txt"
/usr/bin/python3 - "$RUN" "$OUT" "$STAMP" <<'PY'
import json, sys
sys.path.insert(0, "bench")
import provenance
run, out, stamp = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
tr = json.load(open(f"{run}/results.json"))
ev = json.load(open(f"{out}/eval.json"))
sb = json.load(open(f"{out}/shard_bench.json"))
d = tr["config"]["model"]["dim"]
t_full = next(r for r in tr["per_dim"] if r["dim"] == d)
plans = {p["plan"]: p for p in ev["plans"]}
e_exact = next(p for n, p in plans.items() if n.startswith("exact"))
e_paper = next(p for n, p in plans.items() if "(paper)" in n)
s_faiss = next(r for r in sb["rows"] if r["method"].startswith("FAISS"))
s_paper = next(r for r in sb["rows"] if r["method"] == "shard engine (one trip)" and r["plan"].startswith("Ds=16 K=200"))
rows = [
    ("mrl-trainer results.json, per_dim d (LibTorch fp32 exact, test vs train)", 100 * t_full["map_at_10"], None, tr.get("provenance", {}).get("commit", "?")),
    ("mrlctl eval, exact plan through the coordinator (fp32 stored)", e_exact["map_at_10"], e_exact["recall_at_10"], ev["provenance"]["commit"]),
    ("shard_bench, FAISS IndexFlatIP exact", 100 * s_faiss["map_at_10"], s_faiss["recall_at_10"], sb["provenance"]["commit"]),
    ("mrlctl eval, adaptive Ds=16 K=200 Dr=d (coordinator, 2 shards)", e_paper["map_at_10"], e_paper["recall_at_10"], ev["provenance"]["commit"]),
    ("shard_bench, engine Ds=16 K=200 -> Dr=d (in process, fp16 stored)", 100 * s_paper["map_at_10"], s_paper["recall_at_10"], sb["provenance"]["commit"]),
]
L = ["# One export, three producers of mAP@10", "",
     provenance.line(stamp), "",
     f"Export: `{run}/export` (d = {d}; database {sb['n']} training-image embeddings, "
     f"{ev['queries']} test-image queries). mAP@10 is common/retrieval_metrics.h's (the MRL paper's AP@10: precision "
     "at each hit among the top 10, summed, divided by 10), in percent; recall@10 against full-d fp32 cosine over "
     "the original vectors (mrlctl: common/exact_search.h; shard_bench: FAISS IndexFlatIP).", "",
     "| producer | mAP@10 | recall@10 | commit |", "|---|---:|---:|---|"]
for name, m, r, c in rows:
    L.append(f"| {name} | {m:.2f} | {'-' if r is None else f'{r:.4f}'} | `{c}` |")
spread = max(r[1] for r in rows[:3]) - min(r[1] for r in rows[:3])
L += ["", f"Spread of the three exact figures: {spread:.3f} points.", "",
      "Component runs: " + "; ".join(f"`{x['provenance']['command']}`" for x in (ev, sb))]
open("bench/results/metric_agreement.md", "w").write("\n".join(L) + "\n")
json.dump({"provenance": stamp, "rows": [{"producer": n, "map_at_10": m, "recall_at_10": r, "commit": c} for n, m, r, c in rows],
           "spread_exact": spread}, open("bench/results/metric_agreement.json", "w"), indent=1)
print("\n".join(L))
PY
