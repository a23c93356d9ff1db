#!/usr/bin/env bash
# Installs what the tests need (scripts/setup-tests.sh), then runs every test: the Rust workspace (unit, persistence, end-to-end, NAB scoring), `promtool check
# metrics` on /metrics, the Kubo RPC subset driven by the kubo-rpc-client npm package, CID parity
# with the reference JavaScript UnixFS importer, the dashboard (of one instance, and of two on one
# PostgreSQL), the home page and the WebRTC player in headless Chromium (and its repairs over RTX through
# a lossy link), the AsyncAPI document
# through the AsyncAPI parser,
# a short crash test, a bounded Schemathesis run against the OpenAPI document and a short run of every
# fuzz target.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup-tests.sh
cargo test --workspace --locked

for dir in scripts/importer-parity scripts/kubo-client scripts/asyncapi tests/browser; do
  if [ ! -d "$dir/node_modules" ]; then
    (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
scripts/check-metrics.sh target/debug/ipfs-stream
node scripts/kubo-client/client.mjs target/debug/ipfs-stream
node scripts/importer-parity/parity.mjs target/debug/ipfs-stream "${PARITY_CASES:-24}"
node scripts/asyncapi/validate.mjs openapi/asyncapi.json
node tests/browser/home.mjs target/debug/ipfs-stream
node tests/browser/dashboard.mjs target/debug/ipfs-stream
node tests/browser/player.mjs target/debug/ipfs-stream
# Chromium through a link losing 5% of the media: RTX negotiated and used (the relay is an example).
cargo build --locked -p ipfs-stream --example impaired_relay
node tests/browser/rtx.mjs target/debug/ipfs-stream
# Two instances on one PostgreSQL: the dashboard charts another instance, or the whole service.
node tests/browser/cluster-dashboard.mjs target/debug/ipfs-stream
# A short crash test: SIGKILL under concurrent uploads, nothing acknowledged lost (200 cycles: scripts/crash-test.sh).
python3 scripts/crash-test/crash_test.py target/debug/ipfs-stream "${CRASH_CYCLES:-15}"
# Schemathesis against /openapi.json, 25 examples per operation, a fixed seed (any seed: scripts/api-fuzz.sh).
scripts/api-fuzz.sh 25 1
# Every fuzz target on 3000 inputs from its seeds, built without optimisation (long runs:
# scripts/fuzz.sh). libFuzzer needs the nightly toolchain; a machine without one says so and goes on.
toolchains=$(rustup toolchain list 2>/dev/null || true)
if grep -q '^nightly' <<<"$toolchains"; then
  FUZZ_SMOKE=3000 scripts/fuzz.sh
else
  echo "no nightly toolchain: the short fuzz run is skipped (scripts/fuzz.sh needs one)" >&2
fi
