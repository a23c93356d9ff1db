// Time to first decoded frame in headless Chromium for stored files, over WHEP, with progressive
// loading on and off. Prints one JSON line per case. Usage:
//   node first-frame.mjs <server base URL> <label>=<cid> [<label>=<cid> ...]
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./server.mjs";

const [base, ...cases] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
try {
  for (const entry of cases) {
    const [label, cid] = entry.split("=");
    for (const progressive of [true, false]) {
      const times = [];
      for (let round = 0; round < 3; round++) {
        const page = await browser.newPage();
        await page.goto(`${base}/player?cid=${cid}&use_progressive_loading=${progressive}`);
        await page.waitForFunction(() => window.playerState && window.playerState().ttff != null, null, { timeout: 120000 });
        const state = await page.evaluate(() => window.playerState());
        times.push({ ttff: state.ttff, timeline: state.timeline });
        await page.close({ runBeforeUnload: true });
      }
      times.sort((a, b) => a.ttff - b.ttff);
      assert.ok(times[1].ttff > 0);
      // The median run's setup, step by step (ms from the start of the playback).
      console.log(JSON.stringify({ file: label, progressive, time_to_first_frame_ms_median: Math.round(times[1].ttff),
        runs_ms: times.map((t) => Math.round(t.ttff)), median_timeline_ms: times[1].timeline }));
    }
  }
} finally {
  await browser.close();
}
