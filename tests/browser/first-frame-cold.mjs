// Time to first decoded frame in headless Chromium, each CID played once (so content an edge
// fetches from its upstream is cold every time), over WHEP with progressive loading, opened as a
// player link. One warm-up playback first, not counted. Prints one JSON line per group with the
// median and every run. Usage:
//   node first-frame-cold.mjs <warm-up base URL> <warm-up cid> <group>=<base URL>=<cid>[,<cid>...] ...
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./server.mjs";

const [warmupBase, warmupCid, ...groups] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });

async function play(base, cid) {
  const page = await browser.newPage();
  await page.goto(`${base}/player?cid=${cid}&use_progressive_loading=true&transport=whep`);
  await page.waitForFunction(() => window.playerState && window.playerState().ttff != null, null, { timeout: 120000 });
  const state = await page.evaluate(() => window.playerState());
  await page.close({ runBeforeUnload: true });
  assert.ok(state.ttff > 0);
  return state.ttff;
}

try {
  console.log(JSON.stringify({ warmup_ms: Math.round(await play(warmupBase, warmupCid)), not_counted: true }));
  for (const group of groups) {
    const [label, base, cids] = group.split("=");
    const runs = [];
    for (const cid of cids.split(",")) runs.push(Math.round(await play(base, cid)));
    const sorted = [...runs].sort((a, b) => a - b);
    console.log(JSON.stringify({ group: label, time_to_first_frame_ms_median: sorted[Math.floor(sorted.length / 2)], runs_ms: runs }));
  }
} finally {
  await browser.close();
}
