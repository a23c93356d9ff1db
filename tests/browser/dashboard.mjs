// The dashboard in headless Chromium while the simulator loads the server: the charts fill with
// live points, and a store-latency fault injected midway shows as an anomaly alert. Prints the
// event-to-chart latency and saves a screenshot. Usage: node dashboard.mjs <ipfs-stream binary>
import { spawn } from "node:child_process";
import { mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, startServer } from "./server.mjs";

const binary = resolve(process.argv[2] || "target/debug/ipfs-stream");
const screenshots = resolve(process.env.SCREENSHOT_DIR || "target/browser");
mkdirSync(screenshots, { recursive: true });

const server = await startServer(binary, ["--sample-interval-ms", "200", "--allow-fault-injection"]);
let browser;
let simulator;
try {
  // The detector learns from each series's first 60 samples (latency is only sampled in intervals with
  // reads, so it learns slower), then a 2 s store latency is injected 32 s in, for 6 s.
  simulator = spawn(binary, ["simulate", "--server", server.base, "--token", server.token, "--viewers", "12", "--duration", "50",
    "--media", "2", "--fault-latency-ms", "2000", "--fault-at", "32", "--fault-duration", "6"],
  { stdio: ["ignore", "ignore", "inherit"] });
  const simulated = new Promise((done) => simulator.on("exit", done));

  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    // Playwright gives the browser a fresh profile directory of its own.
    args: CHROMIUM_ARGS,
  });
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const errors = [];
  page.on("pageerror", (e) => errors.push(e.message));
  // The dashboard gets a token of its own with only what it reads, in the address's fragment.
  const dashboardToken = server.createToken(["metrics:read", "notifications:read", "content:read"]);
  await page.goto(`${server.base}/dashboard#token=${dashboardToken}`);
  assert.equal(new URL(page.url()).hash, "", "the token leaves the address bar");
  await page.waitForFunction(() => document.getElementById("connection").textContent === "live", null, { timeout: 15000 });

  await page.waitForFunction(() => window.__dashboard.points >= 20, null, { timeout: 30000 });
  const charts = await page.$$eval(".chart canvas", (canvases) => canvases.length);
  assert.ok(charts >= 8, `eight charts are drawn (found ${charts})`);

  try {
    await page.waitForFunction(
      () => [...document.querySelectorAll("#alerts li")].some((li) => li.textContent.includes("latency_p95_seconds")),
      null, { timeout: 45000 });
  } catch (e) {
    console.error("alerts shown:", await page.$$eval("#alerts li", (items) => items.map((li) => li.textContent)));
    await page.screenshot({ path: join(screenshots, "dashboard-failed.png"), fullPage: true });
    throw e;
  }
  const alerts = await page.$$eval("#alerts li", (items) => items.map((li) => li.textContent));
  const active = await page.$$eval("#active-rows tr", (rows) => rows.length);
  await page.screenshot({ path: join(screenshots, "dashboard.png"), fullPage: true });

  // The range selector reloads from the history API.
  await page.click('#ranges button[data-range="3600"]');
  await page.waitForFunction(() => window.__dashboard.points > 0, null, { timeout: 10000 });

  const latencies = await page.evaluate(() => window.__dashboard.latencies.slice().sort((a, b) => a - b));
  const p = (q) => latencies[Math.min(latencies.length - 1, Math.ceil(q * latencies.length) - 1)];
  assert.deepEqual(errors, [], "no script errors");
  console.log(JSON.stringify({
    test: "dashboard", charts, alerts: alerts.length, active_rows: active,
    event_to_chart_ms: { samples: latencies.length, p50: p(0.5), p95: p(0.95), max: latencies[latencies.length - 1] },
    screenshot: join(screenshots, "dashboard.png"),
  }));
  simulator.kill("SIGTERM");
  await simulated;
} finally {
  if (simulator && simulator.exitCode === null) simulator.kill("SIGKILL");
  if (browser) await browser.close();
  server.stop();
}
