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

/** An error the gateway answered with its OpenAI envelope, or a network failure. */
export class ApiError extends Error {
  constructor(message, status = 0, type = null) {
    super(message);
    this.status = status;
    this.type = type;
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
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) {
      message = body.error.message;
      type = body.error.type || null;
    }
  } catch {
    // not the envelope: the status line says enough
  }
  return new ApiError(message, response.status, type);
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
