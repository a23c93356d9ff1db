// Starts an ipfs-stream server on a free loopback port with a fresh data directory (and the given
// environment, for the server and its commands). Access control is on: `token` is the admin token
// the server wrote, if it wrote one, and `createToken(scopes)` makes another with the command line.
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export async function startServer(binary, options = [], environment = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), "ipfs-stream-browser-"));
  const env = { ...process.env, RUST_LOG: process.env.RUST_LOG || "error", ...environment };
  const child = spawn(binary, ["--data-dir", dataDir, "serve", "--listen", "127.0.0.1:0", ...options], {
    stdio: ["ignore", "pipe", "inherit"],
    env,
  });
  const lines = createInterface({ input: child.stdout });
  const base = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("the server did not start within 30 s")), 30000);
    lines.on("line", (line) => {
      const match = line.match(/^listening on (http:\/\/\S+)/);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    child.on("exit", (code) => reject(new Error(`the server exited with ${code}`)));
  });
  const tokenFile = join(dataDir, "admin.token");
  const token = existsSync(tokenFile) ? readFileSync(tokenFile, "utf8").trim() : null;
  return {
    base,
    token,
    createToken(scopes) {
      const args = ["--data-dir", dataDir, "token", "create", "-q", ...scopes.flatMap((s) => ["--scope", s])];
      return execFileSync(binary, args, { encoding: "utf8", env }).trim();
    },
    stop() {
      child.kill("SIGTERM");
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

// Flags under which Debian's Chromium runs headless here (and plays WebRTC on loopback).
export const CHROMIUM_ARGS = [
  "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
  "--allow-loopback-in-peer-connection", "--disable-features=WebRtcHideLocalIpsWithMdns",
  "--autoplay-policy=no-user-gesture-required",
];
