#!/usr/bin/env python3
"""Runs the README's benchmark points and prints the tables (markdown).

Each side runs the way users run it: `weft serve` on Tokio's default
multi-thread runtime (two workers on a two-core machine) or the mio server,
and the client on the default multi-thread runtime (tokio) or from plain
threads (mio). The server is pinned to core 1 and the client to core 0
(`split`); the last row puts both on core 0 (`same`). Every point runs weft
and the raw-socket baseline back to back, three times; the table shows
medians. The last column is the range of the p50 ratio over the runs,
each run's weft against the ceiling measured right after it: on a VM the
spread between runs can exceed a target's margin.

    cargo build --release -p weft-cli && python3 scripts/bench_table.py

`ONLY=split:64:1,same:64:1` limits the points; `REPS=9` takes more runs.
"""

import json
import os
import statistics
import subprocess
import sys
import time

WEFT = os.environ.get("WEFT", "target/release/weft")
REPS = int(os.environ.get("REPS", "3"))
DURATION = os.environ.get("DURATION", "2")
WARMUP = os.environ.get("WARMUP", "0.3")
# (pin, size, in flight)
POINTS = [
    ("split", 64, 1),
    ("split", 64, 16),
    ("split", 64, 128),
    ("split", 1 << 20, 16),
    ("same", 64, 1),
]
if os.environ.get("ONLY"):
    POINTS = [p for p in POINTS
              if f"{p[0]}:{p[1]}:{p[2]}" in os.environ["ONLY"].split(",")]
PORT = 7900


def serve(driver, core, port):
    p = subprocess.Popen(
        ["taskset", "-c", core, WEFT, "serve", "--driver", driver,
         "--addr", f"tcp://127.0.0.1:{port}"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    p.stdout.readline()  # "listening ..."
    return p


def point(driver, pin, size, conc, port):
    # Tokio's default on two cores; the mio client's caller threads stay
    # at their default.
    threads = ["--threads", "2"] if driver == "tokio" else []
    out = subprocess.run(
        [WEFT, "bench", "--addr", f"tcp://127.0.0.1:{port}", "--driver", driver,
         "--size", str(size), "--concurrency", str(conc), "--duration", DURATION,
         "--warmup", WARMUP, "--pin", pin, *threads,
         "--baseline", "--json"],
        check=True, capture_output=True, text=True).stdout
    rows = [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    weft = next(r for r in rows if r["system"] != "raw-socket")
    raw = next(r for r in rows if r["system"] == "raw-socket")
    return weft, raw


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def main():
    drivers = sys.argv[1:] or ["tokio", "mio"]
    for driver in drivers:
        results = {p: ([], []) for p in POINTS}
        for rep in range(REPS):
            for (pin, size, conc) in POINTS:
                core = "1" if pin == "split" else "0"
                port = PORT + (rep * 10 + POINTS.index((pin, size, conc))) % 90
                server = serve(driver, core, port)
                try:
                    w, r = point(driver, pin, size, conc, port)
                finally:
                    server.terminate()
                    server.wait()
                results[(pin, size, conc)][0].append(w)
                results[(pin, size, conc)][1].append(r)
                print(f"# {driver} rep {rep} {pin} {size} x{conc}: "
                      f"{w['calls_per_sec']:.0f} vs {r['calls_per_sec']:.0f}",
                      file=sys.stderr)
        print(f"\n{driver}:\n")
        print("| pin | size | in flight | weft calls/s | raw calls/s | ratio "
              "| weft p50 / p99 us | raw p50 / p99 us | p50 ratio | p99 ratio "
              "| p50 ratio, each run |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
              "| ---: |")
        for (pin, size, conc) in POINTS:
            ws, rs = results[(pin, size, conc)]
            wc, rc = med(ws, "calls_per_sec"), med(rs, "calls_per_sec")
            w50, r50 = med(ws, "p50_us"), med(rs, "p50_us")
            w99, r99 = med(ws, "p99_us"), med(rs, "p99_us")
            label = "1 MiB" if size == 1 << 20 else str(size)
            runs = [w["p50_us"] / r["p50_us"] for w, r in zip(ws, rs)]
            spread = f"{min(runs):.2f}-{max(runs):.2f}"
            print(f"| {pin} | {label} | {conc} | {wc:,.0f} | {rc:,.0f} | "
                  f"{wc / rc:.2f} | {w50:.1f} / {w99:.1f} | {r50:.1f} / {r99:.1f} "
                  f"| {w50 / r50:.2f} | {w99 / r99:.2f} | {spread} |".replace(",", " "))


if __name__ == "__main__":
    main()
