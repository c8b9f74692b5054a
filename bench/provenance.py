"""The provenance stamp of a generated result, the Python twin of common/provenance.h.

stamp(command) -> {"commit", "command", "machine": {"cores", "cpu", "mem_gib", "loadavg_start"},
"date"}; call it when a run starts (the load average is read then). line(stamp) is the markdown
line every report prints. As a script: `python3 bench/provenance.py CMD...` prints a stamp as JSON,
for shell scripts that stamp a run before it starts.
"""
import datetime
import json
import os
import shlex
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stamp(command):
    if not isinstance(command, str):
        command = " ".join(shlex.quote(c) for c in command)
    try:
        commit = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty", "--tags"],
                                capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for ln in f:
            if ln.startswith("model name"):
                cpu = ln.split(":", 1)[1].strip()
                break
    with open("/proc/loadavg") as f:
        load = [float(x) for x in f.read().split()[:3]]
    mem = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    return {"commit": commit, "command": command,
            "machine": {"cores": os.cpu_count(), "cpu": cpu, "mem_gib": mem, "loadavg_start": load},
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")}


def line(s):
    m = s["machine"]
    load = " ".join(f"{x:.2f}" for x in m["loadavg_start"])
    return (f"commit `{s['commit']}` · `{s['command']}` · {m['cores']} cores ({m['cpu']}), "
            f"load average {load} at start · {s['date']}")


if __name__ == "__main__":
    # One argument is the command line as the user typed it; several are argv words to quote.
    print(json.dumps(stamp(sys.argv[1] if len(sys.argv) == 2 else sys.argv[1:])))
