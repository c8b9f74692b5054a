#!/usr/bin/env python3
"""Fails when a source folder includes a folder it must not: the layer table below is the
architecture (docs/architecture.md, "Layers"), and this keeps the arrows pointing one way.

  check_layers.py [ROOT]     (ROOT: the source tree, default: this script's repository)

Reads every `#include "..."` line (and `#include <folder/...>` naming one of our folders) of
every C/C++ source and header under the folders of the table; an include resolves to the folder
of its first path component, or, written without a folder ("test_util.h"), to the file beside
the including one. Prints file:line and the rule broken for each violation and exits 1; exits 0
when every include is allowed. A top-level folder holding sources but no row in the table is
itself an error, so a new layer cannot start without saying what it may include.
Python 3 standard library only.
"""
import os
import re
import sys

# folder -> the other folders of ours it may include (a folder may always include itself).
# ANY: test and benchmark code, which drives every layer.
ANY = "*"
ALLOWED = {
    "common": set(),  # knows nothing of any daemon (schemas' generated headers: see ALIAS)
    "rpc": {"common"},
    "shard": {"rpc", "meta", "common"},  # meta: its registration (a leased key) only
    "meta": {"common"},  # the metadata store (embedded file, etcd): no daemon, no wire format
    "coordinator": {"rpc", "meta", "common"},  # shards only through rpc/ and the wire schemas
    "trainer": {"common"},
    "ops": {"rpc", "meta", "common"},  # mrlctl: the coordinator's APIs, the meta store; no daemon code
    "bench": ANY,
    "tests": ANY,
    "fuzz": ANY,
}
# Generated code that counts as another folder's level: schemas/*.fbs compile to
# "schemas/shard_generated.h" (in the build dir), the wire format under common/'s codecs.
ALIAS = {"schemas": "common"}

SOURCE_EXT = (".h", ".hh", ".hpp", ".cc", ".cpp", ".cxx", ".cu")
INCLUDE_RE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]')


def level(folder):
    return ALIAS.get(folder, folder)


def our_folders(root):
    """Top-level folders holding sources (hidden folders and build trees skipped)."""
    found = set()
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if name.startswith(".") or not os.path.isdir(path):
            continue
        if os.path.exists(os.path.join(path, "CMakeCache.txt")):
            continue  # a build directory
        for _, _, files in os.walk(path):
            if any(f.endswith(SOURCE_EXT) for f in files):
                found.add(name)
                break
    return found


def sources(root, folder):
    for dirpath, dirnames, files in os.walk(os.path.join(root, folder)):
        dirnames.sort()
        for f in sorted(files):
            if f.endswith(SOURCE_EXT):
                yield os.path.join(dirpath, f)


def main():
    root = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else
                           os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    folders = our_folders(root)
    known = set(ALLOWED) | set(ALIAS) | folders
    errors = []
    for f in sorted(folders - set(ALLOWED) - set(ALIAS)):
        errors.append(f"{f}/: a folder with sources but no row in the layer table of "
                      f".ci/check_layers.py (say which folders it may include)")
    files = includes = 0
    for folder in sorted(set(ALLOWED) & folders):
        allowed = ALLOWED[folder]
        for path in sources(root, folder):
            files += 1
            rel = os.path.relpath(path, root)
            with open(path, errors="replace") as fh:
                lines = fh.read().splitlines()
            for lineno, line in enumerate(lines, 1):
                m = INCLUDE_RE.match(line)
                if not m:
                    continue
                quote, target = m.group(1), m.group(2).strip()
                parts = target.split("/")
                if len(parts) == 1:
                    if quote == "<":
                        continue  # a system or third-party header
                    if os.path.exists(os.path.join(os.path.dirname(path), target)):
                        includes += 1
                        continue  # beside the including file: its own folder
                    errors.append(f"{rel}:{lineno}: \"{target}\" is neither beside the file nor "
                                  f"written from the root (folder/file.h)")
                    continue
                to = parts[0]
                if to not in known:
                    continue  # a third-party header written with quotes
                includes += 1
                if to == folder or allowed == ANY:
                    continue
                if level(to) == folder or level(to) in allowed:
                    continue
                may = ", ".join(sorted(allowed)) or "nothing of ours"
                may += "".join(f"; {a}/ counts as {b}/" for a, b in sorted(ALIAS.items()))
                written = line.strip()
                errors.append(f"{rel}:{lineno}: {folder}/ may not include {to}/ ({written}); "
                              f"{folder}/ may include: {may}")
    if errors:
        for e in errors:
            print(e)
        print(f"[layers] FAIL: {len(errors)} problem(s) with the layer table "
              f"(.ci/check_layers.py, docs/architecture.md)")
        return 1
    print(f"[layers] ok: {includes} includes of ours in {files} files follow the layer table")
    return 0


if __name__ == "__main__":
    sys.exit(main())
