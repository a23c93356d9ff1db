// A PostgreSQL server of a test's own: Debian's `postgresql` binaries, a cluster in a temp dir on a
// free loopback port, run as the package's `postgres` user when the test runs as root (initdb
// refuses root). `url` names its `postgres` database; `stop()` ends it and removes the dir.
import { execFileSync, spawn } from "node:child_process";
import { chownSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

function binDir() {
  const versions = readdirSync("/usr/lib/postgresql").sort((a, b) => Number(a) - Number(b));
  if (!versions.length) throw new Error("PostgreSQL not found under /usr/lib/postgresql: install Debian's postgresql");
  return join("/usr/lib/postgresql", versions.at(-1), "bin");
}

function freePort() {
  return new Promise((resolve) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

// Whether the server accepts sessions (it listens a moment before it does).
function ready(bin, port) {
  try {
    execFileSync(join(bin, "pg_isready"), ["-q", "-h", "127.0.0.1", "-p", String(port)]);
    return true;
  } catch {
    return false;
  }
}

export async function startPostgres() {
  const bin = binDir();
  const dir = mkdtempSync(join(tmpdir(), "ipfs-stream-pg-"));
  const user = process.getuid() === 0
    ? { uid: Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" })), gid: Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" })) }
    : {};
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid);
  execFileSync(join(bin, "initdb"), ["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "-D", join(dir, "data")], { stdio: "ignore", ...user });
  const port = await freePort();
  const child = spawn(join(bin, "postgres"), ["-D", join(dir, "data"), "-p", String(port), "-c", "listen_addresses=127.0.0.1",
    "-c", `unix_socket_directories=${dir}`, "-c", "log_min_messages=fatal"], { stdio: "ignore", ...user });
  const deadline = Date.now() + 30000;
  while (!ready(bin, port)) {
    if (Date.now() > deadline) throw new Error("PostgreSQL did not accept sessions within 30 s");
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGINT");
      await Promise.race([exited, new Promise((r) => setTimeout(r, 10000))]);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
