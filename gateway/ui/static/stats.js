// The live stats view: GET /v1/fusion/stats drawn per pool, polled while the view is open and the tab
// is visible, never otherwise.

import { h, clear } from "./dom.js";
import { barChart, stackedBar } from "./charts.js";
import { ms, usd, pct, times, count } from "./format.js";
import { getJSON } from "./api.js";

export const POLL_MS = 2000;

export class StatsView {
  constructor({ pools, status, error }) {
    this.poolsEl = pools;
    this.statusEl = status;
    this.errorEl = error;
    this.active = false;
    this.timer = null;
    this.inflight = null;
    this.last = null;
  }

  /** Show (true) or hide (false): polling follows. */
  setActive(active) {
    if (active === this.active) return;
    this.active = active;
    if (active) {
      this.poll();
    } else {
      clearTimeout(this.timer);
      this.timer = null;
      if (this.inflight) this.inflight.abort();
    }
  }

  /** Fetch and draw now, then again every POLL_MS while active. One chain at a time: a new call
   * cancels the pending timer and the request in flight. */
  async poll() {
    clearTimeout(this.timer);
    if (this.inflight) this.inflight.abort();
    const controller = new AbortController();
    this.inflight = controller;
    try {
      const snapshot = await getJSON("v1/fusion/stats", controller.signal);
      this.errorEl.hidden = true;
      this.render(snapshot);
      this.statusEl.textContent = `Updated ${new Date().toLocaleTimeString("en-GB")}; refreshing every ${POLL_MS / 1000} s.`;
    } catch (err) {
      if (err.name === "AbortError") return;
      this.errorEl.textContent = err.message;
      this.errorEl.hidden = false;
      // A refused key stays refused: wait for a new one (the key form polls again) instead of asking
      // every few seconds.
      if (err.status === 401 || err.status === 403) return;
    } finally {
      if (this.inflight === controller) this.inflight = null;
    }
    if (this.active) this.timer = setTimeout(() => this.poll(), POLL_MS);
  }

  render(snapshot) {
    const text = JSON.stringify(snapshot.pools);
    if (text === this.last) return;  // nothing new: leave the page (and anyone reading it) alone
    this.last = text;
    clear(this.poolsEl);
    if (!snapshot.pools.length) {
      this.poolsEl.append(h("p", { class: "empty" }, "No pools are configured (or this key may call none)."));
      return;
    }
    for (const p of snapshot.pools) this.poolsEl.append(poolCard(p));
  }
}

function poolCard(p) {
  const r = p.requests;
  const card = h("article", { class: "panel pool", "data-pool": p.pool, "aria-labelledby": `pool-${p.pool}` },
    h("h3", { id: `pool-${p.pool}` }, p.pool, " ", h("span", { class: "badge" }, p.mode)),
    h("p", { class: "requests" },
      h("b", { "data-stat": "requests.total", "data-value": r.total }, count(r.total)),
      r.total === 1 ? " request: " : " requests: ",
      h("span", { "data-stat": "requests.ok", "data-value": r.ok }, count(r.ok)), " ok, ",
      h("span", { "data-stat": "requests.degraded", "data-value": r.degraded }, count(r.degraded)), " degraded, ",
      h("span", { "data-stat": "requests.error", "data-value": r.error }, count(r.error)), " failed"));
  if (!r.total && !p.baseline.samples) {
    card.append(h("p", { class: "empty" }, "No requests yet: send one from the playground."));
    return card;
  }
  if (p.cascade) card.append(cascadeLine(p.cascade));
  const f = p.fusion;
  const b = p.baseline;
  const base = `baseline ${b.model}`;
  const latency = [
    { label: "fusion p50", value: f.latency_ms.p50, text: ms(f.latency_ms.p50), kind: "fusion", stat: "fusion.latency_ms.p50" },
    { label: "fusion p95", value: f.latency_ms.p95, text: ms(f.latency_ms.p95), kind: "fusion-light", stat: "fusion.latency_ms.p95" },
  ];
  const cost = [
    { label: "fusion, mean", value: f.mean_cost_usd, text: usd(f.mean_cost_usd), kind: "fusion", stat: "fusion.mean_cost_usd" },
  ];
  if (!b.model) {
    card.append(h("div", { class: "charts" },
      barChart(`Latency (${count(f.samples)} samples)`, latency), barChart("Cost per request", cost)));
    card.append(h("p", { class: "ratios note" }, "This pool has no baseline configured: nothing to compare it with."));
    return card;
  }
  latency.push(
    { label: `${base} p50`, value: b.latency_ms.p50, text: ms(b.latency_ms.p50), kind: "baseline", stat: "baseline.latency_ms.p50" },
    { label: `${base} p95`, value: b.latency_ms.p95, text: ms(b.latency_ms.p95), kind: "baseline-light", stat: "baseline.latency_ms.p95" },
  );
  cost.push(
    { label: `${base}, mean`, value: b.mean_cost_usd, text: usd(b.mean_cost_usd), kind: "baseline", stat: "baseline.mean_cost_usd" },
  );
  const c = p.comparison;
  const judged = [
    { label: "fusion better", value: c.wins, text: `${count(c.wins)} (${pct(c.win_rate)})`, kind: "win", stat: "comparison.wins" },
    { label: "tie", value: c.ties, text: `${count(c.ties)} (${pct(c.tie_rate)})`, kind: "tie", stat: "comparison.ties" },
    { label: "baseline better", value: c.losses, text: `${count(c.losses)} (${pct(c.loss_rate)})`, kind: "loss", stat: "comparison.losses" },
  ];
  card.append(h("div", { class: "charts" },
    barChart(`Latency (${count(f.samples)} fused, ${count(b.samples)} baseline samples)`, latency),
    barChart("Cost per request", cost),
    stackedBar(`Judged against the baseline (${count(c.n)} compared` + (c.errors ? `, ${count(c.errors)} failed` : "") + ")",
      judged, { empty: "No comparisons yet." })));
  const ratios = p.ratios;
  card.append(h("p", { class: "ratios note" }, ratios.samples
    ? `Fusion against the baseline on the same requests (median of ${count(ratios.samples)}): `
      + `${times(ratios.latency_p50)} the latency, ${times(ratios.cost_p50)} the cost.`
    : `No ${base} samples yet.` + (b.errors ? ` ${count(b.errors)} baseline calls failed.` : "")));
  return card;
}

/** A cascade: how often it escalated to its pool, and what answering without the pool saved. */
function cascadeLine(c) {
  const saved = c.saved_usd_per_request;
  return h("p", { class: "cascade note" },
    "Escalated ",
    h("b", { "data-stat": "cascade.escalated", "data-value": c.escalated }, count(c.escalated)),
    ` of ${count(c.requests)} (`,
    h("span", { "data-stat": "cascade.escalation_rate", "data-value": c.escalation_rate }, pct(c.escalation_rate)),
    ") to the pool; ",
    saved == null
      ? "no escalation yet to measure the pool's cost against."
      : h("span", { "data-stat": "cascade.saved_usd_per_request", "data-value": saved },
          `saved ${usd(saved)} per request against running the pool every time (${pct(c.saved_rate)} of its `
          + `${usd(c.pool_mean_cost_usd)}).`));
}
