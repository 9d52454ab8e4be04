/* Edge Allocator decision explorer: plain JavaScript over the service's own API.
   Every call goes to this origin with the bearer token the operator entered; errors are
   shown in words (the API's ErrorBody names the field at fault). No libraries: the graph
   and charts are inline SVG built with the DOM (text never goes through innerHTML). */
"use strict";

const TOKEN_KEY = "edge-allocator-token";
const FIELDS = ["cpu_util", "mem_util", "energy", "latency", "bandwidth", "queue_len", "node_type"];
const TYPE_NAMES = ["gateway", "edge", "cloud"];
const SVG_NS = "http://www.w3.org/2000/svg";
// cividis-like ramp (dark blue -> yellow), readable with every common colour deficiency
const RAMP = ["#00204d", "#31446b", "#666870", "#958f78", "#cbba69", "#ffea46"];

const state = { body: null, decision: null, comparison: null, models: null, liveTimer: null,
  rates: [] };
const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== null && v !== undefined) e.setAttribute(k, v);
  }
  for (const k of kids) e.append(k instanceof Node ? k : document.createTextNode(String(k)));
  return e;
}
const fmt = (v, d = 3) => (v === null || v === undefined || Number.isNaN(v)) ? "–"
  : Math.abs(v) >= 1000 ? v.toFixed(0) : Number(v).toPrecision(d);
const pct = (v) => (v === null || v === undefined) ? "–" : (100 * v).toFixed(1) + "%";

// --- API ------------------------------------------------------------------------------
class ApiError extends Error {}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

async function api(method, path, body) {
  const headers = { "accept": "application/json" };
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers.authorization = "Bearer " + token;
  if (body !== undefined) headers["content-type"] = "application/json";
  let resp;
  try {
    resp = await fetch("../" + path, { method, headers,
      body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (err) {
    throw new ApiError(`Cannot reach the service (${err.message}). Is it running?`);
  }
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = null; }
  if (!resp.ok) {
    if (resp.status === 401) {
      throw new ApiError("The service needs a bearer token: enter it at the top and press " +
        "\u201cUse token\u201d (the one given was missing or wrong).");
    }
    const what = data && data.error ? data.error : (text || resp.statusText);
    const where = data && data.details && data.details.length
      ? " (" + data.details.map((d) => `${d.loc || "body"}: ${d.msg}`).join("; ") + ")" : "";
    throw new ApiError(`${method} /${path} failed with ${resp.status}: ${what}${where}`);
  }
  return data;
}

async function guarded(fn) {
  try {
    await fn();
    showError("");
  } catch (err) {
    showError(err instanceof ApiError ? err.message : `Unexpected problem: ${err.message}`);
    if (!(err instanceof ApiError)) console.warn(err);
  }
}

// --- tabs (WAI-ARIA tabs: arrows, Home, End) --------------------------------------------
const TABS = ["decide", "explain", "live", "models", "decisions"];

function selectTab(name, focus) {
  for (const t of TABS) {
    const tab = $("tab-" + t), on = t === name;
    tab.setAttribute("aria-selected", String(on));
    tab.tabIndex = on ? 0 : -1;
    $("view-" + t).hidden = !on;
    if (on && focus) tab.focus();
  }
  if (location.hash !== "#" + name) history.replaceState(null, "", "#" + name);
  clearInterval(state.liveTimer);
  state.liveTimer = null;
  if (name === "live") { guarded(refreshLive); state.liveTimer = setInterval(() => guarded(refreshLive), 2000); }
  if (name === "models") guarded(loadModels);
  if (name === "decisions") guarded(searchDecisions);
  if (name === "explain") fillExplainNodes();
}

function setupTabs() {
  for (const t of TABS) {
    const tab = $("tab-" + t);
    tab.addEventListener("click", () => selectTab(t, false));
    tab.addEventListener("keydown", (ev) => {
      const i = TABS.indexOf(t);
      const next = { ArrowRight: (i + 1) % TABS.length, ArrowLeft: (i + TABS.length - 1) % TABS.length,
        Home: 0, End: TABS.length - 1 }[ev.key];
      if (next !== undefined) { ev.preventDefault(); selectTab(TABS[next], true); }
    });
  }
}

// --- Decide -----------------------------------------------------------------------------
function nodeIds(body) {
  return body.nodes.map((n, i) => (n.node_id !== undefined ? String(n.node_id) : String(i)));
}

function setBody(body) {
  if (!body || !Array.isArray(body.nodes)) throw new ApiError("The JSON needs a \u201cnodes\u201d list (a /v1/allocate body).");
  state.body = body;
  $("state-json").value = JSON.stringify(body, null, 1);
  renderNodeTable();
}

function requestBody() {
  const body = Object.assign({}, state.body);
  const model = $("model").value;
  if (model) body.model = model; else delete body.model;
  return body;
}

async function loadSample() {
  const q = new URLSearchParams({ scenario: $("scenario").value, nodes: $("nodes").value,
    seed: $("seed").value });
  setBody(await api("GET", "v1/sample?" + q));
  await decide();
}

async function decide() {
  if (!state.body) throw new ApiError("Load a sample, paste JSON or upload a file first.");
  const body = requestBody();
  const [decision, comparison] = await Promise.all([api("POST", "v1/allocate", body),
    api("POST", "v1/compare", body)]);
  state.decision = decision;
  state.comparison = comparison;
  $("decide-summary").textContent = `${decision.model.name} v${decision.model.version} chose ` +
    `node ${decision.node_id} (probability ${pct(decision.confidence)}, ` +
    `${fmt(decision.latency_ms)} ms, decision ${decision.decision_id})`;
  renderGraph();
  renderRanking();
  renderComparison();
  renderNodeTable();
}

function colour(t) {
  const x = Math.min(Math.max(t, 0), 1) * (RAMP.length - 1);
  const i = Math.min(Math.floor(x), RAMP.length - 2), f = x - i;
  const a = RAMP[i], b = RAMP[i + 1];
  const ch = (h, k) => parseInt(h.slice(1 + 2 * k, 3 + 2 * k), 16);
  const mix = [0, 1, 2].map((k) => Math.round(ch(a, k) + f * (ch(b, k) - ch(a, k))));
  return "#" + mix.map((v) => v.toString(16).padStart(2, "0")).join("");
}

function layout(body) {
  // tiers by node type: cloud on top, edge in the middle, gateways at the bottom
  const rows = { 2: [], 1: [], 0: [] };
  body.nodes.forEach((n, i) => (rows[n.node_type] || rows[0]).push(i));
  const pos = [];
  const ys = { 2: 60, 1: 200, 0: 350 };
  for (const t of [2, 1, 0]) {
    const members = rows[t];
    members.forEach((i, k) => { pos[i] = [40 + (720 * (k + 0.5)) / members.length, ys[t] + (members.length > 14 ? (k % 2) * 28 - 14 : 0)]; });
  }
  return pos;
}

function renderGraph() {
  const g = $("graph");
  g.replaceChildren();
  const body = state.body, d = state.decision, cmp = state.comparison;
  const ids = nodeIds(body), pos = layout(body);
  const scores = Object.values(d.scores);
  const lo = Math.min(...scores), hi = Math.max(...scores);
  const big = body.nodes.length > 80;
  for (const [a, b] of cmp.edges) {
    if (pos[a] && pos[b]) g.append(svg("line", { class: "edge", x1: pos[a][0], y1: pos[a][1], x2: pos[b][0], y2: pos[b][1] }));
  }
  body.nodes.forEach((n, i) => {
    const id = ids[i], out = cmp.nodes[i];
    const feasible = out.feasible;
    const score = d.scores[id];
    const r = (big ? 3 : 7) + (big ? 5 : 11) * Math.min(Math.max(n.cpu_util, 0), 1);
    const chosen = id === d.node_id;
    const tip = `node ${id} (${TYPE_NAMES[n.node_type] || n.node_type}), CPU load ${pct(n.cpu_util)}` +
      (feasible ? `, score ${fmt(score)}, probability ${pct(d.probabilities[id])}` : `, infeasible: ${out.reason}`) +
      (chosen ? " \u2014 chosen" : "");
    const grp = svg("g", { class: "node" + (feasible ? "" : " infeasible"), tabindex: "0",
      "data-node-id": id, "data-chosen": String(chosen), "data-feasible": String(feasible),
      role: "img", "aria-label": tip });
    grp.append(svg("title", {}, tip));
    grp.append(svg("circle", { class: "dot", cx: pos[i][0], cy: pos[i][1], r,
      fill: feasible ? colour(hi > lo ? (score - lo) / (hi - lo) : 1) : "#c8c8c8", stroke: "#333", "stroke-width": "1" }));
    if (chosen) {
      grp.append(svg("circle", { class: "ring", cx: pos[i][0], cy: pos[i][1], r: r + 6 }));
      grp.append(svg("text", { x: pos[i][0] + r + 8, y: pos[i][1] - r - 4, "font-weight": "bold" }, "\u2605 " + id));
    } else if (!big) {
      grp.append(svg("text", { x: pos[i][0] + r + 2, y: pos[i][1] + 4 }, id));
    }
    grp.addEventListener("click", () => { $("explain-node").value = id; });
    g.append(grp);
  });
  const legend = $("legend");
  legend.replaceChildren();
  const bar = svg("svg", { viewBox: "0 0 160 14", "aria-hidden": "true" });
  for (let k = 0; k < 16; k++) bar.append(svg("rect", { x: k * 10, y: 0, width: 10, height: 14, fill: colour(k / 15) }));
  legend.append(el("span", {}, `score ${fmt(lo)}`), bar, el("span", {}, `${fmt(hi)}`),
    el("span", {}, "\u2605 ringed: chosen"), el("span", {}, "grey dashed: infeasible"));
}

function renderRanking() {
  const d = state.decision, tb = $("ranking").tBodies[0];
  tb.replaceChildren();
  d.ranking.forEach((id, k) => {
    const p = d.probabilities[id];
    const bar = svg("svg", { viewBox: "0 0 100 10", width: "100", height: "10", "aria-hidden": "true" },
      svg("rect", { class: "bar-pos", x: 0, y: 0, width: Math.max(100 * p, 0.5), height: 10 }));
    tb.append(el("tr", { class: id === d.node_id ? "chosen" : null, "data-node-id": id },
      el("td", { class: "num" }, k + 1), el("td", {}, id), el("td", { class: "num" }, fmt(d.scores[id], 4)),
      el("td", { class: "num", "data-probability": String(p) }, bar, " ", pct(p))));
  });
}

function renderComparison() {
  const c = state.comparison, tb = $("comparison").tBodies[0];
  $("cost-model").textContent = "Cost: " + c.cost_model + ".";
  tb.replaceChildren();
  const best = Math.min(...c.choices.map((x) => x.cost));
  for (const x of c.choices) {
    tb.append(el("tr", { class: x.cost === best ? "best" : null, "data-policy": x.policy, "data-kind": x.kind,
      "data-version": x.version || "", "data-node-id": x.node_id },
      el("td", {}, x.policy), el("td", {}, x.kind), el("td", {}, x.version ? "v" + x.version : "–"),
      el("td", {}, x.node_id), el("td", { class: "num" }, fmt(x.completion_ms)),
      el("td", { class: "num" }, fmt(x.cost) + (x.cost === best ? " (lowest)" : "")),
      el("td", { class: x.missed_deadline ? "bad" : "ok" }, x.missed_deadline ? "missed" : "met")));
  }
}

function renderNodeTable() {
  const t = $("node-table"), body = state.body;
  if (!body) return;
  const ids = nodeIds(body);
  t.tHead.replaceChildren(el("tr", {}, el("th", {}, "node"), ...FIELDS.map((f) => el("th", {}, f)), el("th", {}, "feasible")));
  const tb = t.tBodies[0];
  tb.replaceChildren();
  body.nodes.forEach((n, i) => {
    const out = state.comparison && state.comparison.node_ids.length === body.nodes.length ? state.comparison.nodes[i] : null;
    const cells = FIELDS.map((f) => {
      const inp = el("input", { type: "number", step: "any", value: String(n[f]), "aria-label": `${f} of node ${ids[i]}`,
        "data-field": f, "data-index": String(i) });
      inp.addEventListener("change", () => {
        const v = Number(inp.value);
        if (inp.value === "" || Number.isNaN(v)) { showError(`${f} of node ${ids[i]} must be a number.`); return; }
        state.body.nodes[i][f] = f === "node_type" ? Math.round(v) : v;
        $("state-json").value = JSON.stringify(state.body, null, 1);
      });
      return el("td", {}, inp);
    });
    tb.append(el("tr", {}, el("td", {}, ids[i]), ...cells,
      el("td", { class: out && !out.feasible ? "bad" : "ok" }, out ? (out.feasible ? "yes" : "no: " + out.reason) : "")));
  });
}

function setupDecide() {
  $("sample-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(loadSample); });
  $("decide").addEventListener("click", () => guarded(decide));
  $("apply-json").addEventListener("click", () => guarded(async () => {
    let parsed;
    try { parsed = JSON.parse($("state-json").value); } catch (err) { throw new ApiError("The JSON does not parse: " + err.message); }
    setBody(parsed);
    await decide();
  }));
  $("upload").addEventListener("change", () => guarded(async () => {
    const file = $("upload").files[0];
    if (!file) return;
    let parsed;
    try { parsed = JSON.parse(await file.text()); } catch (err) { throw new ApiError(`${file.name} is not JSON: ${err.message}`); }
    setBody(parsed);
    await decide();
  }));
}

async function loadModelChoices() {
  const m = await api("GET", "v1/models");
  state.models = m;
  const sel = $("model");
  sel.replaceChildren(el("option", { value: "" }, `default (${m.default_model})`),
    ...Object.keys(m.routing).map((n) => el("option", { value: n }, n)));
}

// --- Explain ------------------------------------------------------------------------------
function fillExplainNodes() {
  if (!state.decision) { $("explain-summary").textContent = "Decide on a state first (Decide view)."; return; }
  const ids = nodeIds(state.body);
  const keep = $("explain-node").value, keepOther = $("explain-other").value;
  $("explain-node").replaceChildren(...ids.map((id) => el("option", { value: id }, id + (id === state.decision.node_id ? " (chosen)" : ""))));
  $("explain-node").value = ids.includes(keep) ? keep : state.decision.node_id;
  $("explain-other").replaceChildren(el("option", { value: "" }, "(none)"), ...ids.map((id) => el("option", { value: id }, id)));
  $("explain-other").value = ids.includes(keepOther) ? keepOther : "";
  fillExplainModels();
}

function bars(target, entries, label) {
  // entries: [[name, value]]; positive bars right of the axis (blue), negative left (orange)
  const g = $(target);
  g.replaceChildren();
  const rowH = 18, w = 520, mid = 310, h = rowH * entries.length + 10;
  g.setAttribute("viewBox", `0 0 ${w} ${h}`);
  const max = Math.max(1e-12, ...entries.map(([, v]) => Math.abs(v)));
  g.append(svg("line", { class: "axis", x1: mid, x2: mid, y1: 0, y2: h }));
  entries.forEach(([name, v], k) => {
    const len = (150 * Math.abs(v)) / max, y = 5 + k * rowH;
    const row = svg("g", { class: "bar", "data-name": name, "data-value": String(v) },
      svg("title", {}, `${label} ${name}: ${v}`),
      svg("text", { x: 150, y: y + 12, "text-anchor": "end" }, name),
      svg("rect", { class: v >= 0 ? "bar-pos" : "bar-neg", x: v >= 0 ? mid : mid - len, y, width: Math.max(len, 0.5), height: rowH - 4 }),
      svg("text", { x: v >= 0 ? mid + len + 4 : mid - len - 4, y: y + 12, "text-anchor": v >= 0 ? "start" : "end" }, fmt(v)));
    g.append(row);
  });
}

function byMagnitude(obj) {
  return Object.entries(obj).sort((a, b) => Math.abs(b[1]) - Math.abs(a[1]));
}

async function explain() {
  if (!state.body) throw new ApiError("Decide on a state first (Decide view).");
  const body = requestBody();
  const model = $("explain-model").value;
  if (model) body.model = model;
  body.node_id = $("explain-node").value;
  const other = $("explain-other").value;
  if (other) body.compare_to = other;
  const r = await api("POST", "v1/explain", body);
  const e = r.explanation;
  $("explain-summary").textContent = `${r.decision.model.name}` +
    (r.decision.model.version ? ` v${r.decision.model.version}` : "") + ` chose ${r.decision.node_id}. ` +
    `Node ${e.node_id} scored ${fmt(e.score, 4)} against ${fmt(e.baseline_score, 4)} on the baseline ` +
    `(${e.baseline}); method: ${e.method}` + (e.n_steps ? `, ${e.n_steps} steps` : "") +
    `, completeness error ${fmt(e.completeness_error, 2)}. The bars say how much each feature moved ` +
    "the score from the baseline (blue raises it, orange lowers it)." +
    (e.rule ? ` Rule: ${e.rule.rule}` : "");
  const own = e.attributions[e.node_id] || {};
  bars("explain-bars", byMagnitude(own), "feature");
  const perNode = Object.entries(e.attributions).map(([id, f]) => [id, Object.values(f).reduce((a, b) => a + b, 0)]);
  bars("explain-nodes", perNode.sort((a, b) => Math.abs(b[1]) - Math.abs(a[1])).slice(0, 15), "node");
  renderWhyNot(r, other);
}

function renderWhyNot(r, other) {
  const box = $("why-not");
  const c = r.comparison;
  if (!other || !c) { box.hidden = true; return; }
  box.hidden = false;
  $("why-not-title").textContent = `Why ${r.explanation.node_id} and not ${c.node_id}`;
  $("why-not-summary").textContent = `Score gap: ${fmt(c.gap, 4)} (${fmt(r.explanation.score, 4)} against ` +
    `${fmt(c.score, 4)}); on the baseline the gap is ${fmt(c.baseline_gap, 4)}. The features behind the ` +
    "difference, largest first (node \u00b7 feature; blue favours the explained node):";
  bars("why-not-bars", c.top.slice(0, 12).map((t) => [`${t.node_id} \u00b7 ${t.feature}`, t.value]), "gap");
}

function fillExplainModels() {
  const sel = $("explain-model"), keep = sel.value;
  const models = state.models ? Object.keys(state.models.routing) : [];
  const heuristics = state.comparison ? state.comparison.choices.filter((c) => c.kind === "heuristic").map((c) => c.policy) : [];
  sel.replaceChildren(el("option", { value: "" }, "as in Decide"),
    ...models.map((m) => el("option", { value: m }, m)),
    ...heuristics.map((h) => el("option", { value: h }, h + " (heuristic)")));
  sel.value = [...sel.options].some((o) => o.value === keep) ? keep : "";
}

// --- Live ---------------------------------------------------------------------------------
function metric(k, v) { return el("div", { class: "metric", "data-metric": k }, el("div", { class: "v" }, v), el("div", { class: "k" }, k)); }

async function refreshLive() {
  const s = await api("GET", "v1/stats");
  $("live-cards").replaceChildren(
    metric("decisions", String(s.decisions_total)),
    metric("decisions/s", fmt(s.decisions_per_s)),
    metric("p50 latency ms", fmt(s.latency_p50_ms)),
    metric("p99 latency ms", fmt(s.latency_p99_ms)),
    metric("cache hit rate", pct(s.cache.hit_rate)),
    metric("replica", s.replica));
  $("live-updated").textContent = "Updated " + new Date().toLocaleTimeString() + ".";
  state.rates.push(s.decisions_per_s);
  if (state.rates.length > 60) state.rates.shift();
  const g = $("live-rate"), max = Math.max(1, ...state.rates);
  g.replaceChildren(svg("line", { class: "axis", x1: 0, y1: 110, x2: 400, y2: 110 }),
    svg("polyline", { class: "line", points: state.rates.map((v, i) => `${(400 * i) / 59},${110 - (100 * v) / max}`).join(" ") }),
    svg("text", { x: 2, y: 12 }, `max ${fmt(max)}/s`));
  bars("live-batches", Object.entries(s.batch_sizes), "batch size");
  const tb = $("live-traffic").tBodies[0];
  tb.replaceChildren(...s.traffic.map((t) => el("tr", {}, el("td", {}, t.model), el("td", {}, "v" + t.version),
    el("td", { class: "num" }, t.decisions), el("td", { class: "num" }, pct(t.share)), el("td", { class: "num" }, fmt(t.weight)))));
  const sb = $("live-shadow").tBodies[0];
  sb.replaceChildren(...(s.shadow.length ? s.shadow.map((t) => el("tr", {}, el("td", {}, t.model), el("td", {}, "v" + t.version),
    el("td", { class: "num" }, pct(t.share)), el("td", { class: "num" }, t.scored), el("td", { class: "num" }, pct(t.agreement)),
    el("td", { class: "num" }, t.dropped), el("td", { class: "num" }, t.failed))) : [el("tr", {}, el("td", { colspan: "7" }, "no shadow configured"))]));
  const rb = $("live-replicas").tBodies[0];
  rb.replaceChildren(...(s.replicas ? Object.entries(s.replicas).map(([name, st]) => el("tr", {}, el("td", {}, name),
    el("td", {}, Object.entries(st).map(([k, n]) => `${n} ${k}`).join(", ") || "none"))) : [el("tr", {}, el("td", { colspan: "2" }, "not running under Ray Serve"))]));
  const errs = Object.entries(s.errors);
  $("live-errors").textContent = errs.length ? errs.map(([k, n]) => `${n} \u00d7 ${k}`).join(", ") : "none";
}

// --- Models -------------------------------------------------------------------------------
function curve(values, label) {
  const w = 400, h = 140, max = Math.max(...values), min = Math.min(...values);
  const span = max - min || 1;
  const pts = values.map((v, i) => `${30 + ((w - 40) * i) / Math.max(values.length - 1, 1)},${h - 20 - ((h - 35) * (v - min)) / span}`);
  return svg("svg", { viewBox: `0 0 ${w} ${h}`, role: "img", "aria-label": label },
    svg("line", { class: "axis", x1: 30, y1: h - 20, x2: w - 10, y2: h - 20 }),
    svg("line", { class: "axis", x1: 30, y1: 10, x2: 30, y2: h - 20 }),
    svg("polyline", { class: "line", points: pts.join(" ") }),
    svg("text", { x: 34, y: 14 }, fmt(max)), svg("text", { x: 34, y: h - 24 }, fmt(min)),
    svg("text", { x: w - 10, y: h - 6, "text-anchor": "end" }, label));
}

function evalTable(rows) {
  const metrics = ["episode_reward", "completion_ms", "miss_rate", "energy_j"];
  const head = el("tr", {}, el("th", {}, "scenario"), el("th", {}, "agent"), el("th", { class: "num" }, "episodes"),
    ...metrics.map((m) => el("th", { class: "num" }, m + " (mean \u00b1 95% CI)")));
  const body = rows.map((r) => el("tr", {}, el("td", {}, r.scenario), el("td", {}, r.agent), el("td", { class: "num" }, r.episodes),
    ...metrics.map((m) => el("td", { class: "num" }, r.metrics && r.metrics[m] ? `${fmt(r.metrics[m].mean)} \u00b1 ${fmt(r.metrics[m].ci95, 2)}` : "–"))));
  return el("div", { class: "scroll" }, el("table", { class: "eval" }, el("thead", {}, head), el("tbody", {}, ...body)));
}

async function plotImage(model, version, file) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const q = new URLSearchParams({ model, version, file });
  const resp = await fetch("../v1/artifact?" + q, { headers: token ? { authorization: "Bearer " + token } : {} });
  if (!resp.ok) return el("p", { class: "bad" }, `${file}: could not be fetched (${resp.status}).`);
  return el("img", { src: URL.createObjectURL(await resp.blob()), alt: `${model} v${version}: ${file}` });
}

// "default", "shadow candidate" or nothing: /v1/models lists every loaded version, and a
// version scored in shadow answers no client
function role(m, info) {
  const shadow = (m.shadow || {})[info.name];
  if (shadow && shadow.version === info.version) return " \u2014 shadow candidate";
  return info.name === m.default_model ? " \u2014 default" : "";
}

async function loadModels() {
  const m = state.models || await api("GET", "v1/models");
  const box = $("models");
  box.replaceChildren();
  for (const info of m.models) {
    const man = await api("GET", "v1/manifest?" + new URLSearchParams({ model: info.name, version: info.version }));
    const card = el("div", { class: "card", "data-model": info.name, "data-version": info.version },
      el("h2", {}, `${man.name} v${man.version} (${man.kind}, ${info.backend})` + role(m, info)),
      el("p", { class: "note" }, man.training.pipeline || ""));
    card.append(el("h3", {}, "Evaluation"), evalTable(man.evaluation));
    const loss = man.training.bc_loss_curve;
    card.append(el("h3", {}, "Training curve"), Array.isArray(loss) && loss.length
      ? curve(loss, "behaviour-cloning loss per epoch") : el("p", { class: "note" }, "No training curve in the manifest."));
    card.append(el("h3", {}, "Plots"));
    if (man.plots.length) { for (const p of man.plots) card.append(await plotImage(man.name, man.version, p)); }
    else card.append(el("p", { class: "note" }, "No plots in the artifact folder."));
    box.append(card);
  }
}

// --- Decisions ----------------------------------------------------------------------------
async function searchDecisions() {
  const q = new URLSearchParams({ limit: $("search-limit").value || "50" });
  const id = $("search-id").value.trim();
  if (id) q.set("decision_id", id);
  const r = await api("GET", "v1/decisions?" + q);
  const tb = $("decisions").tBodies[0];
  tb.replaceChildren(...r.decisions.map((d) => el("tr", { "data-decision-id": d.decision_id },
    el("td", { class: "mono" }, d.decision_id), el("td", {}, d.created_at.replace("T", " ").slice(0, 23)),
    el("td", {}, `${d.model} v${d.version}`), el("td", {}, d.node_id), el("td", { class: "num" }, pct(d.confidence)),
    el("td", { class: "num" }, fmt(d.latency_ms)), el("td", {}, d.cached ? "yes" : "no"),
    el("td", {}, d.feedback.length ? d.feedback.map((f) => `${f.success ? "succeeded" : "failed"}` +
      (f.completion_ms !== null ? ` in ${fmt(f.completion_ms)} ms` : "")).join("; ") : "none yet"))));
  if (!r.decisions.length) tb.append(el("tr", {}, el("td", { colspan: "8" }, id ? `No decision id starts with ${id}.` : "No decisions logged yet.")));
}

// --- start --------------------------------------------------------------------------------
function setup() {
  setupTabs();
  setupDecide();
  $("token").value = sessionStorage.getItem(TOKEN_KEY) || "";
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
    state.models = null;
    guarded(loadModelChoices);
  });
  $("explain-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(explain); });
  $("search-form").addEventListener("submit", (ev) => { ev.preventDefault(); guarded(searchDecisions); });
  const start = TABS.includes(location.hash.slice(1)) ? location.hash.slice(1) : "decide";
  selectTab(start, false);
  guarded(loadModelChoices);
}

setup();
