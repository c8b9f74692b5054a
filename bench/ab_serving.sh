#!/usr/bin/env bash
# A/B of two builds of the serving daemons (mrl-shard + mrl-coordinator) on the same data, in
# ONE invocation: R rounds, each starting a fresh local cluster from build A and from build B (the
# order alternates per round), ingesting the 60k Fashion-MNIST export through the binary API and
# timing the paper's plan (Ds=16 K=200 Dr=d) by client concurrency over HTTP and the binary API.
# The client (mrlctl) is the same binary for both. Writes bench/results/<NAME>.md + .json.
#
#   A=/path/to/build-a B=/path/to/build-b NAME=ab_coordinator_split bash bench/ab_serving.sh
#   (each build dir holds shard/mrl-shard and coordinator/mrl-coordinator; optional: A_LABEL,
#    B_LABEL, ROUNDS=3, Q=2000 queries, CONC="1 8 32")
set -euo pipefail
cd "$(dirname "$0")/.."
: "${A:?A=<build dir of side A>}" "${B:?B=<build dir of side B>}"
NAME=${NAME:-ab_serving}; ROUNDS=${ROUNDS:-3}; Q=${Q:-2000}; CONC=${CONC:-"1 8 32"}
A_LABEL=${A_LABEL:-$A}; B_LABEL=${B_LABEL:-$B}
DATA=${DATA:-/work/data}
DB=$DATA/fmnist60k_db
for f in "${DB}_embeddings.npy" "$DATA/fmnist_q_embeddings.npy"; do
  [ -f "$f" ] || { echo "[ab] missing $f: run bash bench/e2e.sh once (it exports the embeddings)"; exit 1; }
done
for side in "$A" "$B"; do
  [ -x "$side/shard/mrl-shard" ] && [ -x "$side/coordinator/mrl-coordinator" ] || { echo "[ab] $side lacks the daemons"; exit 1; }
done
M=./build/ops/mrlctl
OUT=${OUT:-bench/runs/$NAME}
mkdir -p "$OUT" bench/results
CMD="A=$A B=$B NAME=$NAME ROUNDS=$ROUNDS Q=$Q CONC=\"$CONC\" bash bench/ab_serving.sh"
STAMP=$(/usr/bin/python3 bench/provenance.py "$CMD")
CL="$OUT/cluster"
trap '$M down --dir "$CL" >/dev/null 2>&1 || true' EXIT
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then order="A B"; else order="B A"; fi
  for s in $order; do
    bin=$A; [ "$s" = B ] && bin=$B
    echo "[ab] round $r/$ROUNDS side $s ($bin)"
    $M down --dir "$CL" >/dev/null 2>&1 || true
    rm -rf "$CL"
    $M up --dir "$CL" --shards 2 --bin-dir "$bin" >/dev/null
    t0=$(date +%s.%N)
    $M ingest --dir "$CL" --collection fmnist --create --index-dims 16 --storage fp16 \
      --embeddings "${DB}_embeddings.npy" --ids "${DB}_ids.npy" --labels "${DB}_labels.npy" | tail -1
    echo "$(echo "$(date +%s.%N) - $t0" | bc)" > "$OUT/ingest-$s-$r.txt"
    # shellcheck disable=SC2086
    $M eval --dir "$CL" --collection fmnist --limit "$Q" --latency-only --concurrency $CONC \
      --queries "$DATA/fmnist_q_embeddings.npy" --query-labels "$DATA/fmnist_q_labels.npy" \
      --db-ids "${DB}_ids.npy" --db-labels "${DB}_labels.npy" --json "$OUT/eval-$s-$r.json" | grep concurrency
    $M down --dir "$CL" >/dev/null
  done
done
trap - EXIT
/usr/bin/python3 - "$OUT" "$ROUNDS" "$STAMP" "$A_LABEL" "$B_LABEL" "$NAME" "$Q" <<'PY'
import json, statistics, sys
sys.path.insert(0, "bench")
import provenance
out, rounds, stamp, la, lb, name, q = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], int(sys.argv[7])
runs = {s: [json.load(open(f"{out}/eval-{s}-{r}.json")) for r in range(1, rounds + 1)] for s in "AB"}
ingest = {s: [float(open(f"{out}/ingest-{s}-{r}.txt").read()) for r in range(1, rounds + 1)] for s in "AB"}
def series(s, key, api):
    rows = {}
    for run in runs[s]:
        for c in run[api]:
            rows.setdefault(c["concurrency"], []).append(c[key])
    return rows
L = [f"# A/B: serving daemons, side A vs side B ({name})", "", provenance.line(stamp), "",
     f"- A = `{la}`", f"- B = `{lb}`", "",
     f"Reproduce: `{stamp['command']}`. {rounds} rounds; each round starts a fresh 2-shard local cluster from "
     "each side (order A B, then B A, ...), ingests the 60000-point Fashion-MNIST export through the binary "
     f"API, warms up (100 queries), then times the paper's plan (Ds=16 K=200 Dr=d, k=10) on {q} test queries "
     "at each client concurrency over HTTP and over the binary API. The client is the same mrlctl for both. "
     "Figures: median of the rounds, with min-max.", "",
     "| API | concurrency | A QPS (min-max) | B QPS (min-max) | B / A | A p50 ms | B p50 ms |",
     "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
summary = []
for api, label in (("concurrency", "HTTP"), ("concurrency_binary", "binary")):
    qa, qb = series("A", "qps", api), series("B", "qps", api)
    pa, pb = series("A", "p50_ms", api), series("B", "p50_ms", api)
    for c in sorted(qa):
        ma, mb = statistics.median(qa[c]), statistics.median(qb[c])
        L.append(f"| {label} | {c} | {ma:.0f} ({min(qa[c]):.0f}-{max(qa[c]):.0f}) | {mb:.0f} ({min(qb[c]):.0f}-{max(qb[c]):.0f}) | "
                 f"{mb / ma:.3f} | {statistics.median(pa[c]):.2f} | {statistics.median(pb[c]):.2f} |")
        summary.append({"api": label, "concurrency": c, "a_qps": qa[c], "b_qps": qb[c], "ratio_median": mb / ma})
L += ["", f"Ingest of 60000 points (s, median of rounds): A {statistics.median(ingest['A']):.1f}, "
      f"B {statistics.median(ingest['B']):.1f}."]
open(f"bench/results/{name}.md", "w").write("\n".join(L) + "\n")
json.dump({"provenance": stamp, "a": la, "b": lb, "rounds": rounds, "queries": q, "summary": summary,
           "ingest_s": ingest, "runs": runs}, open(f"bench/results/{name}.json", "w"), indent=1)
print("\n".join(L))
PY
