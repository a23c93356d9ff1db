#!/usr/bin/env bash
# Playback under bad conditions, as a viewer in headless Chromium sees it (its own getStats
# counters), against the release build on loopback, every playback over WHEP through the impaired
# link (the impaired_relay example: user-space loss, delay, jitter, a capped queue):
#  (a) loss: clean, 5% and 15% random loss and bursty loss (5% in bursts of 5 packets), at a 50 ms
#      round trip, each with no repair, with plain resends and with RTX;
#  (b) store stalls: reads delayed by 0-200 ms of jitter with a 2 s stall once a minute, for buffers
#      of 1, 10, 30 and 60 frames held fixed, and the adaptive buffer (from 30);
#  (c) bandwidth: `auto` over renditions of 300 / 800 / 1500 kbit/s with the link capped at
#      600 kbit/s, then the cap lifted;
#  (d) on-demand loading: bytes read from the store for a viewer who leaves after 10 s of a 10-minute
#      file, progressive against whole-file, and bytes fetched from upstream for the same viewer on an
#      edge that has the file only through its gateway;
#  (e) time to first frame of a 1 GiB file, progressive against whole-file (tests/browser/first-frame.mjs).
# Prints each case as a JSON line, then one table with the goals beside the figures.
# Usage: scripts/bench-playback.sh [parts, default "loss stalls cap ondemand ttff"] [seconds per loss case, default 30]
set -euo pipefail
cd "$(dirname "$0")/.."
parts=${1:-"loss stalls cap ondemand ttff"}
loss_seconds=${2:-30}
command -v ffmpeg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
[ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release --locked -p ipfs-stream --bin ipfs-stream --example impaired_relay >&2
binary=$PWD/target/release/ipfs-stream
relay=$PWD/target/release/examples/impaired_relay
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-playback.XXXXXX")
results=$work/results.jsonl
server_pid=
cleanup() {
  local status=$?
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$edge_pid" ] && kill "$edge_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  # A failed run shows the end of the server's log (RUST_LOG sets how much it says).
  if [ "$status" -ne 0 ] && [ -f "$work/serve.log" ]; then
    echo "--- the server's log, last 40 lines:" >&2
    tail -n 40 "$work/serve.log" >&2
  fi
  rm -rf "$work"
}
trap cleanup EXIT
export IPFS_STREAM_DATA_DIR="$work/repo"
quiet=(-hide_banner -loglevel error -y)
# 640x360 at 30 fps with grain (so the encoder keeps to its rate), a keyframe every 2 s.
source_video=(-f lavfi -i "testsrc2=size=640x360:rate=30" -vf "noise=alls=10:allf=t")
encode() { # $1 seconds, $2 kbit/s, $3 output
  ffmpeg "${quiet[@]}" "${source_video[@]}" -t "$1" -c:v libvpx -b:v "$2k" -minrate "$2k" -maxrate "$2k" \
    -g 60 -keyint_min 60 -deadline realtime -cpu-used 8 "$3"
}

# listening_on <stdout file>: the base URL a server just started prints there, once it has.
listening_on() {
  for _ in $(seq 100); do grep -q "listening on" "$1" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^listening on //p' "$1" | head -1
}
start_server() {
  "$binary" serve --listen 127.0.0.1:0 --auth off --allow-fault-injection --anon-rate-limit-per-second 0 \
    --session-rate-limit-per-minute 0 >"$work/serve.out" 2>"$work/serve.log" &
  server_pid=$!
  base=$(listening_on "$work/serve.out")
}
stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }
add() { "$binary" add -q "$1"; }
# counter <server> <name>: a counter of the server's, summed over its labels.
counter() { curl -s "$1/metrics" | awk -v name="ipfs_stream_$2" '$1 == name || index($1, name "{") == 1 {sum += $2} END {printf "%d", sum}'; }
# start_edge <gateway>: a second server with an empty store of its own, fetching from <gateway>.
edge_pid=
start_edge() {
  "$binary" --data-dir "$work/edge" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 \
    --session-rate-limit-per-minute 0 --gateway "$1" >"$work/edge.out" 2>"$work/edge.log" &
  edge_pid=$!
  edge=$(listening_on "$work/edge.out")
}
stop_edge() { kill "$edge_pid"; wait "$edge_pid" 2>/dev/null || true; edge_pid=; rm -rf "$work/edge"; }
# ondemand_row <bad-network.mjs line> <where the bytes came from: store|upstream> <bytes> <file bytes>
ondemand_row() {
  echo "$1" | python3 -c "
import json, sys
d = json.loads(sys.stdin.read())
d.update(file_bytes=$4, read_from='$2', bytes_read=$3)
print(json.dumps(d))" | tee -a "$results"
}
bad_network() { (cd tests/browser && node bad-network.mjs "$1" "$base" "$relay" "${@:2}") | tee -a "$results"; }

for part in $parts; do
  case $part in
    loss)
      [ -f "$work/loss.webm" ] || encode 40 1000 "$work/loss.webm"
      cid=$(add "$work/loss.webm")
      start_server
      bad_network loss "$cid" "$loss_seconds"
      stop_server
      ;;
    stalls)
      [ -f "$work/stalls.webm" ] || encode 70 1000 "$work/stalls.webm"
      cid=$(add "$work/stalls.webm")
      start_server
      for size in 1 10 30 60 adaptive; do
        # A fresh fault for each playback, so each meets its stall at the same point (58-60 s).
        curl -sf -X POST "$base/api/v1/faults" -H 'Content-Type: application/json' \
          -d '{"store_latency_ms": 0, "store_jitter_ms": 200, "stall_every_s": 60, "stall_ms": 2000, "duration_s": 600}' >/dev/null
        bad_network stalls "$cid" 66 "$size"
      done
      curl -sf -X DELETE "$base/api/v1/faults" >/dev/null
      stop_server
      ;;
    cap)
      for rate in 300 800 1500; do [ -f "$work/r$rate.webm" ] || encode 90 "$rate" "$work/r$rate.webm"; done
      low=$(add "$work/r300.webm"); medium=$(add "$work/r800.webm"); high=$(add "$work/r1500.webm")
      start_server
      bad_network cap "$low" "$medium" "$high" 45 40
      stop_server
      ;;
    ondemand)
      [ -f "$work/ten-minutes.webm" ] || encode 600 1000 "$work/ten-minutes.webm"
      cid=$(add "$work/ten-minutes.webm")
      size=$(stat -c %s "$work/ten-minutes.webm")
      for progressive in true false; do
        # A fresh server for each: nothing of the file in its block cache.
        start_server
        before=$(counter "$base" store_read_bytes_total)
        line=$(cd tests/browser && node bad-network.mjs ondemand "$base" "$relay" "$cid" 10 "$progressive")
        after=$(counter "$base" store_read_bytes_total)
        ondemand_row "$line" store "$((after - before))" "$size"
        # The same viewer on an edge that has the file only through its gateway (this server),
        # with an empty store of its own: what it fetches from upstream.
        start_edge "$base"
        line=$(cd tests/browser && node bad-network.mjs ondemand "$edge" "$relay" "$cid" 10 "$progressive")
        ondemand_row "$line" upstream "$(counter "$edge" upstream_bytes_total)" "$size"
        stop_edge
        stop_server
      done
      ;;
    ttff)
      [ -f "$work/clip.webm" ] || encode 20 1000 "$work/clip.webm"
      clip_bytes=$(stat -c %s "$work/clip.webm")
      loops=$(( (1024 * 1024 * 1024 + clip_bytes - 1) / clip_bytes - 1 ))
      ffmpeg "${quiet[@]}" -stream_loop "$loops" -i "$work/clip.webm" -c copy "$work/big.webm"
      big=$(add "$work/big.webm")
      rm -f "$work/big.webm"
      start_server
      node tests/browser/first-frame.mjs "$base" "1GiB=$big" | sed 's/^{/{"part": "ttff", /' | tee -a "$results"
      stop_server
      ;;
    *) echo "unknown part: $part" >&2; exit 2 ;;
  esac
done

python3 scripts/playback-table.py "$results"
