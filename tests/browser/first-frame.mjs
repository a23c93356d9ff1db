// Time to first decoded frame in headless Chromium for stored files, over WHEP, with progressive
// loading on and off: the median of 9 playbacks per case, after one warm-up playback that is
// printed but not counted (a fresh browser's first page also pays for starting its own processes).
// Prints one JSON line per case. Usage:
//   node first-frame.mjs <server base URL> <label>=<cid> [<label>=<cid> ...]
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./server.mjs";

const [base, ...cases] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
const ROUNDS = 9;

async function play(cid, progressive) {
  const page = await browser.newPage();
  await page.goto(`${base}/player?cid=${cid}&use_progressive_loading=${progressive}`);
  await page.waitForFunction(() => window.playerState && window.playerState().ttff != null, null, { timeout: 120000 });
  const state = await page.evaluate(() => window.playerState());
  await page.close({ runBeforeUnload: true });
  return { ttff: state.ttff, timeline: state.timeline };
}

try {
  const warmup = await play(cases[0].split("=")[1], true);
  console.log(JSON.stringify({ warmup_ms: Math.round(warmup.ttff), not_counted: true }));
  for (const entry of cases) {
    const [label, cid] = entry.split("=");
    for (const progressive of [true, false]) {
      const times = [];
      for (let round = 0; round < ROUNDS; round++) times.push(await play(cid, progressive));
      times.sort((a, b) => a.ttff - b.ttff);
      const median = times[Math.floor(ROUNDS / 2)];
      assert.ok(median.ttff > 0);
      // The median run's setup, step by step (ms from the start of the playback).
      console.log(JSON.stringify({ file: label, progressive, time_to_first_frame_ms_median: Math.round(median.ttff),
        runs_ms: times.map((t) => Math.round(t.ttff)), median_timeline_ms: median.timeline }));
    }
  }
} finally {
  await browser.close();
}
