#!/usr/bin/env bash
# Fuzzes every parser of outside input (cargo-fuzz, libFuzzer, the nightly toolchain), each target for
# the given seconds, and prints a table: execs, crashes, timeouts (> 1 s) and OOMs (> 512 MiB) per
# target. Corpora start from the fixtures (media files, CARs) and the seeds in tests/fuzz/seeds (SDP,
# WebSocket messages, multipart bodies), and grow under target/fuzz/corpus.
# A crash's input is kept under tests/fuzz/artifacts/<target>/: make it a regression test.
# Installs cargo-fuzz from crates.io when missing.
#
# usage: scripts/fuzz.sh [seconds per target, default 60] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(range_header cid unixfs_node car demux sdp_offer sdp_fragment ws_messages multipart config)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked >&2
cargo +nightly fuzz build --fuzz-dir tests/fuzz -O >&2

seeds=target/fuzz/seeds
mkdir -p "$seeds/cid" "$seeds/range_header"
printf 'QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o' >"$seeds/cid/v0"
printf 'bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4' >"$seeds/cid/v1"
printf 'bafybeihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku' >"$seeds/cid/dir"
printf '\x00\x00\x10\x00\x00\x00\x00\x00bytes=0-1023,2048-' >"$seeds/range_header/two"
printf '\xff\xff\x00\x00\x00\x00\x00\x00bytes=-500' >"$seeds/range_header/suffix"
seed_dirs() {
  case "$1" in
    cid | range_header) echo "$seeds/$1" ;;
    car | unixfs_node) echo tests/fixtures/gateway-conformance ;;
    demux) echo tests/fixtures/media ;;
    *) echo "tests/fuzz/seeds/$1" ;;
  esac
}

printf '%-14s %12s %8s %9s %6s\n' target execs crashes timeouts ooms
failed=0
for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  artifacts=tests/fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=target/fuzz/$target.log
  status=0
  # shellcheck disable=SC2046
  cargo +nightly fuzz run --fuzz-dir tests/fuzz -O "$target" "$corpus" $(seed_dirs "$target") -- \
    -max_total_time="$seconds" -timeout=1 -rss_limit_mb=512 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" >"$log" 2>&1 || status=$?
  execs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log" | tail -1)
  crashes=$(grep -c -E 'ERROR: libFuzzer: deadly signal|ERROR: AddressSanitizer|panicked at' "$log" || true)
  timeouts=$(grep -c 'ERROR: libFuzzer: timeout' "$log" || true)
  ooms=$(grep -c 'ERROR: libFuzzer: out-of-memory' "$log" || true)
  printf '%-14s %12s %8s %9s %6s\n' "$target" "${execs:-0}" "$crashes" "$timeouts" "$ooms"
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ] || [ "$timeouts" -gt 0 ] || [ "$ooms" -gt 0 ]; then
    failed=1
    echo "  see $log and $artifacts" >&2
  fi
done
exit $failed
