// The page: four views (#playground, #stats, #requests[/ID], #spend), the key field, the model list and
// the send form.

import { h, clear } from "./dom.js";
import { getJSON, loadKey, setKey, streamChat } from "./api.js";
import { Run } from "./playground.js";
import { StatsView } from "./stats.js";
import { RequestsView } from "./requests.js";
import { SpendView } from "./spend.js";

const $ = (id) => document.getElementById(id);

const ui = {
  keyForm: $("key-form"),
  key: $("api-key"),
  remember: $("key-remember"),
  ask: $("ask"),
  model: $("model"),
  modelInfo: $("model-info"),
  prompt: $("prompt"),
  promptLabel: $("prompt-label"),
  system: $("system"),
  temperature: $("temperature"),
  maxTokens: $("max-tokens"),
  thread: $("thread"),
  turns: $("turns"),
  newThread: $("new-thread"),
  reply: $("reply"),
  send: $("send"),
  stop: $("stop"),
  status: $("status"),
  error: $("error"),
  run: $("run"),
};

const views = {
  playground: { section: $("view-playground"), tab: $("tab-playground"), title: $("playground-title") },
  stats: { section: $("view-stats"), tab: $("tab-stats"), title: $("stats-title") },
  requests: { section: $("view-requests"), tab: $("tab-requests"), title: $("requests-title") },
  spend: { section: $("view-spend"), tab: $("tab-spend"), title: $("spend-title") },
};

const stats = new StatsView({ pools: $("stats-pools"), status: $("stats-status"), error: $("stats-error") });
const requests = new RequestsView({
  form: $("requests-filter"), pool: $("filter-pool"), pools: $("filter-pools"), key: $("filter-key"), status: $("filter-status"),
  limit: $("filter-limit"), lookup: $("lookup"), lookupId: $("lookup-id"), list: $("requests-list"),
  detail: $("request-detail"), progress: $("requests-status"), error: $("requests-error"), off: $("requests-off"),
});
const spend = new SpendView({
  form: $("spend-form"), groupBy: $("spend-group"), since: $("spend-since"), table: $("spend-table"),
  status: $("spend-status"), error: $("spend-error"), off: $("spend-off"),
});
let targets = new Map();  // name -> {id, fusion}
let running = null;  // the AbortController of the request in flight
let conversation = [];  // earlier turns the next prompt continues: [{role, content}]
let lastTurn = null;  // the prompt and answer of the last complete run, until replied to or replaced

function showError(message) {
  ui.error.textContent = message;
  ui.error.hidden = !message;
}

// ------------------------------------------------------------------ views

/** The view the address names: "#requests/ID" is the requests view with request ID opened. */
function route(moveFocus) {
  const [head, ...rest] = location.hash.slice(1).split("/");
  const name = Object.hasOwn(views, head) ? head : "playground";
  const opened = name === "requests" && rest.length ? decodeURIComponent(rest.join("/")) : null;
  for (const [key, view] of Object.entries(views)) {
    const on = key === name;
    view.section.hidden = !on;
    if (on) view.tab.setAttribute("aria-current", "page");
    else view.tab.removeAttribute("aria-current");
  }
  stats.setActive(name === "stats" && document.visibilityState === "visible");
  if (name === "requests") requests.open(opened, moveFocus);
  else requests.leave();
  if (name === "spend") spend.open();
  else spend.leave();
  if (moveFocus && !opened) views[name].title.focus();  // an opened request takes focus once it is drawn
}

window.addEventListener("hashchange", () => route(true));
document.addEventListener("visibilitychange", () => route(false));

// ------------------------------------------------------------------ key and models

async function loadModels() {
  const previous = ui.model.value;
  clear(ui.model);
  ui.modelInfo.textContent = "Loading…";
  let list;
  try {
    list = await getJSON("v1/models");
  } catch (err) {
    targets = new Map();
    ui.modelInfo.textContent = "";
    showError(err.message);
    ui.send.disabled = true;
    return;
  }
  showError("");
  targets = new Map(list.data.map((m) => [m.id, { id: m.id, fusion: m.fusion || null }]));
  requests.suggest([...targets.keys()]);
  const pools = list.data.filter((m) => m.fusion);
  const models = list.data.filter((m) => !m.fusion);
  if (pools.length) {
    ui.model.append(h("optgroup", { label: "Pools" }, ...pools.map((m) => h("option", { value: m.id }, m.id))));
  }
  if (models.length) {
    ui.model.append(h("optgroup", { label: "Models" }, ...models.map((m) => h("option", { value: m.id }, m.id))));
  }
  if (targets.has(previous)) ui.model.value = previous;
  ui.send.disabled = running !== null || targets.size === 0;
  describeTarget();
}

function describeTarget() {
  const t = targets.get(ui.model.value);
  if (!t) {
    ui.modelInfo.textContent = targets.size ? "" : "Nothing this key may call.";
  } else if (t.fusion) {
    const f = t.fusion;
    ui.modelInfo.textContent = `${f.mode}: ${f.members.join(", ")}` + (f.judge ? `; judge ${f.judge}` : "");
  } else {
    ui.modelInfo.textContent = "A single model: its answer streams as it is.";
  }
}

ui.model.addEventListener("change", describeTarget);

ui.keyForm.addEventListener("submit", (event) => {
  event.preventDefault();
  setKey(ui.key.value, ui.remember.checked);
  loadModels();
  if (!views.stats.section.hidden) stats.poll();
  if (!views.requests.section.hidden) requests.reload();
  if (!views.spend.section.hidden) spend.load();
});

// ------------------------------------------------------------------ conversation

function drawThread() {
  clear(ui.turns).append(...conversation.map((turn) => h("li", { "data-role": turn.role },
    h("span", { class: "role" }, turn.role === "user" ? "You" : "Answer"), turn.content)));
  ui.thread.hidden = conversation.length === 0;
  ui.promptLabel.textContent = conversation.length ? "Your reply" : "Prompt";
}

ui.reply.addEventListener("click", () => {
  if (!lastTurn || running) return;
  conversation.push({ role: "user", content: lastTurn.prompt }, { role: "assistant", content: lastTurn.answer });
  lastTurn = null;
  ui.reply.hidden = true;
  ui.prompt.value = "";
  drawThread();
  ui.prompt.focus();
});

ui.newThread.addEventListener("click", () => {
  conversation = [];
  drawThread();
  ui.prompt.focus();
});

/** What the form asks for: system prompt, the conversation, the prompt; parameters only when set. */
function request(target, prompt) {
  const messages = [];
  if (ui.system.value.trim()) messages.push({ role: "system", content: ui.system.value });
  messages.push(...conversation, { role: "user", content: prompt });
  const body = { model: target.id, messages, stream: true, stream_options: { include_usage: true } };
  if (ui.temperature.value !== "") body.temperature = Number(ui.temperature.value);
  if (ui.maxTokens.value !== "") body.max_tokens = Number(ui.maxTokens.value);
  if (target.fusion) body.fusion = { events: true };
  return body;
}

// ------------------------------------------------------------------ sending

async function send() {
  const target = targets.get(ui.model.value);
  const prompt = ui.prompt.value;
  if (!target || !prompt.trim() || running) return;
  showError("");
  const body = request(target, prompt);
  lastTurn = null;
  ui.reply.hidden = true;
  const run = new Run(ui.run, target);
  running = new AbortController();
  ui.send.disabled = true;
  ui.stop.disabled = false;
  ui.status.textContent = target.fusion ? `Asking the ${target.fusion.members.length} members of ${target.id}…`
    : `Asking ${target.id}…`;
  try {
    for await (const chunk of streamChat(body, running.signal)) run.chunk(chunk);
    run.done();
    ui.status.textContent = "Answer complete.";
    if (run.answer) {
      lastTurn = { prompt, answer: run.answer };
      ui.reply.hidden = false;
    }
  } catch (err) {
    const message = err.name === "AbortError" ? "Stopped." : err.message;
    run.fail(message);
    if (err.name === "AbortError") ui.status.textContent = message;
    else {
      ui.status.textContent = "";
      showError(message);
    }
  } finally {
    running = null;
    ui.send.disabled = targets.size === 0;
    // keep focus somewhere useful: the disabled Stop button would drop it to the body
    if (document.activeElement === ui.stop) ui.send.focus();
    ui.stop.disabled = true;
  }
}

ui.ask.addEventListener("submit", (event) => {
  event.preventDefault();
  send();
});

ui.prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
    event.preventDefault();
    ui.ask.requestSubmit();
  }
});

ui.stop.addEventListener("click", () => {
  if (running) running.abort();
});

// ------------------------------------------------------------------ start

ui.key.value = loadKey();
ui.remember.checked = Boolean(ui.key.value);
route(false);
loadModels();
