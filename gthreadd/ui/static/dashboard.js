// gthreadd's dashboard: draws the daemon's watch stream (server-sent events, one snapshot per
// change); opening a model follows its log lines. No framework and no build step.
"use strict";

const API = "/apis/greenthread.ai/v1alpha1";
const WINDOW_S = 60;       // requests/min, TTFT and queue wait are over the last minute
const HISTORY_S = 600;     // the timeline and the activity bars show ten minutes
const BUCKET_S = 30;
const COLORS = ["#3182ce", "#805ad5", "#d53f8c", "#dd6b20", "#319795", "#b7791f", "#2f855a", "#c53030"];

let snapshot = null;
let opened = null;          // the model whose detail is shown
let logSource = null;
let lastEventsFetch = 0;
const history = new Map();  // model -> [{t, requests, ttftSum, ttftCount, queueWaitSum, queueWaitCount}]

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v; else if (k === "text") node.textContent = v; else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(n >= 100 || i === 0 ? 0 : 1)} ${units[i]}`;
}

function seconds(s) {
  if (s === null || s === undefined || Number.isNaN(s)) return "–";
  return s < 1 ? `${Math.round(s * 1000)} ms` : `${s.toFixed(s < 10 ? 2 : 1)} s`;
}

function color(name) {
  const names = (snapshot ? snapshot.models.map(m => m.metadata.name) : []).sort();
  return COLORS[Math.max(0, names.indexOf(name)) % COLORS.length];
}

// -- traffic: rates and means from the counters of successive snapshots -------------------------
const NO_TRAFFIC = {requests: 0, ttftSum: 0, ttftCount: 0, queueWaitSum: 0, queueWaitCount: 0};

function record(now) {
  for (const m of snapshot.models) {
    const model = m.metadata.name;
    const samples = history.get(model) || [];
    samples.push({...(snapshot.traffic[model] || NO_TRAFFIC), t: now});
    while (samples.length > 2 && samples[1].t < now - HISTORY_S) samples.shift();
    history.set(model, samples);
  }
}

function since(model, from) {
  const samples = history.get(model) || [];
  if (samples.length === 0) return null;
  const last = samples[samples.length - 1];
  let first = samples[0];
  for (const s of samples) { if (s.t <= from) first = s; else break; }
  return {first, last};
}

function traffic(model, now) {
  const span = since(model, now - WINDOW_S);
  if (!span) return {rate: 0, ttft: null, wait: null};  // rate: requests answered in the window
  const {first, last} = span;
  const mean = (sum, count) => (last[count] - first[count]) > 0 ? (last[sum] - first[sum]) / (last[count] - first[count]) : null;
  return {rate: last.requests - first.requests,
          ttft: mean("ttftSum", "ttftCount"), wait: mean("queueWaitSum", "queueWaitCount")};
}

function activity(model, now) {
  const samples = history.get(model) || [];
  const buckets = new Array(HISTORY_S / BUCKET_S).fill(0);
  for (let i = 1; i < samples.length; i++) {
    const b = Math.floor((samples[i].t - (now - HISTORY_S)) / BUCKET_S);
    if (b >= 0 && b < buckets.length) buckets[b] += samples[i].requests - samples[i - 1].requests;
  }
  const peak = Math.max(1, ...buckets);
  const chart = svg("svg", {width: 120, height: 20, "aria-label": `${model} requests over ten minutes`});
  buckets.forEach((n, i) => {
    const h = n ? Math.max(2, 18 * n / peak) : 0;
    chart.append(svg("rect", {x: i * 6, y: 20 - h, width: 5, height: h, fill: color(model)}));
  });
  return chart;
}

// -- drawing --------------------------------------------------------------------------------------
function render() {
  if (!snapshot) return;
  const now = Date.now() / 1000;
  const models = [...snapshot.models].sort((a, b) => a.metadata.name.localeCompare(b.metadata.name));
  const counts = {};
  for (const state of Object.values(snapshot.states)) counts[state] = (counts[state] || 0) + 1;
  document.getElementById("summary").textContent =
    `${models.length} model${models.length === 1 ? "" : "s"}` +
    (models.length ? ": " + Object.entries(counts).sort().map(([s, n]) => `${n} ${s}`).join(", ") : "");
  document.getElementById("node").textContent = models.length ? models[0].status.node : "";
  renderErrors();
  renderDevices();
  renderModels(models, now);
  renderTimeline(models, now);
  if (opened) renderDetail();
}

function renderErrors() {
  const list = document.getElementById("errors");
  list.replaceChildren(...snapshot.errors.map(e => el("li", {text: e})));
  document.getElementById("errors-section").hidden = snapshot.errors.length === 0;
}

function renderDevices() {
  const gpus = new Map(snapshot.gpus.map(g => [g.index, g]));
  document.getElementById("devices").replaceChildren(...snapshot.devices.map(d => {
    const total = d.totalBytes, claimed = Object.values(d.claims).reduce((a, b) => a + b, 0);
    const gpu = gpus.get(d.index) || {};
    const bar = el("div", {class: "bar"});
    for (const [model, n] of Object.entries(d.claims).sort()) {
      const seg = el("div", {class: "seg", title: `${model}: ${bytes(n)}`, text: model});
      seg.style.width = `${100 * n / total}%`;
      seg.style.background = color(model);
      bar.append(seg);
    }
    if (d.foreignBytes > 0) {
      const seg = el("div", {class: "seg foreign", title: `other processes: ${bytes(d.foreignBytes)}`, text: "other"});
      seg.style.width = `${100 * d.foreignBytes / total}%`;
      bar.append(seg);
    }
    const cap = el("div", {class: "cap", title: `models may claim ${bytes(d.capacityBytes)}`});
    cap.style.left = `${100 * d.capacityBytes / total}%`;
    bar.append(cap);
    const name = gpu.name || `${d.product}-${d.index}`;
    return el("div", {class: "device", "data-device": String(d.index)},
      el("div", {class: "label"},
        el("span", {text: `${name} · ${gpu.mode || ""} · ${gpu.health || ""}`}),
        el("span", {class: "muted", text: `${bytes(claimed)} claimed · ${bytes(Math.max(0, gpu.available || 0))} free of ${bytes(d.capacityBytes)} usable (${bytes(total)})`})),
      bar);
  }), ...hostBar());
}

function hostBar() {
  // Host memory against its budget: each model's engines (awake and asleep), then the daemon and host tier.
  const host = snapshot.host;
  if (!host || !host.limitBytes) return [];
  const bar = el("div", {class: "bar"});
  for (const m of snapshot.models) {
    const n = (m.status.replicaStatus || []).reduce((sum, r) => sum + (r.hostBytes || 0), 0);
    if (!n) continue;
    const rungs = (m.status.replicaStatus || []).map(r => r.rung).join(", ");
    const seg = el("div", {class: "seg", title: `${m.metadata.name} (${rungs}): ${bytes(n)}`, text: m.metadata.name});
    seg.style.width = `${100 * n / host.limitBytes}%`;
    seg.style.background = color(m.metadata.name);
    bar.append(seg);
  }
  const other = el("div", {class: "seg foreign", title: `daemon and host tier: ${bytes(host.otherBytes)}`, text: "daemon"});
  other.style.width = `${100 * host.otherBytes / host.limitBytes}%`;
  bar.append(other);
  const asleep = `${host.sleepingEngines} asleep` + (host.maxSleepingEngines ? ` (at most ${host.maxSleepingEngines})` : "");
  return [el("div", {class: "device", "data-device": "host"},
    el("div", {class: "label"},
      el("span", {text: `host memory · ${asleep}`}),
      el("span", {class: "muted", text: `${bytes(host.usedBytes)} used of ${bytes(host.limitBytes)}`})),
    bar)];
}

function claimed(model) {
  return snapshot.devices.reduce((sum, d) => sum + (d.claims[model] || 0), 0);
}

function renderModels(models, now) {
  const body = document.querySelector("#models tbody");
  document.getElementById("no-models").hidden = models.length > 0;
  body.replaceChildren(...models.map(m => {
    const name = m.metadata.name, live = m.live, status = m.status, t = traffic(name, now);
    const state = snapshot.states[name];
    const row = el("tr", {"data-model": name},
      el("td", {}, el("strong", {text: name})),
      el("td", {}, el("span", {class: `pill ${state}`, "data-state": state, text: state})),
      el("td", {text: status.phase || ""}),
      el("td", {class: "num", title: "in flight / waiting", text: `${live.queue.inFlight} / ${live.queue.queued}`}),
      el("td", {class: "num", title: "ready / serving / sleeping of wanted",
                text: `${status.readyReplicas || 0}/${status.servingReplicas || 0}/${status.sleepingReplicas || 0} of ${status.replicas}`}),
      el("td", {text: live.devices.map(i => (snapshot.gpus.find(g => g.index === i) || {}).product === "cpu" ? "cpu" : `GPU ${i}`).join(", ")}),
      el("td", {class: "num", title: "what it claims on its devices now", text: claimed(name) ? bytes(claimed(name)) : "–"}),
      el("td", {class: "num", text: String(t.rate)}),
      el("td", {class: "num", text: seconds(t.ttft)}),
      el("td", {class: "num", text: seconds(t.wait)}),
      el("td", {}, activity(name, now)));
    row.addEventListener("click", () => open(name));
    return row;
  }));
}

function renderTimeline(models, now) {
  const names = models.map(m => m.metadata.name);
  const width = Math.max(600, document.getElementById("timeline").clientWidth || 900), left = 120, lane = 22;
  const height = names.length * lane + 24;
  const chart = svg("svg", {width, height, role: "img", "aria-label": "engine operations"});
  const x = t => left + (width - left - 8) * (t - (now - HISTORY_S)) / HISTORY_S;
  for (let m = 0; m <= 10; m += 2) {
    const at = x(now - m * 60);
    chart.append(svg("line", {x1: at, x2: at, y1: 0, y2: height - 16, stroke: "#e3e6eb"}));
    chart.append(svg("text", {x: at - 14, y: height - 3}, m ? `-${m} min` : "now"));
  }
  names.forEach((name, i) => {
    chart.append(svg("text", {x: 0, y: i * lane + 15, class: "lane-name"}, name));
  });
  for (const op of snapshot.operations) {
    const i = names.indexOf(op.model);
    if (i < 0 || op.started + op.seconds < now - HISTORY_S) continue;
    const start = Math.max(x(op.started), left), end = x(op.started + op.seconds);
    const rect = svg("rect", {x: start, y: i * lane + 4, width: Math.max(3, end - start), height: lane - 8, rx: 2,
                              class: op.outcome === "ok" ? op.operation : "failed"});
    rect.append(svg("title", {}, `${op.model} replica ${op.replica}: ${op.operation} ${op.outcome}, ${seconds(op.seconds)} at ${new Date(op.started * 1000).toLocaleTimeString()}`));
    chart.append(rect);
    if (end - start > 44) chart.append(svg("text", {x: start + 3, y: i * lane + 15, class: "on-bar"}, seconds(op.seconds)));
  }
  const legend = el("div", {class: "legend"});
  for (const [kind, label] of [["boot", "boot"], ["wake", "wake"], ["sleep", "sleep"], ["stop", "stop"], ["failed", "failed"]]) {
    const swatch = el("i");
    swatch.style.background = getComputedStyle(document.documentElement).getPropertyValue(
      {boot: "--starting", wake: "--serving", sleep: "--sleeping", stop: "--pending", failed: "--failed"}[kind]);
    legend.append(el("span", {}, swatch, label));
  }
  document.getElementById("timeline").replaceChildren(chart, legend);
}

// -- one model ------------------------------------------------------------------------------------
function open(name) {
  opened = name;
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-name").textContent = name;
  document.getElementById("detail-log").textContent = "";
  lastEventsFetch = 0;
  if (logSource) logSource.close();
  logSource = new EventSource(`${API}/models/${encodeURIComponent(name)}/logs?follow=true&tailLines=300`);
  logSource.addEventListener("line", e => {
    const pre = document.getElementById("detail-log");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.append(JSON.parse(e.data) + "\n");
    while (pre.childNodes.length > 2000) pre.removeChild(pre.firstChild);
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  renderDetail();
}

function close() {
  opened = null;
  if (logSource) { logSource.close(); logSource = null; }
  document.getElementById("detail").hidden = true;
}

function renderDetail() {
  const m = snapshot.models.find(x => x.metadata.name === opened);
  if (!m) { close(); return; }
  const spec = m.spec, status = m.status, live = m.live;
  const rows = [
    ["State", snapshot.states[opened]], ["Phase", status.phase], ["URL", status.url],
    ["Model", spec.modelName], ["Source file", status.sourceFile],
    ["Replicas", `${status.readyReplicas || 0} ready, ${status.servingReplicas || 0} serving, ${status.sleepingReplicas || 0} sleeping of ${status.replicas}`],
    ["GPU memory", spec.gpuMemoryUtilization !== undefined ? `${spec.gpuMemoryUtilization} of a device` : ""],
    ["Serving memory", status.memory ? status.memory.serving : ""],
    ["Sleep", spec.sleep ? JSON.stringify(spec.sleep) : ""], ["Fairness", spec.fairness ? JSON.stringify(spec.fairness) : ""],
    ["Queue", `${live.queue.inFlight} in flight, ${live.queue.queued} waiting`],
    ["Weights", live.weights ? `${live.weights.readPath}` : ""],
  ];
  if (live.reason) rows.push(["Reason", `${live.reason}: ${live.message || ""}`]);
  for (const c of status.conditions || []) rows.push([`Condition ${c.type}`, `${c.status} ${c.reason || ""} ${c.message || ""}`]);
  const list = el("dl");
  for (const [k, v] of rows) if (v) list.append(el("dt", {text: k}), el("dd", {text: String(v)}));
  document.getElementById("detail-describe").replaceChildren(list);
  if (Date.now() - lastEventsFetch > 2000) {
    lastEventsFetch = Date.now();
    const name = opened;
    fetch(`${API}/models/${encodeURIComponent(name)}/events`).then(r => r.ok ? r.json() : {items: []}).then(events => {
      if (opened !== name) return;
      document.querySelector("#detail-events tbody").replaceChildren(...events.items.slice().reverse().map(e =>
        el("tr", {}, el("td", {text: e.type}), el("td", {text: e.reason}),
          el("td", {text: e.count > 1 ? `${e.message} (x${e.count})` : e.message}),
          el("td", {class: "muted", text: new Date(e.lastTimestamp).toLocaleTimeString()}))));
    });
  }
}

// -- API keys: each key's use in the last minute (admin keys only see this page's data) ----------
function limits(k) {
  const l = k.limits, parts = [];
  if (l.requestsPerMinute !== null) parts.push(`${l.requestsPerMinute} req/min`);
  if (l.tokensPerMinute !== null) parts.push(`${l.tokensPerMinute} tok/min`);
  if (l.maxConcurrent !== null) parts.push(`${l.maxConcurrent} at once`);
  return parts.join(" · ") || "–";
}

function refreshKeys() {
  fetch(`${API}/keys`).then(r => r.ok ? r.json() : {items: []}).then(listing => {
    document.getElementById("keys-section").hidden = !listing.items.length;
    document.querySelector("#keys tbody").replaceChildren(...listing.items.map(k =>
      el("tr", {"data-key": k.name},
        el("td", {text: k.name + (k.admin ? " (admin)" : "")}), el("td", {text: k.models.join(", ")}),
        el("td", {text: String(k.lastMinute.requests)}), el("td", {text: String(k.lastMinute.tokens)}),
        el("td", {text: String(k.inFlight)}), el("td", {class: "muted", text: limits(k)}))));
  }, () => {});
}

// -- the stream -----------------------------------------------------------------------------------
function connect() {
  const dot = document.getElementById("connection");
  const source = new EventSource(`${API}/watch`);
  source.addEventListener("open", () => {
    dot.className = "dot live"; dot.textContent = "live"; dot.title = "following the daemon";
    refreshKeys();
  });
  source.addEventListener("snapshot", e => {
    snapshot = JSON.parse(e.data);
    record(Date.now() / 1000);
    render();
  });
  source.addEventListener("error", () => {
    dot.className = "dot down"; dot.textContent = "reconnecting"; dot.title = "the daemon is not answering";
    if (source.readyState === EventSource.CLOSED) {
      source.close();
      fetch(`${API}/models`).then(r => {
        if (r.status === 401) askForKey(); else setTimeout(connect, 2000);
      }, () => setTimeout(connect, 2000));
    }
  });
}

function askForKey() {
  document.getElementById("board").hidden = true;
  const form = document.getElementById("login");
  form.hidden = false;
  form.onsubmit = e => {
    e.preventDefault();
    document.cookie = `gthread_api_key=${encodeURIComponent(document.getElementById("key").value)}; path=/; SameSite=Strict`;
    form.hidden = true;
    document.getElementById("board").hidden = false;
    connect();
  };
}

document.getElementById("close").addEventListener("click", close);
document.addEventListener("keydown", e => { if (e.key === "Escape") close(); });
setInterval(() => { if (snapshot) { record(Date.now() / 1000); render(); refreshKeys(); } }, 5000);
connect();
