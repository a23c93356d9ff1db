"""Crash consistency of ipfs-stream under SIGKILL.

Each cycle starts the server on one data directory, runs concurrent HTTP, WebSocket and CAR uploads,
deletes, pins and garbage collections, kills the server with SIGKILL at a random moment, and checks
what the next start finds:

- every CID acknowledged before the kill (201, a WebSocket `result`, a CAR import's roots), pinned and
  not deleted since, reads back whole through the gateway (which verifies every block);
- every content record reads back whole (no record points at missing blocks, no partial root);
- `PRAGMA integrity_check` is ok and `ipfs-stream repo verify` finds no corrupted block;
- the staging directory is empty once the server is up again.

A kill shows crash consistency of the process, not power-loss durability: the page cache survives it.

usage: crash_test.py BINARY CYCLES [SEED]
"""

import base64
import http.client
import hashlib
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request

binary, cycles = sys.argv[1], int(sys.argv[2])
seed = int(sys.argv[3]) if len(sys.argv) > 3 else random.randrange(1 << 32)
rng = random.Random(seed)
data_dir = tempfile.mkdtemp(prefix="crash-test-")
env = {**os.environ, "IPFS_STREAM_DATA_DIR": data_dir, "RUST_LOG": "error"}

# What must survive: cid -> sha256 of its bytes; and what may or may not (a delete or unpin whose
# answer never came).
durable = {}
uncertain = set()
lock = threading.Lock()
violations = []


def start_server():
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--auth", "off", "--anon-rate-limit-per-second", "0",
         "--instrumentation=false"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    line = server.stdout.readline().decode()
    if not line.startswith("listening on "):
        raise SystemExit(f"the server did not start: {line!r}")
    return server, line.split("listening on ", 1)[1].strip()


def request(method, url, body=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method)
    with urllib.request.urlopen(req, timeout=timeout) as response:
        return response.status, response.read()


def random_bytes(r):
    size = r.choice([r.randrange(1, 4096), r.randrange(4096, 300_000), r.randrange(300_000, 1_200_000)])
    return r.randbytes(size)


def acknowledged(cid, data):
    with lock:
        durable[cid] = hashlib.sha256(data).hexdigest()
        uncertain.discard(cid)


class WebSocket:
    """Just enough of RFC 6455 for uploads: masked client frames, unfragmented server text frames."""

    def __init__(self, base, path):
        host, port = base.split("//", 1)[1].split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=30)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(1)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.split(b"\r\n", 1)[0].decode())

    def send(self, opcode, payload):
        mask = os.urandom(4)
        header = bytes([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header += bytes([0x80 | n])
        elif n < 65536:
            header += bytes([0x80 | 126]) + n.to_bytes(2, "big")
        else:
            header += bytes([0x80 | 127]) + n.to_bytes(8, "big")
        masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(header + mask + masked)

    def recv_exact(self, n):
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def recv_text(self):
        while True:
            first, second = self.recv_exact(2)
            n = second & 0x7F
            if n == 126:
                n = int.from_bytes(self.recv_exact(2), "big")
            elif n == 127:
                n = int.from_bytes(self.recv_exact(8), "big")
            payload = self.recv_exact(n)
            if first & 0x0F == 0x1:
                return json.loads(payload)
            if first & 0x0F == 0x8:
                raise ConnectionError("closed by the server")


def http_upload(base, r):
    data = random_bytes(r)
    status, body = request("POST", f"{base}/api/v1/content?pin=true", data)
    if status == 201:
        acknowledged(json.loads(body)["cid"], data)


def ws_upload(base, r):
    data = random_bytes(r)
    ws = WebSocket(base, "/ws/upload")
    ws.send(0x1, json.dumps({"type": "metadata", "filename": "x.bin", "size": len(data)}).encode())
    for at in range(0, len(data), 65536):
        ws.send(0x2, data[at:at + 65536])
    ws.send(0x1, b'{"type": "complete"}')
    while True:
        message = ws.recv_text()
        if message.get("type") == "result" and message.get("success"):
            acknowledged(message["cid"], data)
            break
        if message.get("type") == "error":
            break
    ws.sock.close()


def car_reimport(base, r):
    with lock:
        known = list(durable.items())
    if not known:
        return
    cid, digest = r.choice(known)
    _, car = request("GET", f"{base}/ipfs/{cid}?format=car")
    status, _ = request("POST", f"{base}/api/v1/car", car)
    if status != 201 and status != 200:
        raise RuntimeError(f"CAR import answered {status}")


def delete(base, r):
    with lock:
        if len(durable) < 30:
            return
        cid = r.choice(list(durable))
        del durable[cid]
        uncertain.add(cid)
    status, _ = request("DELETE", f"{base}/api/v1/content/{cid}")


def gc(base, r):
    request("POST", f"{base}/api/v0/repo/gc", b"", timeout=120)


def pin(base, r):
    with lock:
        if not durable:
            return
        cid = r.choice(list(durable))
    request("POST", f"{base}/api/v0/pin/add?arg={cid}", b"")


ACTIONS = [http_upload] * 4 + [ws_upload] * 3 + [car_reimport] * 2 + [delete] * 2 + [pin, gc]


# Past this many live items, deletes come first: every cycle reads everything back.
LIVE_AT_MOST = 120


def worker(base, r, stop):
    while not stop.is_set():
        with lock:
            crowded = len(durable) > LIVE_AT_MOST
        action = delete if crowded and r.random() < 0.7 else r.choice(ACTIONS)
        try:
            action(base, r)
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError, RuntimeError, ValueError):
            if stop.is_set():
                return
            time.sleep(0.01)


def read_back(base, cid):
    try:
        _, body = request("GET", f"{base}/ipfs/{cid}", timeout=60)
        return body
    except (urllib.error.URLError, http.client.HTTPException, ConnectionError, OSError) as error:
        return error


def check(base, cycle):
    staging = os.path.join(data_dir, "staging")
    if os.path.isdir(staging) and os.listdir(staging):
        violations.append(f"cycle {cycle}: staging not empty after the restart")
    with lock:
        expected = dict(durable)
    for cid, digest in expected.items():
        body = read_back(base, cid)
        if not isinstance(body, bytes) or hashlib.sha256(body).hexdigest() != digest:
            violations.append(f"cycle {cycle}: acknowledged {cid} does not read back ({body if not isinstance(body, bytes) else 'other bytes'})")
    offset = 0
    while True:
        _, page = request("GET", f"{base}/api/v1/content?offset={offset}&limit=1000")
        page = json.loads(page)
        for item in page["items"]:
            if isinstance(read_back(base, item["cid"]), Exception):
                violations.append(f"cycle {cycle}: the record of {item['cid']} points at missing blocks")
        offset += len(page["items"])
        if not page["items"] or offset >= page["total"]:
            break


def offline_checks(cycle):
    db = sqlite3.connect(os.path.join(data_dir, "ipfs-stream.db"))
    result = db.execute("PRAGMA integrity_check").fetchone()[0]
    db.close()
    if result != "ok":
        violations.append(f"cycle {cycle}: integrity_check says {result}")
    verify = subprocess.run([binary, "repo", "verify"], env=env, capture_output=True, text=True)
    if verify.returncode != 0:
        violations.append(f"cycle {cycle}: repo verify: {verify.stdout.strip()} {verify.stderr.strip()}")


started = time.time()
kills_mid_work = 0
server, base = start_server()
for cycle in range(1, cycles + 1):
    stop = threading.Event()
    threads = [threading.Thread(target=worker, args=(base, random.Random(rng.random()), stop)) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(rng.uniform(0.2, 2.5))
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    for thread in threads:
        thread.join()
    offline_checks(cycle)
    server, base = start_server()
    check(base, cycle)
server.send_signal(signal.SIGTERM)
server.wait()
print(json.dumps({"cycles": cycles, "violations": len(violations), "acknowledged_alive": len(durable),
                  "seconds": round(time.time() - started, 1), "seed": seed}))
for violation in violations[:20]:
    print(violation, file=sys.stderr)
subprocess.run(["rm", "-rf", data_dir])
sys.exit(1 if violations else 0)
