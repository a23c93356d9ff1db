#!/usr/bin/env bash
# Lints what GET /metrics serves with Prometheus's own `promtool check metrics`, after some traffic.
# promtool comes from Debian's prometheus package, unpacked (the service is never installed or run).
#
# usage: scripts/check-metrics.sh [ipfs-stream binary, default target/debug/ipfs-stream]
set -euo pipefail
cd "$(dirname "$0")/.."
binary=${1:-target/debug/ipfs-stream}
work=$(mktemp -d "${TMPDIR:-/tmp}/check-metrics.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

promtool=$(command -v promtool || true)
if [ -z "$promtool" ]; then
  (cd "$work" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; })
  dpkg-deb -x "$work"/prometheus_*.deb "$work/prometheus"
  promtool="$work/prometheus/usr/bin/promtool"
fi

IPFS_STREAM_DATA_DIR="$work/repo" "$binary" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 --session-rate-limit-per-minute 0 >"$work/serve.out" 2>/dev/null &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)

cid=$(curl -sf -X POST --data-binary "metrics check" "$base/api/v1/content" | sed 's/.*"cid":"\([^"]*\)".*/\1/')
curl -sf -o /dev/null "$base/ipfs/$cid"
curl -s -o /dev/null "$base/ipfs/not-a-cid" || true
curl -sf "$base/metrics" >"$work/metrics.txt"
if "$promtool" check metrics <"$work/metrics.txt"; then
  echo "promtool: 1 passed, 0 failed"
else
  echo "promtool: 0 passed, 1 failed"
  exit 1
fi
