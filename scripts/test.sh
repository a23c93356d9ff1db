#!/usr/bin/env bash
# Runs every test: the Rust workspace (unit, persistence, end-to-end), then the importer parity
# check against the reference JavaScript UnixFS importer.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --locked

if [ ! -d scripts/importer-parity/node_modules ]; then
  (cd scripts/importer-parity && npm ci --no-audit --no-fund --loglevel=error)
fi
node scripts/importer-parity/parity.mjs target/debug/ipfs-stream "${PARITY_CASES:-24}"
