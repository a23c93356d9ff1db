// The player: plays a CID or a created stream over WHEP or the WebSocket signaling, and shows the
// browser's decoding counters beside the server's buffer counters.
"use strict";

const $ = (id) => document.getElementById(id);
const video = $("video");
let session = null;
// Milliseconds from the start of the current playback to each step of its setup.
let timeline = {};
let timelineStart = 0;
function mark(step) { if (timeline[step] == null) timeline[step] = Math.round(performance.now() - timelineStart); }
function watchSetup(pc) {
  pc.addEventListener("iceconnectionstatechange", () => { if (pc.iceConnectionState === "connected") mark("ice_connected"); });
  pc.addEventListener("connectionstatechange", () => { if (pc.connectionState === "connected") mark("connected"); });
  pc.addEventListener("track", () => mark("track"));
  // A remote track unmutes when its first packet arrives.
  const unmuted = (track) => { if (track.kind === "video") track.addEventListener("unmute", () => mark("first_packet"), { once: true }); };
  pc.getReceivers().forEach((receiver) => unmuted(receiver.track));
  pc.addEventListener("track", (event) => unmuted(event.track));
}

function setState(text) { $("state").textContent = text; }
function showError(text) { $("error").textContent = text || ""; }

function readForm() {
  return {
    cid: $("cid").value.trim(),
    stream: $("stream").value.trim(),
    quality: $("quality").value,
    transport: $("transport").value,
    // Only from the URL (?use_progressive_loading=false): the server's default otherwise.
    progressive: new URLSearchParams(location.search).get("use_progressive_loading"),
  };
}

/// A receiving peer with a video and an audio transceiver; `show()` hands their tracks to the
/// video element, which then sets up its playback while signaling and ICE run, instead of after
/// the first packets arrive.
function newPeer() {
  const pc = new RTCPeerConnection();
  const tracks = ["video", "audio"].map((kind) => pc.addTransceiver(kind, { direction: "recvonly" }).receiver.track);
  watchSetup(pc);
  pc.onconnectionstatechange = () => setState(pc.connectionState);
  const stream = new MediaStream(tracks);
  const show = () => {
    if (video.srcObject === stream) return;
    video.srcObject = stream;
    video.play().catch(() => {});
  };
  return { pc, show };
}

/// A WHEP peer made ahead of the playback: its offer does not depend on what is played, so the
/// page makes the next one at load, once a playback has its first frame, and after Stop; pressing
/// Play then costs the server's answer, ICE and DTLS only. A playback that starts before its peer
/// is ready takes it as far as it got: the offer goes as soon as it exists and the candidates
/// follow by PATCH.
let preparedPeer = null;
/// Set while the page is being left: no new peer then.
let leaving = false;
function prepareWhepPeer() {
  const peer = newPeer();
  const { pc } = peer;
  peer.candidates = [];
  peer.onCandidate = null;
  pc.addEventListener("icecandidate", (event) => {
    const candidate = event.candidate;
    if (!candidate || !candidate.candidate) return;
    if (peer.onCandidate) peer.onCandidate(candidate); else peer.candidates.push(candidate);
  });
  peer.offer = pc.createOffer();
  peer.applied = peer.offer.then((offer) => pc.setLocalDescription(offer));
  peer.ready = () => pc.iceGatheringState === "complete" && pc.localDescription != null;
  peer.offer.catch(() => {});
  peer.applied.catch(() => {});
  return peer;
}
function takeWhepPeer() {
  const peer = preparedPeer || prepareWhepPeer();
  preparedPeer = null;
  return peer;
}
function prepareNextPeer() {
  if (leaving) return;
  if ($("transport").value !== "whep") {
    dropPreparedPeer();
    return;
  }
  if (!preparedPeer) preparedPeer = prepareWhepPeer();
  showPreparedWhileIdle();
}
function dropPreparedPeer() {
  if (preparedPeer) preparedPeer.pc.close();
  preparedPeer = null;
}
/// With no playback on, the video element takes the prepared peer's (still silent) tracks: setting
/// up its media pipeline cost the playback about 15 ms otherwise. After the page's load event
/// only, as a media element waiting for data holds that event back.
function showPreparedWhileIdle() {
  if (document.readyState !== "complete") return;
  if (!session && preparedPeer) preparedPeer.show();
}
window.addEventListener("load", () => showPreparedWhileIdle());

/// The candidates as a trickle-ice-sdpfrag (RFC 8840) for a WHEP PATCH.
function sdpfrag(pc, candidates) {
  const sdp = pc.localDescription.sdp;
  const field = (name) => (new RegExp(`a=${name}:(.*)`).exec(sdp) || [])[1].trim();
  let frag = `a=ice-ufrag:${field("ice-ufrag")}\r\na=ice-pwd:${field("ice-pwd")}\r\n`;
  for (const c of candidates) frag += `m=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:${c.sdpMid}\r\na=${c.candidate}\r\n`;
  return frag;
}

async function playWhep(form) {
  const peer = takeWhepPeer();
  const { pc, show } = peer;
  const target = form.stream ? `/whep/streams/${encodeURIComponent(form.stream)}` : `/whep/${encodeURIComponent(form.cid)}`;
  let answered = null;
  try {
    const offer = await peer.offer;
    // A prepared peer's local description carries all its candidates; otherwise the offer goes at
    // once and the candidates follow by PATCH (trickle ICE): waiting for the browser to finish
    // gathering cost more than the rest of the setup. Candidates found later (a new network)
    // follow by PATCH either way.
    const complete = peer.ready();
    const pending = complete ? [] : peer.candidates;
    let resource = null;
    const trickle = (candidates) => {
      IpfsStreamAuth.fetch(resource, { method: "PATCH", headers: { "Content-Type": "application/trickle-ice-sdpfrag" },
        body: sdpfrag(pc, candidates) }).catch(() => {});
    };
    peer.onCandidate = (candidate) => { if (resource) trickle([candidate]); else pending.push(candidate); };
    const progressive = form.progressive == null ? "" : `&use_progressive_loading=${form.progressive}`;
    answered = IpfsStreamAuth.fetch(`${target}?quality=${form.quality}${progressive}`, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: complete ? pc.localDescription.sdp : offer.sdp,
    });
    mark("offer");
    // Applying the offer locally, and the video element's own setup, run while the server answers.
    show();
    await peer.applied;
    mark("offer_applied");
    const response = await answered;
    mark("answer_response");
    if (response.status !== 201) {
      const body = await response.json().catch(() => ({}));
      throw new Error(body.message || `WHEP answered ${response.status}`);
    }
    const location = response.headers.get("Location");
    const sdp = await response.text();
    mark("answer");
    await pc.setRemoteDescription({ type: "answer", sdp });
    if (location) {
      resource = location;
      if (pending.length) trickle(pending);
    }
    return {
      pc,
      pcId: location ? location.split("/").pop() : null,
      prepared: complete,
      close: async () => {
        pc.close();
        // keepalive: the DELETE still goes out when the page is being unloaded.
        if (location) fetch(location, { method: "DELETE", keepalive: true, headers: bearerHeaders() }).catch(() => {});
      },
    };
  } catch (error) {
    pc.close();
    // A session the server made for this offer is ended, not left to its ICE timeout.
    if (answered) {
      answered.then((response) => {
        const location = response.status === 201 && response.headers.get("Location");
        if (location) fetch(location, { method: "DELETE", keepalive: true, headers: bearerHeaders() }).catch(() => {});
      }).catch(() => {});
    }
    throw error;
  }
}

// The token's header for requests that must not stop to ask for one (those sent on unload).
function bearerHeaders() {
  return IpfsStreamAuth.token() ? { Authorization: `Bearer ${IpfsStreamAuth.token()}` } : {};
}

async function playWebSocket(form) {
  const url = await IpfsStreamAuth.socketUrl("/ws/webrtc");
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let pc = null;
    let pcId = null;
    ws.onerror = () => reject(new Error("the signaling socket failed"));
    ws.onmessage = async (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "welcome") {
        mark("welcome");
        const request = { type: "offer_request", quality: form.quality };
        if (form.progressive != null) request.use_progressive_loading = form.progressive === "true";
        if (form.stream) request.stream_id = form.stream; else request.cid = form.cid;
        ws.send(JSON.stringify(request));
      } else if (message.type === "offer") {
        pcId = message.pc_id;
        mark("offer");
        pc = new RTCPeerConnection({ iceServers: message.ice_servers || [] });
        watchSetup(pc);
        const stream = new MediaStream();
        pc.ontrack = (e) => { stream.addTrack(e.track); video.srcObject = stream; video.play().catch(() => {}); };
        pc.onconnectionstatechange = () => setState(pc.connectionState);
        pc.onicecandidate = (e) => {
          if (e.candidate && e.candidate.candidate) {
            ws.send(JSON.stringify({ type: "candidate", pc_id: pcId, candidate: e.candidate.candidate,
              sdpMid: e.candidate.sdpMid, sdpMLineIndex: e.candidate.sdpMLineIndex }));
          }
        };
        await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
        const answer = await pc.createAnswer();
        // The answer goes out before the candidates its local description starts gathering.
        ws.send(JSON.stringify({ type: "answer", pc_id: pcId, sdp: answer.sdp }));
        mark("answer");
        await pc.setLocalDescription(answer);
        resolve({ pc, pcId, ws, close: async () => { ws.send(JSON.stringify({ type: "close", pc_id: pcId })); pc.close(); ws.close(); } });
      } else if (message.type === "candidate" && pc) {
        await pc.addIceCandidate({ candidate: message.candidate, sdpMid: message.sdpMid, sdpMLineIndex: message.sdpMLineIndex }).catch(() => {});
      } else if (message.type === "error") {
        showError(message.message);
        reject(new Error(message.message));
      }
    };
  });
}

const formatBitrate = (bps) => (bps >= 1e6 ? `${(bps / 1e6).toFixed(2)} Mbit/s` : `${Math.round(bps / 1e3)} kbit/s`);

// Browser counters every second; the server's buffer counters from the REST stats.
let previous = null;
async function refresh() {
  if (!session) return;
  const report = await session.pc.getStats();
  report.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") {
      $("framesDecoded").textContent = s.framesDecoded ?? 0;
      $("resolution").textContent = s.frameWidth ? `${s.frameWidth}×${s.frameHeight}` : "–";
      $("lost").textContent = s.packetsLost ?? 0;
      $("jitter").textContent = s.jitter != null ? `${(s.jitter * 1000).toFixed(1)} ms` : "–";
      if (previous) {
        const seconds = (s.timestamp - previous.timestamp) / 1000;
        if (seconds > 0) $("bitrate").textContent = formatBitrate(((s.bytesReceived - previous.bytes) * 8) / seconds);
      }
      previous = { timestamp: s.timestamp, bytes: s.bytesReceived };

    }
  });
  if (session.pcId) {
    const response = await IpfsStreamAuth.fetch(`/api/v1/webrtc/connections/${session.pcId}/stats`).catch(() => null);
    if (response && response.ok) {
      const stats = await response.json();
      $("fill").textContent = `${Math.round(stats.buffer.fill_level * 100)} % (target ${stats.buffer.buffer_target})`;
      $("underflows").textContent = stats.buffer.underflows;
      $("rendition").textContent = `${stats.quality} → ${stats.rendition}`;
    }
  }
}
setInterval(() => refresh().catch(() => {}), 1000);

// The first frame decoded and handed to the compositor ends the time to first frame (the video
// frame callback's presentation time); the callback itself comes at the next rendering step, up to
// a display refresh later, and is marked as well.
function watchFirstFrame(current) {
  const presented = (now, frame) => {
    if (session === current && current.ttff == null) {
      const callback = performance.now();
      current.ttff = (frame && frame.presentationTime ? Math.min(frame.presentationTime, callback) : callback) - current.started;
      mark("first_frame_callback");
      timeline.first_frame = Math.round(current.ttff);
      $("ttff").textContent = `${Math.round(current.ttff)} ms`;
      // The next playback's peer, now that this one's setup is done.
      prepareNextPeer();
    }
  };
  if ("requestVideoFrameCallback" in HTMLVideoElement.prototype) video.requestVideoFrameCallback(presented);
  else video.addEventListener("loadeddata", presented, { once: true });
}

async function play(form) {
  const started = performance.now();
  await stop();
  showError("");
  if (!form.cid && !form.stream) { showError("give a CID or a stream id"); return; }
  setState("connecting");
  timeline = {};
  timelineStart = started;
  try {
    session = form.transport === "ws" ? await playWebSocket(form) : await playWhep(form);
    session.started = started;
    watchFirstFrame(session);
  } catch (error) {
    setState("failed");
    showError(error.message);
    prepareNextPeer();
  }
}

async function stop() {
  if (session) {
    const closing = session;
    session = null;
    previous = null;
    await closing.close().catch(() => {});
    setState("closed");
  }
  prepareNextPeer();
}

$("source").addEventListener("submit", (event) => { event.preventDefault(); play(readForm()); });
$("stop").addEventListener("click", () => stop());
// Leaving the page hangs up at once instead of leaving the server to time the connection out.
window.addEventListener("pagehide", () => {
  leaving = true;
  dropPreparedPeer();
  stop();
});
// Back from the back/forward cache: the page is usable again.
window.addEventListener("pageshow", (event) => {
  if (!event.persisted) return;
  leaving = false;
  prepareNextPeer();
});
$("transport").addEventListener("change", () => prepareNextPeer());

// /player?cid=…&quality=…&transport=ws plays at once.
const params = new URLSearchParams(location.search);
if (params.get("cid")) $("cid").value = params.get("cid");
if (params.get("stream_id")) $("stream").value = params.get("stream_id");
if (params.get("quality")) $("quality").value = params.get("quality");
if (params.get("transport")) $("transport").value = params.get("transport");
prepareNextPeer();
if (params.get("cid") || params.get("stream_id")) play(readForm());
window.playerState = () => ({
  pcId: session && session.pcId,
  ttff: session && session.ttff,
  // Whether the playback went out with a peer prepared ahead, and whether the next one is ready.
  peerPrepared: Boolean(session && session.prepared),
  nextPeerReady: Boolean(preparedPeer && preparedPeer.ready()),
  timeline: { ...timeline },
  framesDecoded: Number($("framesDecoded").textContent),
});
