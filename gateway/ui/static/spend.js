// The spend view: GET /v1/fusion/spend grouped by key, pool, upstream model or UTC day over a window,
// with a total. Money stays the decimal text the gateway wrote, and the total is an exact decimal sum.

import { h, clear } from "./dom.js";
import { LEDGER_OFF, getExactJSON } from "./api.js";
import { count, money, sumExact } from "./format.js";
import { recordTable } from "./table.js";

const GROUP_LABELS = { key: "Key", pool: "Pool or model", model: "Upstream model", day: "Day (UTC)" };

export class SpendView {
  constructor(els) {
    this.els = els;  // {form, groupBy, since, table, status, error, off}
    this.loaded = false;
    this.inflight = null;
    els.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.load();
    });
    // a choice in either list shows its answer at once
    els.groupBy.addEventListener("change", () => this.load());
    els.since.addEventListener("change", () => this.load());
  }

  open() {
    if (!this.loaded) this.load();
  }

  leave() {
    this.loaded = false;
    if (this.inflight) this.inflight.abort();
  }

  async load() {
    this.loaded = true;
    if (this.inflight) this.inflight.abort();
    const controller = new AbortController();
    this.inflight = controller;
    const params = new URLSearchParams({ group_by: this.els.groupBy.value });
    if (this.els.since.value) params.set("since", this.els.since.value);
    this.els.status.textContent = "Loading…";
    try {
      const spend = await getExactJSON("v1/fusion/spend?" + params, controller.signal);
      this.els.error.hidden = true;
      this.els.off.hidden = true;
      this.draw(spend);
    } catch (err) {
      if (err.name === "AbortError") return;
      clear(this.els.table);
      this.els.status.textContent = "";
      if (err.code === LEDGER_OFF) this.els.off.hidden = false;
      else {
        this.els.error.textContent = err.message;
        this.els.error.hidden = false;
      }
    } finally {
      if (this.inflight === controller) this.inflight = null;
    }
  }

  draw(spend) {
    const group = spend.group_by;
    const what = group === "model" ? "calls" : "requests";  // by model, each upstream call counts
    const window = this.els.since.selectedOptions[0].textContent;
    this.els.status.textContent = `Spent over ${window}, by ${GROUP_LABELS[group].toLowerCase()}, dearest first. `
      + `Loaded ${new Date().toLocaleTimeString("en-GB")}.`;
    if (!spend.data.length) {
      clear(this.els.table).append(h("p", { class: "empty" }, "Nothing was spent in this window."));
      return;
    }
    const columns = [
      { key: "group", label: GROUP_LABELS[group], cell: (r) => r[group] },
      { key: "count", label: what === "calls" ? "Calls" : "Requests", num: true, cell: (r) => count(r[what]) },
      { key: "unknown", label: "Unknown cost", num: true, cell: (r) => count(r.unknown_cost) },
      { key: "cost", label: "Spend (USD)", num: true, cell: (r) => money(r.cost_usd) },
    ];
    const table = recordTable(`Spend by ${group}`, columns, spend.data, (r) => ({ "data-group": r[group] }));
    const total = sumExact(spend.data.map((r) => r.cost_usd));
    const n = spend.data.reduce((sum, r) => sum + r[what], 0);
    const unknown = spend.data.reduce((sum, r) => sum + r.unknown_cost, 0);
    table.append(h("tfoot", {}, h("tr", { "data-total": total },
      h("th", { scope: "row", "data-label": GROUP_LABELS[group] }, "Total"),
      h("td", { class: "num", "data-col": "count", "data-label": columns[1].label }, count(n)),
      h("td", { class: "num", "data-col": "unknown", "data-label": "Unknown cost" }, count(unknown)),
      h("td", { class: "num", "data-col": "cost", "data-label": "Spend (USD)" }, money(total)))));
    clear(this.els.table).append(h("div", { class: "table-box" }, table));
  }
}
