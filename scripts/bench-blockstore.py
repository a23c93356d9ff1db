#!/usr/bin/env python3
"""Blocks on disk or in SQLite? Writes N blocks of 256 KiB both ways (files staged then renamed, as
the embedded store does; SQLite BLOBs in WAL mode, one transaction), reads them back in random order,
and prints throughputs. usage: scripts/bench-blockstore.py [blocks, default 4096]"""
import hashlib, os, random, sqlite3, sys, tempfile, time

count = int(sys.argv[1]) if len(sys.argv) > 1 else 4096
size = 256 * 1024
blocks = [os.urandom(size) for _ in range(64)]  # reused payloads; keys stay distinct
keys = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(count)]
mib = count * size / 2**20
order = list(range(count))
random.seed(1)
random.shuffle(order)

def files(root):
    os.makedirs(f"{root}/staging"); os.makedirs(f"{root}/blocks")
    t = time.perf_counter()
    for i, key in enumerate(keys):
        with open(f"{root}/staging/{key}", "wb") as f:
            f.write(blocks[i % 64])
    for key in keys:
        shard = f"{root}/blocks/{key[-3:-1]}"
        os.makedirs(shard, exist_ok=True)
        os.rename(f"{root}/staging/{key}", f"{shard}/{key}")
    write = time.perf_counter() - t
    t = time.perf_counter()
    for i in order:
        with open(f"{root}/blocks/{keys[i][-3:-1]}/{keys[i]}", "rb") as f:
            f.read()
    return write, time.perf_counter() - t

def database(root):
    db = sqlite3.connect(f"{root}/blocks.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL"); db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE blocks (key TEXT PRIMARY KEY, data BLOB NOT NULL)")
    t = time.perf_counter()
    db.execute("BEGIN")
    for i, key in enumerate(keys):
        db.execute("INSERT INTO blocks VALUES (?, ?)", (key, blocks[i % 64]))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    write = time.perf_counter() - t
    t = time.perf_counter()
    for i in order:
        db.execute("SELECT data FROM blocks WHERE key = ?", (keys[i],)).fetchone()
    return write, time.perf_counter() - t

for name, run in (("files", files), ("sqlite", database)):
    with tempfile.TemporaryDirectory() as root:
        write, read = run(root)
        print(f"{name:6}: write {mib / write:7.0f} MiB/s   random read {mib / read:7.0f} MiB/s   ({count} x 256 KiB)")
