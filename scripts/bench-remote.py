#!/usr/bin/env python3
"""Remote content through an edge server (release build), with latency added at the upstream.

An origin ipfs-stream holds a file (1 GiB by default, CIDv1, 256 KiB raw leaves); a proxy on
loopback adds DELAY_MS of one-way latency each way to everything it forwards (so every request to
the upstream costs 2 x DELAY_MS more); an edge ipfs-stream is configured with the proxy as its
gateway. Prints:
  (a) time to first byte and throughput of the whole file through the edge, cold (nothing kept)
      and warm (all kept), beside the same DAG as a CAR straight from the upstream through the proxy;
  (b) bytes the edge fetched from upstream for 10 random 64 KiB ranges of the file, against the
      bytes asked;
  (d) with 3 gateways of which one changes a byte of the first answer on each connection: wrong bytes served
      (compared with the original) and the bad blocks the edge counted.

usage: scripts/bench-remote.py [MiB] [delay ms]
       scripts/bench-remote.py proxy <upstream port> <delay ms>   (the proxy alone: prints its port)
"""

import asyncio
import hashlib
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROXY_ONLY = len(sys.argv) > 1 and sys.argv[1] == "proxy"
MIB = int(sys.argv[1]) if len(sys.argv) > 1 and not PROXY_ONLY else 1024
DELAY_MS = float(sys.argv[2]) if len(sys.argv) > 2 and not PROXY_ONLY else 20.0


def build():
    subprocess.run(["cargo", "build", "--release", "--locked", "-p", "ipfs-stream"], cwd=ROOT, check=True,
                   stdout=sys.stderr)
    return os.path.join(ROOT, "target", "release", "ipfs-stream")


def env_for(data_dir):
    env = dict(os.environ, IPFS_STREAM_DATA_DIR=data_dir, RUST_LOG="warn")
    env.pop("IPFS_STREAM_KUBO_API", None)
    env.pop("IPFS_STREAM_GATEWAYS", None)
    return env


def serve(binary, data_dir, *options):
    server = subprocess.Popen(
        [binary, "serve", "--listen", "127.0.0.1:0", "--auth", "off", "--anon-rate-limit-per-second", "0",
         "--session-rate-limit-per-minute", "0", *options],
        env=env_for(data_dir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = server.stdout.readline()
    return server, line.strip().removeprefix("listening on ")


class Proxy:
    """A TCP proxy adding `delay` seconds each way; with `corrupt`, flips the first body byte of the
    first HTTP response on each connection (a gateway that lies, until it is set aside)."""

    def __init__(self, upstream_port, delay, corrupt=False):
        self.upstream_port, self.delay, self.corrupt = upstream_port, delay, corrupt
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        threading.Thread(target=self._run, daemon=True).start()
        self.ready.wait()

    def _run(self):
        asyncio.set_event_loop(self.loop)
        server = self.loop.run_until_complete(asyncio.start_server(self._client, "127.0.0.1", 0))
        self.port = server.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()

    async def _client(self, reader, writer):
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer, False), self._pipe(up_reader, writer, self.corrupt))

    async def _pipe(self, reader, writer, corrupt):
        queue = asyncio.Queue()

        async def send():
            while True:
                due, data = await queue.get()
                if data is None:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                writer.write(data)
                await writer.drain()
            writer.close()

        sender = asyncio.ensure_future(send())
        head = b""
        flipped = False
        try:
            while True:
                data = await reader.read(256 * 1024)
                if not data:
                    break
                if corrupt and not flipped:
                    # Flip the first body byte of the (one) response on this connection.
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0 or end + 4 >= len(head):
                        continue
                    body_at = end + 4
                    data = head[:body_at] + bytes([head[body_at] ^ 0xFF]) + head[body_at + 1:]
                    flipped = True
                queue.put_nowait((time.monotonic() + self.delay, data))
        except (ConnectionError, OSError):
            pass
        queue.put_nowait((0, None))
        await sender

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"


def port_of(base):
    return int(base.rsplit(":", 1)[1])


def timed_get(url, range_header=None):
    """(seconds to the first body byte, seconds in all, bytes, sha256 of the body)."""
    request = urllib.request.Request(url)
    if range_header:
        request.add_header("Range", range_header)
    started = time.monotonic()
    digest, size, first = hashlib.sha256(), 0, None
    with urllib.request.urlopen(request, timeout=600) as response:
        while True:
            chunk = response.read(1 << 20)
            if first is None:
                first = time.monotonic() - started
            if not chunk:
                break
            digest.update(chunk)
            size += len(chunk)
    return first, time.monotonic() - started, size, digest.hexdigest()


def metric(base, series):
    text = urllib.request.urlopen(f"{base}/metrics").read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(series):
            total += float(line.rsplit(" ", 1)[1])
    return total


def line(label, first, total, size):
    print(f"  {label:<44} first byte {first * 1000:8.1f} ms   {size / total / 2**20:8.1f} MiB/s   ({total:.2f} s)")


def main():
    binary = build()
    delay = DELAY_MS / 1000
    with tempfile.TemporaryDirectory() as tmp:
        origin_dir = os.path.join(tmp, "origin")
        os.makedirs(origin_dir)
        blob = os.path.join(origin_dir, "file.bin")
        rng = random.Random(18)
        original = hashlib.sha256()
        with open(blob, "wb") as f:
            for _ in range(MIB):
                chunk = rng.randbytes(1 << 20)
                original.update(chunk)
                f.write(chunk)
        original = original.hexdigest()
        cid = subprocess.run([binary, "add", "-q", "--cid-version", "1", blob], env=env_for(origin_dir), check=True,
                             capture_output=True, text=True).stdout.strip()
        os.remove(blob)
        origin, origin_base = serve(binary, origin_dir)
        servers = [origin]
        try:
            slow = Proxy(port_of(origin_base), delay)
            print(f"{MIB} MiB file {cid}; {DELAY_MS:.0f} ms added each way at the upstream")

            print("(a) the whole file")
            first, total, size, _ = timed_get(f"{slow.base}/ipfs/{cid}?format=car")
            line("CAR straight from the upstream (curl-like)", first, total, size)
            edge, edge_base = serve(binary, os.path.join(tmp, "edge"), "--gateway", slow.base)
            servers.append(edge)
            first, total, size, digest = timed_get(f"{edge_base}/ipfs/{cid}")
            assert digest == original, "the edge served other bytes"
            line("through the edge, cold", first, total, size)
            time.sleep(1)
            first, total, size, digest = timed_get(f"{edge_base}/ipfs/{cid}")
            assert digest == original
            line("through the edge, warm", first, total, size)

            print("(b) 10 random 64 KiB ranges, cold")
            ranges_edge, ranges_base = serve(binary, os.path.join(tmp, "ranges"), "--gateway", slow.base)
            servers.append(ranges_edge)
            size_total = MIB << 20
            asked = 0
            for _ in range(10):
                start = rng.randrange(0, size_total - 65536)
                first, total, size, _ = timed_get(f"{ranges_base}/ipfs/{cid}", f"bytes={start}-{start + 65535}")
                asked += size
            fetched = metric(ranges_base, "ipfs_stream_remote_bytes_total")
            blocks = metric(ranges_base, "ipfs_stream_remote_blocks_total")
            print(f"  asked {asked} bytes; fetched {int(fetched)} bytes in {int(blocks)} blocks "
                  f"({fetched / asked:.2f}x; a 64 KiB range spans one or two 256 KiB leaves, plus the root "
                  f"and internal nodes on its path)")

            print("(d) 3 gateways, one lying about every block")
            liar = Proxy(port_of(origin_base), delay, corrupt=True)
            other = Proxy(port_of(origin_base), delay)
            lied_edge, lied_base = serve(binary, os.path.join(tmp, "lied"), "--gateway", liar.base, "--gateway",
                                         slow.base, "--gateway", other.base)
            servers.append(lied_edge)
            first, total, size, digest = timed_get(f"{lied_base}/ipfs/{cid}")
            wrong = "0" if digest == original else "SOME"
            line("through the edge, cold, 1 of 3 lying", first, total, size)
            bad = metric(lied_base, f'ipfs_stream_upstream_bad_blocks_total{{gateway="{liar.base}"}}')
            failed = metric(lied_base, f'ipfs_stream_upstream_failures_total{{gateway="{liar.base}"}}')
            quarantined = metric(lied_base, f'ipfs_stream_upstream_quarantined{{gateway="{liar.base}"}}')
            # A lie in a CAR's header makes the CAR unreadable (a failure); in a block, a bad block.
            print(f"  wrong bytes served: {wrong}; from the liar: {int(bad)} bad blocks, {int(failed)} failed "
                  f"answers, set aside: {'yes' if quarantined else 'no'}")
        finally:
            for server in servers:
                server.terminate()
                server.wait()


if __name__ == "__main__":
    if PROXY_ONLY:
        proxy = Proxy(int(sys.argv[2]), float(sys.argv[3]) / 1000)
        print(proxy.port, flush=True)
        threading.Event().wait()
    else:
        main()
