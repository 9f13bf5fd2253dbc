// The voicecall console: live calls, a call's page, history and the place-a-call form.
// Plain ES module, no build step; everything it shows comes from /console/api/* and reloads
// when /console/events says something changed.

import { BrowserCall } from "./talk.js";

const view = document.getElementById("view");
let csrf = "";
let refresh = () => {};
let ticker = null;

/** An element: h("td", {class: "x"}, "text", child...). Text is never parsed as HTML. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

async function getJSON(url) {
  const r = await fetch(url, { credentials: "same-origin" });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

async function post(url, payload) {
  const r = await fetch(url, {
    method: "POST", credentials: "same-origin",
    headers: { "content-type": "application/json", "x-csrf-token": csrf },
    body: JSON.stringify(payload),
  });
  if (r.status === 401) { location.href = "/login"; throw new Error("signed out"); }
  const body = await r.json();
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

/** A control API method, through the console (CSRF-checked). */
export async function rpc(method, params = {}) {
  return (await post("/console/api/rpc", { method, params })).result;
}

function flash(message, isError = true) {
  const el = document.getElementById("flash");
  el.textContent = message;
  el.className = isError ? "error" : "ok";
  el.hidden = false;
  setTimeout(() => { el.hidden = true; }, 5000);
}

function duration(call) {
  const start = call.answeredAt || call.startedAt;
  const end = call.endedAt || Date.now();
  const s = Math.max(0, Math.round((end - start) / 1000));
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, "0")}`;
}

const time = (ms) => (ms ? new Date(ms).toLocaleTimeString() : "");

function callRow(call) {
  return h("tr", { "data-call-id": call.callId, class: "clickable",
                   onclick: () => { location.hash = `#/call/${call.callId}`; } },
    h("td", {}, h("span", { class: `state state-${call.state}` }, call.state)),
    h("td", {}, call.direction),
    h("td", {}, call.provider),
    h("td", {}, call.from),
    h("td", {}, call.to),
    h("td", { class: "duration", "data-started": call.answeredAt || call.startedAt,
              "data-ended": call.endedAt || "" }, duration(call)),
    h("td", {}, h("a", { href: `#/call/${call.callId}` }, call.callId.slice(0, 8))));
}

function callTable(calls, id, empty) {
  if (!calls.length) return h("p", { id, class: "empty" }, empty);
  return h("table", { id },
    h("thead", {}, h("tr", {}, ["State", "Direction", "Carrier", "From", "To", "Duration", "Call"]
      .map((t) => h("th", {}, t)))),
    h("tbody", {}, calls.map(callRow)));
}

// -- views -------------------------------------------------------------------------------------
async function liveView() {
  const { calls } = await rpc("voicecall.status");
  view.replaceChildren(h("h1", {}, "Live calls"), callTable(calls, "live-calls", "No live calls."));
}

const STAGES = [
  ["speechToTranscript", "#7a5af8"], ["transcriptToReply", "#2e90fa"],
  ["replyToFirstTtsByte", "#12b76a"], ["ttsByteToFirstFrame", "#f79009"],
];

/** Per-turn latency as stacked horizontal bars (SVG, no library). */
function latencyChart(turns) {
  if (!turns.length) return h("p", { class: "empty" }, "No completed turns yet.");
  const ns = "http://www.w3.org/2000/svg";
  const max = Math.max(...turns.map((t) => STAGES.reduce((a, [s]) => a + (t.stages[s] || 0), 0)), 1);
  const svg = document.createElementNS(ns, "svg");
  const rowH = 22;
  svg.setAttribute("viewBox", `0 0 420 ${turns.length * rowH + 4}`);
  svg.setAttribute("id", "latency-chart");
  svg.setAttribute("role", "img");
  turns.forEach((t, i) => {
    let x = 60;
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", "0"); label.setAttribute("y", String(i * rowH + 15));
    label.textContent = `turn ${t.turn ?? i + 1}`;
    svg.append(label);
    for (const [stage, color] of STAGES) {
      const ms = t.stages[stage] || 0;
      const w = (ms / max) * 300;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", String(x)); rect.setAttribute("y", String(i * rowH + 3));
      rect.setAttribute("width", String(Math.max(w, 0))); rect.setAttribute("height", "16");
      rect.setAttribute("fill", color);
      const title = document.createElementNS(ns, "title");
      title.textContent = `${stage}: ${Math.round(ms)} ms`;
      rect.append(title);
      svg.append(rect);
      x += w;
    }
    const total = document.createElementNS(ns, "text");
    total.setAttribute("x", String(x + 4)); total.setAttribute("y", String(i * rowH + 15));
    total.textContent = t.turnLatencyMs != null ? `${Math.round(t.turnLatencyMs)} ms` : "";
    svg.append(total);
  });
  const legend = h("p", { class: "legend" },
    STAGES.map(([s, c]) => h("span", {}, h("i", { class: `swatch swatch-${s}` }), ` ${s} `)));
  return h("div", {}, svg, legend);
}

function actionForm(id, label, fields, run) {
  const inputs = fields.map(([name, placeholder]) =>
    h("input", { name, placeholder, "aria-label": placeholder, required: true }));
  return h("form", { id, class: "action", onsubmit: async (e) => {
    e.preventDefault();
    const values = Object.fromEntries(inputs.map((i) => [i.name, i.value]));
    try { await run(values); inputs.forEach((i) => { i.value = ""; }); flash(`${label}: done`, false); }
    catch (err) { flash(`${label}: ${err.message}`); }
  } }, ...inputs, h("button", { type: "submit" }, label));
}

async function callView(callId) {
  const d = await getJSON(`/console/api/calls/${encodeURIComponent(callId)}`);
  const c = d.call;
  const live = !["completed", "hangup-user", "hangup-bot", "timeout", "error", "failed",
                 "no-answer", "busy", "voicemail", "transferred"].includes(c.state);
  const transcript = transcriptList(c.transcript);
  const actions = live ? h("section", { id: "actions" }, h("h2", {}, "Actions"),
    actionForm("speak-form", "Speak", [["message", "What the agent says"]],
      (v) => rpc("voicecall.speak", { callId: c.callId, message: v.message })),
    actionForm("dtmf-form", "Send DTMF", [["digits", "Digits, e.g. 1234#"]],
      (v) => rpc("voicecall.dtmf", { callId: c.callId, digits: v.digits })),
    actionForm("transfer-form", "Transfer", [["to", "+15555550100"]],
      (v) => rpc("voicecall.transfer", { callId: c.callId, to: v.to })),
    h("button", { id: "end-call", type: "button", class: "danger", onclick: async () => {
      try { await rpc("voicecall.end", { callId: c.callId }); } catch (err) { flash(err.message); }
    } }, "End call")) : null;
  const stream = d.stream ? h("dl", { id: "stream-stats" }, Object.entries(d.stream).flatMap(([k, v]) =>
    [h("dt", {}, k), h("dd", {}, String(v))])) : h("p", { class: "empty" }, "No media stream.");
  view.replaceChildren(
    h("h1", {}, "Call ", h("code", {}, c.callId)),
    h("p", { class: "summary" }, h("span", { id: "call-state", class: `state state-${c.state}` }, c.state),
      ` ${c.direction} · ${c.provider} · ${c.from} → ${c.to} · `, h("span", { class: "duration", "data-started": c.answeredAt || c.startedAt, "data-ended": c.endedAt || "" }, duration(c)),
      c.endReason ? ` · ended: ${c.endReason}` : ""),
    h("div", { class: "columns" },
      h("section", {}, h("h2", {}, "Transcript"), transcript, actions),
      h("section", {}, h("h2", {}, "Turn latency"), latencyChart(d.turns),
        h("h2", {}, "Media stream"), stream,
        h("h2", {}, "Event log"),
        h("ol", { id: "event-log" }, d.log.slice().reverse().map((e) =>
          h("li", {}, h("time", {}, time(e.at)), ` ${e.kind} `, e.summary))))));
}

const historyState = { q: "", state: "ended", direction: "", offset: 0 };

async function historyView() {
  const s = historyState;
  const params = new URLSearchParams({ q: s.q, state: s.state, direction: s.direction, offset: s.offset });
  const page = await getJSON(`/console/api/history?${params}`);
  const q = h("input", { name: "q", value: s.q, placeholder: "Number, call id or words", "aria-label": "Search" });
  const state = h("select", { name: "state", "aria-label": "State" },
    ["ended", "completed", "hangup-user", "hangup-bot", "failed", "no-answer", "busy", "timeout", "error"]
      .map((v) => h("option", { value: v, selected: v === s.state }, v)));
  const direction = h("select", { name: "direction", "aria-label": "Direction" },
    [["", "any direction"], ["inbound", "inbound"], ["outbound", "outbound"]]
      .map(([v, t]) => h("option", { value: v, selected: v === s.direction }, t)));
  const form = h("form", { id: "history-filters", class: "action", onsubmit: (e) => {
    e.preventDefault();
    Object.assign(historyState, { q: q.value, state: state.value, direction: direction.value, offset: 0 });
    historyView().catch((err) => flash(err.message));
  } }, q, state, direction, h("button", { type: "submit" }, "Search"));
  const pager = h("p", { class: "pager" },
    h("button", { type: "button", id: "prev-page", disabled: s.offset === 0, onclick: () => {
      historyState.offset = Math.max(0, s.offset - 20); historyView();
    } }, "← Newer"),
    h("button", { type: "button", id: "next-page", disabled: page.nextOffset == null, onclick: () => {
      historyState.offset = page.nextOffset; historyView();
    } }, "Older →"));
  view.replaceChildren(h("h1", {}, "History"), form,
    callTable(page.calls, "history-calls", "No calls match."), pager);
}

function placeView() {
  const to = h("input", { name: "to", placeholder: "+15555550123", required: true, "aria-label": "To" });
  const message = h("textarea", { name: "message", rows: 3, "aria-label": "Message",
    placeholder: "What the agent says first" });
  const mode = h("select", { name: "mode", "aria-label": "Mode" },
    h("option", { value: "conversation" }, "conversation"), h("option", { value: "notify" }, "notify"));
  view.replaceChildren(h("h1", {}, "Place a call"), h("form", { id: "place-form", class: "stacked",
    onsubmit: async (e) => {
      e.preventDefault();
      try {
        const params = { to: to.value.trim(), mode: mode.value };
        if (message.value.trim()) params.message = message.value.trim();
        const r = await rpc(params.message ? "voicecall.initiate" : "voicecall.start", params);
        location.hash = `#/call/${r.callId}`;
      } catch (err) { flash(err.message); }
    } },
    h("label", {}, "To", to), h("label", {}, "Message", message), h("label", {}, "Mode", mode),
    h("button", { type: "submit" }, "Place call")));
}

let talking = null; // the browser call in progress, if any

function transcriptList(entries) {
  return h("ol", { id: "transcript" }, entries.map((t) =>
    h("li", { class: `speaker-${t.speaker}` },
      h("span", { class: "who" }, t.speaker === "bot" ? "agent" : t.speaker === "user" ? "caller" : "tool"),
      h("span", { class: "text" }, t.text), h("time", {}, time(t.timestamp)))));
}

async function talkView() {
  const status = h("p", { id: "talk-status" }, talking ? "In a call." : "Not in a call.");
  const meter = h("meter", { id: "talk-level", min: 0, max: 0.5, value: 0 });
  const lines = h("div", { id: "talk-transcript" });
  const button = h("button", { id: talking ? "hang-up" : "start-talk", type: "button",
    class: talking ? "danger" : "", onclick: async () => {
      if (talking) { talking.hangUp(); return; }
      const call = new BrowserCall({
        onCall: (callId) => { call.callId = callId; status.textContent = "In a call."; refresh(); },
        onEnd: (why) => {
          if (talking === call) talking = null;
          window.voicecallTalk = call;
          if (why) flash(why);
          if (location.hash === "#/talk") talkView();
        },
      });
      talking = call;
      window.voicecallTalk = call; // read by the browser tests
      try { await call.start(); } catch (err) { talking = null; flash(`microphone: ${err.message}`); }
      talkView();
    } }, talking ? "Hang up" : "Call the agent");
  view.replaceChildren(h("h1", {}, "Talk to the agent"),
    h("p", { class: "summary" }, "Your microphone goes to the agent over the same pipeline as a phone call."),
    button, status, h("label", {}, "Agent level ", meter), lines);
  const draw = () => {
    if (!document.body.contains(meter)) return;
    meter.value = talking ? talking.level() : 0;
    requestAnimationFrame(draw);
  };
  requestAnimationFrame(draw);
  if (talking && talking.callId) {
    const d = await getJSON(`/console/api/calls/${encodeURIComponent(talking.callId)}`);
    lines.replaceChildren(h("h2", {}, "Transcript"), transcriptList(d.call.transcript));
  }
}

// -- routing and live updates ------------------------------------------------------------------
function route() {
  const hash = location.hash || "#/";
  const match = hash.match(/^#\/call\/(.+)$/);
  const name = match ? "call" : { "#/history": "history", "#/place": "place", "#/talk": "talk" }[hash] || "live";
  document.querySelectorAll("nav a").forEach((a) => a.classList.toggle("active", a.dataset.view === name));
  const show = { live: liveView, history: historyView, place: placeView, talk: talkView,
                 call: () => callView(decodeURIComponent(match[1])) }[name];
  refresh = name === "place" || name === "history" ? () => {} : () => show().catch((e) => flash(e.message));
  Promise.resolve(show()).catch((e) => flash(e.message));
}

function listen() {
  const events = new EventSource("/console/events");
  const status = document.getElementById("connection");
  events.addEventListener("change", () => { refresh(); });
  events.onopen = () => { status.textContent = "live"; status.className = "pill on"; };
  events.onerror = () => { status.textContent = "reconnecting…"; status.className = "pill off"; };
}

function tick() {
  document.querySelectorAll(".duration[data-started]").forEach((el) => {
    if (el.dataset.ended) return;
    const started = Number(el.dataset.started);
    el.textContent = duration({ startedAt: started });
  });
}

async function main() {
  const session = await getJSON("/console/api/session");
  csrf = session.csrf;
  document.getElementById("talk-link").hidden = !session.browserCalls;
  document.getElementById("sign-out").addEventListener("click", async () => {
    await post("/console/logout", {});
    location.href = "/login";
  });
  window.addEventListener("hashchange", route);
  route();
  listen();
  ticker = setInterval(tick, 1000);
}

main().catch((e) => flash(e.message));
export { ticker };
