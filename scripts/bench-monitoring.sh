#!/usr/bin/env bash
# Monitoring figures, against the release build:
#  (a) gateway throughput (wrk, 64 connections) with the monitoring instrumentation on (metrics,
#      live counters, the sampler and its detectors) and off (--instrumentation=false), stream records
#      on in both; and with no accounting at all (--record-streams=false too). Medians of 5 rounds;
#  (b) event-to-chart latency in headless Chromium, from the dashboard browser test;
#  (c) NAB scores of our detectors beside the published ones, and (d) detector CPU time per sample.
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done
cargo build --release --locked -p ipfs-stream --bin ipfs-stream >&2
binary=$PWD/target/release/ipfs-stream
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-monitoring.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export IPFS_STREAM_DATA_DIR="$work/repo"
head -c $((1024 * 1024)) /dev/urandom >"$work/small.bin"
head -c $((64 * 1024)) /dev/urandom >"$work/tiny.bin"
small=$("$binary" add -q "$work/small.bin")
tiny=$("$binary" add -q "$work/tiny.bin")

start_server() {
  "$binary" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 --session-rate-limit-per-minute 0 "$@" >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  base=$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
rps() { wrk -t2 -c64 -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
median() { printf '%s\n' "$@" | sort -n | sed -n 3p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
for object in small tiny; do
  cid=${!object}
  on=() monitoring_off=() all_off=()
  for _ in 1 2 3 4 5; do
    start_server; on+=("$(rps "$base/ipfs/$cid")"); stop_server
    start_server --instrumentation=false; monitoring_off+=("$(rps "$base/ipfs/$cid")"); stop_server
    start_server --instrumentation=false --record-streams=false; all_off+=("$(rps "$base/ipfs/$cid")"); stop_server
  done
  declare "on_$object=$(median "${on[@]}")" "off_$object=$(median "${monitoring_off[@]}")" \
    "bare_$object=$(median "${all_off[@]}")"
done
for object in small tiny; do
  on=on_$object off=off_$object bare=bare_$object
  size=$([ "$object" = small ] && echo "1 MiB" || echo "64 KiB")
  echo "(a) gateway $size: ${!on} req/s instrumented, ${!off} without monitoring, ratio $(ratio "${!on}" "${!off}") (goal >= 0.97)"
  echo "    gateway $size: ${!bare} req/s with no accounting at all (no stream records either), ratio $(ratio "${!on}" "${!bare}")"
done

if [ -x /usr/bin/chromium ]; then
  [ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
  line=$(node tests/browser/dashboard.mjs "$binary" 2>/dev/null | grep '"test":"dashboard"')
  echo "(b) event-to-chart latency in Chromium: $(echo "$line" | sed 's/.*"event_to_chart_ms":\({[^}]*}\).*/\1/') (goal p95 small against the 1 s sample interval)"
else
  echo "(b) skipped: /usr/bin/chromium is not installed"
fi
echo "(c, d) NAB, normalised scores (ours, then published):"
scripts/nab-eval.sh
