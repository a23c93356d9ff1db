#!/usr/bin/env bash
# Figures of several instances on one PostgreSQL, against the release build, on a PostgreSQL
# server this script starts (Debian's `postgresql` package) in a temp dir:
#  (a) one instance, SQLite vs PostgreSQL: gateway req/s on a 4 KiB object (each request writes a
#      stream record) and the stream records written per second meanwhile;
#  (b) one instance, SQLite vs PostgreSQL: notification fan-out, 1000 subscribers, 1000 events/s
#      for 10 s (delivered, p50 / p99);
#  (c) two instances on PostgreSQL: 100 subscribers on B, 500 events/s for 10 s published on A
#      (delivered, p50 / p99 publish-to-delivery across instances);
#  (d) gateway req/s through nginx in front of two instances vs in front of one (64 connections,
#      wrk); on 2 cores no gain is expected: this measures that nothing breaks and what it costs.
#
# usage: scripts/bench-cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in wrk curl nginx; do command -v "$tool" >/dev/null || need+=("$tool"); done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build --release --locked -p ipfs-stream --bin ipfs-stream --example stream_load >&2
binary=$PWD/target/release/ipfs-stream
load=$PWD/target/release/examples/stream_load
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-cluster.XXXXXX")
chmod 755 "$work"
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# PostgreSQL of our own; initdb refuses root, so root runs it as the package's postgres user.
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
mkdir "$work/pg"
[ "$(id -u)" = 0 ] && chown postgres "$work/pg"
as_pg "$pg_bin/initdb" -A trust -U postgres -E UTF8 -D "$work/pg/data" >/dev/null
pg_port=$(free_port)
as_pg "$pg_bin/postgres" -D "$work/pg/data" -p "$pg_port" -c listen_addresses=127.0.0.1 \
  -c unix_socket_directories="$work/pg" -c max_connections=200 >"$work/pg.log" 2>&1 &
pids+=($!)
for _ in $(seq 200); do as_pg "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$pg_port" && break; sleep 0.05; done
new_database() { # NAME; prints the URL of a new empty database
  as_pg "$pg_bin/psql" -q -h 127.0.0.1 -p "$pg_port" -U postgres -c "CREATE DATABASE $1" >/dev/null
  echo "postgres://postgres@127.0.0.1:$pg_port/$1"
}

head -c 4096 /dev/urandom >"$work/tiny.bin"

start_server() { # NAME DATA_DIR [serve options...]; sets base_NAME and pid_NAME
  local name=$1 dir=$2
  shift 2
  IPFS_STREAM_DATA_DIR=$dir "$binary" serve --listen 127.0.0.1:0 --auth off --anon-rate-limit-per-second 0 \
    --session-rate-limit-per-minute 0 --max-connections-per-ip 0 --instance-name "$name" "$@" >"$work/$name.out" 2>"$work/$name.log" &
  pids+=($!)
  declare -g "pid_$name=$!"
  for _ in $(seq 200); do grep -q "listening on" "$work/$name.out" 2>/dev/null && break; sleep 0.05; done
  declare -g "base_$name=$(sed -n 's/^listening on //p' "$work/$name.out" | head -1)"
}
stop_server() { local pid="pid_$1"; kill "${!pid}"; wait "${!pid}" 2>/dev/null || true; }
rps() { wrk -t2 -c64 -d"${2:-5}"s "$1" | awk '/Requests\/sec/ {print $2}'; }
records_on_sqlite() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute('select count(*) from stream_records').fetchone()[0])" "$1/ipfs-stream.db"; }
records_on_pg() { as_pg "$pg_bin/psql" -qtA -h 127.0.0.1 -p "$pg_port" -U postgres -d "${1##*/}" -c 'select count(*) from stream_records'; }

# (a) and (b): one instance on each database.
for engine in sqlite postgres; do
  dir="$work/$engine"
  options=()
  if [ "$engine" = postgres ]; then
    url=$(new_database one_instance)
    options=(--database-url "$url")
  fi
  cid=$(IPFS_STREAM_DATA_DIR=$dir "$binary" ${options[@]+"${options[@]}"} add -q "$work/tiny.bin")
  start_server "$engine" "$dir" ${options[@]+"${options[@]}"}
  base="base_$engine"
  before=$([ "$engine" = sqlite ] && records_on_sqlite "$dir" || records_on_pg "$url")
  started=$(date +%s.%N)
  requests=$(rps "${!base}/ipfs/$cid" 10)
  sleep 2 # the last batch of records is written within a second
  after=$([ "$engine" = sqlite ] && records_on_sqlite "$dir" || records_on_pg "$url")
  elapsed=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  written=$(awk -v a="$before" -v b="$after" -v t="$elapsed" 'BEGIN {printf "%.0f", (b - a) / t}')
  read -r delivered expected p50 p99 rate _reads < <("$load" notify "${!base}" 1000 1000 10)
  declare "rps_$engine=$requests" "records_$engine=$written" "fan_$engine=$delivered of $expected delivered, p50 $p50 ms, p99 $p99 ms (published at $rate/s)"
  stop_server "$engine"
done
echo "(a) gateway 4 KiB, one instance: SQLite $rps_sqlite req/s ($records_sqlite stream records/s written over the run), PostgreSQL $rps_postgres req/s ($records_postgres records/s)"
echo "(b) notification fan-out, 1000 subscribers x 1000 events/s: SQLite $fan_sqlite; PostgreSQL $fan_postgres"

# (c) and (d): two instances on one database; B fetches what it lacks from A.
url=$(new_database two_instances)
cid=$(IPFS_STREAM_DATA_DIR="$work/a" "$binary" --database-url "$url" add -q "$work/tiny.bin")
start_server a "$work/a" --database-url "$url"
start_server b "$work/b" --database-url "$url" --peer "$base_a"
read -r delivered expected p50 p99 rate _reads < <("$load" notify "$base_b" 100 500 10 "$base_a")
echo "(c) across instances, 100 subscribers on B x 500 events/s published on A: $delivered of $expected delivered, p50 $p50 ms, p99 $p99 ms (published at $rate/s)"

curl -sf -o /dev/null "$base_b/ipfs/$cid" # B keeps the block from A
nginx_conf() { # the upstream servers, as host:port lines
  cat <<EOF
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $work/nginx-body;
  proxy_temp_path $work/nginx-proxy;
  upstream ipfs_stream {
$(for server in "$@"; do echo "    server $server;"; done)
    keepalive 64;
  }
  server {
    listen 127.0.0.1:$nginx_port;
    location / {
      proxy_pass http://ipfs_stream;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
EOF
}
through_nginx() { # host:port of each instance; prints req/s
  nginx_port=$(free_port)
  nginx_conf "$@" >"$work/nginx.conf"
  nginx -c "$work/nginx.conf" -p "$work" -g 'daemon off;' &
  local nginx_pid=$!
  pids+=("$nginx_pid")
  for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$nginx_port/ipfs/$cid" && break; sleep 0.05; done
  rps "http://127.0.0.1:$nginx_port/ipfs/$cid" 10
  kill "$nginx_pid"
  wait "$nginx_pid" 2>/dev/null || true
}
one=$(through_nginx "${base_a#http://}")
two=$(through_nginx "${base_a#http://}" "${base_b#http://}")
echo "(d) gateway 4 KiB through nginx: one instance $one req/s, two instances $two req/s (ratio $(awk -v a="$two" -v b="$one" 'BEGIN {printf "%.2f", a / b}'))"
