// vigil alarm board: renders the board views the server sends over
// Server-Sent Events. Shows NO DATA when the server says a bed is blind, and
// when this page's own connection to the server is lost or silent.
"use strict";

const SILENCE_MS = 3500;      // the server sends a view at least every second
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s ?? "").replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
const ARROWS = { up: "\u2191", down: "\u2193", steady: "\u2192" };

let lastMessage = 0;
let connected = false;
let view = null;
let lastFeed = "";
let audio = null;             // AudioContext while sound is wanted
const heard = new Set();      // low-priority alarms already given their tone
// For measurements: first time each alarm (bed|id|onset) was on the page,
// in ms since the Unix epoch (performance.timeOrigin + performance.now()).
window.vigilSeen = {};
window.vigilViews = 0;

function now() { return performance.timeOrigin + performance.now(); }

function setBlind(reason) {
  document.body.classList.add("blind");
  const b = $("banner");
  b.textContent = "NO DATA: " + reason;
  b.classList.add("show");
}

function render(v) {
  view = v;
  const pageBlind = !connected;
  document.body.classList.toggle("blind", pageBlind);
  const banner = $("banner");
  if (v.banner) {
    banner.textContent = "NO DATA: " + v.banner;
    banner.classList.add("show");
  } else if (!pageBlind) {
    banner.classList.remove("show");
  }
  const link = $("link");
  link.textContent = v.link_up ? "broker connected" : "broker unreachable";
  link.className = "link " + (v.link_up ? "up" : "down");
  $("clock").textContent = new Date(v.now_ms).toISOString().slice(11, 19) + " UTC";

  siteOptions(v.sites || []);
  // The beds of the chosen site, worst first (the server's order).
  const shown = v.beds.filter((b) => !siteFilter || b.site === siteFilter);
  const compact = shown.length > COMPACT_OVER;
  document.body.classList.toggle("compact", compact);
  if (compact) fitGrid(shown.length);
  placeTiles(shown.map((b) => [b.key, compact ? tileHtml(b) : bedHtml(b)]));
  renderDetail();
  const feedHtml = v.feed.filter((f) => !siteFilter || f.bed.startsWith(siteFilter + "/")).map((f) =>
    `<li class="${esc(f.priority)}" data-alarm="${esc(f.id)}">${esc(f.time)} ${esc(f.bed)} ${esc(f.text)}</li>`).join("");
  if (feedHtml !== lastFeed) {
    const feed = $("feed");
    const atBottom = feed.scrollTop + feed.clientHeight >= feed.scrollHeight - 4;
    feed.innerHTML = feedHtml;
    lastFeed = feedHtml;
    if (atBottom) feed.scrollTop = feed.scrollHeight;
  }

  const t = now();
  for (const bed of v.beds) {
    for (const a of bed.alarms) {
      const key = `${bed.key}|${a.id}|${a.onset ?? ""}`;
      if (!(key in window.vigilSeen)) window.vigilSeen[key] = t;
    }
  }
  window.vigilViews += 1;
  soundTick();
}

// More beds than this on screen: the station's compact grid (one small
// tile per bed, the whole bed in a panel on a click).
const COMPACT_OVER = 8;
const tiles = new Map();       // bed key -> { html, el }

// Puts the tiles in this order, replacing only those whose HTML changed,
// so a button under a finger stays put and 64 beds cost little.
function placeTiles(list) {
  const main = $("beds");
  const keep = new Set(list.map(([k]) => k));
  for (const [k, t] of tiles) if (!keep.has(k)) { t.el.remove(); tiles.delete(k); }
  let at = main.firstElementChild;
  for (const [k, html] of list) {
    let t = tiles.get(k);
    if (!t || t.html !== html) {
      const tpl = document.createElement("template");
      tpl.innerHTML = html.trim();
      const el = tpl.content.firstElementChild;
      if (t) {
        if (t.el === at) at = el;
        t.el.replaceWith(el);
      }
      t = { html, el };
      tiles.set(k, t);
    }
    if (t.el === at) at = at.nextElementSibling;
    else main.insertBefore(t.el, at);
  }
}

// Columns and rows so that every tile fits on the screen at once.
function fitGrid(n) {
  const main = $("beds");
  const top = main.getBoundingClientRect().top;
  const feedH = document.querySelector(".feed").getBoundingClientRect().height;
  const w = main.clientWidth || window.innerWidth;
  const h = Math.max(200, window.innerHeight - top - feedH);
  // Tiles about twice as wide as high read best (three numbers side by
  // side): the columns that give the largest such tile.
  let cols = 1, best = 0;
  for (let c = 1; c <= n; c++) {
    const size = Math.min(w / c / 2, h / Math.ceil(n / c));
    if (size > best) { best = size; cols = c; }
  }
  const rows = Math.ceil(n / cols);
  main.style.setProperty("--cols", cols);
  main.style.setProperty("--rows", rows);
  main.style.height = h + "px";
}

// The site filter: every site the board knows, with its beds and NO DATA.
let siteFilter = new URLSearchParams(location.search).get("site") || localStorage.getItem("vigil-site") || "";
let lastSites = "";
function siteOptions(sites) {
  const sel = $("site");
  const counts = {};
  for (const b of view.beds) {
    const c = counts[b.site] || (counts[b.site] = { beds: 0, alarms: 0 });
    c.beds += 1;
    if (b.worst) c.alarms += 1;
  }
  const opt = (value, text) =>
    `<option value="${esc(value)}"${value === siteFilter ? " selected" : ""}>${esc(text)}</option>`;
  const all = view.beds.filter((b) => b.worst).length;
  const html = opt("", `All sites: ${view.beds.length} beds, ${all} alarming`) + sites.map((s) => {
    const c = counts[s.site] || { beds: 0, alarms: 0 };
    return opt(s.site, `${s.site}: ${c.beds} beds, ${c.alarms} alarming${s.no_data ? " - NO DATA" : ""}`);
  }).join("");
  if (html !== lastSites) { sel.innerHTML = html; lastSites = html; }
  sel.hidden = sites.length < 2 && !siteFilter;
}
$("site").addEventListener("change", (e) => {
  siteFilter = e.target.value;
  localStorage.setItem("vigil-site", siteFilter);
  const u = new URL(location.href);
  if (siteFilter) u.searchParams.set("site", siteFilter); else u.searchParams.delete("site");
  history.replaceState(null, "", u);
  if (view) render(view);
});

// A compact tile: the bed, its three numbers and its worst alarm.
function tileHtml(b) {
  const top = b.alarms.find((a) => !a.acknowledged);
  const cls = ["bed", "tile"];
  if (b.stopped) cls.push("stopped");
  else if (!b.live) cls.push("nodata");
  if (b.live && top) cls.push("alarm-" + top.priority);
  const more = b.alarms.filter((a) => !a.acknowledged).length - 1;
  let line;
  if (b.stopped) line = `<div class="top stopped-label">stopped</div>`;
  else if (!b.live) line = `<div class="top nodata-label">NO DATA${b.no_data ? ": " + esc(b.no_data) : ""}</div>`;
  else if (top) {
    const flash = top.flash === "fast" ? " flash-fast" : top.flash === "slow" ? " flash-slow" : "";
    line = `<div class="top alarm ${esc(top.priority)}${flash}" data-alarm="${esc(top.id)}">${esc(top.priority.toUpperCase())} ${esc(top.label)} <span class="since">${esc(top.since)}</span>${more > 0 ? ` <b>+${more}</b>` : ""}</div>`;
  } else if (b.alarms.length) line = `<div class="top acked">${b.alarms.length} acknowledged</div>`;
  else line = `<div class="top calm">${esc(b.phase ?? "idle")}${b.since_dose ? " · dose " + esc(b.since_dose) : ""}</div>`;
  const vitals = b.vitals.map((v) => {
    const alarm = v.alarm ? ` alarm-${esc(v.alarm)}` : "";
    return `<div class="vital ${esc(v.state)}${alarm}" data-vital="${esc(v.key)}"><span class="label">${esc(v.label)}</span><span class="value">${valueHtml(v, false)}</span></div>`;
  }).join("");
  return `<section class="${cls.join(" ")}" data-bed="${esc(b.key)}" data-urgency="${esc(b.urgency)}" tabindex="0" title="${esc(b.key)}: click for the whole bed">
    <h2>${esc(b.key)}${b.session ? ` <span class="session">${esc(b.session)}</span>` : ""}</h2>
    <div class="vitals${vitalsClass(b)}">${vitals}</div>${line}</section>`;
}

// The whole bed in a panel, from a compact tile.
let detailBed = null;
function renderDetail() {
  const d = $("detail");
  const b = detailBed && view && view.beds.find((x) => x.key === detailBed);
  if (!b) { d.hidden = true; detailBed = null; return; }
  const html = bedHtml(b, true);
  if (html !== d.dataset.html) { $("detailbody").innerHTML = html; d.dataset.html = html; }
  d.hidden = false;
}
document.addEventListener("click", (e) => {
  const tile = e.target.closest("section.tile");
  if (!tile) return;
  detailBed = tile.dataset.bed;
  renderDetail();
});
document.addEventListener("keydown", (e) => {
  const tile = e.target.closest && e.target.closest("section.tile");
  if (tile && (e.key === "Enter" || e.key === " ")) { e.preventDefault(); detailBed = tile.dataset.bed; renderDetail(); }
  if (e.key === "Escape" && detailBed && $("ackdialog").hidden && $("cmddialog").hidden) { detailBed = null; renderDetail(); }
});
$("detailclose").addEventListener("click", () => { detailBed = null; renderDetail(); });
// A whole bed on the board opens the same panel for its history.
document.addEventListener("click", (e) => {
  const btn = e.target.closest("button.history");
  if (!btn) return;
  detailBed = btn.dataset.bed;
  renderDetail();
});

// The bed's whole view; `detail`: in the bed panel, with its history.
function bedHtml(b, detail = false) {
  const top = b.alarms.find((a) => !a.acknowledged);
  const cls = ["bed"];
  if (b.stopped) cls.push("stopped");
  else if (!b.live) cls.push("nodata");
  if (b.live && top) cls.push("alarm-" + top.priority);
  const meta = [];
  meta.push(`phase <b>${esc(b.phase ?? "-")}</b>`);
  if (b.since_dose) meta.push(`since dose <b>${esc(b.since_dose)}</b>`);
  if (b.baselines && b.baselines.length) meta.push(`baseline <b>${b.baselines.map(esc).join(", ")}</b>`);
  if (b.discharge_ready) meta.push(`<b class="ready">ready for discharge review</b>`);
  if (b.audio_paused) {
    const left = b.audio_pause_left_s != null ? " " + clockText(b.audio_pause_left_s) : "";
    meta.push(`<b class="paused">audio paused${left}</b>`);
  }
  for (const s of b.sources) meta.push(`${esc(s.name)} <b>${esc(s.status || (s.up ? "up" : "DOWN"))}</b>`);
  const alarms = b.alarms.length === 0
    ? `<li class="noalarms">${b.live ? "no alarms" : "alarms unknown"}</li>`
    : (b.live ? "" : `<li class="noalarms">last known alarms (may be out of date):</li>`) +
      b.alarms.map((a) => alarmHtml(b, a)).join("");
  const result = b.result
    ? `<div class="result ${esc(b.result.outcome)}" data-id="${esc(b.result.id)}">${esc(b.result.text)}</div>` : "";
  const history = detail
    ? historyHtml(b)
    : `<button type="button" class="history" data-bed="${esc(b.key)}">History</button>`;
  return `<section class="${cls.join(" ")}" data-bed="${esc(b.key)}">
    <h2>${esc(b.key)} ${b.session ? `<span class="session">session ${esc(b.session)}</span>` : ""}${detail ? "" : history}</h2>
    ${b.stopped
      ? `<div class="stopped-label">stopped: vigil was shut down on this bed
          <button class="remove" data-bed="${esc(b.key)}">Remove from board</button></div>`
      : `<div class="nodata-label">NO DATA${b.no_data ? ": " + esc(b.no_data) : ""}</div>`}
    <div class="vitals${vitalsClass(b)}">${b.vitals.map((v) => vitalHtml(v, (detail ? "d-" : "b-") + b.key)).join("")}</div>
    <div class="meta">${meta.join("")}</div>
    ${controlsHtml(b)}
    <ul class="alarms">${alarms}</ul>
    ${result}
    ${detail ? history : ""}
  </section>`;
}

// This session's alarms, one row per occurrence in onset order (vigil's
// clock): priority reached, who acknowledged and when, when it ended.
function historyHtml(b) {
  const rows = (b.history || []).map((r) => {
    const acks = r.acks.length
      ? r.acks.map((a) => `${esc(a.by)} at ${esc(a.at)}`).join(", ")
      : "not acknowledged";
    return `<tr class="${esc(r.priority)}" data-alarm="${esc(r.id)}" data-onset="${esc(r.onset_ms)}">
      <td class="t">${esc(r.onset)}</td><td><span class="prio">${esc(r.priority.toUpperCase())}</span></td>
      <td>${esc(r.label)}</td><td class="ack">${acks}</td>
      <td class="t end">${r.ended ? esc(r.ended) : "<b>still present</b>"}</td></tr>`;
  }).join("");
  return `<section class="history" aria-label="this session's alarms">
    <h3>This session's alarms${b.session ? " (" + esc(b.session) + ")" : ""}</h3>
    ${rows
      ? `<table><thead><tr><th>Onset</th><th>Priority</th><th>Alarm</th><th>Acknowledged</th><th>Ended</th></tr></thead><tbody>${rows}</tbody></table>`
      : `<p class="noalarms">No alarms in this session yet.</p>`}
  </section>`;
}

// m:ss for a countdown.
function clockText(s) {
  const t = Math.max(0, Math.ceil(s));
  return `${Math.floor(t / 60)}:${String(t % 60).padStart(2, "0")}`;
}

// The session and audio buttons the bed's phase allows.
function controlsHtml(b) {
  if (!b.live || b.stopped) return "";
  const btn = (cmd, text, extra = "") =>
    `<button type="button" class="cmd ${extra}" data-bed="${esc(b.key)}" data-cmd="${cmd}">${text}</button>`;
  const out = [];
  const phase = b.phase ?? "idle";
  if (phase === "idle" || phase === "ended") out.push(btn("start_session", "Start session"));
  if (phase === "baseline" || phase === "dosing") out.push(btn("dose", "Dose given"));
  if (phase === "dosing") out.push(btn("start_recovery", "Start recovery"));
  if (phase === "baseline" || phase === "dosing" || phase === "recovery") out.push(btn("end_session", "End session"));
  out.push(b.audio_paused ? btn("resume_audio", "Resume audio") : btn("pause_audio", "Pause audio"));
  if (b.alarms.filter((a) => !a.acknowledged).length > 1) out.push(btn("ack_all", "Acknowledge all", "ackall"));
  return `<div class="controls">${out.join("")}</div>`;
}

// A bed whose monitor sends breathing values has five tiles, not three.
function vitalsClass(b) { return b.vitals.length > 3 ? " breathing" : ""; }

// The value as its parts (NIBP: sys/dia (mean), the mean only when
// measured), each part the monitor flagged questionable marked "?" and
// hatched, with the reason in its tooltip. An old measurement keeps its
// number, marked old (state and note); an invalid value is never a number.
const QUESTIONABLE = "questionable: the monitor flagged the signal quality";
function valueHtml(v, withMean = true) {
  if (v.state !== "ok" && v.state !== "old" && v.state !== "questionable") return v.state === "none" ? "" : "--";
  const parts = v.parts || [];
  if (!parts.length) return esc(v.text);
  const part = (p) => p.questionable
    ? `<span class="part questionable" data-part="${esc(p.key)}" title="${esc(QUESTIONABLE)}">${esc(p.text)}<span class="qmark">?</span></span>`
    : `<span class="part" data-part="${esc(p.key)}">${esc(p.text)}</span>`;
  if (v.key !== "nibp") return parts.map(part).join("");
  const [sys, dia, mean] = parts;
  return part(sys) + "/" + part(dia) + (mean && withMean ? ` <span class="mean">(${part(mean)})</span>` : "");
}

function vitalHtml(v, id) {
  const shown = valueHtml(v);
  const arrow = v.state === "ok" && ARROWS[v.trend] ? `<span class="arrow">${ARROWS[v.trend]}</span>` : "";
  const note = [v.note, v.age].filter(Boolean).map(esc).join(", ");
  const alarm = v.alarm ? ` alarm-${esc(v.alarm)}` : "";
  return `<div class="vital ${esc(v.state)}${alarm}" data-vital="${esc(v.key)}">
    <div class="label">${esc(v.label)}</div>
    <div class="value">${shown}${arrow}<span class="unit">${esc(v.unit)}</span></div>
    <div class="note">${note}</div>${sparkHtml(v, id)}</div>`;
}

// The last 45 min of a vital as a line (newest at the right edge), with the
// alarm limits in force: a dashed line per limit, the zone beyond it tinted
// in its priority's colour, and the part of the trace inside that zone drawn
// in that colour. The range takes in the low and high limits, so a value
// near a limit is seen to be near it.
const SPAN_S = 45 * 60;
function sparkHtml(v, id) {
  const points = v.spark;
  const limits = v.limits || [];
  const text = v.limits_text ? `limits ${esc(v.limits_text)}` : "";
  if (!points || points.length < 2) {
    return text ? `<div class="sparkrange limits">${text}</div>` : "";
  }
  const ys = points.map((p) => p[1]);
  let lo = Math.min(...ys), hi = Math.max(...ys);
  const side = (low) => limits.filter((l) => l.kind === (low ? "low" : "high"))[0]
    || limits.filter((l) => l.kind === (low ? "critical_low" : "critical_high"))[0];
  const low = side(true), high = side(false);
  if (low) lo = Math.min(lo, low.value);
  if (high) hi = Math.max(hi, high.value);
  if (hi - lo < 4) { lo -= 2; hi += 2; }
  const pad = (hi - lo) * 0.06;
  lo -= pad; hi += pad;
  const x = (s) => (100 * (SPAN_S + s) / SPAN_S).toFixed(2);
  const y = (val) => (28 - 26 * (val - lo) / (hi - lo)).toFixed(2);
  const line = points.map((p) => `${x(p[0])},${y(p[1])}`).join(" ");
  const key = String(id + "-" + v.key).replace(/[^A-Za-z0-9_-]/g, "_");
  // Lowest first: the outer (critical) zones are drawn over the inner ones.
  const shown = limits.filter((l) => l.value >= lo && l.value <= hi);
  const order = shown.slice().sort((a, b) => (a.kind.startsWith("critical") ? 1 : 0) - (b.kind.startsWith("critical") ? 1 : 0));
  const zones = order.map((l) => {
    const ly = Number(y(l.value));
    const [top, h] = l.kind.endsWith("low") ? [ly, 30 - ly] : [0, ly];
    const clip = `${key}-${l.kind}`;
    return `<clipPath id="${clip}"><rect x="0" y="${top.toFixed(2)}" width="100" height="${h.toFixed(2)}"/></clipPath>
      <rect class="zone ${esc(l.priority)}" x="0" y="${top.toFixed(2)}" width="100" height="${h.toFixed(2)}"/>
      <polyline class="inalarm ${esc(l.priority)}" clip-path="url(#${clip})" points="${line}" vector-effect="non-scaling-stroke"/>`;
  }).join("");
  const lines = shown.map((l) =>
    `<line class="limit ${esc(l.priority)}" data-limit="${esc(l.kind)}" data-value="${esc(l.value)}" x1="0" x2="100" y1="${y(l.value)}" y2="${y(l.value)}" vector-effect="non-scaling-stroke"/>`).join("");
  // Each limit's number at the left end of its line (HTML: the SVG is
  // stretched, its text would be too).
  const tags = shown.map((l) =>
    `<span class="limittag ${esc(l.priority)}" data-limit="${esc(l.kind)}" style="top:${(100 * Number(y(l.value)) / 30).toFixed(2)}%">${esc(Math.round(l.value))}</span>`).join("");
  const label = `last 45 min: ${Math.min(...ys).toFixed(0)} to ${Math.max(...ys).toFixed(0)}`;
  return `<div class="sparkbox"><svg class="spark" viewBox="0 0 100 30" preserveAspectRatio="none" aria-label="${esc(label)}">
    <polyline class="trace" points="${line}" vector-effect="non-scaling-stroke"/>${zones}${lines}</svg>${tags}</div>
    <div class="sparkrange">${Math.round(Math.min(...ys))}-${Math.round(Math.max(...ys))} · 45 min${text ? " · " + text : ""}</div>`;
}

function alarmHtml(b, a) {
  const cls = ["alarm", a.priority];
  if (a.questionable) cls.push("questionable");
  if (a.acknowledged) cls.push("acknowledged");
  if (a.flash === "fast") cls.push("flash-fast");
  if (a.flash === "slow") cls.push("flash-slow");
  const state = a.acknowledged
    ? `<span class="ackstate">acknowledged${a.ack_by ? " by " + esc(a.ack_by) : ""}</span>`
    : (a.state === "latched" ? `<span class="ackstate">latched</span>` : "");
  const button = !a.acknowledged && b.live
    ? `<button type="button" class="ack" data-bed="${esc(b.key)}" data-alarm="${esc(a.id)}" data-label="${esc(a.label)}">Acknowledge</button>` : "";
  return `<li class="${cls.join(" ")}" data-alarm="${esc(a.id)}" data-priority="${esc(a.priority)}">
    <span class="prio">${esc(a.priority.toUpperCase())}</span>
    <span class="text"${a.questionable ? ` title="the alarm's value is ${esc(QUESTIONABLE)}"` : ""}>${esc(a.label)} <span class="since">${esc(a.since)}</span></span>
    ${state}${button}</li>`;
}

// Remove a stopped bed from the board.
document.addEventListener("click", async (e) => {
  const btn = e.target.closest("button.remove");
  if (!btn) return;
  const r = await fetch("remove", {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-Vigil-Request": "1" },
    body: JSON.stringify({ bed: btn.dataset.bed }),
  });
  if (!r.ok) btn.textContent = await r.text();
});

// Name or initials: asked once per shift (12 h), then offered again.
const SHIFT_MS = 12 * 3600 * 1000;
function knownBy() {
  const at = Number(localStorage.getItem("vigil-by-at") || 0);
  return Date.now() - at < SHIFT_MS ? (localStorage.getItem("vigil-by") || "") : "";
}
function rememberBy(by) {
  if (by !== localStorage.getItem("vigil-by")) localStorage.setItem("vigil-by-at", String(Date.now()));
  localStorage.setItem("vigil-by", by);
}

// Session and audio commands: a dialog with the command's fields.
const COMMANDS = {
  start_session: { title: "Start a session", fields: `
    <label>Session code (pseudonymous, never a name)
      <input id="f-session" maxlength="32" pattern="[A-Za-z0-9._-]+" required autocomplete="off" placeholder="K-0142"></label>` },
  dose: { title: "Dose given", fields: `
    <div class="row">
      <label>Amount <input id="f-amount" type="number" min="0" step="any" inputmode="decimal"></label>
      <label>Unit <select id="f-unit"><option>mg</option><option>mg/kg</option></select></label>
      <label>Route <select id="f-route"><option value="im">IM</option><option value="iv">IV</option>
        <option value="sl">SL</option><option value="in">IN</option><option value="po">PO</option></select></label>
    </div>
    <label>Note (product; no patient details) <input id="f-note" maxlength="64" autocomplete="off"></label>` },
  start_recovery: { title: "Start recovery observation", fields: "" },
  end_session: { title: "End the session", fields: "" },
  pause_audio: { title: "Pause audio", fields: `
    <label>For <select id="f-duration"><option value="60">1 min</option><option value="120" selected>2 min</option>
      <option value="300">5 min</option></select></label>` },
  resume_audio: { title: "Resume audio", fields: "" },
  ack_all: { title: "Acknowledge all alarms", fields: "" },
};
let pendingCmd = null;
document.addEventListener("click", (e) => {
  const btn = e.target.closest("button.cmd");
  if (!btn) return;
  const c = COMMANDS[btn.dataset.cmd];
  pendingCmd = { bed: btn.dataset.bed, command: btn.dataset.cmd };
  $("cmdtitle").textContent = c.title;
  $("cmdbed").textContent = btn.dataset.bed;
  $("cmdfields").innerHTML = c.fields;
  $("cmderror").textContent = "";
  $("cmdby").value = knownBy();
  $("cmddialog").hidden = false;
  const first = $("cmdfields").querySelector("input, select") || $("cmdby");
  (first.value === "" ? first : $("cmdby")).focus();
});
$("cmdcancel").addEventListener("click", () => { $("cmddialog").hidden = true; pendingCmd = null; });
$("cmdform").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!pendingCmd) return;
  const by = $("cmdby").value.trim();
  if (!by) { $("cmderror").textContent = "Enter your name or initials."; return; }
  const body = { bed: pendingCmd.bed, by };
  let url = "command";
  const val = (id) => ($(id) ? $(id).value.trim() : "");
  switch (pendingCmd.command) {
    case "ack_all": url = "ack-all"; break;
    case "start_session": body.command = "start_session"; body.session = val("f-session"); break;
    case "dose":
      body.command = "dose"; body.route = val("f-route"); body.note = val("f-note");
      if (val("f-amount") !== "") { body.amount = Number(val("f-amount")); body.unit = val("f-unit"); }
      break;
    case "pause_audio": body.command = "pause_audio"; body.duration_s = Number(val("f-duration")); break;
    default: body.command = pendingCmd.command;
  }
  try {
    const r = await fetch(url, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Vigil-Request": "1" },
      body: JSON.stringify(body),
    });
    if (!r.ok) { $("cmderror").textContent = await r.text(); return; }
    rememberBy(by);
    $("cmddialog").hidden = true;
    pendingCmd = null;
  } catch (err) {
    $("cmderror").textContent = "The display server cannot be reached: " + err;
  }
});

// Acknowledge: ask for the name or initials, then publish through the server.
let pending = null;
document.addEventListener("click", (e) => {
  const btn = e.target.closest("button.ack");
  if (!btn) return;
  pending = { bed: btn.dataset.bed, alarm: btn.dataset.alarm };
  $("acklabel").textContent = btn.dataset.label;
  $("ackbed").textContent = btn.dataset.bed;
  $("ackerror").textContent = "";
  $("ackby").value = knownBy();
  $("ackdialog").hidden = false;
  $("ackby").focus();
});
$("ackcancel").addEventListener("click", () => { $("ackdialog").hidden = true; pending = null; });
$("ackform").addEventListener("submit", async (e) => {
  e.preventDefault();
  if (!pending) return;
  const by = $("ackby").value.trim();
  if (!by) { $("ackerror").textContent = "Enter your name or initials."; return; }
  try {
    const r = await fetch("ack", {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-Vigil-Request": "1" },
      body: JSON.stringify({ bed: pending.bed, alarm: pending.alarm, by }),
    });
    if (!r.ok) { $("ackerror").textContent = await r.text(); return; }
    rememberBy(by);
    $("ackdialog").hidden = true;
    pending = null;
  } catch (err) {
    $("ackerror").textContent = "The display server cannot be reached: " + err;
  }
});

// Sound, after IEC 60601-1-8's alarm signals: high priority is a burst of
// ten pulses (3 + 2, a pause, 3 + 2) repeating; medium three pulses,
// repeating more slowly; low one tone, once. Unacknowledged alarms sound
// until acknowledged; a bed's audio pause silences it; NO DATA (a bed or
// this page blind) sounds as a medium technical alarm. The setting is kept
// across reloads; when the browser blocks sound the button says so.
const RANK = { low: 1, medium: 2, high: 3 };
const PATTERNS = {
  // Pulse onsets (s) from the burst's start; pulse length; pitch; pause
  // from the burst's end to the next one.
  high: { onsets: [0, 0.25, 0.5, 1.0, 1.25, 2.1, 2.35, 2.6, 3.1, 3.35], pulse: 0.15, hz: 880, pause: 4 },
  medium: { onsets: [0, 0.4, 0.8], pulse: 0.2, hz: 660, pause: 8 },
  low: { onsets: [0], pulse: 0.2, hz: 440, pause: null },
};
let soundWanted = localStorage.getItem("vigil-sound") === "on";
let sounding = null;           // { priority, next } of the repeating signal

function soundButton() {
  const b = $("sound");
  const blocked = soundWanted && (!audio || audio.state !== "running");
  b.textContent = !soundWanted ? "Enable sound"
    : blocked ? "Sound blocked by the browser: click to allow" : "Sound on";
  b.classList.toggle("on", soundWanted && !blocked);
  b.classList.toggle("blocked", blocked);
}

function openAudio() {
  if (!audio) {
    audio = new (window.AudioContext || window.webkitAudioContext)();
    audio.onstatechange = soundButton;
  }
  if (audio.state !== "running") audio.resume().then(soundButton, soundButton);
  soundButton();
}

$("sound").addEventListener("click", () => {
  if (soundWanted && audio && audio.state === "running") {
    soundWanted = false;
    localStorage.setItem("vigil-sound", "off");
    audio.close(); audio = null; sounding = null;
  } else {
    soundWanted = true;
    localStorage.setItem("vigil-sound", "on");
    openAudio();
  }
  soundButton();
});
// A blocked context may start on any click on the page.
document.addEventListener("click", (e) => {
  if (e.target.closest("#sound")) return;   // its own handler decides
  if (soundWanted && audio && audio.state !== "running") audio.resume().then(soundButton, soundButton);
}, true);

// The signal the board asks for now: the highest priority among the
// unacknowledged alarms of beds whose audio is not paused, and NO DATA.
function soundTarget() {
  if (lastMessage === 0) return null;
  let best = connected ? null : "medium";
  const raise = (p) => { if (p && (!best || RANK[p] > RANK[best])) best = p; };
  if (!view) return best;
  for (const b of view.beds) {
    if (b.stopped) continue;
    if (!b.live) { raise("medium"); continue; }
    if (b.audio_paused) continue;
    for (const a of b.alarms) if (!a.acknowledged) raise(a.priority);
  }
  return best;
}

function playBurst(priority) {
  const p = PATTERNS[priority];
  window.vigilBursts = (window.vigilBursts || 0) + 1;
  if (!audio || audio.state !== "running") return p.onsets[p.onsets.length - 1] + p.pulse;
  const t0 = audio.currentTime + 0.02;
  for (const dt of p.onsets) {
    const o = audio.createOscillator(), g = audio.createGain();
    o.frequency.value = p.hz; o.type = "square";
    g.gain.setValueAtTime(0.0001, t0 + dt);
    g.gain.exponentialRampToValueAtTime(0.3, t0 + dt + 0.02);
    g.gain.setValueAtTime(0.3, t0 + dt + p.pulse - 0.03);
    g.gain.exponentialRampToValueAtTime(0.0001, t0 + dt + p.pulse);
    o.connect(g).connect(audio.destination);
    o.start(t0 + dt); o.stop(t0 + dt + p.pulse + 0.01);
  }
  return p.onsets[p.onsets.length - 1] + p.pulse;
}

function soundTick() {
  const target = soundWanted ? soundTarget() : null;
  window.vigilSoundTarget = target;
  // Low: one tone per new low alarm, never repeated.
  if (soundWanted && view) {
    for (const b of view.beds) {
      if (!b.live || b.audio_paused) continue;
      for (const a of b.alarms) {
        const key = `${b.key}|${a.id}|${a.onset ?? ""}`;
        if (a.priority === "low" && !a.acknowledged && !heard.has(key)) {
          heard.add(key);
          if (target === "low") playBurst("low");
        }
      }
    }
  }
  if (target !== "high" && target !== "medium") { sounding = null; return; }
  const t = performance.now();
  if (!sounding || RANK[target] > RANK[sounding.priority] || sounding.priority !== target || t >= sounding.next) {
    const length = playBurst(target);
    sounding = { priority: target, next: t + (length + PATTERNS[target].pause) * 1000 };
  }
}
setInterval(soundTick, 200);
if (soundWanted) openAudio(); else soundButton();

// The page's own connection to the server.
function connect() {
  const es = new EventSource("events");
  es.addEventListener("view", (e) => {
    lastMessage = performance.now();
    connected = true;
    render(JSON.parse(e.data));
  });
  es.onerror = () => {
    connected = false;
    setBlind("lost the connection to the display server (reconnecting)");
  };
}
setInterval(() => {
  if (performance.now() - lastMessage > SILENCE_MS) {
    connected = false;
    setBlind(lastMessage === 0
      ? "connecting to the display server"
      : "no update from the display server for " + Math.round((performance.now() - lastMessage) / 1000) + " s");
  }
}, 500);
connect();
