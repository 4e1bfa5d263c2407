// One request from the playground, drawn as it streams: a column per pool member (in the pool's
// order), debate rounds inside each column, the judge's verdict, the final answer, and what it all cost
// in time and money. Model output only ever enters the page as text nodes.

import { h, clear } from "./dom.js";
import { barChart, stackedBar } from "./charts.js";
import { ms, usd, count } from "./format.js";

// "cancelled" in a running pool means cut once the quorum had answered and the grace period was over:
// the pool was told to go on without it, so it is drawn as by design, not as a failure.
const STATE_TEXT = { ok: "done", error: "failed", timeout: "timed out", cancelled: "not needed" };
const BY_DESIGN = "Cut once the quorum had answered and the grace period was over: by design, not a failure.";
// How a judge's reasons name the anonymous answers: "Candidate K", "answer K".
const LABEL_REF = /\b([Cc]andidate|[Aa]nswer) ([A-Z])\b/g;

/**
 * The judge's text with each anonymous label it cites followed by the model it was, as text nodes.
 * labels: {label: {member, model}}.
 */
function withModels(text, labels) {
  const out = [];
  let last = 0;
  for (const match of text.matchAll(LABEL_REF)) {
    const who = labels[match[2]];
    if (!who) continue;
    out.push(text.slice(last, match.index));
    out.push(h("span", { class: "label-ref", "data-label": match[2], "data-model": who.model },
      match[0], h("span", { class: "label-model" }, ` (${who.model})`)));
    last = match.index + match[0].length;
  }
  out.push(text.slice(last));
  return out;
}

export class Run {
  /**
   * root: the element to draw in; target: {id, fusion: {mode, members, judge} | null}.
   */
  constructor(root, target) {
    this.target = target;
    this.pool = target.fusion || null;
    this.started = performance.now();
    this.members = [];
    this.judge = null;
    this.meta = null;
    this.usage = null;
    this.answer = "";

    this.el = h("section", { class: "run", "aria-label": "Result" });
    if (this.pool) {
      this.columns = h("div", { class: "members", role: "list" });
      this.pool.members.forEach((model, i) => this.members.push(this.column(model, i)));
      this.rounds = h("ol", { class: "round-log", "aria-label": "Debate rounds" });
      this.verdict = h("div", { class: "verdict-body" },
        h("p", { class: "judge-state" }, this.pool.judge ? `Waiting for the members.` : "This pool has no judge."));
      this.el.append(
        h("h3", { class: "visually-hidden" }, "Members"),
        this.columns,
        this.rounds,
        h("section", { class: "panel verdict", "aria-live": "polite", "aria-labelledby": "verdict-title" },
          h("h3", { id: "verdict-title" }, this.pool.judge ? `Judge · ${this.pool.judge}` : "Judge"),
          this.verdict),
      );
      this.rounds.hidden = true;
    }
    this.answerText = document.createTextNode("");
    this.answerBox = h("div", { class: "text", "aria-live": "polite", "aria-busy": "true" }, this.answerText);
    this.finalState = h("p", { class: "note" }, "Streaming…");
    this.metrics = h("div", { class: "metrics-body" });
    this.el.append(
      h("section", { class: "panel final", "aria-labelledby": "final-title" },
        h("h3", { id: "final-title" }, "Final answer"), this.answerBox, this.finalState),
      h("section", { class: "panel metrics", "aria-labelledby": "metrics-title" },
        h("h3", { id: "metrics-title" }, "Latency and cost"), this.metrics),
    );
    clear(root).append(this.el);
    this.drawMetrics();
  }

  column(model, index) {
    const title = h("h4", { class: "model", id: `member-${index}-title` }, model);
    const state = h("span", { class: "badge state" }, "waiting");
    const badges = h("span", { class: "badges" });
    const winner = h("span", { class: "badge winner", hidden: true }, "★ winner");
    const body = h("div", { class: "rounds" });
    const figures = h("p", { class: "figures note" });
    const el = h("article", {
      class: "member", role: "listitem", "data-member": index, "data-model": model,
      "aria-labelledby": `member-${index}-title`,
    }, h("header", {}, title, state, winner, badges), body, figures);
    this.columns.append(el);
    return { model, index, el, state, badges, winner, body, figures, rounds: new Map(), latency: 0, cost: 0,
      costKnown: true, calls: 0, status: "waiting" };
  }

  /** One parsed chunk of the stream. */
  chunk(c) {
    if (c.fusion_event) this.event(c.fusion_event);
    for (const choice of c.choices || []) {
      const text = choice.delta && choice.delta.content;
      if (text) this.addAnswer(text);
    }
    if (c.usage) this.usage = c.usage;
    if (c.fusion) this.finishPool(c.fusion);
  }

  event(e) {
    const m = this.members[e.member];
    switch (e.type) {
      case "member.started":
        if (m) this.startRound(m, e.round);
        break;
      case "member.delta":
        if (m) this.roundOf(m, e.round).text.appendData(e.content);
        break;
      case "member.done":
        if (m) this.memberDone(m, e);
        break;
      case "round.done":
        this.rounds.hidden = false;
        this.rounds.append(h("li", { "data-round": e.round },
          h("span", { class: "badge round-badge" }, `Round ${e.round}`),
          ` ${e.answers} answers, ${e.agreed ? "agreed" : "still disagree"} · ${ms(e.latency_ms)}`));
        break;
      case "judge.started":
        this.judgeState(this.judgeActivity(e.call));
        break;
      case "judge.done":
        this.judgeDone(e);
        break;
      default:
        break;  // an event type this page does not know yet
    }
  }

  roundOf(m, round) {
    return m.rounds.get(round) || this.startRound(m, round);
  }

  startRound(m, round) {
    let r = m.rounds.get(round);
    if (r) return r;
    const text = document.createTextNode("");
    const box = h("div", { class: "text", "aria-live": "polite", "aria-busy": "true" }, text);
    const debate = this.pool.mode === "debate";
    let block;
    if (debate) {
      for (const older of m.rounds.values()) older.block.open = false;  // the newest round in view
      const label = round === 0 ? "First answer" : `Round ${round}: after reading the others`;
      block = h("details", { class: "round-block", "data-round": round, open: true }, h("summary", {}, label), box);
      m.badges.append(h("span", { class: "badge round-badge", "data-round": round, title: round === 0 ? "first answer" : `debate round ${round}` }, round === 0 ? "R0" : `R${round}`));
    } else {
      block = h("div", { class: "round-block", "data-round": round }, box);
    }
    m.body.append(block);
    r = { block, box, text };
    m.rounds.set(round, r);
    this.setState(m, "running", "answering…");
    return r;
  }

  memberDone(m, e) {
    const r = this.roundOf(m, e.round);
    r.box.setAttribute("aria-busy", "false");
    m.latency += e.latency_ms || 0;
    if (e.cost_usd === null || e.cost_usd === undefined) m.costKnown = false;
    else m.cost += e.cost_usd;
    m.calls += 1;
    const words = STATE_TEXT[e.status] || e.status;
    if (e.status === "ok") {
      this.setState(m, "ok", words);
    } else if (e.status === "cancelled") {
      this.setState(m, "cancelled", words);
      r.box.append(h("span", { class: "by-design" }, BY_DESIGN));
    } else {
      const type = e.error_type && e.error_type !== e.status ? ` · ${e.error_type}` : "";  // not "cancelled · cancelled"
      this.setState(m, e.status, words + type);
      r.box.append(h("span", { class: "failure" }, `No answer: ${e.error_type || e.status}.`));
    }
    m.figures.textContent = `${ms(m.latency)} · ${m.costKnown ? usd(m.cost) : "cost unknown"}`
      + (m.calls > 1 ? ` · ${m.calls} calls` : "");
    this.drawMetrics();
  }

  setState(m, status, text) {
    m.status = status;
    m.state.textContent = text;
    m.el.dataset.state = status;
  }

  /** What the judge's n-th call is doing, in words. */
  judgeActivity(call) {
    if (this.pool.analysis && this.pool.mode === "merge") {
      return call > 1 ? "Writing the answer from its comparison…"
        : "Comparing the answers: consensus, contradictions, gaps…";
    }
    return call > 1 ? `Reading the answers again, in another order (call ${call})…` : "Reading the answers…";
  }

  judgeState(text) {
    clear(this.verdict).append(h("p", { class: "judge-state" }, text));
  }

  judgeDone(e) {
    this.judge = e;
    const mode = this.pool.mode;
    const parts = [];
    if (e.status === "ok" && e.verdict) {
      parts.push(h("p", { class: "judge-state" }, "Verdict: ",
        h("b", { class: "verdict-winner" }, e.verdict.winner), ` (column ${e.verdict.winner_index + 1}) gave the best answer.`));
      const labels = e.verdict.labels || {};
      if (e.verdict.analysis) {
        parts.push(h("p", { class: "analysis" }, h("b", {}, "Why: "), ...withModels(e.verdict.analysis, labels)));
      }
      const legend = Object.entries(labels).sort((a, b) => a[1].member - b[1].member);
      if (legend.length) {
        parts.push(h("p", { class: "labels note" }, "The judge saw the answers anonymously: ",
          ...legend.flatMap(([label, who], i) => [i ? ", " : "",
            h("span", { class: "label-key", "data-label": label, "data-model": who.model },
              `${label} = ${who.model} (column ${who.member + 1})`)]), "."));
      }
      if (e.calls > 1) {
        parts.push(h("p", { class: "note" }, e.verdict.consistent
          ? `Asked ${e.calls} times with the answers in different orders: the same pick each time.`
          : `Asked ${e.calls} times with the answers in different orders: the picks differed.`));
      }
      this.markWinner(e.verdict.winner_index, true);
    } else if (e.status === "ok") {
      // no pick: the judge wrote the answer itself (merge, or a debate whose final step merges)
      parts.push(h("p", { class: "judge-state merged" },
        "The judge merged the members' answers into one: the final answer below is its own text."));
    } else if (e.status === "skipped") {
      parts.push(h("p", { class: "judge-state" }, mode === "debate"
        ? "The members agreed: no judge call was needed."
        : "Only one answer came back: no judge call was needed."));
    } else if (e.status === "fallback") {
      parts.push(h("p", { class: "judge-state failed" },
        `The judge failed (${e.fallback_reason || "no reason given"}): the first member to answer is used instead.`));
    } else {
      parts.push(h("p", { class: "judge-state failed" }, `Judge: ${e.status}.`));
    }
    parts.push(h("p", { class: "note" }, `${e.calls} call${e.calls === 1 ? "" : "s"} · ${ms(e.latency_ms)} · `
      + (e.cost_usd === null || e.cost_usd === undefined ? "cost unknown" : usd(e.cost_usd))));
    clear(this.verdict).append(...parts);
    this.drawMetrics();
  }

  /** Highlight the column whose answer is the final one: the judge's pick, or the one used without it. */
  markWinner(index, picked) {
    for (const m of this.members) {
      const won = m.index === index;
      m.el.classList.toggle("is-winner", won);
      m.winner.hidden = !won;
      m.winner.textContent = picked ? "★ winner" : "★ answer used";
    }
  }

  addAnswer(text) {
    this.answer += text;
    this.answerText.appendData(text);
  }

  finishPool(meta) {
    this.meta = meta;
    if (this.pool && meta.analysis) this.verdict.append(analysisPanel(meta.analysis, this.members));
    if (this.pool && meta.winner_index !== null && meta.winner_index !== undefined && this.pool.mode !== "merge") {
      this.markWinner(meta.winner_index, Boolean(meta.judge && meta.judge.verdict));
    }
    this.drawMetrics();
  }

  /** The stream ended with [DONE]. */
  done() {
    this.answerBox.setAttribute("aria-busy", "false");
    if (!this.answer) this.answerBox.append(h("span", { class: "note" }, "(no text in the answer)"));
    const elapsed = performance.now() - this.started;
    this.finalState.textContent = this.meta && this.meta.degraded
      ? "Complete, degraded: not every member answered or the judge fell back."
      : "Complete.";
    this.finalState.dataset.state = "done";
    if (!this.meta) this.clientLatency = elapsed;
    this.drawMetrics();
  }

  fail(message) {
    this.answerBox.setAttribute("aria-busy", "false");
    this.finalState.textContent = message;
    this.finalState.dataset.state = "error";
    this.finalState.className = "error";
    for (const m of this.members) {
      for (const r of m.rounds.values()) r.box.setAttribute("aria-busy", "false");
      if (m.status === "waiting" || m.status === "running") this.setState(m, "stopped", "stopped");
    }
  }

  drawMetrics() {
    const parts = [];
    if (this.pool) {
      const judge = this.judge;
      const rows = this.members.map((m) => ({
        label: `${m.index + 1}. ${m.model}` + (m.status !== "ok" && STATE_TEXT[m.status] && m.status !== "waiting"
          ? ` (${STATE_TEXT[m.status]})` : ""),
        m,
      }));
      const done = rows.filter((r) => ["ok", "error", "timeout", "cancelled", "stopped"].includes(r.m.status));
      const latency = done.map((r) => ({ label: r.label, value: r.m.latency, text: ms(r.m.latency), kind: "member" }));
      const cost = done.map((r) => ({
        label: r.label, value: r.m.costKnown ? r.m.cost : null, text: r.m.costKnown ? usd(r.m.cost) : "unknown",
        kind: "member",
      }));
      if (judge && judge.calls > 0) {
        latency.push({ label: `judge: ${judge.model}`, value: judge.latency_ms, text: ms(judge.latency_ms), kind: "judge" });
        cost.push({ label: `judge: ${judge.model}`, value: judge.cost_usd, text: usd(judge.cost_usd), kind: "judge" });
      }
      parts.push(h("div", { class: "charts" },
        barChart("Latency per call", latency, { empty: "Waiting for the first member to finish." }),
        barChart("Cost per call", cost, { empty: "Waiting for the first member to finish." })));
    }
    parts.push(this.totals());
    clear(this.metrics).append(...parts);
  }

  totals() {
    const meta = this.meta;
    const usage = this.usage;
    const tokens = usage ? `${count(usage.prompt_tokens)} in, ${count(usage.completion_tokens)} out` : "–";
    if (!meta) {
      const rows = [["Tokens", tokens]];
      if (this.clientLatency !== undefined) rows.unshift(["Latency (measured here)", ms(this.clientLatency)]);
      return h("dl", { class: "totals" }, ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
    }
    const lat = meta.latency_ms;
    const dl = h("dl", { class: "totals" },
      h("dt", {}, "Total cost"), h("dd", { "data-total": "cost", "data-value": meta.cost_usd ?? "" },
        meta.cost_usd === null ? "unknown" : usd(meta.cost_usd)),
      h("dt", {}, "Total latency"), h("dd", { "data-total": "latency", "data-value": lat.total }, ms(lat.total)),
      h("dt", {}, "Tokens"), h("dd", {}, tokens));
    const breakdown = [{ label: "members (fan-out)", value: lat.fanout, text: ms(lat.fanout), kind: "fanout" }];
    (lat.rounds || []).forEach((r, i) => breakdown.push({ label: `debate round ${i + 1}`, value: r, text: ms(r), kind: "round" }));
    breakdown.push({ label: "judge", value: lat.judge, text: ms(lat.judge), kind: "judge" });
    breakdown.push({ label: "gateway", value: lat.gateway, text: ms(lat.gateway), kind: "gateway" });
    return h("div", { class: "total-box" }, dl,
      stackedBar(`Where the ${ms(lat.total)} went (slowest member: ${ms(lat.slowest_member)})`, breakdown));
  }
}

const SECTION_TITLES = [
  ["consensus", "Consensus"],
  ["contradictions", "Contradictions"],
  ["coverage_gaps", "Coverage gaps"],
  ["unique_insights", "Unique insights"],
  ["blind_spots", "Blind spots"],
];

/** A merge that showed its work: the judge's comparison, section by section, with its labels resolved to
 * the columns they stand for. */
function analysisPanel(a, members) {
  const box = h("section", { class: "analysis-panel", "data-analysis": a.status, "aria-labelledby": "analysis-title" },
    h("h4", { id: "analysis-title" }, "The judge's comparison"));
  if (a.status !== "ok") {
    box.append(h("p", { class: "judge-state failed" },
      `The comparison failed (${a.error || "no reason given"}): the answer was merged without it.`));
  } else {
    const labels = Object.entries(a.labels || {}).sort(([x], [y]) => x.localeCompare(y));
    if (labels.length) {
      box.append(h("p", { class: "note label-key" }, "Labels: ", ...labels.flatMap(([label, m], i) => [
        i ? ", " : "", h("b", {}, label), ` = column ${m.member + 1} (${(members[m.member] || m).model})`,
      ])));
    }
    for (const [key, title] of SECTION_TITLES) {
      const entries = a[key] || [];
      box.append(h("h5", {}, title), entries.length
        ? h("ul", { "data-section": key }, ...entries.map((t) => h("li", {}, t)))
        : h("p", { class: "note", "data-section": key }, "None."));
    }
  }
  box.append(h("p", { class: "note" }, `1 judge call · ${ms(a.latency_ms)} · `
    + (a.cost_usd === null || a.cost_usd === undefined ? "cost unknown" : usd(a.cost_usd))));
  return box;
}
