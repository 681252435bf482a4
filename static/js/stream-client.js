// StreamClient: follows one execution's events, from any page (no build step, no dependencies).
// FeedClient (below): follows the execution feed, every execution the user may see on one socket.
//
// The protocol is docs/protocol/websocket.md: every event has a seq,
// `?after_seq=N` resumes after N, GET .../events?after_seq=N returns the stored
// events as the same frames. This module is the only place on the browser side
// that knows about seq, resuming, transports and terminal frames; callers get
// each frame once, in seq order, and render it.
//
//   const client = new StreamClient("exec_1a2b3c4d5e6f", {
//     afterSeq: 12,                   // the last seq already shown; omit to start from a status frame
//                                     // (or, when polling, from the first stored event)
//     transports: ["websocket", "sse"],  // the default: the WebSocket, then Server-Sent Events
//     onFrame: (frame) => {},         // a status frame (only as the starting state), then every event
//     onConnection: (mode, message) => {},  // "live" | "reconnecting" | "polling" | "offline" | "closed" | "ended"
//   });
//   client.start();
//   client.transport;                 // while live: the transport delivering ("websocket" | "sse"), else null
//   client.refresh();                 // fetch stored events now (e.g. right after a cancel)
//   client.stop();
//
// Streaming transports are tried in the order of the `transports` option and
// must be registered in STREAM_TRANSPORTS: the WebSocket (.../progress/ws) and
// Server-Sent Events (GET .../progress/stream, read with fetch). A transport that
// keeps failing before it delivers anything (a proxy that refuses WebSockets, say)
// gives way to the next one; after the last, the REST endpoint is polled while the
// streams are retried with backoff. Every (re)connection resumes after the last seq
// delivered (?after_seq=N), whichever transport makes it. A stream that stops after
// delivering (a server being deployed closes its sockets with 1012 and ends its event
// streams) is opened again at a random moment within FIRST_RECONNECT_MAX_MS, so that a
// server's clients do not all come back at once; then with backoff.

// The statuses (and event types) after which nothing happens to an execution: the one copy the
// scripts share (execution-page.js and progress-widget.js import it).
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const POLL_INTERVAL_MS = 1500;
const FAILURES_BEFORE_FALLBACK = 2;
const RECONNECT_BASE_MS = 250;
const RECONNECT_MAX_MS = 5000;
const FIRST_RECONNECT_MAX_MS = 1000;

// How long to wait before connecting again: a random moment within a second after a
// connection that delivered (none failed since), else backoff with jitter.
export function reconnectDelay(failures) {
  if (failures === 0) return Math.random() * FIRST_RECONNECT_MAX_MS;
  return Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** failures) * (0.8 + Math.random() * 0.4);
}
// A frame from its JSON text, or null for text that is not JSON (ignored by every transport).
function parseFrame(text) {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

// What the page says for each refusal, by the close code an error frame carries (its `code`)
// and the socket closes with; an error frame's message text is never read.
const FATAL_MESSAGES = {
  4400: "The live stream refused this request.",
  4401: "Your session has ended. Reload the page to log in again.",
  4403: "This view is for staff only.",
  4404: "This execution is not available to you any more.",
};
const FATAL_HTTP = { 401: 4401, 403: 4401, 404: 4404 };
// An event stream's refusals are plain HTTP answers (docs/protocol/sse.md).
const SSE_FATAL_HTTP = { ...FATAL_HTTP, 400: 4400 };

// The close code a refusal ends with: the socket's own when it closed with one, else the error
// frame's `code` (null for an error after which the stream stays open).
export function refusalCode(closeCode, errorFrame) {
  if (closeCode >= 4000) return closeCode;
  return errorFrame?.code ?? null;
}

// How long a 429/503 answer asks us to wait (Retry-After: seconds or an HTTP date), or null.
function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  if (!value) return null;
  const seconds = Number(value);
  const ms = Number.isFinite(seconds) ? seconds * 1000 : Date.parse(value) - Date.now();
  return Number.isFinite(ms) ? Math.max(0, ms) : null;
}

// A streaming transport: open({ executionUrl, afterSeq, onFrame, onEnd }) connects,
// calls onFrame(frame) for each parsed frame, and onEnd({ delivered, fatal, ended }) once
// when the connection is gone (fatal: the message of a refusal, never retried; ended: the
// server said the stream is over for this resume point, an event stream's 204).
// It returns { close() }, which ends it without calling onEnd.
export const STREAM_TRANSPORTS = {
  websocket: {
    supported: () => typeof window.WebSocket === "function",
    open({ executionUrl, afterSeq, onFrame, onEnd }) {
      const url = new URL(`${executionUrl}/progress/ws`, window.location.href);
      url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
      if (afterSeq !== null) url.searchParams.set("after_seq", String(afterSeq));
      const socket = new window.WebSocket(url);
      let delivered = false;
      let error = null;
      socket.onmessage = (message) => {
        const frame = parseFrame(message.data);
        if (frame === null) return;
        if (frame.type === "error") {
          error = frame; // its close code follows
          return;
        }
        delivered = true;
        onFrame(frame);
      };
      socket.onclose = (event) => onEnd({ delivered, fatal: FATAL_MESSAGES[refusalCode(event.code, error)] || null });
      return {
        close() {
          socket.onclose = null;
          socket.onmessage = null;
          if (socket.readyState <= 1) socket.close(1000);
        },
      };
    },
  },

  // Server-Sent Events, read with fetch rather than EventSource: fetch sees the status of a
  // refusal (EventSource only reports "error"), sends the session cookie, and never
  // reconnects on its own (EventSource would, with Last-Event-ID, behind StreamClient's
  // back); StreamClient reconnects with ?after_seq=N instead, as for the WebSocket.
  sse: {
    supported: () => typeof window.fetch === "function" && typeof window.ReadableStream === "function"
      && typeof window.TextDecoderStream === "function" && typeof window.AbortController === "function",
    open({ executionUrl, afterSeq, onFrame, onEnd }) {
      const url = new URL(`${executionUrl}/progress/stream`, window.location.href);
      if (afterSeq !== null) url.searchParams.set("after_seq", String(afterSeq));
      const controller = new AbortController();
      let delivered = false;
      let ended = false;
      const end = (fatal, over = false) => {
        if (ended) return;
        ended = true;
        controller.abort();
        onEnd({ delivered, fatal, ended: over });
      };
      const dispatch = (data) => {
        const frame = parseFrame(data);
        if (frame === null) return;
        if (frame.type === "error") {
          if (frame.code !== null) end(FATAL_MESSAGES[frame.code] || null);
          return;
        }
        delivered = true;
        onFrame(frame);
      };
      (async () => {
        const response = await window.fetch(url, {
          credentials: "same-origin",
          cache: "no-store",
          headers: { Accept: "text/event-stream" },
          signal: controller.signal,
        });
        if (response.status === 204) { // a resume at or past the terminal event
          end(null, true);
          return;
        }
        if (!response.ok || !response.body) {
          end(FATAL_MESSAGES[SSE_FATAL_HTTP[response.status]] || null);
          return;
        }
        const reader = response.body.pipeThrough(new window.TextDecoderStream()).getReader();
        const parser = eventStreamParser(dispatch);
        for (;;) {
          const { value, done } = await reader.read();
          if (done || ended) break;
          parser(value);
        }
        end(null);
      })().catch(() => end(null));
      return {
        close() {
          ended = true;
          controller.abort();
        },
      };
    },
  },
};

// The text/event-stream format (the HTML standard's "event stream interpretation"), fed
// chunk by chunk: lines end with CRLF, LF or CR; a blank line dispatches the event's data
// (its data lines joined with newlines); comments (": keep-alive") and the id and event
// fields are not needed here, since every frame's JSON carries its seq and type.
export function eventStreamParser(onData) {
  let buffer = "";
  let data = [];
  let pendingCR = false;
  const line = (text) => {
    if (text === "") {
      if (data.length) onData(data.join("\n"));
      data = [];
      return;
    }
    if (text.startsWith(":")) return;
    const colon = text.indexOf(":");
    const field = colon === -1 ? text : text.slice(0, colon);
    let value = colon === -1 ? "" : text.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") data.push(value);
  };
  return (chunk) => {
    let text = chunk;
    if (pendingCR && text.startsWith("\n")) text = text.slice(1); // the LF of a CRLF split between chunks
    pendingCR = false;
    buffer += text;
    const parts = buffer.split(/\r\n|\r|\n/);
    buffer = parts.pop();
    if (buffer === "" && text.endsWith("\r")) pendingCR = true;
    parts.forEach(line);
  };
}

// What StreamClient and FeedClient share: named timers that die with the client, the
// connection mode reported to the page, and the stop flag.
class Follower {
  constructor(onConnection) {
    this.onConnection = onConnection;
    this.mode = null;
    this.done = false;
    this.polling = false;
    this.failures = 0; // consecutive connections that ended before delivering a frame
    this.timers = {};
  }

  stopTimers() {
    this.done = true;
    this.polling = false;
    Object.values(this.timers).forEach((id) => window.clearTimeout(id));
    this.timers = {};
  }

  setMode(mode, message) {
    this.mode = mode;
    this.onConnection(mode, message);
  }

  later(name, delayMs, callback) {
    if (this.done || this.timers[name]) return;
    this.timers[name] = window.setTimeout(() => {
      delete this.timers[name];
      callback();
    }, delayMs);
  }

  cancel(name) {
    window.clearTimeout(this.timers[name]);
    delete this.timers[name];
  }
}

export class StreamClient extends Follower {
  constructor(executionId, { afterSeq = null, apiRoot = "/api/v1", transports = ["websocket", "sse"], onFrame = () => {}, onConnection = () => {} } = {}) {
    super(onConnection);
    this.executionUrl = `${apiRoot}/executions/${encodeURIComponent(executionId)}`;
    this.lastSeq = afterSeq === null || afterSeq === undefined ? null : Number(afterSeq);
    this.transports = transports.filter((name) => STREAM_TRANSPORTS[name]?.supported());
    this.onFrame = onFrame;
    this.transport = null; // the transport delivering while live
    this.current = 0; // index in this.transports
    this.connection = null;
    this.fetching = false;
    this.refetch = false;
  }

  start() {
    if (this.transports.length === 0) this.startPolling();
    else this.connect();
  }

  stop() {
    this.stopTimers();
    this.connection?.close();
    this.connection = null;
  }

  refresh() {
    return this.fetchEvents();
  }

  // --- internals ---------------------------------------------------------------------------

  setMode(mode, message) {
    if (mode !== "live") this.transport = null;
    super.setMode(mode, message);
  }

  connect() {
    if (this.done) return;
    const name = this.transports[this.current];
    const transport = STREAM_TRANSPORTS[name];
    let connection = null;
    const onEnd = ({ delivered, fatal, ended }) => {
      if (this.connection === connection) this.connection = null;
      if (this.done) return;
      if (fatal) {
        this.fail(fatal);
        return;
      }
      if (ended) {
        this.fetchFinalState();
        return;
      }
      if (!delivered) this.failures += 1;
      if (this.failures >= FAILURES_BEFORE_FALLBACK) this.fallBack();
      else if (!this.polling) this.setMode("reconnecting");
      this.later("reconnect", reconnectDelay(this.failures), () => this.connect());
    };
    const onFrame = (frame) => {
      if (this.connection !== connection || this.done) return;
      if (this.mode !== "live" && typeof frame.seq === "number") { // an error frame is a refusal, not a stream
        this.failures = 0;
        this.polling = false;
        this.cancel("poll");
        this.transport = name; // before setMode, so that onConnection("live") can read it
        this.setMode("live");
      }
      this.receive(frame);
    };
    try {
      connection = transport.open({ executionUrl: this.executionUrl, afterSeq: this.lastSeq, onFrame, onEnd });
    } catch {
      connection = null;
      onEnd({ delivered: false, fatal: null });
      return;
    }
    this.connection = connection;
  }

  // The next transport, or polling once every one has failed (the streams are still retried).
  fallBack() {
    this.current = (this.current + 1) % this.transports.length;
    if (this.current === 0) this.startPolling();
    else this.failures = 0;
  }

  fail(message) {
    this.stop();
    this.setMode("closed", message);
  }

  // Every frame, streamed or fetched, comes through here: each seq is emitted once, in order.
  receive(frame) {
    if (this.done || !frame || typeof frame.seq !== "number") return; // an error frame: its close code follows
    if (frame.type === "status") {
      if (this.lastSeq === null) {
        // The starting state. An ended execution's status frame is followed by its
        // terminal event, with the same seq: let that one through.
        this.lastSeq = TERMINAL.has(frame.status) ? frame.seq - 1 : frame.seq;
        this.onFrame(frame);
      } else if (frame.seq > this.lastSeq) {
        this.fetchEvents(); // events we have not seen happened before it
      } else if (frame.seq === this.lastSeq && TERMINAL.has(frame.status)) {
        this.finish();
      }
      return;
    }
    const last = this.lastSeq ?? 0;
    if (frame.seq <= last) return;
    if (frame.seq > last + 1) {
      this.fetchEvents(); // a gap: the stored events fill it, this frame included
      return;
    }
    this.lastSeq = frame.seq;
    this.onFrame(frame);
    if (TERMINAL.has(frame.type)) this.finish();
  }

  finish() {
    this.stop();
    this.setMode("ended");
  }

  // An event stream answered 204: the execution has ended and lastSeq is at or past its terminal
  // event (the socket answers the same resume with a status frame of the ended execution). The
  // REST state confirms it, and the stream ends; anything else is retried like a lost connection.
  async fetchFinalState() {
    try {
      const response = await fetch(this.executionUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (FATAL_HTTP[response.status]) {
        this.fail(FATAL_MESSAGES[FATAL_HTTP[response.status]]);
        return;
      }
      if (response.ok) {
        const execution = await response.json();
        if (TERMINAL.has(execution.status) && execution.seq <= (this.lastSeq ?? 0)) {
          this.finish();
          return;
        }
      }
    } catch {
      // retried below
    }
    if (this.done) return;
    this.failures += 1;
    this.later("reconnect", reconnectDelay(this.failures), () => this.connect());
  }

  // Fetch the stored events after lastSeq; resolves to { ok, retryAfter } (milliseconds or null).
  async fetchEvents() {
    if (this.done) return { ok: false, retryAfter: null };
    if (this.fetching) {
      this.refetch = true;
      return { ok: true, retryAfter: null };
    }
    this.fetching = true;
    try {
      do {
        this.refetch = false;
        const response = await fetch(`${this.executionUrl}/events?after_seq=${this.lastSeq ?? 0}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (FATAL_HTTP[response.status]) {
          this.fail(FATAL_MESSAGES[FATAL_HTTP[response.status]]);
          return { ok: false, retryAfter: null };
        }
        if (!response.ok) {
          return this.fetchFailed(response.status === 429 || response.status === 503 ? retryAfterMs(response) : null);
        }
        const body = await response.json();
        for (const frame of body.events || []) this.receive(frame);
      } while (this.refetch && !this.done);
      return { ok: true, retryAfter: null };
    } catch {
      return this.fetchFailed(null);
    } finally {
      this.fetching = false;
    }
  }

  // A failed fetch is tried again: by the poll loop when polling, else here (a gap must not stay open).
  fetchFailed(retryAfter) {
    if (!this.polling) this.later("refetch", retryAfter ?? POLL_INTERVAL_MS, () => this.fetchEvents());
    return { ok: false, retryAfter };
  }

  startPolling() {
    if (this.done || this.polling) return;
    this.polling = true;
    this.setMode("polling");
    const tick = async () => {
      const { ok, retryAfter } = await this.fetchEvents();
      if (!this.polling || this.done) return;
      this.setMode(ok ? "polling" : "offline");
      this.later("poll", retryAfter ?? POLL_INTERVAL_MS, tick);
    };
    tick();
  }
}

// --- many executions on one socket ------------------------------------------------------------
//
// FeedClient follows the execution feed, every execution the user may see on one socket,
// WS /api/v1/executions/ws (docs/protocol/feed.md): a snapshot of those not ended
// yet, then a created frame for each new one and the event frames of each.
//
//   const feed = new FeedClient({
//     executions: [...],                   // what the page already shows ({execution_id, status,
//                                          // seq}): followed too, so that one that ends before
//                                          // the socket connects is fetched and delivered
//     scope: "all",                        // staff: everyone's executions (default "own")
//     status: ["running"],                 // optional: only these (pending and/or running)
//     onExecution: (execution) => {},      // an execution's REST shape: from a snapshot, a created
//                                          // frame, or a fetch; newer than anything delivered of it
//     onFrame: (frame) => {},              // an event frame (started, progress, resumed, terminal) of an
//                                          // execution delivered before, in seq order, never twice
//     onConnection: (mode, message) => {}, // "live" | "reconnecting" | "polling" | "offline" | "closed"
//   });
//   feed.start();
//   feed.stop();
//
// Progress frames come at most about 4 per second per execution (the server keeps the latest).
// After a reconnect the snapshot is delivered again; an execution followed before and missing
// from it has ended meanwhile, and its REST state is fetched and delivered. Without WebSockets
// (or after repeated failures) the first page of GET /executions is polled instead, whatever
// the status, while the socket is retried with backoff.

const FEED_FATAL_MESSAGES = {
  ...FATAL_MESSAGES,
  4403: "Following everyone's executions is for staff only.",
};
const FEED_PAGE_SIZE = 100;

export class FeedClient extends Follower {
  constructor({ apiRoot = "/api/v1", executions = [], scope = "own", status = null, onExecution = () => {}, onFrame = () => {}, onConnection = () => {} } = {}) {
    super(onConnection);
    this.apiRoot = apiRoot;
    this.scope = scope;
    this.status = status;
    this.onExecution = onExecution;
    this.onFrame = onFrame;
    this.seqs = new Map(); // execution id -> the last seq delivered of it
    this.following = new Set(); // delivered and not ended
    this.socket = null;
    for (const execution of executions) {
      this.seqs.set(execution.execution_id, execution.seq);
      if (!TERMINAL.has(execution.status)) this.following.add(execution.execution_id);
    }
  }

  start() {
    if (typeof window.WebSocket === "function") this.connect();
    else this.startPolling();
  }

  stop() {
    this.stopTimers();
    if (this.socket) {
      this.socket.onclose = null;
      this.socket.onmessage = null;
      if (this.socket.readyState <= 1) this.socket.close(1000);
      this.socket = null;
    }
  }

  // --- internals ---------------------------------------------------------------------------

  url() {
    const url = new URL(`${this.apiRoot}/executions/ws`, window.location.href);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    if (this.scope && this.scope !== "own") url.searchParams.set("scope", this.scope);
    if (this.status) url.searchParams.set("status", [].concat(this.status).join(","));
    return url;
  }

  connect() {
    if (this.done) return;
    let socket;
    try {
      socket = new window.WebSocket(this.url());
    } catch {
      this.connectionLost(false, null);
      return;
    }
    this.socket = socket;
    let delivered = false;
    let error = null;
    socket.onmessage = (message) => {
      const frame = parseFrame(message.data);
      if (frame === null) return;
      if (frame.type === "error") {
        error = frame; // its close code follows
        return;
      }
      delivered = true;
      this.receive(frame);
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      this.connectionLost(delivered, FEED_FATAL_MESSAGES[refusalCode(event.code, error)] || null);
    };
  }

  connectionLost(delivered, fatal) {
    if (this.done) return;
    if (fatal) {
      this.stop();
      this.setMode("closed", fatal);
      return;
    }
    if (!delivered) this.failures += 1;
    if (this.failures >= FAILURES_BEFORE_FALLBACK) this.startPolling();
    else if (!this.polling) this.setMode("reconnecting");
    this.later("reconnect", reconnectDelay(this.failures), () => this.connect());
  }

  receive(frame) {
    if (frame.type === "snapshot") {
      this.failures = 0;
      this.polling = false;
      window.clearTimeout(this.timers.poll);
      delete this.timers.poll;
      this.setMode("live");
      const listed = new Set();
      for (const execution of frame.executions) {
        listed.add(execution.execution_id);
        this.deliver(execution);
      }
      // Followed before and not listed now: it ended while the socket was away.
      for (const id of [...this.following]) if (!listed.has(id)) this.fetchExecution(id);
      return;
    }
    if (frame.type === "created") {
      this.deliver(frame.execution);
      return;
    }
    if (typeof frame.seq !== "number" || !this.seqs.has(frame.execution_id)) return;
    if (frame.seq <= this.seqs.get(frame.execution_id)) return;
    this.seqs.set(frame.execution_id, frame.seq);
    if (TERMINAL.has(frame.type)) this.following.delete(frame.execution_id);
    this.onFrame(frame);
  }

  // Every REST shape goes out here: never one older than what was delivered of the execution.
  deliver(execution) {
    const id = execution.execution_id;
    if (this.seqs.has(id) && execution.seq < this.seqs.get(id)) return;
    this.seqs.set(id, execution.seq);
    if (TERMINAL.has(execution.status)) this.following.delete(id);
    else this.following.add(id);
    this.onExecution(execution);
  }

  async fetchExecution(id) {
    try {
      const response = await fetch(`${this.apiRoot}/executions/${encodeURIComponent(id)}`, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.status === 404) this.following.delete(id);
      if (response.ok && !this.done) this.deliver(await response.json());
    } catch {
      // the next snapshot or poll tries again
    }
  }

  startPolling() {
    if (this.done || this.polling) return;
    this.polling = true;
    this.setMode("polling");
    const tick = async () => {
      if (!this.polling || this.done) return;
      let retryAfter = null;
      let ok = false;
      try {
        const response = await fetch(`${this.apiRoot}/executions?page_size=${FEED_PAGE_SIZE}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (FATAL_HTTP[response.status]) {
          this.stop();
          this.setMode("closed", FATAL_MESSAGES[FATAL_HTTP[response.status]]);
          return;
        }
        if (response.ok) {
          ok = true;
          const body = await response.json();
          // Oldest first, so that a caller inserting rows sees them in the order they were made.
          for (const execution of [...body.executions].reverse()) this.deliver(execution);
        } else if (response.status === 429 || response.status === 503) {
          retryAfter = retryAfterMs(response);
        }
      } catch {
        ok = false;
      }
      if (!this.polling || this.done) return;
      this.setMode(ok ? "polling" : "offline");
      this.later("poll", retryAfter ?? POLL_INTERVAL_MS, tick);
    };
    tick();
  }
}
