#!/usr/bin/env python3
"""Fails a CI phase whose ctest run skipped a test outside the allow-list, or ran no test of a
suite that must run. Reads ctest's own log (Testing/Temporary/LastTest.log), which holds every
test's command line and output, so a GTEST_SKIP anywhere is seen.

  check_ctest_log.py BUILD_DIR --require common_test,wire_test,... [--allow .ci/skip-allowlist]

The allow-list holds one fnmatch pattern per line (Suite.Test, `#` comments): the tests that may
skip on this machine, each with the reason beside it (today: the GPU-only ones).
"""
import argparse
import fnmatch
import os
import re
import sys


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("build_dir")
    ap.add_argument("--require", default="", help="comma-separated test executables that must have run")
    ap.add_argument("--allow", default=os.path.join(os.path.dirname(__file__), "skip-allowlist"))
    a = ap.parse_args()
    log_path = os.path.join(a.build_dir, "Testing", "Temporary", "LastTest.log")
    try:
        log = open(log_path, errors="replace").read()
    except OSError as e:
        sys.exit(f"[ci] no ctest log at {log_path}: {e}")
    allow = []
    for ln in open(a.allow):
        ln = ln.split("#", 1)[0].strip()
        if ln:
            allow.append(ln)
    skipped = sorted(set(re.findall(r"^\[  SKIPPED \] (\S+?)(?: \(\d+ ms\))?$", log, re.M)))
    bad = [t for t in skipped if not any(fnmatch.fnmatchcase(t, p) for p in allow)]
    ran = {}
    for exe in re.findall(r'^Command: "([^"]+)"', log, re.M):
        name = os.path.basename(exe)
        ran[name] = ran.get(name, 0) + 1
    missing = [r for r in a.require.split(",") if r and ran.get(r, 0) == 0]
    print(f"[ci] {a.build_dir}: tests run per executable: "
          + ", ".join(f"{k} {v}" for k, v in sorted(ran.items())))
    for t in skipped:
        print(f"[ci] skipped: {t}" + ("" if t not in bad else "   <-- NOT in the allow-list"))
    failed = False
    if bad:
        print(f"[ci] FAIL: {len(bad)} test(s) skipped outside {a.allow}: {' '.join(bad)}")
        failed = True
    if missing:
        print(f"[ci] FAIL: no test of {' '.join(missing)} ran in {a.build_dir}")
        failed = True
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
