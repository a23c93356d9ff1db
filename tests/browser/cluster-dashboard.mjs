// The dashboard of one of two instances sharing a PostgreSQL database, in headless Chromium: it
// offers the instances, and charts another instance's series or the whole service's from the
// history. Usage: node cluster-dashboard.mjs <ipfs-stream binary>
import { resolve } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, startServer } from "./server.mjs";
import { startPostgres } from "./postgres.mjs";

const binary = resolve(process.argv[2] || "target/debug/ipfs-stream");
const postgres = await startPostgres();
const environment = { IPFS_STREAM_DATABASE_URL: postgres.url };
const servers = [];
let browser;
try {
  for (const name of ["a", "b"]) {
    servers.push(await startServer(binary, ["--instance-name", name, "--sample-interval-ms", "200"], environment));
  }
  const [a] = servers;
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // Which instance each history answer was for, and how many points it held.
  const answered = [];
  page.on("response", async (response) => {
    const url = new URL(response.url());
    if (url.pathname !== "/api/v1/metrics/history" || !response.ok()) return;
    // A reload answered while the browser closes has no body to read any more.
    const body = await response.json().catch(() => null);
    if (!body) return;
    answered.push({ instance: url.searchParams.get("instance") || "", points: body.points.length });
  });
  const token = a.createToken(["metrics:read", "notifications:read", "content:read"]);
  // Both have sampled once the list names them; the page reads it as it opens.
  const deadline = Date.now() + 20000;
  for (;;) {
    const listed = await fetch(`${a.base}/api/v1/metrics/instances`, { headers: { Authorization: `Bearer ${token}` } }).then((r) => r.json());
    if (listed.instances.length === 2) break;
    assert.ok(Date.now() < deadline, `both instances sample: ${JSON.stringify(listed)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await page.goto(`${a.base}/dashboard#token=${token}`);
  await page.waitForFunction(() => window.__dashboard.instances.length === 2, null, { timeout: 15000 });
  assert.ok(await page.isVisible("#instance"), "the instance choice is offered");
  assert.deepEqual(await page.$$eval("#instance option", (options) => options.map((o) => o.value)), ["", "all", "a", "b"]);
  for (const choice of ["all", "b"]) {
    await page.selectOption("#instance", choice);
    await page.waitForFunction((c) => window.__dashboard.loaded === c && window.__dashboard.points > 0, choice, { timeout: 15000 });
    // The page may have drawn the answer before this side has read its body (the listener above
    // awaits it): wait for that too.
    const seen = Date.now() + 5000;
    while (!answered.some((a) => a.instance === choice && a.points > 0) && Date.now() < seen) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(answered.some((a) => a.instance === choice && a.points > 0), `the history of ${choice} was asked and answered: ${JSON.stringify(answered)}`);
  }
  assert.deepEqual(errors, []);
  console.log(JSON.stringify({ test: "cluster-dashboard", instances: ["a", "b"], charted: ["all", "b"] }));
} finally {
  if (browser) await browser.close();
  for (const server of servers) server.stop();
  await postgres.stop();
}
