// Time to first decoded frame in headless Chromium for stored files, over WHEP, with progressive
// loading on and off, the median of 9 playbacks per case, two ways:
//  - "play": Play pressed on an open player page, whose peer was made while the page was idle;
//  - "link": a player link opened (`/player?cid=…`), which makes its peer when the playback starts.
// The time ends when the first decoded frame goes to the compositor (the video frame callback's
// presentation time); the callback itself, up to a display refresh later, is printed beside it.
// One warm-up playback first is printed but not counted (a fresh browser's first page also pays for
// starting its own processes). Prints one JSON line per case. Usage:
//   node first-frame.mjs <server base URL> <label>=<cid> [<label>=<cid> ...]
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./server.mjs";

const [base, ...cases] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
const ROUNDS = 9;

async function play(cid, progressive, how) {
  const page = await browser.newPage();
  const query = `use_progressive_loading=${progressive}`;
  if (how === "link") {
    await page.goto(`${base}/player?cid=${cid}&${query}`);
  } else {
    await page.goto(`${base}/player?${query}`);
    await page.waitForFunction(() => window.playerState && window.playerState().nextPeerReady, null, { timeout: 20000 });
    await page.fill("#cid", cid);
    await page.click("#play");
  }
  await page.waitForFunction(() => window.playerState && window.playerState().ttff != null, null, { timeout: 120000 });
  const state = await page.evaluate(() => window.playerState());
  await page.close({ runBeforeUnload: true });
  assert.equal(state.peerPrepared, how === "play", `${how}: a peer made ahead only when Play is pressed on an open page`);
  return { ttff: state.ttff, callback: state.timeline.first_frame_callback, timeline: state.timeline };
}

try {
  const warmup = await play(cases[0].split("=")[1], true, "link");
  console.log(JSON.stringify({ warmup_ms: Math.round(warmup.ttff), not_counted: true }));
  for (const entry of cases) {
    const [label, cid] = entry.split("=");
    for (const progressive of [true, false]) {
      for (const how of ["play", "link"]) {
        const times = [];
        for (let round = 0; round < ROUNDS; round++) times.push(await play(cid, progressive, how));
        times.sort((a, b) => a.ttff - b.ttff);
        const median = times[Math.floor(ROUNDS / 2)];
        assert.ok(median.ttff > 0);
        // The median run's setup, step by step (ms from the start of the playback).
        const callbacks = times.map((t) => t.callback).sort((a, b) => a - b);
        console.log(JSON.stringify({ file: label, progressive, started_by: how,
          time_to_first_frame_ms_median: Math.round(median.ttff), runs_ms: times.map((t) => Math.round(t.ttff)),
          frame_callback_ms_median: callbacks[Math.floor(ROUNDS / 2)], median_timeline_ms: median.timeline }));
      }
    }
  }
} finally {
  await browser.close();
}
