#!/usr/bin/env python3
"""A real client while hostile connections are held open (release build, default limits).

Three phases of 20 s each, a client on 127.0.0.1 fetching a 256 KiB object over a new connection
every 20 ms throughout:
  quiet   nothing else;
  held    2000 connections from 127.0.0.2-9 (250 each, under the per-address cap): 1000 sending a
          request head one byte a second (slowloris), 500 idle keep-alives, 500 idle WebSockets on
          /ws/notifications; any the server closes (head and keep-alive timeouts) is opened again;
  flood   1000 connections at once from 127.0.0.10 alone, each reopened as soon as it is closed.
Prints, per phase: the client's requests, failures, p50 / p99 / max latency, the server's peak RSS
and the connections /metrics reports open and refused.

usage: scripts/bench-connections.py [seconds per phase]
"""

import asyncio
import http.client
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PHASE_SECS = float(sys.argv[1]) if len(sys.argv) > 1 else 20.0


def build():
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "ipfs-stream"], cwd=ROOT, check=True,
                   stdout=sys.stderr)
    return os.path.join(ROOT, "target", "release", "ipfs-stream")


def start_server(binary, data_dir):
    env = dict(os.environ, IPFS_STREAM_DATA_DIR=data_dir)
    env.pop("IPFS_STREAM_KUBO_API", None)
    blob = os.path.join(data_dir, "object.bin")
    os.makedirs(data_dir, exist_ok=True)
    with open(blob, "wb") as f:
        f.write(random.Random(7).randbytes(256 * 1024))
    cid = subprocess.run([binary, "add", "-q", blob], env=env, check=True, capture_output=True,
                         text=True).stdout.strip()
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--auth", "off", "--anon-rate-limit-per-second", "0",
         "--session-rate-limit-per-minute", "0"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    port = int(line.rsplit(":", 1)[1])
    return server, port, cid


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def scrape(port):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", "/metrics")
    text = connection.getresponse().read().decode()
    connection.close()
    value = lambda pattern: int(float(m.group(1))) if (m := re.search(pattern, text, re.M)) else 0
    return (value(r"^ipfs_stream_http_connections_open (\S+)"),
            value(r'^ipfs_stream_http_connections_refused_total\{cap="per_address"\} (\S+)'))


class RealClient(threading.Thread):
    """GETs the object over a fresh connection every 20 ms; records latencies by phase."""

    def __init__(self, port, cid):
        super().__init__(daemon=True)
        self.port, self.path = port, f"/ipfs/{cid}"
        self.phase = "quiet"
        self.results = {}
        self.stop = False

    def run(self):
        while not self.stop:
            phase = self.phase
            started = time.perf_counter()
            ok = False
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                connection.request("GET", self.path)
                response = connection.getresponse()
                ok = response.status == 200 and len(response.read()) == 256 * 1024
                connection.close()
            except OSError:
                pass
            elapsed = time.perf_counter() - started
            self.results.setdefault(phase, []).append((ok, elapsed))
            time.sleep(max(0.0, 0.02 - elapsed))


async def hold(kind, source, port, deadline, opened):
    """Keeps one connection of `kind` open from `source` until `deadline`, reopening it."""
    while time.monotonic() < deadline:
        writer = None
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
            opened[kind] += 1
            if kind == "slow":
                head = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 10_000
                for byte in head:
                    writer.write(bytes([byte]))
                    await writer.drain()
                    try:
                        if await asyncio.wait_for(reader.read(1024), 1.0) == b"":
                            break
                    except asyncio.TimeoutError:
                        pass
                    if time.monotonic() >= deadline:
                        break
            elif kind == "idle":
                writer.write(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
                await writer.drain()
                await reader.read(4096)
                await asyncio.wait_for(reader.read(1024), max(0.0, deadline - time.monotonic()))
            elif kind == "websocket":
                writer.write(b"GET /ws/notifications HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                             b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                             b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
                await writer.drain()
                while time.monotonic() < deadline:
                    data = await asyncio.wait_for(reader.read(4096), max(0.0, deadline - time.monotonic()))
                    if data == b"":
                        break
            else:  # flood: open, and wait for the server to close it
                await asyncio.wait_for(reader.read(1024), max(0.0, deadline - time.monotonic()))
        except (OSError, asyncio.TimeoutError):
            await asyncio.sleep(0.05)
        finally:
            if writer is not None:
                writer.close()


async def phase_held(port, secs):
    deadline = time.monotonic() + secs
    opened = {"slow": 0, "idle": 0, "websocket": 0, "flood": 0}
    tasks = []
    for i in range(2000):
        source = f"127.0.0.{2 + i % 8}"
        kind = "slow" if i % 4 < 2 else ("idle" if i % 4 == 2 else "websocket")
        tasks.append(hold(kind, source, port, deadline, opened))
    await asyncio.gather(*tasks)
    return opened


async def phase_flood(port, secs):
    deadline = time.monotonic() + secs
    opened = {"slow": 0, "idle": 0, "websocket": 0, "flood": 0}
    await asyncio.gather(*(hold("flood", "127.0.0.10", port, deadline, opened) for _ in range(1000)))
    return opened


def main():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    binary = build()
    with tempfile.TemporaryDirectory(prefix="bench-connections.") as work:
        server, port, cid = start_server(binary, os.path.join(work, "repo"))
        try:
            client = RealClient(port, cid)
            client.start()
            peaks = {}

            def watch(phase, stop):
                peak, open_seen = 0.0, 0
                while not stop.is_set():
                    peak = max(peak, rss_mib(server.pid))
                    open_seen = max(open_seen, scrape(port)[0])
                    stop.wait(0.5)
                peaks[phase] = (peak, open_seen)

            for phase, run in [("quiet", None), ("held", phase_held), ("flood", phase_flood)]:
                client.phase = phase
                stop = threading.Event()
                watcher = threading.Thread(target=watch, args=(phase, stop))
                watcher.start()
                opened = asyncio.run(run(port, PHASE_SECS)) if run else time.sleep(PHASE_SECS)
                stop.set()
                watcher.join()
                peaks[phase] += (opened, scrape(port)[1])
            client.stop = True
            client.join()
        finally:
            server.terminate()
            server.wait()

    print(f"{'phase':<7} {'requests':>8} {'failed':>6} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} "
          f"{'peak RSS MiB':>12} {'open (peak)':>11} {'refused':>7}  hostile connections opened")
    for phase in ["quiet", "held", "flood"]:
        results = client.results.get(phase, [])
        times = sorted(t for ok, t in results if ok)
        failed = sum(1 for ok, _ in results if not ok)
        pick = lambda q: times[min(len(times) - 1, int(q * len(times)))] * 1000 if times else float("nan")
        peak, open_seen, opened, refused = peaks[phase]
        opened_text = ", ".join(f"{k} {v}" for k, v in (opened or {}).items() if v) or "-"
        print(f"{phase:<7} {len(results):>8} {failed:>6} {pick(0.5):>7.1f} {pick(0.99):>7.1f} "
              f"{(times[-1] * 1000 if times else float('nan')):>7.1f} {peak:>12.1f} {open_seen:>11} {refused:>7}  "
              f"{opened_text}")


if __name__ == "__main__":
    main()
