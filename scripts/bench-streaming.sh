#!/usr/bin/env bash
# Streaming figures, in one run against the release build:
#  (a) a WebSocket download of one object beside an HTTP GET of the same object;
#  (b) 16 concurrent WebSocket downloads, with and without one more client that reads nothing,
#      and the server's peak RSS;
#  (c) 1000 notification subscribers, 1000 events/s for 10 s: delivered and p50/p99 latency;
#  (d) gateway throughput (64 connections, wrk) with stream metrics recorded and not.
#
# usage: scripts/bench-streaming.sh [size of the large object in MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$tool" >/dev/null; }
done

cargo build --release --locked -p ipfs-stream --bin ipfs-stream --example stream_load >&2
binary=$PWD/target/release/ipfs-stream
load=$PWD/target/release/examples/stream_load
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-streaming.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
export IPFS_STREAM_DATA_DIR="$work/repo"

head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/large.bin"
head -c $((64 * 1024 * 1024)) /dev/urandom >"$work/medium.bin"
head -c $((1024 * 1024)) /dev/urandom >"$work/small.bin"
large=$("$binary" add -q "$work/large.bin")
medium=$("$binary" add -q "$work/medium.bin")
small=$("$binary" add -q "$work/small.bin")
rm -f "$work"/*.bin

start_server() { # prints the base URL; extra arguments go to serve
  "$binary" serve --listen 127.0.0.1:0 "$@" >"$work/serve.out" 2>"$work/serve.log" &
  pids+=($!)
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  base=$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

peak_rss() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$server_pid/status"; }
reset_peak() { echo 5 >"/proc/$server_pid/clear_refs"; } # VmHWM starts again from the current RSS

start_server
ws=${base/http:/ws:}
curl -s -o /dev/null "$base/ipfs/$large" # warm the page cache
a_http=$(curl -s -o /dev/null -w '%{speed_download}' "$base/ipfs/$large" | awk '{printf "%.1f", $1 / 1048576}')
a_ws=$("$load" ws-get "$ws/ws/stream/$large")
b_alone=$("$load" ws-many "$ws/ws/stream/$medium" 16)
reset_peak
b_stalled=$("$load" ws-many "$ws/ws/stream/$medium" 16 --stall)
rss_mib=$(peak_rss)
reset_peak
read -r c_delivered c_expected c_p50 c_p99 < <("$load" notify "$base" 1000 1000 10)
c_rss_mib=$(peak_rss)
stop_server

# (d) alternates recording on and off, three rounds, and keeps each side's median: the machine is
# shared, and one run of each would mostly measure its noise.
rps() { wrk -t2 -c64 -d5s "$1" | awk '/Requests\/sec/ {print $2}'; }
on=() off=()
for _ in 1 2 3; do
  start_server; on+=("$(rps "$base/ipfs/$small")"); stop_server
  start_server --record-streams=false; off+=("$(rps "$base/ipfs/$small")"); stop_server
done
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
d_on=$(median "${on[@]}")
d_off=$(median "${off[@]}")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "(a) ${size_mib} MiB download:   WebSocket $a_ws MiB/s, HTTP $a_http MiB/s, ratio $(ratio "$a_ws" "$a_http") (goal >= 0.8)"
echo "(b) 16 WebSocket downloads: $b_stalled MiB/s with a stalled client, $b_alone MiB/s without, ratio $(ratio "$b_stalled" "$b_alone") (goal >= 0.9); peak RSS meanwhile $rss_mib MiB (goal < 128)"
echo "(c) notifications:         $c_delivered of $c_expected delivered, p50 $c_p50 ms, p99 $c_p99 ms (goal p99 < 20 ms, no loss); peak RSS meanwhile $c_rss_mib MiB"
echo "(d) gateway, 1 MiB, wrk:    $d_on req/s recording, $d_off req/s not (medians of 3), ratio $(ratio "$d_on" "$d_off") (goal >= 0.97)"
printf '{"ws_mib_s":%s,"http_mib_s":%s,"many_mib_s":%s,"many_stalled_mib_s":%s,"peak_rss_mib":%s,"notify_delivered":%s,"notify_expected":%s,"notify_p50_ms":%s,"notify_p99_ms":%s,"notify_peak_rss_mib":%s,"rps_recording":%s,"rps_not_recording":%s}\n' \
  "$a_ws" "$a_http" "$b_alone" "$b_stalled" "$rss_mib" "$c_delivered" "$c_expected" "$c_p50" "$c_p99" "$c_rss_mib" "$d_on" "$d_off"
