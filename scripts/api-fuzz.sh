#!/usr/bin/env bash
# Schemathesis (PyPI) against a running server: every operation of the served /openapi.json, with
# all its checks (status codes, content types, response schemas, undeclared methods, authentication,
# ...). The server runs with access control on and a fresh data directory; requests carry its admin
# token (Schemathesis checks that they are refused without it). scripts/api-fuzz/schemathesis.toml
# holds the few rules a schema cannot state; scripts/api-fuzz/hooks.py lets Schemathesis send SDP
# and CAR bodies. Prints Schemathesis's summary; exits non-zero when it finds a failure.
#
# usage: scripts/api-fuzz.sh [examples per operation, default 25] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
examples=${1:-25}
# Run as a module: a fresh pip install may not put `st` on the PATH (pyenv shims, --user).
# (A Python that its distribution manages refuses a plain install: then it goes beside its packages.)
if ! python3 -c "import schemathesis" 2>/dev/null; then
  python3 -m pip install -q "schemathesis==4.32.5" >&2 ||
    python3 -m pip install -q --break-system-packages "schemathesis==4.32.5" >&2
fi
cargo build --locked -q -p ipfs-stream >&2

work=$(mktemp -d "${TMPDIR:-/tmp}/api-fuzz.XXXXXX")
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
IPFS_STREAM_DATA_DIR="$work/repo" target/debug/ipfs-stream serve --listen 127.0.0.1:0 \
  --rate-limit-per-second 0 --anon-rate-limit-per-second 0 --session-rate-limit-per-minute 0 >"$work/serve.out" 2>"$work/serve.log" &
server_pid=$!
for _ in $(seq 200); do grep -q "listening on" "$work/serve.out" 2>/dev/null && break; sleep 0.05; done
base=$(sed -n 's/^listening on //p' "$work/serve.out" | head -1)
token=$(cat "$work/repo/admin.token")

# One worker: with two, Hypothesis parses lambda sources with `ast` from both threads at once, and
# CPython 3.11's AST builder shares its recursion counter between threads (python/cpython#106905),
# which now and then fails an operation with "AST constructor recursion depth mismatch".
SCHEMATHESIS_HOOKS=hooks PYTHONPATH=scripts/api-fuzz${PYTHONPATH:+:$PYTHONPATH} \
python3 -m schemathesis.cli --config-file scripts/api-fuzz/schemathesis.toml run "$base/openapi.json" --url "$base" -H "Authorization: Bearer $token" --checks all --max-examples "$examples" --workers 1 \
  --request-timeout 30 --continue-on-failure ${2:+--seed "$2"}
