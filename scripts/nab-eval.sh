#!/usr/bin/env bash
# Scores ipfs-stream's anomaly detectors on the Numenta Anomaly Benchmark (corpus, labels and the
# published results in tests/fixtures/nab, MIT). One JSON line per detector of ours:
#   {"detector", "standard", "reward_low_FP_rate", "reward_low_FN_rate", "cpu_ns_per_sample"}
# then one line per published detector (`"published": true`) for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run --quiet --release --locked -p ipfs-stream-model --example nab_eval -- tests/fixtures/nab
