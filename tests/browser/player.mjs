// The player page in headless Chromium: an H.264 MP4 over WHEP, a VP8 WebM and a main-profile H.264
// MP4 over the WebSocket signaling, each opened as a player link, and a VP8 WebM over WHEP with Play
// pressed on an open player (its peer made ahead); each until Chromium has decoded frames (its own
// getStats counters) with the codec the file needs; then the WebM again from a second server that
// has it only through its gateway, the first. Prints the time to first decoded frame and saves a
// screenshot of each. Usage: node player.mjs <ipfs-stream binary>
import { mkdirSync, readFileSync } from "node:fs";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, startServer } from "./server.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const binary = resolve(process.argv[2] || "target/debug/ipfs-stream");
const screenshots = resolve(process.env.SCREENSHOT_DIR || "target/browser");
mkdirSync(screenshots, { recursive: true });

async function add(base, token, file) {
  const form = new FormData();
  form.append("file", new Blob([readFileSync(join(here, "../fixtures/media", file))]), file);
  const response = await fetch(`${base}/api/v1/content`, {
    method: "POST", body: form, headers: { Authorization: `Bearer ${token}` },
  });
  assert.equal(response.status, 201, `adding ${file}`);
  return (await response.json()).cid;
}

const server = await startServer(binary);
const admin = { headers: { Authorization: `Bearer ${server.token}` } };
let browser;
try {
  browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
  // "link" opens /player?cid=…, which plays at once; "press" opens the player and presses Play once
  // the page has made its WHEP peer ahead (offer applied, candidates gathered).
  for (const [file, transport, codec, fmtp, start] of [
    ["h264-baseline-opus.mp4", "whep", "H264", "profile-level-id=42e01f", "link"],
    ["vp8-opus.webm", "ws", "VP8", "", "link"],
    ["h264-main.mp4", "ws", "H264", "profile-level-id=4d001f", "link"],
    ["vp8-opus.webm", "whep", "VP8", "", "press"],
  ]) {
    const cid = await add(server.base, server.token, file);
    const page = await browser.newPage({ viewport: { width: 1000, height: 560 } });
    const errors = [];
    page.on("pageerror", (e) => errors.push(e.message));
    if (start === "link") {
      await page.goto(`${server.base}/player?cid=${cid}&transport=${transport}`);
    } else {
      await page.goto(`${server.base}/player?transport=${transport}`);
      await page.waitForFunction(() => window.playerState && window.playerState().nextPeerReady, null, { timeout: 20000 });
      await page.fill("#cid", cid);
      await page.click("#play");
    }
    await page.waitForFunction(() => window.playerState && window.playerState().framesDecoded > 0
      && window.playerState().ttff != null, null, { timeout: 20000 });
    const state = await page.evaluate(() => window.playerState());
    assert.equal(state.peerPrepared, start === "press", `${file}: a peer made ahead is used when Play is pressed`);
    const decoder = await page.evaluate(async () => {
      const video = document.getElementById("video");
      return { width: video.videoWidth, height: video.videoHeight };
    });
    assert.ok(decoder.width > 0, `${file}: the video element has a picture`);
    // What Chromium decodes with: the codec entry its inbound video names.
    const negotiated = await page.evaluate(async () => {
      const report = await session.pc.getStats();
      let codecId = null;
      report.forEach((s) => { if (s.type === "inbound-rtp" && s.kind === "video") codecId = s.codecId; });
      const entry = codecId && report.get(codecId);
      return entry ? { mimeType: entry.mimeType, sdpFmtpLine: entry.sdpFmtpLine || "" } : null;
    });
    assert.ok(negotiated && negotiated.mimeType === `video/${codec}`, `${file}: ${JSON.stringify(negotiated)}`);
    assert.ok(negotiated.sdpFmtpLine.includes(fmtp), `${file}: ${JSON.stringify(negotiated)}`);
    // The server counts the same connection.
    const connections = await (await fetch(`${server.base}/api/v1/webrtc/connections`, admin)).json();
    assert.equal(connections.count, 1, `${file}: one connection on the server`);
    await page.screenshot({ path: join(screenshots, `player-${file.replace(/\.[a-z0-9]+$/, "")}-${transport}.png`) });
    console.log(JSON.stringify({ file, transport, started_by: start, codec, frames_decoded: state.framesDecoded,
      time_to_first_frame_ms: Math.round(state.ttff) }));
    assert.deepEqual(errors, [], `${file}: no page errors`);
    await page.close({ runBeforeUnload: true });
    // Closing the page closes the connection on the server.
    let open = 1;
    for (let i = 0; i < 100 && open > 0; i++) {
      await new Promise((r) => setTimeout(r, 200));
      open = (await (await fetch(`${server.base}/api/v1/webrtc/connections`, admin)).json()).count;
    }
    assert.equal(open, 0, `${file}: the connection is gone after the page closed`);
  }

  // A CID only an upstream has: a second server with the first as its gateway plays it, every
  // block fetched and verified on the way.
  const edge = await startServer(binary, ["--gateway", server.base]);
  try {
    const cid = await add(server.base, server.token, "vp8-opus.webm");
    const page = await browser.newPage({ viewport: { width: 1000, height: 560 } });
    await page.goto(`${edge.base}/player?cid=${cid}&transport=whep`);
    await page.waitForFunction(() => window.playerState && window.playerState().framesDecoded > 0
      && window.playerState().ttff != null, null, { timeout: 20000 });
    const state = await page.evaluate(() => window.playerState());
    const metrics = await (await fetch(`${edge.base}/metrics`, { headers: { Authorization: `Bearer ${edge.token}` } })).text();
    const fetched = Number((metrics.match(/^ipfs_stream_remote_blocks_total (\d+)/m) || [])[1]);
    assert.ok(fetched > 0, "the edge fetched the media's blocks from its upstream");
    await page.screenshot({ path: join(screenshots, "player-remote-vp8-opus-whep.png") });
    console.log(JSON.stringify({ file: "vp8-opus.webm", transport: "whep", started_by: "link", from: "upstream",
      frames_decoded: state.framesDecoded, blocks_fetched: fetched, time_to_first_frame_ms: Math.round(state.ttff) }));
    await page.close({ runBeforeUnload: true });
  } finally {
    edge.stop();
  }
} finally {
  if (browser) await browser.close();
  server.stop();
}
