#!/usr/bin/env bash
# Fuzzes every parser of outside input (cargo-fuzz, libFuzzer, the nightly toolchain), each target for
# the given seconds, and prints a table: execs, crashes, timeouts (> 1 s) and OOMs (> 512 MiB) per
# target. Corpora start from the fixtures (media files, CARs) and the seeds in tests/fuzz/seeds (SDP,
# WebSocket messages, multipart bodies), and grow under target/fuzz/corpus.
# A crash's input is kept under tests/fuzz/artifacts/<target>/: make it a regression test.
# Installs cargo-fuzz from crates.io when missing.
#
# FUZZ_SMOKE=N is the short run of the test suite: built without optimisation or sanitizer (a few
# minutes from scratch instead of a quarter of an hour; overflow checks on), N inputs per target
# from the seeds alone with libFuzzer's seed 1, so a run is the same on every machine; 10 s per input.
#
# usage: scripts/fuzz.sh [seconds per target, default 60] [target ...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(range_header cid unixfs_node car demux sdp_offer sdp_fragment ws_messages multipart config)

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked >&2
if [ -n "${FUZZ_SMOKE:-}" ]; then
  build=(--dev -s none)
  timeout=10
  budget=(-runs="$FUZZ_SMOKE" -seed=1)
else
  build=(-O)
  timeout=1
  budget=(-max_total_time="$seconds")
fi
cargo +nightly fuzz build --fuzz-dir tests/fuzz "${build[@]}" >&2

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

# AddressSanitizer keeps freed memory in quarantine (256 MiB by default) to catch use after free:
# a smaller one keeps the RSS limit about the target's own memory.
export ASAN_OPTIONS=${ASAN_OPTIONS:-quarantine_size_mb=32}
printf '%-14s %12s %8s %9s %6s\n' target execs crashes timeouts ooms
failed=0
for target in "${targets[@]}"; do
  corpus=target/fuzz/corpus/$target
  if [ -n "${FUZZ_SMOKE:-}" ]; then
    corpus=target/fuzz/smoke-corpus/$target
    rm -rf "$corpus"
  fi
  artifacts=tests/fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=target/fuzz/$target.log
  status=0
  # shellcheck disable=SC2046
  cargo +nightly fuzz run --fuzz-dir tests/fuzz "${build[@]}" "$target" "$corpus" $(seed_dirs "$target") -- \
    "${budget[@]}" -timeout="$timeout" -rss_limit_mb=512 -max_len=65536 -print_final_stats=1 \
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
