// The requests view: the ledger's latest requests (GET /v1/fusion/requests, filtered by pool, key and
// status) and one request in full (GET /v1/fusion/requests/{id}): its calls in order, where the time
// went, cost by role, the judge's verdict and the shadow baseline. Loaded when the view opens and when
// asked, never polled: a table that changes under the reader's pointer is hard to click.

import { h, clear } from "./dom.js";
import { LEDGER_OFF, getExactJSON } from "./api.js";
import { stackedBar } from "./charts.js";
import { count, ms, money } from "./format.js";
import { recordTable } from "./table.js";

/** "2026-12-02 04:30:21" (UTC, as every worker and replica of a fleet agrees on it). */
export function utcTime(iso) {
  return iso ? iso.slice(0, 19).replace("T", " ") : "–";
}

export function yesNo(x) {
  return x === null || x === undefined ? "–" : x ? "yes" : "no";
}

/** What a request was: its mode for a pool ("best-of"), else its kind ("passthrough", "refused"...). */
function what(r) {
  return r.mode && r.kind === "pool" ? r.mode : r.kind || "–";
}

function statusCell(r) {
  return h("span", { class: r.status === 200 ? "ok" : "bad" }, String(r.status),
    r.error_code ? h("span", { class: "note" }, " " + r.error_code) : null);
}

const LIST_COLUMNS = [
  { key: "time", label: "Time (UTC)", cell: (r) => h("time", { datetime: r.created }, utcTime(r.created)) },
  { key: "id", label: "Request id",
    cell: (r) => h("a", { href: "#requests/" + encodeURIComponent(r.request_id) }, r.request_id) },
  { key: "key", label: "Key", cell: (r) => r.key ?? "–" },
  { key: "model", label: "Model or pool", cell: (r) => r.model ?? "–" },
  { key: "mode", label: "Mode", cell: what },
  { key: "status", label: "Status", cell: statusCell },
  { key: "stream", label: "Stream", cell: (r) => yesNo(r.stream) },
  { key: "latency", label: "Latency", num: true, cell: (r) => ms(r.latency_ms.total) },
  { key: "cost", label: "Cost", num: true, cell: (r) => money(r.cost_usd) },
];

function roleName(c) {
  if (c.role === "member") return `member ${c.member + 1}`;
  if (c.role === "debate_round") return `round ${c.round}, member ${c.member + 1}`;
  if (c.role === "comparison") return "pairwise judge";
  return c.role;
}

function tokens(usage) {
  return usage ? `${count(usage.prompt_tokens)} in, ${count(usage.completion_tokens)} out` : "–";
}

const CALL_COLUMNS = [
  { key: "n", label: "#", num: true, cell: (c, i) => String(i + 1) },
  { key: "role", label: "Role", cell: roleName },
  { key: "model", label: "Model", cell: (c) => c.answered_by && c.answered_by !== c.model
    ? `${c.model} (answered by ${c.answered_by})` : c.model },
  { key: "provider", label: "Provider", cell: (c) => c.provider ?? "–" },
  { key: "status", label: "Status", cell: (c) => h("span", { class: c.status === "ok" ? "ok" : "bad" }, c.status) },
  { key: "error", label: "Error type", cell: (c) => c.error_type ?? "–" },
  { key: "attempts", label: "Attempts", num: true, cell: (c) => count(c.attempts) },
  { key: "latency", label: "Latency", num: true, cell: (c) => ms(c.latency_ms) },
  { key: "ttfb", label: "First byte", num: true, cell: (c) => ms(c.ttfb_ms) },
  { key: "tokens", label: "Tokens", num: true, cell: (c) => tokens(c.usage) },
  { key: "cost", label: "Cost", num: true, cell: (c) => money(c.cost_usd) },
  { key: "estimated", label: "Estimated", cell: (c) => yesNo(c.usage_estimated) },
];

function callsTable(caption, calls) {
  if (!calls.length) return h("p", { class: "empty" }, "No upstream call was made.");
  return h("div", { class: "table-box" }, recordTable(caption, CALL_COLUMNS, calls,
    (c) => ({ "data-role": c.role, "data-model": c.model })));
}

function facts(rows) {
  return h("dl", { class: "totals" }, ...rows.filter(Boolean).flatMap(([label, value, stat]) => [
    h("dt", {}, label), h("dd", { "data-fact": stat }, value)]));
}

function latencyChart(lat) {
  if (lat.fanout === null || lat.fanout === undefined) return null;  // one call: the total says it all
  const part = (label, value, kind, stat) => ({ label, value, text: ms(value), kind, stat });
  const parts = [part("members (fan-out)", lat.fanout, "fanout", "fanout")];
  (lat.rounds || []).forEach((r, i) => parts.push(part(`debate round ${i + 1}`, r, "round", `rounds.${i}`)));
  parts.push(part("judge", lat.judge, "judge", "judge"));
  if (lat.escalation) parts.push(part("escalation", lat.escalation, "member", "escalation"));
  parts.push(part("gateway", lat.gateway, "gateway", "gateway"));
  return stackedBar(`Where the ${ms(lat.total)} went (slowest member: ${ms(lat.slowest_member)})`, parts);
}

/** The judge, its winner and its reasons (a receipt has them in its fusion object only). */
function verdictLines(r) {
  const f = r.fusion || {};
  const judge = r.judge || f.judge;
  if (!judge) return [];
  const winner = r.winner ?? f.winner;
  const lines = [["Judge", `${judge.model} (${judge.status})`, "judge"]];
  if (winner) lines.push(["Winner", `${winner} (member ${(r.winner_index ?? f.winner_index) + 1})`, "winner"]);
  else if ((r.mode ?? f.mode) === "merge") lines.push(["Winner", "none: the judge merged the answers", "winner"]);
  if (judge.verdict && judge.verdict.analysis) lines.push(["Verdict", judge.verdict.analysis, "verdict"]);
  return lines;
}

/** One request as the ledger has it (or, with the ledger off, the receipt this process kept). */
function detailPanel(r) {
  const lat = r.latency_ms;
  const byRole = r.cost_by_role;
  const panel = h("article", { class: "panel detail", "data-request-id": r.request_id, "aria-labelledby": "detail-title" },
    h("h3", { id: "detail-title", tabindex: "-1" }, "Request ", h("code", {}, r.request_id)));
  if (!r.created) {
    panel.append(h("p", { class: "note" }, "From this process's recent receipts (the ledger is off): "
      + "the cost and the pool's fusion object, no calls."));
  }
  panel.append(facts([
    r.created && ["Time (UTC)", utcTime(r.created), "time"],
    r.key !== undefined && ["Key", r.key ?? "–", "key"],
    r.endpoint !== undefined && ["Endpoint", r.endpoint ?? "–", "endpoint"],
    ["Model or pool", r.model ?? "–", "model"],
    (r.kind || r.fusion) && ["Mode", r.kind ? what(r) : r.fusion.mode, "mode"],
    ["Status", statusCell(r), "status"],
    r.stream !== undefined && ["Stream", yesNo(r.stream), "stream"],
    r.degraded && ["Degraded", "yes: a member failed and the pool answered without it", "degraded"],
    ["Cost", money(r.cost_usd), "cost"],
    byRole && r.kind === "pool" && ["Cost by role", `members ${money(byRole.member)}, judge ${money(byRole.judge)}`,
      "cost_by_role"],
    r.cost_saved_usd && ["Saved (cache)", money(r.cost_saved_usd), "saved"],
    r.usage && ["Tokens", tokens(r.usage) + (r.usage.usage_estimated ? " (estimated)" : ""), "tokens"],
    lat && ["Latency", ms(lat.total), "latency"],
    ...verdictLines(r),
  ]));
  const chart = lat ? latencyChart(lat) : null;
  if (chart) panel.append(chart);
  if (r.calls) panel.append(h("h4", {}, "Calls"), callsTable(`Calls of ${r.request_id}`, r.calls));
  if (r.baseline) panel.append(baselinePanel(r.baseline));
  else if (r.baseline_sampled) panel.append(h("p", { class: "note" }, "Sampled for the baseline: its record is not written yet."));
  return panel;
}

const COMPARISON = { fusion: "the pool's answer was better", baseline: "the baseline's answer was better",
  tie: "a tie", error: "the comparison failed" };

function baselinePanel(b) {
  return h("section", { class: "baseline", "data-request-id": b.request_id, "aria-labelledby": "baseline-title" },
    h("h4", { id: "baseline-title" }, "Shadow baseline ", h("code", {}, b.request_id)),
    facts([
      ["Model", b.model ?? "–", "model"],
      ["Status", statusCell(b), "status"],
      ["Latency", ms(b.latency_ms.total), "latency"],
      ["Cost", money(b.cost_usd), "cost"],
      ["Pairwise verdict", b.comparison ? COMPARISON[b.comparison] || b.comparison : "–", "comparison"],
      b.latency_ratio !== null && ["Pool against baseline", `${b.latency_ratio.toFixed(2)}× the latency, `
        + `${b.cost_ratio === null ? "–" : b.cost_ratio.toFixed(2) + "×"} the cost`, "ratios"],
    ]),
    callsTable(`Calls of ${b.request_id}`, b.calls || []));
}

export class RequestsView {
  constructor(els) {
    this.els = els;  // {form, pool, pools, key, status, limit, lookup, lookupId, list, detail, progress, error, off}
    this.loaded = false;
    this.shown = null;  // the id drawn in the detail panel
    this.listing = null;
    this.fetching = null;
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    els.lookup.addEventListener("submit", (event) => {
      event.preventDefault();
      const id = els.lookupId.value.trim();
      if (!id) return;
      const hash = "#requests/" + encodeURIComponent(id);
      if (location.hash !== hash) location.hash = hash;  // the route opens it
      else {
        this.shown = id;  // already the address (asked again after a failure): no hashchange comes
        this.detail(id, true);
      }
    });
  }

  /** The pools and models this key may call, offered in the pool filter. */
  suggest(names) {
    clear(this.els.pools).append(...names.map((name) => h("option", { value: name })));
  }

  /** The view is open, on request ``id`` (or none). ``focus``: move focus to what was opened. */
  open(id, focus) {
    if (!this.loaded) this.load();
    if (id === this.shown) return;
    this.shown = id;
    if (id) this.detail(id, focus);
    else clear(this.els.detail);
  }

  /** The view is closed: opening it again reloads the list. */
  leave() {
    this.loaded = false;
    this.shown = null;
    if (this.listing) this.listing.abort();
    if (this.fetching) this.fetching.abort();
  }

  /** Refetch everything (a new key was typed in). */
  reload() {
    const id = this.shown;
    this.leave();
    this.open(id, false);
  }

  filters() {
    const params = new URLSearchParams();
    for (const name of ["pool", "key", "status"]) {
      const value = this.els[name].value.trim();
      if (value) params.set(name, value);
    }
    params.set("limit", this.els.limit.value);
    return params;
  }

  async load() {
    this.loaded = true;
    if (this.listing) this.listing.abort();
    const controller = new AbortController();
    this.listing = controller;
    const params = this.filters();
    this.els.progress.textContent = "Loading…";
    try {
      const list = await getExactJSON("v1/fusion/requests?" + params, controller.signal);
      this.showProblem(null);
      this.els.off.hidden = true;
      this.draw(list.data, params);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(this.els.list);
      this.els.progress.textContent = "";
      if (err.code === LEDGER_OFF) this.els.off.hidden = false;
      else this.showProblem(err.message);
    } finally {
      if (this.listing === controller) this.listing = null;
    }
  }

  draw(records, params) {
    const filtered = ["pool", "key", "status"].filter((n) => params.has(n));
    this.els.progress.textContent = `${count(records.length)} ${records.length === 1 ? "request" : "requests"}`
      + (filtered.length ? ` matching ${filtered.map((n) => `${n} ${params.get(n)}`).join(", ")}` : "")
      + `, newest first (at most ${params.get("limit")}). Loaded ${new Date().toLocaleTimeString("en-GB")}.`;
    clear(this.els.list).append(records.length
      ? h("div", { class: "table-box" }, recordTable("Recent requests", LIST_COLUMNS, records,
          (r) => ({ "data-request-id": r.request_id, "data-status": r.status })))
      : h("p", { class: "empty" }, "No request recorded matches."));
  }

  async detail(id, focus) {
    if (this.fetching) this.fetching.abort();
    const controller = new AbortController();
    this.fetching = controller;
    clear(this.els.detail).append(h("p", { class: "status" }, `Looking up ${id}…`));
    try {
      const record = await getExactJSON("v1/fusion/requests/" + encodeURIComponent(id), controller.signal);
      clear(this.els.detail).append(detailPanel(record));
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(this.els.detail).append(h("p", { class: "error", role: "alert" }, err.message));
      this.shown = null;  // asking again tries again
    } finally {
      if (this.fetching === controller) this.fetching = null;
    }
    if (focus) {
      const title = this.els.detail.querySelector("h3");
      if (title) title.focus();
    }
  }

  showProblem(message) {
    this.els.error.textContent = message || "";
    this.els.error.hidden = !message;
  }
}
