// mqttfast dashboard: polls the admin JSON API once a second. No build step, no libraries.
// The token comes from the URL fragment (#token=...) or the input box; it is kept in
// sessionStorage only, and sent as "Authorization: Bearer <token>".
"use strict";

const HISTORY = 120;              // points on the chart (one per second, kept by the server)
const state = { token: "", last: null, history: [], updates: 0, filter: "" };
const $ = (id) => document.getElementById(id);

function tokenFromFragment() {
  const m = /(?:^|[#&])token=([^&]*)/.exec(location.hash);
  return m ? decodeURIComponent(m[1]) : "";
}

async function api(path) {
  const resp = await fetch(path, { headers: { Authorization: "Bearer " + state.token }, cache: "no-store" });
  if (resp.status === 401) throw new Error("wrong token");
  if (!resp.ok) throw new Error(path + ": HTTP " + resp.status);
  return resp.json();
}

function fmtRate(x) { return x >= 100 ? Math.round(x).toString() : x.toFixed(1); }
function fmtUptime(s) {
  s = Math.floor(s);
  const d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
  return (d ? d + "d " : "") + (h || d ? h + "h " : "") + m + "m " + (s % 60) + "s";
}

function cell(tr, text) { const td = document.createElement("td"); td.textContent = text; tr.appendChild(td); return td; }

function drawChart() {
  const c = $("chart"), g = c.getContext("2d"), w = c.width, h = c.height, pad = 24;
  g.clearRect(0, 0, w, h);
  const pts = state.history;
  const max = Math.max(1, ...pts.map((p) => Math.max(p.in, p.out)));
  g.strokeStyle = "#ddd"; g.fillStyle = "#666"; g.font = "11px sans-serif";
  for (let i = 0; i <= 4; i++) {
    const y = pad + (h - 2 * pad) * i / 4;
    g.beginPath(); g.moveTo(pad, y); g.lineTo(w - 4, y); g.stroke();
    g.fillText(fmtRate(max * (4 - i) / 4), 2, y - 2);
  }
  for (const [key, color] of [["in", "#2563eb"], ["out", "#16a34a"]]) {
    g.strokeStyle = color; g.lineWidth = 2; g.beginPath();
    pts.forEach((p, i) => {
      const x = pad + (w - pad - 4) * (i + HISTORY - pts.length) / (HISTORY - 1);
      const y = h - pad - (h - 2 * pad) * p[key] / max;
      if (i === 0) g.moveTo(x, y); else g.lineTo(x, y);
    });
    g.stroke();
  }
}

function showStats(s) {
  $("version").textContent = s.version;
  $("connections").textContent = s.connections;
  $("sessions").textContent = s.sessions;
  $("subscriptions").textContent = s.subscriptions;
  $("retained").textContent = s.retained_messages;          // what clients retained
  $("sys-retained").textContent = s.sys_retained_messages;  // the broker's $SYS, apart
  $("queued").textContent = s.queued;
  $("uptime").textContent = fmtUptime(s.uptime_seconds);
  // The server samples the rates every second: real numbers from the first render on,
  // and the chart starts with the history it kept (up to 2 minutes).
  const r = s.rates;
  $("rate-in").textContent = fmtRate(r.publish_received);
  $("rate-out").textContent = fmtRate(r.publish_sent);
  state.history = r.history.map((p) => ({ in: p.publish_received, out: p.publish_sent }));
  if (!state.history.length) state.history = [{ in: r.publish_received, out: r.publish_sent }];
  drawChart();
  state.last = s;
}

function showTopics(t) {
  const body = $("top-topics");
  body.replaceChildren();
  for (const row of t.topics) {
    const tr = document.createElement("tr");
    cell(tr, row.topic); cell(tr, fmtRate(row.rate));
    body.appendChild(tr);
  }
}

function showClients(c) {
  const body = $("clients");
  body.replaceChildren();
  $("client-count").textContent = c.total;
  for (const cl of c.clients) {
    const tr = document.createElement("tr");
    tr.dataset.clientId = cl.client_id;
    cell(tr, cl.client_id); cell(tr, cl.state); cell(tr, cl.peer || "");
    cell(tr, cl.protocol_version || ""); cell(tr, cl.subscriptions); cell(tr, cl.queued);
    const td = cell(tr, "");
    if (cl.state === "connected") {
      const b = document.createElement("button");
      b.textContent = "kick";
      b.onclick = () => kick(cl.client_id);
      td.appendChild(b);
    }
    body.appendChild(tr);
  }
}

async function kick(id) {
  if (!confirm("Disconnect " + id + "?")) return;
  await fetch("/api/clients/" + encodeURIComponent(id) + "/kick",
              { method: "POST", headers: { Authorization: "Bearer " + state.token } });
}

async function refresh() {
  if (!state.token) return;
  try {
    const q = state.filter ? "&q=" + encodeURIComponent(state.filter) : "";
    const [s, t, c] = await Promise.all([api("/api/stats"), api("/api/topics/top?n=10"),
                                         api("/api/clients?limit=200" + q)]);
    showStats(s); showTopics(t); showClients(c);
    state.updates += 1;
    document.body.dataset.updates = state.updates;
    $("status").textContent = "updated " + new Date().toLocaleTimeString();
    $("status").className = "";
  } catch (err) {
    $("status").textContent = err.message;
    $("status").className = "error";
  }
}

function setToken(t) {
  state.token = t;
  state.last = null;
  state.history = [];
  try { sessionStorage.setItem("mqttfast-token", t); } catch (e) { /* storage disabled */ }
  refresh();
}

function start() {
  let t = tokenFromFragment();
  if (!t) { try { t = sessionStorage.getItem("mqttfast-token") || ""; } catch (e) { t = ""; } }
  $("token").value = t;
  $("token").addEventListener("change", (e) => setToken(e.target.value.trim()));
  $("client-filter").addEventListener("input", (e) => { state.filter = e.target.value.trim(); });
  if (t) setToken(t);
  setInterval(refresh, 1000);
  drawChart();
}

start();
