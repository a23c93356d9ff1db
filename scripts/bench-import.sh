#!/usr/bin/env bash
# Import throughput and memory: `ipfs-stream add` (release build) against `openssl dgst -sha256` over
# the same random file, in the same run. Prints both throughputs, their ratio and the add's peak RSS.
# Two more references separate our pipeline from the filesystem: `cp` of the same file into the data
# dir's filesystem followed by `sync` (the cost of writing those bytes durably at all: an add syncs
# its blocks before it answers), and the same add into a tmpfs data dir (/dev/shm, when there is one).
#
# usage: scripts/bench-import.sh [size in MiB, default 1024]
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib=${1:-1024}
command -v /usr/bin/time >/dev/null || { echo "needs GNU time (apt-get install time)" >&2; exit 1; }

cargo build --release --locked -p ipfs-stream >&2
binary=target/release/ipfs-stream
work=$(mktemp -d "${TMPDIR:-/tmp}/bench-import.XXXXXX")
trap 'rm -rf "$work"' EXIT
input="$work/input.bin"
head -c "$((size_mib * 1024 * 1024))" /dev/urandom >"$input"
bytes=$(stat -c %s "$input")

seconds() { # runs a command, prints wall seconds; GNU time's report goes to $work/time
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
  cut -d' ' -f1 "$work/time"
}

cat "$input" >/dev/null # both runs read from the page cache
openssl_s=$(seconds openssl dgst -sha256 "$input")
sync
cp_s=$(seconds sh -c 'cp "$1" "$2" && sync' cp-sync "$input" "$work/copy.bin")
rm -f "$work/copy.bin"
sync
add_s=$(seconds env IPFS_STREAM_DATA_DIR="$work/repo" "$binary" add -q "$input")
add_rss_kib=$(cut -d' ' -f2 "$work/time")
rm -rf "$work/repo"
tmpfs_s=0
if [ -d /dev/shm ] && [ -w /dev/shm ]; then
  shm=$(mktemp -d /dev/shm/bench-import.XXXXXX)
  tmpfs_s=$(seconds env IPFS_STREAM_DATA_DIR="$shm" "$binary" add -q "$input")
  rm -rf "$shm"
fi

python3 - "$bytes" "$openssl_s" "$add_s" "$add_rss_kib" "$cp_s" "$tmpfs_s" <<'PY'
import json, sys
size, openssl_s, add_s, rss_kib = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
cp_s, tmpfs_s = float(sys.argv[5]), float(sys.argv[6])
mib = size / 2**20
openssl = mib / max(openssl_s, 1e-3)
add = mib / max(add_s, 1e-3)
print(f"file: {mib:.0f} MiB")
print(f"openssl dgst -sha256: {openssl:8.1f} MiB/s ({openssl_s:.2f} s)")
print(f"ipfs-stream add:      {add:8.1f} MiB/s ({add_s:.2f} s)")
print(f"ratio add/sha256:     {add / openssl:8.2f} (goal >= 0.70)")
print(f"add peak RSS:         {rss_kib / 1024:8.1f} MiB (goal < 64)")
cp = mib / max(cp_s, 1e-3)
print(f"cp + sync:            {cp:8.1f} MiB/s ({cp_s:.2f} s)  <- writing the bytes durably at all")
print(f"ratio add/(cp+sync):  {add / cp:8.2f} (goal >= 0.8)")
figures = {"bytes": size, "openssl_mib_s": round(openssl, 1), "add_mib_s": round(add, 1),
           "ratio": round(add / openssl, 3), "add_peak_rss_mib": round(rss_kib / 1024, 1),
           "cp_sync_mib_s": round(cp, 1), "ratio_add_cp_sync": round(add / cp, 3)}
if tmpfs_s > 0:
    tmpfs = mib / tmpfs_s
    print(f"add into tmpfs:       {tmpfs:8.1f} MiB/s ({tmpfs_s:.2f} s), ratio to sha256 {tmpfs / openssl:.2f}")
    figures["add_tmpfs_mib_s"] = round(tmpfs, 1)
    figures["tmpfs_ratio"] = round(tmpfs / openssl, 3)
print(json.dumps(figures))
PY
