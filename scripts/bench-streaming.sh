#!/usr/bin/env bash
# Streaming figures, in one run against the release build:
#  (a) a WebSocket download of one object beside an HTTP GET of the same object (medians of three);
#  (b) 16 concurrent WebSocket downloads, with and without one more client that reads nothing
#      (medians of three), and the server's peak RSS;
#  (c) 1000 notification subscribers, 1000 events/s for 10 s: delivered and p50/p99 latency, the
#      run of median p99 of three; then the same with one HTTP worker (--http-workers 1): the
#      subscribers' process shares the two cores, and a second worker takes CPU it needs to read;
#  (d) gateway throughput (64 connections, wrk) with stream metrics recorded and not, and the
#      server's CPU time per request each way (for the 1 MiB object and a 4 KiB one, where the
#      per-request cost of recording is not hidden by the bytes): a throughput ratio on a shared
#      machine swings by 10% between rounds; CPU per request is what recording costs.
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
head -c 4096 /dev/urandom >"$work/tiny.bin"
large=$("$binary" add -q "$work/large.bin")
medium=$("$binary" add -q "$work/medium.bin")
small=$("$binary" add -q "$work/small.bin")
tiny=$("$binary" add -q "$work/tiny.bin")
rm -f "$work"/*.bin

start_server() { # prints the base URL; extra arguments go to serve
  "$binary" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 --session-rate-limit-per-minute 0 --max-connections-per-ip 0 "$@" >"$work/serve.out" 2>"$work/serve.log" &
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
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
curl -s -o /dev/null "$base/ipfs/$large" # warm the page cache
# Three rounds alternating, and each side's median.
http=() ws_mib=()
for _ in 1 2 3; do
  http+=("$(curl -s -o /dev/null -w '%{speed_download}' "$base/ipfs/$large" | awk '{printf "%.1f", $1 / 1048576}')")
  ws_mib+=("$("$load" ws-get "$ws/ws/stream/$large")")
done
a_http=$(median "${http[@]}")
a_ws=$(median "${ws_mib[@]}")
# Untimed first: the server's first 16 downloads ran a third slower than the next ones (whatever the
# object: the process's first use of that much memory and those threads), and were counted against
# the downloads without a stalled client. Then three rounds of each, alternating, and each side's
# median (one run of each swings by 10-15% on a shared machine); the peak RSS is the highest of the
# runs with a stalled client.
"$load" ws-many "$ws/ws/stream/$medium" 16 >/dev/null
alone=() stalled=() rss_mib=0
for _ in 1 2 3; do
  alone+=("$("$load" ws-many "$ws/ws/stream/$medium" 16)")
  reset_peak
  stalled+=("$("$load" ws-many "$ws/ws/stream/$medium" 16 --stall)")
  rss_mib=$(awk -v a="$rss_mib" -v b="$(peak_rss)" 'BEGIN {print (b > a ? b : a)}')
done
b_alone=$(median "${alone[@]}")
b_stalled=$(median "${stalled[@]}")
reset_peak
clock_ticks=$(getconf CLK_TCK)
server_cpu() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
# What a subscriber's write and its read cost on this host, unhurried: 100 subscribers at 100
# events/s, so that each read takes one event. Under the full load both cores are busy, and events
# that wait while a connection is written go out together in its next write: a turn through 1000
# subscribers takes about 1000 times that cost over two cores, and the latency follows it (the cost
# is mostly the kernel's loopback TCP, and differs from one host to another). Fields: the server's
# and the subscribers' CPU microseconds per event delivered, events per read, and the turn through
# 1000 subscribers this predicts, in ms (1000 x microseconds, over two cores).
delivery_cost() {
  local cpu_before measured
  cpu_before=$(server_cpu)
  # `times` gives the subscribers' process's CPU: its second line is the children's user and system.
  measured=$(bash -c '"$0" notify "$1" 100 100 5 && times' "$load" "$base")
  awk -v cpu="$(($(server_cpu) - cpu_before))" -v hz="$clock_ticks" '
    function seconds(t) { split(t, p, "m"); return p[1] * 60 + p[2] }
    NR == 1 {delivered = ($1 > 0 ? $1 : 1); reads = ($6 > 0 ? $6 : 1)}
    NR == 3 {load = seconds($1) + seconds($2)}
    END {
      server = cpu / hz / delivered * 1e6; subscribers = load / delivered * 1e6
      printf "%.1f %.1f %.1f %.1f\n", server, subscribers, delivered / reads, (server + subscribers) / 2
    }' <<<"$measured"
}
# Three runs; the one of median p99 is kept (fields: delivered expected p50 p99 rate, and the
# events each read took).
notify_median() {
  for _ in 1 2 3; do
    "$load" notify "$base" 1000 1000 10 | awk '{printf "%s %s %s %s %s %.1f\n", $1, $2, $3, $4, $5, $1 / ($6 > 0 ? $6 : 1)}'
  done | sort -n -k4 | sed -n 2p
}
read -r unhurried_server_us unhurried_load_us unhurried_per_read unhurried_turn_ms < <(delivery_cost)
read -r c_delivered c_expected c_p50 c_p99 c_rate c_per_read < <(notify_median)
c_rss_mib=$(peak_rss)
stop_server
start_server --http-workers 1
read -r c1_delivered c1_expected c1_p50 c1_p99 c1_rate c1_per_read < <(notify_median)
stop_server

# (d) alternates recording on and off, three rounds, and keeps each side's median: the machine is
# shared, and one run of each would mostly measure its noise.
# Each run prints req/s and the server's CPU microseconds per request.
measure() {
  local before after
  before=$(server_cpu)
  wrk -t2 -c64 -d5s "$1" >"$work/wrk.out"
  after=$(server_cpu)
  awk -v ticks=$((after - before)) -v hz="$clock_ticks" '
    /requests in/ {n = $1} /Requests\/sec/ {rps = $2}
    END {printf "%s %.1f\n", rps, (n > 0 ? ticks / hz / n * 1e6 : 0)}' "$work/wrk.out"
}
on=() off=() on_cpu=() off_cpu=() tiny_on_cpu=() tiny_off_cpu=()
for _ in 1 2 3; do
  start_server
  read -r rps cpu < <(measure "$base/ipfs/$small"); on+=("$rps"); on_cpu+=("$cpu")
  read -r _ cpu < <(measure "$base/ipfs/$tiny"); tiny_on_cpu+=("$cpu")
  stop_server
  start_server --record-streams=false
  read -r rps cpu < <(measure "$base/ipfs/$small"); off+=("$rps"); off_cpu+=("$cpu")
  read -r _ cpu < <(measure "$base/ipfs/$tiny"); tiny_off_cpu+=("$cpu")
  stop_server
done
d_on=$(median "${on[@]}")
d_off=$(median "${off[@]}")
d_on_cpu=$(median "${on_cpu[@]}")
d_off_cpu=$(median "${off_cpu[@]}")
d_tiny_on_cpu=$(median "${tiny_on_cpu[@]}")
d_tiny_off_cpu=$(median "${tiny_off_cpu[@]}")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "(a) ${size_mib} MiB download:   WebSocket $a_ws MiB/s, HTTP $a_http MiB/s, ratio $(ratio "$a_ws" "$a_http") (goal >= 0.8)"
echo "(b) 16 WebSocket downloads: $b_stalled MiB/s with a stalled client, $b_alone MiB/s without, ratio $(ratio "$b_stalled" "$b_alone") (goal >= 0.9); peak RSS meanwhile $rss_mib MiB (goal < 128)"
echo "(c) notifications:         $c_delivered of $c_expected delivered, p50 $c_p50 ms, p99 $c_p99 ms (goal p99 < 20 ms, no loss), published at $c_rate/s; peak RSS meanwhile $c_rss_mib MiB"
echo "                             $c_per_read events a read; unhurried, a write and its read cost server $unhurried_server_us us, subscribers $unhurried_load_us us ($unhurried_per_read events a read): a turn through 1000 is $unhurried_turn_ms ms of both cores"
echo "    one HTTP worker:         $c1_delivered of $c1_expected delivered, p50 $c1_p50 ms, p99 $c1_p99 ms, published at $c1_rate/s"
echo "                             $c1_per_read events a read"
echo "(d) gateway, 1 MiB, wrk:    $d_on req/s recording, $d_off req/s not (medians of 3), ratio $(ratio "$d_on" "$d_off") (goal >= 0.97)"
echo "    server CPU per request:  1 MiB $d_on_cpu us recording, $d_off_cpu us not; 4 KiB $d_tiny_on_cpu us recording, $d_tiny_off_cpu us not"
printf '{"ws_mib_s":%s,"http_mib_s":%s,"many_mib_s":%s,"many_stalled_mib_s":%s,"peak_rss_mib":%s,"notify_delivered":%s,"notify_expected":%s,"notify_p50_ms":%s,"notify_p99_ms":%s,"notify_rate":%s,"notify_peak_rss_mib":%s,"notify_events_per_read":%s,"notify_unhurried_server_us":%s,"notify_unhurried_subscriber_us":%s,"notify_one_worker_delivered":%s,"notify_one_worker_p50_ms":%s,"notify_one_worker_p99_ms":%s,"notify_one_worker_events_per_read":%s,"rps_recording":%s,"rps_not_recording":%s,"cpu_us_recording":%s,"cpu_us_not_recording":%s,"tiny_cpu_us_recording":%s,"tiny_cpu_us_not_recording":%s}\n' \
  "$a_ws" "$a_http" "$b_alone" "$b_stalled" "$rss_mib" "$c_delivered" "$c_expected" "$c_p50" "$c_p99" "$c_rate" "$c_rss_mib" "$c_per_read" "$unhurried_server_us" "$unhurried_load_us" "$c1_delivered" "$c1_p50" "$c1_p99" "$c1_per_read" "$d_on" "$d_off" "$d_on_cpu" "$d_off_cpu" "$d_tiny_on_cpu" "$d_tiny_off_cpu"
