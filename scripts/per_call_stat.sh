#!/bin/bash
# System calls, context switches and CPU time per call, on each side of one
# benchmark point: `weft serve` pinned to core 1 (core 0 with `same`) and
# `weft bench` as the client, `perf stat` attached to both for 1.5 s in the
# middle of a 3 s run. How the convoy at 128 in flight was found (neither
# core busy) and how its fix was checked.
#
#   cargo build --release -p weft-cli
#   scripts/per_call_stat.sh tokio tokio 64 128 split [extra weft bench args]
#
# Arguments: server driver, client driver, payload size, calls in flight,
# pin (split|same). WEFT names the binary (default target/release/weft).
set -euo pipefail
WEFT=${WEFT:-target/release/weft}
server=$1 client=$2 size=$3 conc=$4 pin=$5
shift 5
port=$((7960 + RANDOM % 30))
core=1
[ "$pin" = same ] && core=0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
taskset -c "$core" "$WEFT" serve --driver "$server" --addr "tcp://127.0.0.1:$port" >/dev/null 2>&1 &
srv=$!
sleep 0.4
"$WEFT" bench --addr "tcp://127.0.0.1:$port" --driver "$client" --size "$size" \
    -c "$conc" --duration 3 --warmup 0.3 --pin "$pin" --json "$@" >"$out/bench" 2>/dev/null &
cli=$!
sleep 1
events=raw_syscalls:sys_enter,context-switches,task-clock
perf stat -x, -e "$events" -p "$srv" -o "$out/srv" -- sleep 1.5 &
perf stat -x, -e "$events" -p "$cli" -o "$out/cli" -- sleep 1.5 &
wait %3 %4
wait "$cli"
kill "$srv"
wait "$srv" 2>/dev/null || true
python3 - "$out" "$server" "$client" "$size" "$conc" "$pin" <<'PY'
import json, sys
out, server, client, size, conc, pin = sys.argv[1:]
rows = [json.loads(l) for l in open(f"{out}/bench") if l.startswith("{")]
rate = rows[0]["calls_per_sec"]
print(f"{client} client -> {server} server, {size} B x{conc} ({pin}): {rate:.0f} calls/s")
calls = rate * 1.5
for side, name in (("cli", "client"), ("srv", "server")):
    parts = []
    for line in open(f"{out}/{side}"):
        f = line.strip().split(",")
        if len(f) > 2 and f[0][:1].isdigit():
            v = float(f[0]) / calls
            if f[2] == "task-clock":
                parts.append(f"cpu {v * 1000:.2f} us")  # msec -> us
            elif f[2] == "context-switches":
                parts.append(f"switches {v:.3f}")
            else:
                parts.append(f"syscalls {v:.3f}")
    print(f"  {name} per call: " + ", ".join(parts))
PY
