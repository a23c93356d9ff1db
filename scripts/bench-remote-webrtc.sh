#!/usr/bin/env bash
# WebRTC time to first frame in headless Chromium of media an edge has only through its gateway,
# cold (each clip played once, never fetched before), beside the same clips played from the server
# that stores them. The edge's upstream is that server behind a proxy adding DELAY_MS each way
# (scripts/bench-remote.py proxy). Five 20 s VP8 clips of ~1 Mbps, each encoded with its own grain
# so that no block is shared between them. Release build, loopback.
# Usage: scripts/bench-remote-webrtc.sh [delay ms, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
delay=${1:-20}
command -v ffmpeg >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null; }
[ -x /usr/bin/chromium ] || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }
[ -d tests/browser/node_modules ] || (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error)
cargo build --release --locked -p ipfs-stream --bin ipfs-stream >&2
binary=$PWD/target/release/ipfs-stream
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-remote-webrtc.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

cids=()
for seed in 0 1 2 3 4 5; do
  ffmpeg -hide_banner -loglevel error -f lavfi -i "testsrc2=size=640x360:rate=30" \
    -vf "noise=alls=10:allf=t:all_seed=$((seed + 1))" -t 20 -c:v libvpx -b:v 1M -minrate 1M -maxrate 1M -g 60 \
    -deadline realtime -cpu-used 8 "$work/clip$seed.webm"
  cids+=("$(IPFS_STREAM_DATA_DIR="$work/origin" "$binary" add -q "$work/clip$seed.webm")")
done

serve() { # $1 data dir, then options; prints the base URL
  "$binary" --data-dir "$1" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 \
    --session-rate-limit-per-minute 0 "${@:2}" >"$1.out" 2>/dev/null &
  pids+=($!)
  for _ in $(seq 100); do grep -q "listening on" "$1.out" 2>/dev/null && break; sleep 0.05; done
  sed -n 's/^listening on //p' "$1.out" | head -1
}
origin=$(serve "$work/origin")
python3 scripts/bench-remote.py proxy "${origin##*:}" "$delay" >"$work/proxy.port" &
pids+=($!)
for _ in $(seq 100); do [ -s "$work/proxy.port" ] && break; sleep 0.05; done
edge=$(serve "$work/edge" --gateway "http://127.0.0.1:$(cat "$work/proxy.port")")

played=$(IFS=,; echo "${cids[*]:1}")
echo "{\"clips\": 5, \"delay_ms_each_way\": $delay}"
node tests/browser/first-frame-cold.mjs "$origin" "${cids[0]}" "local=$origin=$played" "remote_cold=$edge=$played" \
  "remote_warm=$edge=$played"
