// The ipfs-stream dashboard: charts fed live by system_metrics notifications over
// /ws/notifications, history from /api/v1/metrics/history, anomalies from system_warning events
// and /api/v1/analytics, active streams from /api/v1/content/active. Where instances share a
// database, the charts show this instance (live), another, or the whole service (both reloaded
// from the history every few seconds).
"use strict";

const CHARTS = [
  { title: "Throughput", unit: "bytes", series: [
    ["throughput_out_bytes_per_second", "out", "#4fb3ff"],
    ["throughput_in_bytes_per_second", "in", "#c792ea"]] },
  { title: "Streams and viewers", unit: "count", series: [
    ["active_streams", "streams", "#4cd486"],
    ["viewers", "viewers", "#ffcb6b"],
    ["active_streams_webrtc", "webrtc", "#f78c6c"]] },
  { title: "Latency p95 and errors", unit: "mixed", series: [
    ["latency_p95_seconds", "p95 (s)", "#ff9cac"],
    ["error_rate", "error rate", "#ff5d5d"]] },
  { title: "Requests and underflows", unit: "rate", series: [
    ["request_rate", "requests/s", "#89ddff"],
    ["underflow_rate", "underflows/s", "#f07178"]] },
  { title: "CPU", unit: "percent", series: [["cpu_percent", "cpu %", "#c3e88d"]] },
  { title: "Memory", unit: "bytes", series: [["rss_bytes", "rss", "#82aaff"]] },
  { title: "Fetched from upstream gateways", unit: "bytes", series: [
    ["remote_bytes_per_second", "fetched/s", "#ffcb6b"]] },
  { title: "Block reads served here", unit: "ratio", series: [
    ["local_hit_ratio", "share served here", "#4cd486"]] },
];

const state = {
  range: 300,          // seconds shown
  samples: [],         // [{t (s), values: {metric: value}}], oldest first
  anomalies: [],       // [{t (s), metric, value, score}]
  charts: [],
  pending: false,
  instance: "",        // "" this instance, "all" the whole service, else an instance's name
  // Read by tests: points drawn, event-to-chart latencies (ms), alerts shown.
  stats: { points: 0, latencies: [], alerts: 0, events: 0, instances: [], loaded: "" },
};
window.__dashboard = state.stats;

const $ = (id) => document.getElementById(id);

function formatBytes(v) {
  if (v == null || !isFinite(v)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}
const formatTime = (ms) => new Date(ms).toLocaleTimeString();

// Vertical red lines where anomalies were raised on one of the chart's series.
function anomalyMarkers(metrics) {
  return {
    hooks: {
      draw: [(u) => {
        const ctx = u.ctx;
        ctx.save();
        ctx.strokeStyle = "#ff5d5d";
        ctx.lineWidth = 2 * devicePixelRatio;
        for (const a of state.anomalies) {
          if (!metrics.includes(a.metric)) continue;
          const x = u.valToPos(a.t, "x", true);
          if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
          ctx.beginPath();
          ctx.moveTo(x, u.bbox.top);
          ctx.lineTo(x, u.bbox.top + u.bbox.height);
          ctx.stroke();
        }
        ctx.restore();
      }],
    },
  };
}

function chartWidth(box) {
  return Math.max(320, box.clientWidth - 16);
}

// Boxes first, charts second: each chart takes the width its grid cell ends up with.
function makeCharts() {
  const container = $("charts");
  container.innerHTML = "";
  const boxes = CHARTS.map((def) => {
    const box = document.createElement("div");
    box.className = "chart";
    box.dataset.title = def.title;
    box.innerHTML = `<h3>${def.title}</h3>`;
    container.appendChild(box);
    return box;
  });
  state.charts = CHARTS.map((def, i) => {
    const box = boxes[i];
    const axisValues = def.unit === "bytes" ? (u, vals) => vals.map(formatBytes) : undefined;
    const opts = {
      width: chartWidth(box),
      height: 180,
      series: [{}].concat(def.series.map(([, label, color]) => ({ label, stroke: color, width: 1.5, spanGaps: true }))),
      axes: [
        { stroke: "#8a96a3", grid: { stroke: "#222c37" } },
        { stroke: "#8a96a3", grid: { stroke: "#222c37" }, values: axisValues, size: 70 },
      ],
      scales: { x: { time: true } },
      plugins: [anomalyMarkers(def.series.map(([m]) => m))],
    };
    const chart = new uPlot(opts, [[], ...def.series.map(() => [])], box);
    return { def, chart, box };
  });
}

window.addEventListener("resize", () => {
  for (const { chart, box } of state.charts) chart.setSize({ width: chartWidth(box), height: 180 });
});

function trim() {
  const newest = state.samples.length ? state.samples[state.samples.length - 1].t : Date.now() / 1000;
  const oldest = newest - state.range;
  let drop = 0;
  while (drop < state.samples.length && state.samples[drop].t < oldest) drop++;
  if (drop) state.samples.splice(0, drop);
}

function render(eventTimes) {
  state.pending = false;
  trim();
  const ts = state.samples.map((s) => s.t);
  for (const { def, chart } of state.charts) {
    const data = [ts, ...def.series.map(([m]) => state.samples.map((s) => s.values[m] ?? null))];
    chart.setData(data);
  }
  state.stats.points = ts.length;
  const drawn = Date.now();
  for (const at of eventTimes || []) state.stats.latencies.push(drawn - at);
  if (state.stats.latencies.length > 2000) state.stats.latencies.splice(0, 1000);
}

let queuedEventTimes = [];
function scheduleRender(eventTime) {
  if (eventTime) queuedEventTimes.push(eventTime);
  if (state.pending) return;
  state.pending = true;
  requestAnimationFrame(() => {
    const times = queuedEventTimes;
    queuedEventTimes = [];
    render(times);
  });
}

function updateCards(values) {
  $("card-out").textContent = `${formatBytes(values.throughput_out_bytes_per_second)}/s`;
  $("card-in").textContent = `${formatBytes(values.throughput_in_bytes_per_second)}/s`;
  $("card-viewers").textContent = values.viewers ?? "–";
  $("card-streams").textContent = values.active_streams ?? "–";
  $("card-latency").textContent = values.latency_p95_seconds != null ? `${(values.latency_p95_seconds * 1000).toFixed(1)} ms` : "–";
  $("card-errors").textContent = values.error_rate != null ? `${(values.error_rate * 100).toFixed(1)} %` : "–";
  $("card-cpu").textContent = values.cpu_percent != null ? `${values.cpu_percent.toFixed(0)} %` : "–";
  $("card-rss").textContent = formatBytes(values.rss_bytes);
}

function addFeed(listId, text, className, at) {
  const list = $(listId);
  const item = document.createElement("li");
  if (className) item.className = className;
  const time = document.createElement("span");
  time.className = "time";
  time.textContent = formatTime(at);
  item.append(time, document.createTextNode(text));
  list.prepend(item);
  while (list.children.length > 100) list.lastChild.remove();
}

function showAnomaly(a, atMs) {
  state.anomalies.push({ t: atMs / 1000, metric: a.metric, value: a.value, score: a.score });
  if (state.anomalies.length > 500) state.anomalies.shift();
  const [low, high] = a.expected_range || [a.expected_low, a.expected_high];
  addFeed("alerts", `${a.metric} = ${Number(a.value).toPrecision(4)} (expected ${Number(low).toPrecision(3)}–${Number(high).toPrecision(3)}, score ${a.score})`, "warning", atMs);
  state.stats.alerts += 1;
  $("card-anomalies").textContent = state.stats.alerts;
  $("card-anomalies").parentElement.classList.add("raised");
}

function onNotification(message) {
  state.stats.events += 1;
  const kind = message.notification_type;
  const data = message.data || {};
  if (kind === "system_metrics") {
    // This instance's own samples: the charts show them only when they show this instance.
    if (state.instance !== "") return;
    const at = data.at_ms || message.timestamp;
    const t = at / 1000;
    // History buckets and live samples interleave after a range change: keep time ascending.
    let i = state.samples.length;
    while (i > 0 && state.samples[i - 1].t > t) i--;
    state.samples.splice(i, 0, { t, values: data });
    updateCards(data);
    scheduleRender(at);
    return;
  }
  if (kind === "system_warning" && data.metric) {
    showAnomaly(data, data.at_ms || message.timestamp);
    scheduleRender();
  } else if (kind === "system_warning" || kind === "system_error" || kind === "webrtc_error") {
    addFeed("alerts", `${kind}: ${data.message || data.path || JSON.stringify(data)}`, "warning", message.timestamp);
    state.stats.alerts += 1;
  }
  const summary = data.cid || data.path || data.message || "";
  addFeed("notifications", `${kind} ${summary}`, null, message.timestamp);
}

async function connect() {
  const socket = new WebSocket(await IpfsStreamAuth.socketUrl("/ws/notifications"));
  let keepAlive;
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "welcome") {
      socket.send(JSON.stringify({ action: "subscribe", notification_types: message.available_notifications }));
      $("connection").textContent = "live";
      $("connection").className = "badge on";
    } else if (message.type === "notification") {
      onNotification(message);
    }
  };
  socket.onopen = () => {
    keepAlive = setInterval(() => socket.send(JSON.stringify({ action: "ping" })), 60000);
  };
  socket.onclose = () => {
    clearInterval(keepAlive);
    $("connection").textContent = "reconnecting…";
    $("connection").className = "badge off";
    setTimeout(connect, 2000);
  };
}

// Loads the chosen range from the history API, bucketed so a day is ~1500 points.
async function loadRange(seconds) {
  state.range = seconds;
  const until = Date.now();
  const since = until - seconds * 1000;
  const step = Math.max(1, Math.round(seconds / 1500));
  const metrics = CHARTS.flatMap((c) => c.series.map(([m]) => m));
  const byTime = new Map();
  await Promise.all(metrics.map(async (metric) => {
    const instance = state.instance ? `&instance=${encodeURIComponent(state.instance)}` : "";
    const response = await IpfsStreamAuth.fetch(`/api/v1/metrics/history?metric=${metric}&since=${since}&until=${until}&step=${step}${instance}`);
    if (!response.ok) return;
    const body = await response.json();
    for (const p of body.points) {
      if (!byTime.has(p.t)) byTime.set(p.t, {});
      byTime.get(p.t)[metric] = p.value;
    }
  }));
  const live = state.instance ? [] : state.samples.filter((s) => s.t * 1000 >= until);
  state.stats.loaded = state.instance;
  state.samples = [...byTime.entries()].sort((a, b) => a[0] - b[0]).map(([t, values]) => ({ t: t / 1000, values })).concat(live);
  const analytics = await IpfsStreamAuth.fetch(`/api/v1/analytics?since=${since}&limit=200`).then((r) => r.ok ? r.json() : { anomalies: [] });
  state.anomalies = analytics.anomalies.map((a) => ({ t: a.at_ms / 1000, metric: a.metric, value: a.value, score: a.score })).reverse();
  scheduleRender();
}

async function refreshActive() {
  try {
    const body = await IpfsStreamAuth.fetch("/api/v1/content/active").then((r) => r.json());
    const rows = $("active-rows");
    rows.innerHTML = "";
    if (!body.active.length) {
      rows.innerHTML = '<tr><td colspan="6" class="empty">nothing is streaming</td></tr>';
      return;
    }
    for (const a of body.active) {
      const tr = document.createElement("tr");
      const health = a.buffer_fill != null ? `${Math.round(a.buffer_fill * 100)} % full, ${a.underflows} underflows` : "unbuffered";
      for (const [text, cls] of [[a.cid, "cid"], [a.stream_type], [a.viewers], [`${formatBytes(a.bitrate / 8)}/s`], [formatTime(a.started_at_ms)], [health]]) {
        const td = document.createElement("td");
        td.textContent = text;
        if (cls) td.className = cls;
        tr.appendChild(td);
      }
      rows.appendChild(tr);
    }
  } catch (e) {
    // The server may be restarting; the next poll tries again.
  }
}

for (const button of document.querySelectorAll("#ranges button")) {
  button.addEventListener("click", () => {
    document.querySelectorAll("#ranges button").forEach((b) => b.classList.toggle("active", b === button));
    loadRange(Number(button.dataset.range));
  });
}

// The instances sharing this server's database, if any: then the charts can show another, or all.
async function loadInstances() {
  const body = await IpfsStreamAuth.fetch("/api/v1/metrics/instances").then((r) => r.ok ? r.json() : { instances: [] });
  state.stats.instances = body.instances;
  if (!body.instances.length) return;
  const select = $("instance");
  for (const name of body.instances) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    select.appendChild(option);
  }
  $("instance-choice").hidden = false;
  select.addEventListener("change", () => {
    state.instance = select.value;
    state.samples = [];
    loadRange(state.range);
  });
  // Other instances' samples come from the history only.
  setInterval(() => { if (state.instance) loadRange(state.range); }, 5000);
}

makeCharts();
loadRange(300).finally(connect);
loadInstances();
refreshActive();
setInterval(refreshActive, 2000);
