#!/usr/bin/python3
"""Live bucket moves, measured: how fast a rebalance onto a new replica group and a drain of an
old one copy a bucket (vectors/s, MB/s per move and per plan), and what they cost the queries and
writes running meanwhile (p50/p99 and failed requests before, during and after the moves).

One invocation runs two configurations back to back, each on its own fresh cluster started here
(3 mrl-shard + 1 mrl-coordinator, replication 1, loopback, OS-chosen ports; a 4th shard for the
added group): the copy throttle off (`--move-max-bytes-per-s 0`) and on (`--throttle`). Per
configuration: create "emb" (fp32, 64 buckets, one HNSW index over 16 dims), load --points
vectors, warm up, then with one query thread and one writer thread running throughout:
before (--seconds), during (`mrlctl add-group`, `mrlctl rebalance --by vectors`, wait; `mrlctl
drain --group 0`, wait), after (--seconds). Writes bench/results/rebalance.json and
rebalance.md (rendered from the JSON; stamped by provenance.py).

  /usr/bin/python3 bench/rebalance_bench.py [--build build] [--points 100000] [--dim 64]
      [--seconds 10] [--throttle 250000] [--report-only]
"""
import argparse
import http.client
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import provenance  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--points", type=int, default=100000, help="vectors loaded before the moves")
ap.add_argument("--dim", type=int, default=64)
ap.add_argument("--seconds", type=float, default=10, help="length of the before and after phases")
# The default sits well below the unthrottled copy rate measured on a 2-core machine (1.4-1.9
# MB/s at 100000 points, idle machine), so that the throttle binds; 2 MB/s would measure nothing.
ap.add_argument("--throttle", type=int, default=250000,
                help="--move-max-bytes-per-s of the throttled configuration")
ap.add_argument("--warmup", type=int, default=300, help="queries before timing starts")
ap.add_argument("--poll-s", type=float, default=0.1, help="GET /v1/moves interval")
ap.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "rebalance"))
ap.add_argument("--report-only", action="store_true", help="rewrite the .md from the .json")
args = ap.parse_args()
stamp = provenance.stamp(["/usr/bin/python3", "bench/rebalance_bench.py"] + sys.argv[1:])
SHARD = os.path.join(args.build, "shard", "mrl-shard")
COORD = os.path.join(args.build, "coordinator", "mrl-coordinator")
MRLCTL = os.path.join(args.build, "ops", "mrlctl")
ADMIN, READ = "bench-admin-token", "bench-read-token"
LOAD_BATCH = 1000
WRITE_BATCH, WRITE_EVERY_S = 20, 0.020


def bytes_per_point(dim):
    # What the move executor counts per copied point (and throttles on): the vector, the
    # payload (none here) and 16 bytes of id and version.
    return dim * 4 + 16


def log(msg):
    print(f"[rebalance_bench] {msg}", flush=True)


class Client:
    """One keep-alive HTTP connection with a bearer token."""

    def __init__(self, port, token):
        self.port, self.token = port, token
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(self, method, path, body=None):
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {self.token}"}
        for attempt in range(2):
            try:
                self.conn.request(method, path, body=data, headers=headers)
                r = self.conn.getresponse()
                raw = r.read()
                try:
                    return r.status, json.loads(raw or b"null")
                except ValueError:
                    return r.status, raw.decode(errors="replace")
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise


def pct(xs, p):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


class Vectors:
    """Matryoshka-like data: coordinate d scaled by 1/(1 + d/4) around 40 centres."""

    def __init__(self, dim, seed):
        self.rng = np.random.default_rng(seed)
        self.scale = 1.0 / (1.0 + np.arange(dim) / 4.0)
        self.centres = self.rng.standard_normal((40, dim))

    def batch(self, n):
        c = self.centres[self.rng.integers(0, 40, n)]
        return (self.scale * (c + 0.6 * self.rng.standard_normal(c.shape))).round(5).tolist()


class Cluster:
    """3 shards + coordinator, each in its own process group (killed whole at the end)."""

    def __init__(self, work, throttle):
        self.work, self.procs, self.shard_ports = work, [], []
        open(os.path.join(work, "admin"), "w").write(ADMIN + "\n")
        open(os.path.join(work, "read"), "w").write(READ + "\n")
        for s in range(3):
            self.shard_ports.append(self.start_shard(s))
        coord = [COORD, "--data-dir", os.path.join(work, "coord"), "--port", "0",
                 "--admin-token-file", os.path.join(work, "admin"),
                 "--read-token-file", os.path.join(work, "read"), "--replication", "1",
                 "--threads", "4", "--move-max-bytes-per-s", str(throttle)]
        for s, p in enumerate(self.shard_ports):
            coord += ["--shard", f"s{s}=127.0.0.1:{p}"]
        self.port = self.start("coord", coord)
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, name, argv):
        port_file = os.path.join(self.work, f"{name}.port")
        logf = open(os.path.join(self.work, f"{name}.log"), "w")
        p = subprocess.Popen(argv + ["--port-file", port_file], stdout=logf, stderr=subprocess.STDOUT,
                             start_new_session=True)
        self.procs.append(p)
        for _ in range(2400):
            if os.path.exists(port_file) and open(port_file).read().strip():
                return int(open(port_file).read())
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{name} did not start; see {logf.name}:\n{open(logf.name).read()[-2000:]}")

    def start_shard(self, s):
        return self.start(f"s{s}", [SHARD, "--data-dir", os.path.join(self.work, f"s{s}"), "--port", "0",
                                    "--threads", "1", "--block-cache-mb", "16"])

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 30
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait()


def mrlctl(*argv):
    r = subprocess.run([MRLCTL, *argv], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"mrlctl {' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")
    return json.loads(r.stdout)


class Load:
    """The query thread and the writer thread: every request's latency, tagged with the phase
    current when it started."""

    def __init__(self, port, dim, points):
        self.port, self.dim, self.points = port, dim, points
        self.phase = "warmup"
        self.stop = threading.Event()
        self.samples = {"query": [], "write": []}  # (phase, latency_ms, ok, error or None)
        self.threads = [threading.Thread(target=self.queries), threading.Thread(target=self.writes)]

    def record(self, kind, fn):
        phase = self.phase
        t0 = time.perf_counter()
        err = None
        try:
            st, body = fn()
            if st != 200:
                err = f"HTTP {st}: {str(body)[:200]}"
        except Exception as e:  # noqa: BLE001 - a failed request is a result here
            err = f"{type(e).__name__}: {e}"
        self.samples[kind].append((phase, (time.perf_counter() - t0) * 1e3, err is None, err))

    def queries(self):
        c, vec = Client(self.port, READ), Vectors(self.dim, 7)
        while not self.stop.is_set():
            q = vec.batch(1)[0]
            self.record("query", lambda: c.call("POST", "/v1/collections/emb/search", {"vector": q, "k": 10}))

    def writes(self):
        # Upserts of existing ids (random ones): the collection keeps its size, so the moves'
        # plans and copies are comparable between configurations.
        c, vec = Client(self.port, ADMIN), Vectors(self.dim, 8)
        rng = np.random.default_rng(9)
        nxt = time.perf_counter()
        while not self.stop.is_set():
            ids = rng.choice(self.points, WRITE_BATCH, replace=False).tolist()
            pts = [{"id": i, "vector": v} for i, v in zip(ids, vec.batch(WRITE_BATCH))]
            self.record("write", lambda: c.call("PUT", "/v1/collections/emb/points", {"points": pts}))
            nxt += WRITE_EVERY_S
            time.sleep(max(0.0, nxt - time.perf_counter()))
            nxt = max(nxt, time.perf_counter() - WRITE_EVERY_S)  # no burst after a slow request

    def start(self):
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(120)

    def table(self):
        rows = []
        groups = [("before", ("before",)), ("during", ("rebalance", "drain")),
                  ("during: rebalance", ("rebalance",)), ("during: drain", ("drain",)),
                  ("after", ("after",))]
        for name, tags in groups:
            row = {"phase": name}
            for kind in ("query", "write"):
                s = [x for x in self.samples[kind] if x[0] in tags]
                ok = [x[1] for x in s if x[2]]
                errs = [x[3] for x in s if not x[2]]
                row[kind] = {"requests": len(s), "failed": len(errs), "p50_ms": pct(ok, 50),
                             "p99_ms": pct(ok, 99), "mean_ms": statistics.mean(ok) if ok else None,
                             "errors_sample": sorted(set(errs))[:5]}
            rows.append(row)
        return rows


def wait_moves(admin, ids, plan_points, dim):
    """Polls GET /v1/moves until every id is DONE or ABORTED. Per move: when it left PLANNED (the
    first poll that saw it started; exact when that poll caught DUAL_WRITE), when it finished."""
    want, started_ms, last = set(ids), {}, {}
    seen_planned = set()
    give_up = time.time() + 3600
    while True:
        if time.time() > give_up:
            raise RuntimeError(f"moves not finished after an hour: {last}")
        st, body = admin.call("GET", "/v1/moves")
        if st != 200:
            raise RuntimeError(f"GET /v1/moves: {st} {body}")
        now_ms = time.time() * 1e3
        for m in body["moves"]:
            if m["id"] not in want:
                continue
            last[m["id"]] = m
            if m["phase"] == "PLANNED":
                seen_planned.add(m["id"])
            elif m["id"] not in started_ms:
                if m["phase"] == "DUAL_WRITE":
                    started_ms[m["id"]] = m["updated_unix_ms"]
                elif m["id"] in seen_planned:
                    started_ms[m["id"]] = now_ms
                else:  # never seen queued: it started when it was created
                    started_ms[m["id"]] = m["created_unix_ms"]
        if len(last) == len(want) and all(m["phase"] in ("DONE", "ABORTED") for m in last.values()):
            break
        time.sleep(args.poll_s)
    bpp = bytes_per_point(dim)
    moves = []
    for i in ids:
        m = last[i]
        pts = plan_points[i]
        active_s = max(1e-3, (m["updated_unix_ms"] - started_ms.get(i, m["created_unix_ms"])) / 1e3)
        moves.append({"id": i, "bucket": m["bucket"], "from_group": m["source_group"],
                      "to_group": m["target_group"], "phase": m["phase"], "error": m["error"],
                      "plan_points": pts, "points_copied": m["points_copied"], "attempts": m["attempts"],
                      "created_unix_ms": m["created_unix_ms"], "started_unix_ms": started_ms.get(i),
                      "done_unix_ms": m["updated_unix_ms"],
                      "queued_s": (started_ms.get(i, m["created_unix_ms"]) - m["created_unix_ms"]) / 1e3,
                      "active_s": active_s,
                      "vectors_per_s": pts / active_s, "mb_per_s": pts * bpp / 1e6 / active_s})
    return moves


def run_plan(name, admin, url, argv, dim):
    t0_ms = time.time() * 1e3
    reply = mrlctl(*argv, "--url", url, "--token", ADMIN, "--json")
    plan = reply["plan"]
    ids = reply["started"]
    if len(ids) != len(plan):
        raise RuntimeError(f"{name}: {len(plan)} moves planned, {len(ids)} started: {reply}")
    plan_points = {i: p["points"] for i, p in zip(ids, plan)}
    log(f"{name}: {len(ids)} moves, {sum(plan_points.values())} vectors; waiting")
    moves = wait_moves(admin, ids, plan_points, dim)
    end_ms = max(m["done_unix_ms"] for m in moves) if moves else t0_ms
    wall = max(1e-3, (end_ms - t0_ms) / 1e3)
    vectors = sum(m["plan_points"] for m in moves)
    durs = [m["active_s"] for m in moves]
    res = {"moves": len(moves), "done": sum(m["phase"] == "DONE" for m in moves),
           "aborted": sum(m["phase"] == "ABORTED" for m in moves), "vectors": vectors,
           "points_copied": sum(m["points_copied"] for m in moves), "wall_s": wall,
           "vectors_per_s": vectors / wall, "mb_per_s": vectors * bytes_per_point(dim) / 1e6 / wall,
           "move_active_s_median": statistics.median(durs) if durs else None,
           "move_active_s_max": max(durs) if durs else None,
           "move_vectors_per_s_median": statistics.median(m["vectors_per_s"] for m in moves) if moves else None,
           "move_mb_per_s_median": statistics.median(m["mb_per_s"] for m in moves) if moves else None,
           "per_move": moves}
    log(f"{name}: {res['done']}/{res['moves']} DONE in {wall:.1f} s: {res['vectors_per_s']:.0f} vectors/s, "
        f"{res['mb_per_s']:.2f} MB/s; per move active median {f(res['move_active_s_median'], '.2f')} s")
    return res


def run_config(name, throttle, work):
    log(f"=== {name}: --move-max-bytes-per-s {throttle}")
    cl = Cluster(work, throttle)
    try:
        admin = Client(cl.port, ADMIN)
        st, body = admin.call("PUT", "/v1/collections/emb",
                              {"dim": args.dim, "storage": "fp32", "num_buckets": 64,
                               "indexes": [{"dims": 16, "kind": "hnsw"}]})
        if st != 200:
            raise RuntimeError(f"create: {st} {body}")
        vec = Vectors(args.dim, 1)
        t0 = time.perf_counter()
        for start in range(0, args.points, LOAD_BATCH):
            n = min(LOAD_BATCH, args.points - start)
            pts = [{"id": start + i, "vector": v} for i, v in enumerate(vec.batch(n))]
            st, body = admin.call("PUT", "/v1/collections/emb/points", {"points": pts, "deadline_ms": 60000})
            if st != 200:
                raise RuntimeError(f"load at {start}: {st} {body}")
            if (start // LOAD_BATCH) % 10 == 9 or start + n == args.points:
                el = time.perf_counter() - t0
                log(f"loaded {start + n}/{args.points} ({(start + n) / el:.0f} vectors/s)")
        load_s = time.perf_counter() - t0
        q = Client(cl.port, READ)
        wv = Vectors(args.dim, 3)
        for _ in range(args.warmup):
            q.call("POST", "/v1/collections/emb/search", {"vector": wv.batch(1)[0], "k": 10})

        load = Load(cl.port, args.dim, args.points)
        load.phase = "before"
        load.start()
        try:
            time.sleep(args.seconds)
            s3 = cl.start_shard(3)
            load.phase = "rebalance"
            t_during = time.perf_counter()
            added = mrlctl("add-group", "--url", cl.url, "--token", ADMIN, "--shard", f"s3=127.0.0.1:{s3}", "--json")
            log(f"added group {added.get('group')} (epoch {added.get('epoch')})")
            rebalance = run_plan("rebalance", admin, cl.url, ["rebalance", "--by", "vectors"], args.dim)
            load.phase = "drain"
            drain = run_plan("drain", admin, cl.url, ["drain", "--group", "0"], args.dim)
            during_s = time.perf_counter() - t_during
            load.phase = "after"
            time.sleep(args.seconds)
        finally:
            load.join()
        st, body = admin.call("GET", "/v1/collections/emb")
        lat = load.table()
        for row in lat:
            qd, wd = row["query"], row["write"]
            log(f"{row['phase']}: query p50/p99 {f(qd['p50_ms'], '.1f')}/{f(qd['p99_ms'], '.1f')} ms "
                f"({qd['failed']} failed), write p50/p99 {f(wd['p50_ms'], '.1f')}/"
                f"{f(wd['p99_ms'], '.1f')} ms ({wd['failed']} failed)")
        return {"name": name, "move_max_bytes_per_s": throttle, "load_s": load_s,
                "added_group": added, "during_s": during_s, "rebalance": rebalance, "drain": drain,
                "latency": lat, "collection_after": body if st == 200 else None}
    finally:
        cl.stop()


def main():
    for b in (SHARD, COORD, MRLCTL):
        if not os.path.exists(b):
            raise SystemExit(f"missing {b}: ninja -C {args.build} mrl-shard mrl-coordinator mrlctl")
    work = tempfile.mkdtemp(prefix="mrl_rebalance_bench_")
    results = {"provenance": stamp, "points": args.points, "dim": args.dim, "seconds": args.seconds,
               "num_buckets": 64, "bytes_per_point": bytes_per_point(args.dim),
               "write_batch": WRITE_BATCH, "write_every_ms": WRITE_EVERY_S * 1e3,
               "warmup_queries": args.warmup, "poll_s": args.poll_s, "configs": []}
    ok = False
    try:
        for name, throttle in (("throttle off", 0), ("throttle on", args.throttle)):
            d = os.path.join(work, name.replace(" ", "_"))
            os.makedirs(d)
            results["configs"].append(run_config(name, throttle, d))
        ok = True
    finally:
        if ok:
            shutil.rmtree(work, ignore_errors=True)
        else:
            log(f"failed; logs kept in {work}")
    json.dump(results, open(args.out + ".json", "w"), indent=2)
    write_md(results)


def f(x, fmt):
    return "-" if x is None else format(x, fmt)


def write_md(r):
    s = r["provenance"]
    bpp = r["bytes_per_point"]
    out = ["# Live bucket moves: rebalance onto a new group, drain of an old one, throttle off and on", "",
           provenance.line(s), "",
           f"Reproduce: `{s['command']}`", "",
           "Generated by `bench/rebalance_bench.py` from rebalance.json (`--report-only` rewrites it). "
           "Measured, per configuration, on a fresh cluster on this machine's loopback (3 `mrl-shard` "
           "with 1 thread each, 1 `mrl-coordinator` with 4 threads, replication 1): collection `emb`, "
           f"{r['points']} vectors of dim {r['dim']} (fp32, {r['num_buckets']} buckets, one HNSW index "
           "over 16 dims), loaded first; then a 4th shard added as group 3 (`mrlctl add-group`), "
           "`mrlctl rebalance --by vectors` run until every move is DONE, then `mrlctl drain --group 0` "
           "run likewise. The two configurations differ only in the coordinator's "
           "`--move-max-bytes-per-s` (0 = unthrottled).", "",
           f"- **Bytes** are points x {bpp} B (dim x 4 + 16 of id and version, no payload: what the move "
           "executor counts and throttles on); **vectors** are the bucket weights of the coordinator's plan.",
           "- **Wall** is from starting `mrlctl rebalance`/`drain` to the last move's DONE (its "
           "`updated_unix_ms`); a move's **active** time is from leaving PLANNED (the coordinator runs at most "
           "2 moves per group at once, the rest wait queued; seen by polling GET /v1/moves every "
           f"{r['poll_s']:g} s, exact when a poll caught DUAL_WRITE) to DONE, "
           "so it covers dual write, copy, verify, flip and cleanup.",
           f"- **Latency**: one query thread (POST search, k 10, sequential, keep-alive) and one writer thread "
           f"(upserts of {r['write_batch']} random existing ids every {r['write_every_ms']:.0f} ms) run "
           f"through every phase: before ({r['seconds']:g} s), during (add-group + rebalance + drain), after "
           f"({r['seconds']:g} s), after {r['warmup_queries']} warm-up queries. A request belongs to the phase "
           "in which it started; percentiles are over successful requests, failures are counted apart (any "
           "non-200 or transport error).",
           "- Everything (5 daemons, the load threads, the poller) shares this machine's cores, so the "
           "load itself slows the copies and the copies slow the load.", ""]
    out += ["## Moves", "",
            "| configuration | plan | moves (DONE/aborted) | vectors | wall (s) | vectors/s | MB/s | "
            "per move active s, median / max | per move vectors/s, median | per move MB/s, median |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for c in r["configs"]:
        thr = "unthrottled" if c["move_max_bytes_per_s"] == 0 else f"{c['move_max_bytes_per_s'] / 1e6:g} MB/s"
        for plan in ("rebalance", "drain"):
            p = c[plan]
            out.append(f"| {c['name']} ({thr}) | {plan} | {p['moves']} ({p['done']}/{p['aborted']}) | "
                       f"{p['vectors']} | {p['wall_s']:.1f} | {p['vectors_per_s']:.0f} | {p['mb_per_s']:.2f} | "
                       f"{f(p['move_active_s_median'], '.2f')} / {f(p['move_active_s_max'], '.2f')} | "
                       f"{f(p['move_vectors_per_s_median'], '.0f')} | {f(p['move_mb_per_s_median'], '.2f')} |")
    out += ["", "Per-move records (bucket, groups, plan points, points copied, attempts, queued and active "
            "seconds) are in rebalance.json."]
    for c in r["configs"]:
        out += ["", f"## Latency, {c['name']} (`--move-max-bytes-per-s {c['move_max_bytes_per_s']}`)", "",
                f"Loading took {c['load_s']:.0f} s; the moves phase lasted {c['during_s']:.1f} s.", "",
                "| phase | queries | query p50 (ms) | query p99 (ms) | queries failed | writes | write p50 (ms) | "
                "write p99 (ms) | writes failed |",
                "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        for row in c["latency"]:
            qd, wd = row["query"], row["write"]
            out.append(f"| {row['phase']} | {qd['requests']} | {f(qd['p50_ms'], '.2f')} | {f(qd['p99_ms'], '.2f')} | "
                       f"{qd['failed']} | {wd['requests']} | {f(wd['p50_ms'], '.2f')} | {f(wd['p99_ms'], '.2f')} | "
                       f"{wd['failed']} |")
        errs = [(row["phase"], k, e) for row in c["latency"] if not row["phase"].startswith("during:")
                for k in ("query", "write") for e in row[k]["errors_sample"]]
        if errs:
            out += ["", "Failures seen (up to 5 distinct messages per phase and kind):", ""]
            out += [f"- {ph}, {k}: `{e}`" for ph, k, e in errs]
    open(args.out + ".md", "w").write("\n".join(out) + "\n")
    log(f"wrote {args.out}.md")


if __name__ == "__main__":
    if args.report_only:
        write_md(json.load(open(args.out + ".json")))
    else:
        main()
