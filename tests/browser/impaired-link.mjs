// Headless Chromium playing over WHEP through the impaired link (the `impaired_relay` example,
// crates/server/examples/impaired_relay.rs): the browser's offer goes without its candidates, and
// its copy of the answer names the relay's port as the server's only candidate, so every packet
// either way crosses the relay. Also reads the browser's own playback counters (getStats).
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";

const settingsLine = (settings) => Object.entries(settings).map(([key, value]) => `${key}=${value}`);

export async function startRelay(binary, settings = {}) {
  const child = spawn(binary, settingsLine(settings), { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout });
  const waiting = [];
  let ready;
  const started = new Promise((resolve, reject) => {
    ready = resolve;
    child.on("exit", (code) => reject(new Error(`impaired_relay exited with ${code}`)));
  });
  lines.on("line", (line) => (line === "ready" ? ready() : waiting.shift()?.(line)));
  await started;
  const ask = (command) =>
    new Promise((resolve, reject) => {
      waiting.push((line) => (line.startsWith("error") ? reject(new Error(line)) : resolve(line)));
      child.stdin.write(`${command}\n`);
    });
  return {
    async link(address) {
      return Number((await ask(`link ${address}`)).split(" ")[1]);
    },
    set: (settings) => ask(`set ${settingsLine(settings).join(" ")}`),
    counts: async () => JSON.parse(await ask("counts")),
    stop() {
      child.stdin.end();
    },
  };
}

// The server's UDP host candidate in an answer, as ip:port.
export function serverAddress(answer) {
  for (const line of answer.split(/\r?\n/)) {
    const fields = line.startsWith("a=candidate:") ? line.split(/\s+/) : [];
    if (fields[2]?.toLowerCase() === "udp" && fields.includes("host")) return `${fields[4]}:${fields[5]}`;
  }
  throw new Error("no UDP host candidate in the answer");
}

// The answer with the relay's port as the server's only candidate.
export function routeAnswer(answer, port) {
  let named = false;
  return answer
    .split("\r\n")
    .flatMap((line) => {
      if (!line.startsWith("a=candidate:")) return [line];
      if (named) return [];
      named = true;
      return [`a=candidate:1 1 udp 2130706431 127.0.0.1 ${port} typ host`];
    })
    .join("\r\n");
}

// Offer edits, to measure what each repair is worth: "none" takes NACK out (nothing is asked for
// again), "resend" takes RTX out (lost packets come again as they first went), "rtx" is the
// browser's own offer.
export function editOffer(sdp, repair) {
  let lines = sdp.split("\r\n");
  if (repair === "none" || repair === "resend") {
    const rtx = new Set(lines.filter((l) => / rtx\/90000$/.test(l)).map((l) => l.split(/[: ]/)[1]));
    lines = lines.filter((l) => {
      const payloadType = l.match(/^a=(?:rtpmap|fmtp|rtcp-fb):(\d+)/)?.[1];
      if (payloadType && rtx.has(payloadType)) return false;
      if (l.startsWith("a=ssrc-group:FID")) return false;
      return !(repair === "none" && /^a=rtcp-fb:\d+ nack$/.test(l));
    });
    lines = lines.map((l) => (l.startsWith("m=video") ? l.split(" ").filter((f, i) => i < 3 || !rtx.has(f)).join(" ") : l));
  }
  return lines.filter((l) => !l.startsWith("a=candidate:") && !l.startsWith("a=end-of-candidates")).join("\r\n");
}

// Starts a WHEP playback of `whepUrl` in `page` (a page of the server's origin) through `relay`.
// Returns the answer the server gave and its session's pc_id.
export async function playThrough(page, relay, whepUrl, { repair = "rtx", headers = {} } = {}) {
  await page.exposeFunction("relayLink", (address) => relay.link(address));
  return page.evaluate(
    async ({ whepUrl, repair, headers, edit, route, address }) => {
      const editOffer = new Function(`return (${edit})`)();
      const routeAnswer = new Function(`return (${route})`)();
      const serverAddress = new Function(`return (${address})`)();
      const pc = new RTCPeerConnection();
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
      const video = document.createElement("video");
      Object.assign(video, { muted: true, autoplay: true, playsInline: true, width: 320, height: 240 });
      document.body.append(video);
      const stream = new MediaStream();
      pc.ontrack = (event) => {
        stream.addTrack(event.track);
        video.srcObject = stream;
      };
      const started = performance.now();
      // The connection's states as they change (ms since the start), for telling why one failed.
      const events = [];
      const note = (what) => events.push(`${Math.round(performance.now() - started)} ms ${what}`);
      pc.addEventListener("iceconnectionstatechange", () => note(`ice ${pc.iceConnectionState}`));
      pc.addEventListener("connectionstatechange", () => note(`connection ${pc.connectionState}`));
      window.playback = { pc, video, started, firstFrame: null, events };
      video.requestVideoFrameCallback(() => (window.playback.firstFrame = performance.now() - started));
      // With no repair, Chromium must not NACK: that is its own (local) description's say.
      const created = await pc.createOffer();
      if (repair === "none") created.sdp = created.sdp.replace(/a=rtcp-fb:\d+ nack\r\n/g, "");
      await pc.setLocalDescription(created);
      const offer = editOffer(pc.localDescription.sdp, repair);
      const response = await fetch(whepUrl, {
        method: "POST",
        headers: { "Content-Type": "application/sdp", ...headers },
        body: offer,
      });
      if (response.status !== 201) throw new Error(`WHEP answered ${response.status}: ${await response.text()}`);
      const answer = await response.text();
      const port = await window.relayLink(serverAddress(answer));
      // The answer's feedback list is what Chromium goes by: with no repair, it is told not to NACK.
      let routed = routeAnswer(answer, port);
      if (repair === "none") routed = routed.split("\r\n").filter((l) => !/^a=rtcp-fb:\d+ nack$/.test(l)).join("\r\n");
      await pc.setRemoteDescription({ type: "answer", sdp: routed });
      const dtls = pc.getReceivers()[0].transport;
      if (dtls) {
        dtls.addEventListener("statechange", () => note(`dtls ${dtls.state}`));
        dtls.addEventListener("error", (event) => note(`dtls error ${event.error?.errorDetail} ${event.error?.message}`));
      }
      return { answer, pcId: response.headers.get("location").split("/").pop() };
    },
    {
      whepUrl,
      repair,
      headers,
      edit: editOffer.toString(),
      route: routeAnswer.toString(),
      address: serverAddress.toString(),
    },
  );
}

// The browser's counters of the video it received (inbound-rtp), with the time to its first
// frame and how long it has played since.
export async function videoStats(page) {
  return page.evaluate(async () => {
    const { pc, started, firstFrame } = window.playback;
    const report = await pc.getStats();
    let video = {};
    report.forEach((entry) => {
      if (entry.type === "inbound-rtp" && entry.kind === "video") video = entry;
    });
    const pick = (key) => video[key] ?? 0;
    return {
      connection: pc.connectionState,
      timeToFirstFrameMs: firstFrame,
      playedMs: firstFrame == null ? 0 : performance.now() - started - firstFrame,
      framesReceived: pick("framesReceived"),
      framesDecoded: pick("framesDecoded"),
      framesDropped: pick("framesDropped"),
      freezeCount: pick("freezeCount"),
      totalFreezesDuration: pick("totalFreezesDuration"),
      jitterBufferDelay: pick("jitterBufferDelay"),
      jitterBufferEmittedCount: pick("jitterBufferEmittedCount"),
      packetsReceived: pick("packetsReceived"),
      packetsLost: pick("packetsLost"),
      nackCount: pick("nackCount"),
      pliCount: pick("pliCount"),
      retransmittedPacketsReceived: pick("retransmittedPacketsReceived"),
      frameHeight: pick("frameHeight"),
    };
  });
}
