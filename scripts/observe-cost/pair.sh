#!/usr/bin/env bash
# One measurement: BIN's server on core 1, BIN's load on core 0, SECONDS long.
# Prints calls/s. Usage: pair.sh BIN SECONDS [PORT]
set -eu
bin=$1 secs=$2 port=${3:-7411}
addr=tcp://127.0.0.1:$port
exec 3> >(taskset -c 1 "$bin" serve "$addr")
for _ in $(seq 100); do
  (exec 9<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
  sleep 0.05
done
taskset -c 0 "$bin" load "$addr" "$secs" | awk '{print $2}'
exec 3>&-
wait
