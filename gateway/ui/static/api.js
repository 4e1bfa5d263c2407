// Talking to the gateway that served this page: its own origin only, with the user's key if any.
//
// The key lives in this module's memory, or in sessionStorage (this tab only, gone when the tab closes)
// if the user asks; never in localStorage, a cookie or a URL. It is sent only as a Bearer header, and
// only to relative URLs, which resolve to this gateway.

const STORE = "fusion-gateway.api-key";
let key = "";

export function loadKey() {
  try {
    key = sessionStorage.getItem(STORE) || "";
  } catch {
    key = "";  // storage may be disabled: memory only
  }
  return key;
}

export function setKey(value, remember) {
  key = value.trim();
  try {
    if (remember && key) sessionStorage.setItem(STORE, key);
    else sessionStorage.removeItem(STORE);
  } catch {
    // storage disabled: the key stays in memory
  }
}

/** The error code of the ledger's endpoints when the gateway runs without one (`ledger: none`). */
export const LEDGER_OFF = "ledger_off";

/** An error the gateway answered with its OpenAI envelope, or a network failure. */
export class ApiError extends Error {
  constructor(message, status = 0, type = null, code = null) {
    super(message);
    this.status = status;
    this.type = type;
    this.code = code;
  }
}

function headers(extra) {
  const out = { ...extra };
  if (key) out.authorization = "Bearer " + key;
  return out;
}

async function failure(response) {
  let message = `HTTP ${response.status} ${response.statusText}`.trim();
  let type = null;
  let code = null;
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      type = body.error.type || null;
      code = body.error.code || null;
    }
  } catch {
    // not the envelope: the status line says enough
  }
  return new ApiError(message, response.status, type, code);
}

async function send(path, init) {
  try {
    return await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    throw new ApiError("The gateway cannot be reached: " + err.message);
  }
}

export async function getJSON(path, signal) {
  const response = await send(path, { headers: headers({ accept: "application/json" }), signal, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return response.json();
}

/**
 * GET JSON whose money is exact: every "..._usd" number and the numbers of "cost_by_role" arrive as the
 * decimal text the gateway wrote ("0.000000029"), never through a float, which would print 2.9e-8 and
 * lose digits past the 15th. format.js's money() prints that text and sumExact() adds it.
 */
export async function getExactJSON(path, signal) {
  const response = await send(path, { headers: headers({ accept: "application/json" }), signal, cache: "no-store" });
  if (!response.ok) throw await failure(response);
  return JSON.parse(moneyAsText(await response.text()));
}

const NUMBER = String.raw`-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?`;
// A key is the only place an unescaped quote can be followed by \w*_usd" and a colon: inside a
// string every quote is escaped, so text that merely mentions "cost_usd" never matches.
const MONEY_FIELD = new RegExp(String.raw`("\w*_usd"\s*:\s*)(${NUMBER})`, "g");
const BY_ROLE = /"cost_by_role"\s*:\s*\{[^{}]*\}/g;  // flat: {"member": n, "judge": n}
const FIELD_NUMBER = new RegExp(String.raw`(:\s*)(${NUMBER})`, "g");

/** The JSON text with its money numbers turned into strings of the same digits. */
export function moneyAsText(text) {
  return text.replace(MONEY_FIELD, '$1"$2"').replace(BY_ROLE, (obj) => obj.replace(FIELD_NUMBER, '$1"$2"'));
}

/**
 * POST a streamed chat completion and yield every parsed chunk. Resolves when [DONE] arrives; throws
 * ApiError for an HTTP error before the stream (the envelope's message), for an in-band error chunk,
 * and for a stream that ends without [DONE].
 */
export async function* streamChat(body, signal) {
  const response = await send("v1/chat/completions", {
    method: "POST",
    headers: headers({ "content-type": "application/json", accept: "text/event-stream" }),
    body: JSON.stringify(body),
    signal,
  });
  if (!response.ok) throw await failure(response);
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") return;
    const chunk = JSON.parse(data);
    if (chunk.error) throw new ApiError(chunk.error.message || "the stream failed", 0, chunk.error.type || null);
    yield chunk;
  }
  throw new ApiError("The stream ended before the answer was complete.");
}

/**
 * Server-sent events: the data of each event. Events are separated by a blank line; a line starting
 * with ":" is a comment (keep-alive); several data lines in one event are joined with newlines.
 */
export async function* sseData(stream) {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.search(/\r?\n\r?\n|\r\r/)) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end).replace(/^(\r?\n\r?\n|\r\r)/, "");
        const data = eventData(block);
        if (data !== null) yield data;
      }
    }
    // Whatever is left has no blank line after it: an event cut short, dropped as the spec says.
  } finally {
    reader.cancel().catch(() => {});  // stop reading (a no-op once the stream has ended)
  }
}

function eventData(block) {
  const lines = [];
  for (const line of block.split(/\r\n|\r|\n/)) {
    if (line.startsWith("data:")) lines.push(line.slice(line.startsWith("data: ") ? 6 : 5));
  }
  return lines.length ? lines.join("\n") : null;
}
