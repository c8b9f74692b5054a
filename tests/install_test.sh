#!/usr/bin/env bash
# `cmake --install` puts the daemons, mrlctl, the systemd units and the docs in place under a
# prefix (issue 16 item 1), the units name binaries that exist there, and the installed daemons
# start from the example config files (the coordinator's TOML, the shard's JSON; flags override
# both) and print their effective configuration.
#   tests/install_test.sh BUILD_DIR
set -euo pipefail
build=$(cd "$1" && pwd)
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$tmp/prefix" > "$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; fail "cmake --install"; }
p=$tmp/prefix
for f in bin/mrl-shard bin/mrl-coordinator bin/mrlctl lib/systemd/system/mrl-shard@.service \
         lib/systemd/system/mrl-coordinator.service share/doc/mrl/README.md share/doc/mrl/deploy.md \
         share/doc/mrl/examples/shard.json share/doc/mrl/examples/coordinator.toml; do
  [ -e "$p/$f" ] || fail "$f is not installed"
done
for unit in "$p"/lib/systemd/system/*.service; do
  # The unit names the binary under the prefix configured at build time; here it is installed
  # under the test's prefix, in the same bin/ directory.
  exe=$(sed -n 's/^ExecStart=\([^ ]*\).*/\1/p' "$unit")
  [ "$(basename "$(dirname "$exe")")" = bin ] && [ -x "$p/bin/$(basename "$exe")" ] ||
    fail "$(basename "$unit") starts $exe, which is not an installed executable"
  grep -q '^Restart=on-failure' "$unit" || fail "$(basename "$unit") has no restart policy"
  grep -q '^KillSignal=SIGTERM' "$unit" || fail "$(basename "$unit") does not stop with SIGTERM"
  grep -q '^LimitNOFILE=' "$unit" || fail "$(basename "$unit") sets no descriptor limit"
  echo "ok: $(basename "$unit") -> $exe"
done

# The installed shard from the example config, with flags over it (loopback, OS-chosen port).
"$p/bin/mrl-shard" --config "$p/share/doc/mrl/examples/shard.json" --data-dir "$tmp/s1" \
  --host 127.0.0.1 --port 0 --port-file "$tmp/s1.port" --auth-secret-file "" --block-cache-mb 16 \
  > "$tmp/s1.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/s1.port" ] && break; sleep 0.1; done
[ -s "$tmp/s1.port" ] || { cat "$tmp/s1.log"; fail "the installed mrl-shard did not start"; }
grep -q '"disk_refuse_above_percent":95' "$tmp/s1.log" || { cat "$tmp/s1.log"; fail "the shard did not print its effective config"; }

# The installed coordinator from the example TOML, with flags over it.
"$p/bin/mrl-coordinator" --config "$p/share/doc/mrl/examples/coordinator.toml" --data-dir "$tmp/coord" \
  --host 127.0.0.1 --port 0 --port-file "$tmp/coord.port" --binary-port 0 --admin-token-file "" \
  --read-token-file "" --shard-secret-file "" --replication 1 --shard "s1=127.0.0.1:$(cat "$tmp/s1.port")" \
  > "$tmp/coord.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -s "$tmp/coord.port" ] && break; sleep 0.1; done
[ -s "$tmp/coord.port" ] || { cat "$tmp/coord.log"; fail "the installed mrl-coordinator did not start"; }
# The file's keys and the flags' overrides, in the printed effective config.
grep -q '^out-of-sync-after-ms=2000' "$tmp/coord.log" || { cat "$tmp/coord.log"; fail "the coordinator's effective config lacks the file's key"; }
grep -q '^host="127.0.0.1"' "$tmp/coord.log" || { cat "$tmp/coord.log"; fail "a flag did not override the file"; }
curl -sf "http://127.0.0.1:$(cat "$tmp/coord.port")/healthz" > /dev/null || fail "the installed coordinator does not answer"
echo "ok: installed under $p; both daemons start from the example configs"
