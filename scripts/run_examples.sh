#!/usr/bin/env bash
# Runs every example, each bounded in time, and fails if one fails. The
# self-contained examples assert what they show; the client/server pairs
# are run against each other across drivers over a Unix socket.
set -euo pipefail
cd "$(dirname "$0")/.."
LIMIT=${EXAMPLE_SECONDS:-60}

cargo build -q --examples -p weft-tokio -p weft-mio --all-features
bin=target/debug/examples

run() {
  echo "--- $*"
  timeout "$LIMIT" "$@"
}

for ex in resolvers deadlines errors shutdown tls tower component; do
  run "$bin/$ex"
done
run "$bin/blocking"
run "$bin/component_blocking"

dir=$(mktemp -d)
server_pids=()
cleanup() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

wait_for_socket() {
  for _ in $(seq 1 300); do
    [ -S "$1" ] && return 0
    sleep 0.1
  done
  echo "no server at $1"
  return 1
}

# tokio server (stops on SIGINT), called by both clients.
timeout "$LIMIT" "$bin/tokio_server" "unix://$dir/t.sock" &
server_pids+=($!)
wait_for_socket "$dir/t.sock"
run "$bin/tokio_client" "unix://$dir/t.sock" tokio | tee "$dir/out"
run "$bin/mio_client" "unix://$dir/t.sock" mio | tee -a "$dir/out"
kill -INT "${server_pids[0]}"
wait "${server_pids[0]}"

# mio server (stops when its standard input closes).
mkfifo "$dir/in"
timeout "$LIMIT" "$bin/mio_server" "unix://$dir/m.sock" <"$dir/in" &
server_pids+=($!)
exec 3>"$dir/in"
wait_for_socket "$dir/m.sock"
run "$bin/tokio_client" "unix://$dir/m.sock" tokio | tee -a "$dir/out"
run "$bin/mio_client" "unix://$dir/m.sock" mio | tee -a "$dir/out"
exec 3>&-
wait "${server_pids[1]}"

[ "$(grep -c '^hello, ' "$dir/out")" -eq 8 ] || { cat "$dir/out"; exit 1; }
echo "examples ok"
