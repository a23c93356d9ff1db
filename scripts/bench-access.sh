#!/usr/bin/env bash
# What access control costs, and the rate limits at work (release build; wrk and curl from Debian):
#  (a) 64 connections fetching a 1 MiB object for 5 s, with a token and without (public reads),
#      alternating, medians of 3: req/s and their ratio (goal >= 0.97);
#  (b) the server's CPU per request on /health, with a token and without: the token check's cost;
#  (c) one anonymous client flooding /health (16 connections, 8 s, the default anonymous limit) while
#      a client with a token (no limit of its own) fetches the 1 MiB object over 8 connections: the
#      share of the flood answered 429, the server's CPU per refused request, and the tokened
#      client's answered req/s beside its req/s alone (goal >= 0.95). wrk runs on the same machine:
#      the flooder's own CPU is taken from what the server and the tokened client have.
#
# usage: scripts/bench-access.sh
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for tool in wrk curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

cargo build --release --locked -p ipfs-stream >&2
binary=$PWD/target/release/ipfs-stream
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-access.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export IPFS_STREAM_DATA_DIR="$work/repo"
head -c $((1024 * 1024)) /dev/urandom >"$work/small.bin"
small=$("$binary" add -q "$work/small.bin")
token=$("$binary" token create -q --scope content:read --name bench)
metrics_token=$("$binary" token create -q --scope metrics:read --name bench-metrics)

start_server() { # extra arguments go to serve
  "$binary" serve --listen 127.0.0.1:0 "$@" >"$work/serve.out" 2>"$work/serve.log" &
  pids+=($!)
  server_pid=$!
  for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
  base=$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; }

clock_ticks=$(getconf CLK_TCK)
server_cpu() { awk '{print $14 + $15}' "/proc/$server_pid/stat"; }
# wrk's answered (2xx/3xx) req/s and the server's CPU microseconds per request; arguments go to wrk
# before the URL.
measure() {
  local before after
  before=$(server_cpu)
  wrk "$@" >"$work/wrk.out"
  after=$(server_cpu)
  awk -v ticks=$((after - before)) -v hz="$clock_ticks" '
    /requests in/ {n = $1; sub(/s,$/, "", $4); secs = $4 + 0} /Non-2xx or 3xx responses/ {refused = $5}
    END {printf "%.1f %.1f\n", (secs > 0 ? (n - refused) / secs : 0), (n > 0 ? ticks / hz / n * 1e6 : 0)}' "$work/wrk.out"
}
median() { printf '%s\n' "$@" | sort -n | sed -n 2p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", (b > 0 ? a / b : 0)}'; }
auth=(-H "Authorization: Bearer $token")

# (a) and (b): no rate limits, so that only the check itself is measured.
start_server --rate-limit-per-second 0 --anon-rate-limit-per-second 0
curl -s -o /dev/null "$base/ipfs/$small"
with=() without=() with_cpu=() without_cpu=()
for _ in 1 2 3; do
  read -r rps _ < <(measure -t2 -c64 -d5s "${auth[@]}" "$base/ipfs/$small"); with+=("$rps")
  read -r rps _ < <(measure -t2 -c64 -d5s "$base/ipfs/$small"); without+=("$rps")
  read -r _ cpu < <(measure -t1 -c8 -d5s "${auth[@]}" "$base/health"); with_cpu+=("$cpu")
  read -r _ cpu < <(measure -t1 -c8 -d5s "$base/health"); without_cpu+=("$cpu")
done
stop_server
a_with=$(median "${with[@]}")
a_without=$(median "${without[@]}")
b_with=$(median "${with_cpu[@]}")
b_without=$(median "${without_cpu[@]}")

# (c): the default anonymous limit; none for the token.
start_server --rate-limit-per-second 0
curl -s -o /dev/null "$base/ipfs/$small"
read -r alone _ < <(measure -t1 -c8 -d8s "${auth[@]}" "$base/ipfs/$small")
read -r _ refused_cpu < <(measure -t1 -c16 -d5s "$base/health")
wrk -t1 -c16 -d8s "$base/health" >"$work/flood.out" &
flood_pid=$!
pids+=("$flood_pid")
read -r flooded _ < <(measure -t1 -c8 -d8s "${auth[@]}" "$base/ipfs/$small")
wait "$flood_pid"
flood_total=$(awk '/requests in/ {print $1}' "$work/flood.out")
flood_refused=$(awk '/Non-2xx or 3xx responses/ {print $5}' "$work/flood.out")
flood_refused=${flood_refused:-0}
limited=$(curl -s -H "Authorization: Bearer $metrics_token" "$base/metrics" | awk '/^ipfs_stream_rate_limited_total/ {sum += $2} END {print sum + 0}')
stop_server

echo "(a) gateway, 1 MiB, 64 connections: $a_with req/s with a token, $a_without without (medians of 3), ratio $(ratio "$a_with" "$a_without") (goal >= 0.97)"
echo "(b) server CPU per /health request: $b_with us with a token, $b_without us without: the check costs $(awk -v a="$b_with" -v b="$b_without" 'BEGIN {printf "%.1f", a - b}') us"
echo "(c) flood: $flood_refused of $flood_total anonymous requests answered 429 ($limited counted in /metrics, with the 5 s probe before), $refused_cpu us of server CPU per request of a flood; the tokened client: $flooded answered req/s during the flood, $alone alone, ratio $(ratio "$flooded" "$alone") (goal >= 0.95)"
printf '{"rps_with_token":%s,"rps_public":%s,"cpu_us_with_token":%s,"cpu_us_without":%s,"flood_requests":%s,"flood_429":%s,"cpu_us_per_flood_request":%s,"tokened_rps_flooded":%s,"tokened_rps_alone":%s}\n' \
  "$a_with" "$a_without" "$b_with" "$b_without" "$flood_total" "$flood_refused" "$refused_cpu" "$flooded" "$alone"
