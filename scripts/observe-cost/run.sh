#!/usr/bin/env bash
# What observability costs when nothing observes: throughput at 64 B with
# 128 calls in flight, the library before observability (its last commit,
# BASE) against this checkout, the same load program built against each,
# alternating rounds in one run. Server on core 1, client on core 0.
#
#   scripts/observe-cost/run.sh [ROUNDS] [SECONDS]
#
# Prints each round's calls/s and, per driver, the median of the rounds'
# new/old ratios. Needs two cores and `taskset`.
set -euo pipefail
rounds=${1:-10} secs=${2:-3}
base=${BASE:-01a19fc}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=${WORK:-/tmp/weft-observe-cost}
mkdir -p "$work"
if [ ! -d "$work/old" ]; then
  git -C "$repo" worktree add --detach "$work/old" "$base" >/dev/null
fi
for tree in "$work/old" "$repo"; do
  cp "$here/observe_cost.rs" "$tree/driver-tokio/examples/"
  cp "$here/observe_cost_mio.rs" "$tree/driver-mio/examples/"
done
build() { # TREE TARGET_DIR
  (cd "$1" && CARGO_TARGET_DIR=$2 cargo build --release -q \
    -p weft-tokio --example observe_cost -p weft-mio --example observe_cost_mio)
}
build "$work/old" "$work/target-old"
build "$repo" "$work/target-new"
for tree in "$work/old" "$repo"; do
  rm -f "$tree/driver-tokio/examples/observe_cost.rs" "$tree/driver-mio/examples/observe_cost_mio.rs"
done
for i in $(seq "$rounds"); do
  for driver in tokio mio; do
    ex=observe_cost; [ "$driver" = mio ] && ex=observe_cost_mio
    old=$("$here/pair.sh" "$work/target-old/release/examples/$ex" "$secs")
    new=$("$here/pair.sh" "$work/target-new/release/examples/$ex" "$secs")
    echo "$i $driver old $old new $new"
  done
done | tee "$work/rounds.txt"
for driver in tokio mio; do
  awk -v d="$driver" '$2 == d { print $6 / $4 }' "$work/rounds.txt" | sort -n |
    awk -v d="$driver" '{ r[NR] = $1 } END {
      m = (NR % 2) ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
      printf "%s: median new/old %.3f over %d rounds (min %.3f, max %.3f)\n", d, m, NR, r[1], r[NR] }'
done
