#!/usr/bin/env bash
# Kills the server with SIGKILL at random moments under concurrent uploads (HTTP, WebSocket, CAR),
# deletes, pins and garbage collections, and checks after each restart that nothing acknowledged was
# lost and nothing partial is visible (scripts/crash-test/crash_test.py says what is checked).
# Prints cycles run and violations; exits 1 on any violation.
#
# usage: scripts/crash-test.sh [cycles, default 200] [seed]
set -euo pipefail
cd "$(dirname "$0")/.."
cycles=${1:-200}
cargo build --locked -q -p ipfs-stream >&2
python3 scripts/crash-test/crash_test.py target/debug/ipfs-stream "$cycles" ${2:+"$2"}
