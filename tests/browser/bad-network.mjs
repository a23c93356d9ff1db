// Playback in headless Chromium under bad conditions, for scripts/bench-playback.sh: every playback
// goes over WHEP through the impaired link (see impaired-link.mjs) and is judged by Chromium's own
// counters. Prints one JSON line per case. Usage:
//   node bad-network.mjs loss   <server> <impaired_relay> <cid> <seconds>
//       clean, 5% and 15% random loss and bursty loss (5% in bursts of 5 on average), all at a 50 ms
//       round trip, each with no repair, with plain resends and with RTX;
//   node bad-network.mjs cap    <server> <impaired_relay> <low cid> <medium cid> <high cid> <seconds capped> <seconds free>
//       `auto` over three renditions with the downstream capped at 600 kbit/s, then the cap lifted;
//   node bad-network.mjs stalls <server> <impaired_relay> <cid> <seconds> <buffer sizes...>
//       playbacks from a store whose reads the server delays (its fault injection, set by the
//       caller), with the buffer of each size, fixed, and adaptive;
//   node bad-network.mjs ondemand <server> <impaired_relay> <cid> <seconds> <progressive: true|false>
//       one viewer who leaves after `seconds`.
import assert from "node:assert/strict";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS } from "./server.mjs";
import { playThrough, startRelay, videoStats } from "./impaired-link.mjs";

const [part, base, relayBinary, ...rest] = process.argv.slice(2);
const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: CHROMIUM_ARGS });
const relay = await startRelay(relayBinary, { seed: 42 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const json = async (url, init) => (await fetch(url, init)).json();

const NO_IMPAIRMENT = { loss: 0, burst_loss: 0, delay_ms: 0, jitter_ms: 0, rate_kbps: 0, queue_ms: 200 };

// One playback of `whepUrl` for up to `seconds` (or until its frames stop coming), sampling
// Chromium's decoded-frame count every 100 ms; `during(elapsed, pcId)` runs at each sample.
async function play(whepUrl, seconds, { repair = "rtx", during } = {}) {
  const page = await browser.newPage();
  await page.goto(`${base}/`);
  const countsBefore = await relay.counts();
  const { pcId } = await playThrough(page, relay, whepUrl, { repair });
  const started = Date.now();
  const samples = [];
  let last = { framesDecoded: 0 };
  let stillSince = Date.now();
  while (Date.now() - started < seconds * 1000) {
    await sleep(100);
    const stats = await videoStats(page);
    samples.push({ at: Date.now() - started, decoded: stats.framesDecoded });
    if (stats.framesDecoded !== last.framesDecoded) stillSince = Date.now();
    last = stats;
    if (during) await during(Date.now() - started, pcId);
    // The file played out: nothing decoded for 3 s after frames came.
    if (stats.framesDecoded > 0 && Date.now() - stillSince > 3000) break;
  }
  const response = await fetch(`${base}/api/v1/webrtc/connections/${pcId}/stats`);
  if (!response.ok) {
    // The server ended the connection before the playback did: say how far the browser got.
    throw new Error(`connection ${pcId} ended early (stats: ${response.status} ${await response.text()}); ` +
      `the browser: ${JSON.stringify({ connection: last.connection, framesDecoded: last.framesDecoded, packetsReceived: last.packetsReceived, events: await page.evaluate(() => window.playback.events) })}`);
  }
  const server = await response.json();
  const countsAfter = await relay.counts();
  await page.close();
  // The longest stretch without a new decoded frame, after the first.
  let longestStill = 0;
  let lastChange = null;
  for (let i = 1; i < samples.length; i++) {
    if (samples[i].decoded !== samples[i - 1].decoded) {
      if (lastChange != null && samples[i - 1].decoded > 0) longestStill = Math.max(longestStill, samples[i].at - lastChange);
      lastChange = samples[i].at;
    }
  }
  if (process.env.GAPS) {
    // Where the picture stood still over 150 ms (sampled every 100 ms), for looking into a case.
    const gaps = [];
    for (let i = 1, since = null; i < samples.length; i++) {
      if (samples[i].decoded !== samples[i - 1].decoded) {
        if (since != null && samples[i].at - since > 150) gaps.push([since, samples[i].at - since]);
        since = samples[i].at;
      }
    }
    console.error(JSON.stringify({ started_at: new Date(started).toISOString(), gaps }));
  }
  const lost = {};
  for (const key of Object.keys(countsAfter)) lost[key] = countsAfter[key] - (countsBefore[key] ?? 0);
  return { browser: last, server, link: lost, samples, longestStillMs: longestStill };
}

function summary(result) {
  const { browser: b, server } = result;
  const playedS = b.playedMs / 1000;
  // Frames sent again on a keyframe request are decoded as frames of their own: they are not
  // frames of the file, so they come off Chromium's count.
  const decoded = Math.max(0, b.framesDecoded - server.transport.frames_replayed);
  return {
    frames_sent: server.frames_sent,
    frames_decoded: decoded,
    frames_replayed: server.transport.frames_replayed,
    decoded_share: server.frames_sent ? decoded / server.frames_sent : 0,
    freezes: b.freezeCount,
    freeze_s: Number(b.totalFreezesDuration.toFixed(3)),
    freeze_share: playedS > 0 ? b.totalFreezesDuration / playedS : 0,
    played_s: Number(playedS.toFixed(1)),
    time_to_first_frame_ms: b.timeToFirstFrameMs == null ? null : Math.round(b.timeToFirstFrameMs),
    jitter_buffer_ms: b.jitterBufferEmittedCount ? Math.round((1000 * b.jitterBufferDelay) / b.jitterBufferEmittedCount) : null,
    nacks: b.nackCount,
    plis: b.pliCount,
    repaired_rtx: b.retransmittedPacketsReceived,
    server_retransmitted: server.transport.packets_retransmitted,
    repair: server.transport.repair,
    link_packets: result.link.downstream_packets,
    link_lost: result.link.lost_random + result.link.lost_burst + result.link.dropped_by_queue,
  };
}

try {
  if (part === "loss") {
    const [cid, seconds] = rest;
    const conditions = {
      clean: { ...NO_IMPAIRMENT, delay_ms: 25, jitter_ms: 2 },
      "random 5%": { ...NO_IMPAIRMENT, delay_ms: 25, jitter_ms: 2, loss: 0.05 },
      "random 15%": { ...NO_IMPAIRMENT, delay_ms: 25, jitter_ms: 2, loss: 0.15 },
      "bursty 5% (bursts of 5)": { ...NO_IMPAIRMENT, delay_ms: 25, jitter_ms: 2, burst_loss: 0.05, mean_burst: 5 },
    };
    const only = process.env.CASES?.split(","); // e.g. "random 5%:resend,clean:none": these cases only
    for (const [condition, settings] of Object.entries(conditions)) {
      for (const repair of ["none", "resend", "rtx"]) {
        if (only && !only.includes(`${condition}:${repair}`)) continue;
        await relay.set(settings);
        const result = await play(`${base}/whep/${cid}?buffer_size=30`, Number(seconds), { repair });
        if (result.server.frames_sent === 0) console.error(`${condition}, ${repair}: nothing played`, JSON.stringify(result.server));
        console.log(JSON.stringify({ part, condition, repair_offered: repair, ...summary(result) }));
      }
    }
  } else if (part === "cap") {
    const [low, medium, high, capped, free] = rest;
    const created = await json(`${base}/api/v1/webrtc/streams`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({
        cid: high, quality: "auto", buffer_size: 30,
        renditions: [{ quality: "low", cid: low }, { quality: "medium", cid: medium }, { quality: "high", cid: high }],
      }),
    });
    assert.ok(created.whep_url, JSON.stringify(created));
    // Cap from the start: the fitting rendition is found and kept; then the cap goes.
    await relay.set({ ...NO_IMPAIRMENT, delay_ms: 25, jitter_ms: 2, rate_kbps: 600, queue_ms: 300 });
    const timeline = [];
    let lifted = null;
    const result = await play(`${base}/whep/streams/${created.stream_id}?quality=auto`, Number(capped) + Number(free), {
      during: async (elapsed, pcId) => {
        if (lifted == null && elapsed >= Number(capped) * 1000) {
          lifted = elapsed;
          await relay.set({ rate_kbps: 0 });
        }
        if (timeline.length === 0 || elapsed - timeline.at(-1).at >= 250) {
          const stats = await json(`${base}/api/v1/webrtc/connections/${pcId}/stats`);
          timeline.push({
            at: elapsed, rendition: stats.rendition, estimate: Math.round(stats.transport.bandwidth_estimate_bps),
            probed: stats.transport.bandwidth_probed_bps == null ? null : Math.round(stats.transport.bandwidth_probed_bps),
          });
        }
      },
    });
    // Settled: the time of the last change of rendition within a window (none after it).
    const settledAt = (from, to) => {
      const window = timeline.filter((s) => s.at >= from && s.at < to);
      let at = from;
      for (let i = 1; i < window.length; i++) if (window[i].rendition !== window[i - 1].rendition) at = window[i].at;
      return { rendition: window.at(-1)?.rendition, settled_after_ms: at - from };
    };
    const stillsUnderCap = [];
    const samples = result.samples.filter((s) => s.at < lifted);
    let change = null;
    for (let i = 1; i < samples.length; i++) {
      if (samples[i].decoded !== samples[i - 1].decoded) {
        if (change != null) stillsUnderCap.push(samples[i].at - change);
        change = samples[i].at;
      }
    }
    console.log(JSON.stringify({
      part, cap_kbps: 600,
      under_cap: settledAt(0, lifted),
      after_lift: settledAt(lifted, Infinity),
      freezes_over_1s_under_cap: stillsUnderCap.filter((ms) => ms > 1000).length,
      longest_still_under_cap_ms: Math.max(0, ...stillsUnderCap),
      ...summary(result),
      timeline: timeline.filter((s, i) => i === 0 || s.rendition !== timeline[i - 1].rendition),
    }));
  } else if (part === "stalls") {
    const [cid, seconds, ...sizes] = rest;
    await relay.set({ ...NO_IMPAIRMENT });
    for (const size of sizes) {
      const [buffer, adaptive] = size === "adaptive" ? [30, true] : [Number(size), false];
      const result = await play(`${base}/whep/${cid}?buffer_size=${buffer}&adaptive_buffer=${adaptive}`, Number(seconds));
      console.log(JSON.stringify({
        part, buffer: size, underflows: result.server.buffer.underflows, buffer_target_at_end: result.server.buffer.buffer_target,
        ...summary(result),
      }));
    }
  } else if (part === "ondemand") {
    // A viewer who leaves after `seconds`; the caller reads the store's counters around it.
    const [cid, seconds, progressive] = rest;
    await relay.set({ ...NO_IMPAIRMENT });
    const result = await play(`${base}/whep/${cid}?use_progressive_loading=${progressive}`, Number(seconds));
    console.log(JSON.stringify({
      part, progressive: progressive === "true", bytes_sent: result.server.bytes_sent, ...summary(result),
    }));
  } else {
    throw new Error(`unknown part ${part}`);
  }
} finally {
  relay.stop();
  await browser.close();
}
