#!/usr/bin/env bash
# Gateway throughput beside nginx serving the same bytes as plain files, in one run:
#  (a) one 1 GiB GET with curl, MiB/s;  (b) 64 connections fetching a 1 MiB object for 10 s (wrk),
#  req/s;  (c) 1000 random 64 KiB ranges of the 1 GiB object, p50/p99 latency;  (d) peak RSS of
#  ipfs-stream over (a)-(c). Installs nginx, wrk and curl from Debian when missing.
#
# usage: [IPFS_STREAM_BINARY=path] scripts/bench-gateway.sh [size of the large object in MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}

need=()
for tool in nginx wrk curl; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# IPFS_STREAM_BINARY runs another build (to compare two builds on the same machine).
if [ -z "${IPFS_STREAM_BINARY:-}" ]; then
  cargo build --release --locked -p ipfs-stream >&2
fi
binary=${IPFS_STREAM_BINARY:-$PWD/target/release/ipfs-stream}
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-gateway.XXXXXX")
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/www" "$work/nginx/logs"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$work/www/large.bin"
head -c $((1024 * 1024)) /dev/urandom >"$work/www/small.bin"
chmod 755 "$work" "$work/www" && chmod 644 "$work/www"/* # nginx's workers run as another user
export IPFS_STREAM_DATA_DIR="$work/repo"
large=$("$binary" add -q "$work/www/large.bin")
small=$("$binary" add -q "$work/www/small.bin")

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
ours_port=$(free_port)
nginx_port=$(free_port)

"$binary" serve --listen "127.0.0.1:$ours_port" --auth off --anon-rate-limit-per-second 0 --session-rate-limit-per-minute 0 >"$work/serve.out" 2>"$work/serve.log" &
ours_pid=$!
pids+=("$ours_pid")

cat >"$work/nginx/nginx.conf" <<CONF
worker_processes 2;
daemon off;
pid $work/nginx/nginx.pid;
error_log $work/nginx/logs/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $work/nginx/body;
  proxy_temp_path $work/nginx/proxy;
  fastcgi_temp_path $work/nginx/fastcgi;
  uwsgi_temp_path $work/nginx/uwsgi;
  scgi_temp_path $work/nginx/scgi;
  server { listen 127.0.0.1:$nginx_port; root $work/www; }
}
CONF
nginx -c "$work/nginx/nginx.conf" -p "$work/nginx" &
pids+=($!)

for port in "$ours_port" "$nginx_port"; do
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.1; done
done
ours="http://127.0.0.1:$ours_port/ipfs"
theirs="http://127.0.0.1:$nginx_port"
cat "$work/www/large.bin" "$work/repo/blocks"/*/* >/dev/null 2>&1 || true # both from the page cache

mib_s() { curl -s -o /dev/null -w '%{speed_download}' "$1" | awk '{printf "%.1f", $1 / 1048576}'; }
a_ours=$(mib_s "$ours/$large")
a_nginx=$(mib_s "$theirs/large.bin")

rps() { wrk -t2 -c64 -d10s "$1" | awk '/Requests\/sec/ {print $2}'; }
b_ours=$(rps "$ours/$small")
b_nginx=$(rps "$theirs/small.bin")

ranges() { # p50 and p99 in ms of 1000 random 64 KiB ranges over one keep-alive connection
  python3 - "$1" "$2" "$((size_mib * 1024 * 1024))" <<'PY'
import http.client, random, sys, time
port, path, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
random.seed(7)
conn = http.client.HTTPConnection("127.0.0.1", port)
times = []
for _ in range(1000):
    start = random.randrange(0, size - 65536)
    t = time.perf_counter()
    conn.request("GET", path, headers={"Range": f"bytes={start}-{start + 65535}"})
    response = conn.getresponse()
    body = response.read()
    times.append((time.perf_counter() - t) * 1000)
    assert response.status == 206 and len(body) == 65536, response.status
times.sort()
print(f"{times[499]:.2f} {times[989]:.2f}")
PY
}
read -r c_ours_p50 c_ours_p99 < <(ranges "$ours_port" "/ipfs/$large")
read -r c_nginx_p50 c_nginx_p99 < <(ranges "$nginx_port" "/large.bin")
rss_mib=$(awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$ours_pid/status")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
echo "(a) 1 GiB GET:         ipfs-stream $a_ours MiB/s, nginx $a_nginx MiB/s, ratio $(ratio "$a_ours" "$a_nginx") (goal >= 0.9)"
echo "(b) 64 clients, 1 MiB: ipfs-stream $b_ours req/s, nginx $b_nginx req/s, ratio $(ratio "$b_ours" "$b_nginx") (goal >= 0.7)"
echo "(c) 64 KiB ranges:     ipfs-stream p50 $c_ours_p50 ms p99 $c_ours_p99 ms, nginx p50 $c_nginx_p50 ms p99 $c_nginx_p99 ms"
echo "(d) peak RSS:          ipfs-stream $rss_mib MiB (goal < 128)"
printf '{"get_mib_s":%s,"nginx_get_mib_s":%s,"rps":%s,"nginx_rps":%s,"range_p50_ms":%s,"range_p99_ms":%s,"nginx_range_p50_ms":%s,"nginx_range_p99_ms":%s,"peak_rss_mib":%s}\n' \
  "$a_ours" "$a_nginx" "$b_ours" "$b_nginx" "$c_ours_p50" "$c_ours_p99" "$c_nginx_p50" "$c_nginx_p99" "$rss_mib"
