// Live updates for the server-rendered pages (no build step, no dependencies).
//
// One ExecutionStream per watched execution: a WebSocket resumed with
// ?after_seq=<last applied seq> whenever it drops, so no event is lost or
// applied twice. When the socket cannot be used (no WebSocket, or it keeps
// failing before delivering anything) the REST events endpoint is polled
// instead, and the socket is still retried in the background. Both paths feed
// the same handler, which applies each seq exactly once, in order.

const TERMINAL = new Set(["completed", "failed", "cancelled"]);
const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const STATUS_LABEL = {
  pending: "Pending", running: "Running", completed: "Completed", failed: "Failed", cancelled: "Cancelled",
};
const POLL_INTERVAL_MS = 1500;
const FAILURES_BEFORE_POLLING = 2;
const RECONNECT_MAX_MS = 5000;
const FATAL_CLOSE_CODES = {
  4400: "The live stream refused this request.",
  4401: "Your session has ended. Reload the page to log in again.",
  4404: "This execution is not available to you any more.",
};

// --- formatting (views.format_duration formats alike) -----------------------------------

export function formatDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

const roundPercent = (value) => Math.round(Math.min(100, Math.max(0, Number(value) || 0)) * 100) / 100;

function stepText(status, progress) {
  if (!progress || !progress.total_steps) return "";
  const { current_step: current, total_steps: total, current_step_name: name } = progress;
  if (name) return `Step ${current + 1} of ${total} · ${name}`;
  if (status === "completed" || current >= total) return `${total} of ${total} steps`;
  return `${current} of ${total} steps`;
}

function localizeTime(el) {
  const date = new Date(el.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) return;
  el.title = date.toISOString();
  el.textContent = el.classList.contains("timeline-time")
    ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : date.toLocaleString([], { dateStyle: "medium", timeStyle: "medium" });
}

function timeElement(iso, className = "") {
  const el = document.createElement("time");
  el.dateTime = iso;
  el.dataset.localTime = "";
  if (className) el.className = className;
  localizeTime(el);
  return el;
}

const role = (root, name) => root.querySelector(`[data-role="${name}"]`);

// --- the stream ---------------------------------------------------------------------------

export class ExecutionStream {
  constructor({ executionId, seq, onFrame, onConnection = () => {} }) {
    this.executionId = executionId;
    this.lastSeq = Number(seq) || 0;
    this.onFrame = onFrame;
    this.onConnection = onConnection;
    this.done = false;
    this.failures = 0;
    this.socket = null;
    this.pollTimer = null;
    this.polling = false;
    this.reconnectTimer = null;
    this.fetching = false;
    this.refetch = false;
  }

  get base() {
    return `/api/v1/executions/${encodeURIComponent(this.executionId)}`;
  }

  start() {
    if (typeof window.WebSocket !== "function") {
      this.startPolling();
      return;
    }
    this.connect();
  }

  connect() {
    if (this.done) return;
    const scheme = window.location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${window.location.host}${this.base}/progress/ws?after_seq=${this.lastSeq}`;
    let socket;
    try {
      socket = new window.WebSocket(url);
    } catch {
      this.startPolling();
      return;
    }
    this.socket = socket;
    let received = false;
    socket.onmessage = (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!received) {
        received = true;
        this.failures = 0;
        this.stopPolling();
        if (!this.done) this.onConnection("live");
      }
      this.handle(frame);
    };
    socket.onclose = (event) => {
      if (this.socket === socket) this.socket = null;
      if (this.done) return;
      if (FATAL_CLOSE_CODES[event.code]) {
        this.stop();
        this.onConnection("closed", FATAL_CLOSE_CODES[event.code]);
        return;
      }
      if (!received) this.failures += 1;
      if (this.failures >= FAILURES_BEFORE_POLLING) this.startPolling();
      else this.onConnection("reconnecting");
      this.scheduleReconnect();
    };
  }

  scheduleReconnect() {
    if (this.done || this.reconnectTimer) return;
    const delay = Math.min(RECONNECT_MAX_MS, 250 * 2 ** this.failures) * (0.8 + Math.random() * 0.4);
    this.reconnectTimer = window.setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  // Every frame, from the socket or the REST API, comes through here.
  handle(frame) {
    if (this.done || !frame || typeof frame.seq !== "number") return; // error frames: the close code follows
    if (frame.type === "status") {
      if (frame.seq > this.lastSeq) {
        this.backfill(); // a snapshot newer than what we applied: fetch the events in between
        return;
      }
      this.onFrame(frame);
      if (TERMINAL.has(frame.status)) this.finish();
      return;
    }
    if (frame.seq <= this.lastSeq) return;
    if (frame.seq > this.lastSeq + 1) {
      this.backfill();
      return;
    }
    this.lastSeq = frame.seq;
    this.onFrame(frame);
    if (TERMINAL.has(frame.type)) this.finish();
  }

  // Fetch the stored events after lastSeq; true when the request succeeded.
  async backfill() {
    if (this.fetching) {
      this.refetch = true;
      return true;
    }
    this.fetching = true;
    try {
      do {
        this.refetch = false;
        const response = await fetch(`${this.base}/events?after_seq=${this.lastSeq}`, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
        });
        if (response.status === 401 || response.status === 403 || response.status === 404) {
          this.stop();
          this.onConnection("closed", FATAL_CLOSE_CODES[response.status === 404 ? 4404 : 4401]);
          return false;
        }
        if (!response.ok) return false;
        const body = await response.json();
        for (const frame of body.events || []) this.handle(frame);
      } while (this.refetch && !this.done);
      return true;
    } catch {
      return false;
    } finally {
      this.fetching = false;
    }
  }

  startPolling() {
    if (this.done || this.polling) return;
    this.polling = true;
    this.onConnection("polling");
    const tick = async () => {
      this.pollTimer = null;
      const ok = await this.backfill();
      if (!this.polling || this.done) return;
      this.onConnection(ok ? "polling" : "offline");
      this.pollTimer = window.setTimeout(tick, POLL_INTERVAL_MS);
    };
    tick();
  }

  stopPolling() {
    this.polling = false;
    if (this.pollTimer) window.clearTimeout(this.pollTimer);
    this.pollTimer = null;
  }

  finish() {
    this.stop();
    this.onConnection("ended");
  }

  stop() {
    this.done = true;
    this.stopPolling();
    if (this.reconnectTimer) window.clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    if (this.socket && this.socket.readyState <= 1) this.socket.close(1000);
    this.socket = null;
  }
}

// --- rendering shared by the list rows and the detail page ------------------------------------

function renderState(root, status, progress) {
  root.dataset.status = status;
  const badge = role(root, "badge");
  if (badge) {
    badge.className = `badge badge-${status}`;
    role(badge, "badge-text").textContent = STATUS_LABEL[status] || status;
  }
  const bar = role(root, "bar");
  const text = stepText(status, progress);
  if (bar) {
    STATUSES.forEach((s) => bar.classList.remove(`progress-${s}`));
    bar.classList.add(`progress-${status}`);
    if (progress) {
      const pct = roundPercent(progress.percentage);
      bar.setAttribute("aria-valuenow", String(pct));
      bar.setAttribute("aria-valuetext", `${Math.round(pct)}%${text ? `, ${text}` : ""}`);
      role(bar, "fill").style.width = `${pct}%`;
    }
  }
  const percent = role(root, "percent");
  if (percent && progress) percent.textContent = `${Math.round(roundPercent(progress.percentage))}%`;
  const step = role(root, "step");
  if (step && (progress || status !== "pending")) step.textContent = text;
}

// Server timestamps vs. this browser's clock: measured once from the page's render time.
let clockOffsetMs = 0;
const serverNow = () => Date.now() + clockOffsetMs;
const secondsSince = (iso, until) => ((until ?? serverNow()) - Date.parse(iso)) / 1000;

function renderElapsed(el) {
  const started = el.dataset.startedAt;
  if (!started) return;
  const ended = el.dataset.endedAt;
  el.textContent = formatDuration(secondsSince(started, ended ? Date.parse(ended) : undefined));
}

function autoSubmit() {
  document.querySelectorAll("form[data-auto-submit]").forEach((form) => {
    form.querySelectorAll("[data-js-hide]").forEach((el) => { el.hidden = true; });
    form.addEventListener("change", () => form.requestSubmit());
  });
}

// --- the list page ----------------------------------------------------------------------------

function listPage() {
  const rows = [...document.querySelectorAll("tr.execution-row")];
  for (const row of rows) {
    if (TERMINAL.has(row.dataset.status)) continue;
    const elapsed = role(row, "elapsed");
    const stream = new ExecutionStream({
      executionId: row.dataset.executionId,
      seq: row.dataset.seq,
      onFrame: (frame) => {
        renderState(row, frame.status, frame.progress ?? null);
        if (frame.type === "started") elapsed.dataset.startedAt = frame.timestamp;
        if (TERMINAL.has(frame.type)) {
          if (elapsed.dataset.startedAt) elapsed.dataset.endedAt = frame.timestamp;
          renderElapsed(elapsed);
        }
      },
    });
    stream.start();
  }
  window.setInterval(() => {
    rows.forEach((row) => {
      const elapsed = role(row, "elapsed");
      if (elapsed && !elapsed.dataset.endedAt) renderElapsed(elapsed);
    });
  }, 1000);
}

// --- the detail page --------------------------------------------------------------------------

const CONNECTION_TEXT = {
  live: "Live", reconnecting: "Reconnecting…", polling: "Live (polling)", offline: "Offline, retrying…", closed: "Disconnected",
};

class DetailPage {
  constructor(root) {
    this.root = root;
    this.state = JSON.parse(document.getElementById("execution-state").textContent);
    this.timeline = role(root, "timeline");
    this.elapsed = role(root, "elapsed");
  }

  start() {
    this.bindCancel();
    this.tick();
    this.timer = window.setInterval(() => this.tick(), 1000);
    if (TERMINAL.has(this.state.status)) return;
    this.stream = new ExecutionStream({
      executionId: this.state.execution_id,
      seq: this.state.seq,
      onFrame: (frame) => this.apply(frame),
      onConnection: (mode, message) => this.connection(mode, message),
    });
    this.stream.start();
  }

  apply(frame) {
    const state = this.state;
    state.status = frame.status;
    if (frame.progress != null) state.progress = frame.progress;
    if (frame.type !== "status") {
      state.seq = frame.seq;
      state.progress_at = frame.timestamp; // a status frame's timestamp is when it was sent
    }
    this.root.dataset.seq = String(state.seq);
    renderState(this.root, state.status, state.progress);
    if (frame.type === "started") this.started(frame);
    if (frame.type === "progress") this.enterStep(frame);
    if (TERMINAL.has(frame.type)) this.ended(frame);
    this.tick();
  }

  started(frame) {
    this.state.started_at = frame.timestamp;
    this.state.progress_at = frame.timestamp;
    this.elapsed.dataset.startedAt = frame.timestamp;
    if (!this.timeline.querySelector('[data-kind="started"]')) {
      const created = this.timeline.querySelector('[data-kind="created"]');
      created.after(this.eventItem("started", "Started", frame.timestamp));
    }
    this.setEnded("Started", frame.timestamp);
    this.announce("Running");
  }

  enterStep(frame) {
    const progress = frame.progress || {};
    const name = progress.current_step_name;
    if (!name) return;
    const number = progress.current_step + 1;
    const running = this.runningStep();
    if (running && Number(running.dataset.step) === number) return; // a report within the step
    if (running) this.closeStep(running, "done", frame.timestamp);
    let item = this.timeline.querySelector(`[data-kind="step"][data-step="${number}"][data-state="upcoming"]`);
    if (!item) {
      item = this.stepItem(number, name);
      const before = this.timeline.querySelector(
        '[data-kind="step"][data-state="upcoming"], [data-kind="more"], .timeline-end',
      );
      this.timeline.insertBefore(item, before);
    }
    item.dataset.startedAt = frame.timestamp;
    item.querySelector(".timeline-time").replaceWith(timeElement(frame.timestamp, "timeline-time"));
    this.setStepState(item, "running");
    role(item, "duration").textContent = "running";
    this.countMoreSteps(progress.total_steps);
  }

  // "+ N more steps": the steps beyond the last one listed.
  countMoreSteps(total) {
    const more = this.timeline.querySelector('[data-kind="more"]');
    if (!more) return;
    const listed = [...this.timeline.querySelectorAll('[data-kind="step"]')].map((el) => Number(el.dataset.step));
    const remaining = total - Math.max(0, ...listed);
    if (remaining > 0) role(more, "more-text").textContent = `+ ${remaining} more step${remaining === 1 ? "" : "s"}`;
    else more.remove();
  }

  ended(frame) {
    const running = this.runningStep();
    const stepState = { completed: "done", failed: "failed", cancelled: "cancelled" }[frame.type];
    if (running) this.closeStep(running, stepState, frame.timestamp);
    this.timeline.querySelectorAll('[data-kind="step"][data-state="upcoming"], [data-kind="more"]').forEach((el) => el.remove());
    if (!this.timeline.querySelector(".timeline-end")) {
      const label = STATUS_LABEL[frame.type];
      const item = this.eventItem(frame.type, label, frame.timestamp);
      item.classList.add("timeline-end", `end-${frame.type}`);
      this.timeline.append(item);
    }
    if (this.state.started_at) this.elapsed.dataset.endedAt = frame.timestamp;
    this.setEnded(STATUS_LABEL[frame.type], frame.timestamp);
    this.showResult(frame);
    const form = role(this.root, "cancel-form");
    if (form) form.remove();
    this.announce(`Execution ${frame.type}`);
  }

  showResult(frame) {
    const result = role(this.root, "result");
    const error = role(result, "error");
    if (frame.error) {
      role(error, "error-type").textContent = frame.error.type;
      role(error, "error-message").textContent = frame.error.message;
      const details = role(error, "error-details");
      details.hidden = frame.error.details == null;
      details.textContent = frame.error.details == null ? "" : JSON.stringify(frame.error.details, null, 2);
      error.hidden = false;
    }
    if (frame.outputs != null) {
      role(result, "outputs-json").textContent = JSON.stringify(frame.outputs, null, 2);
      role(result, "outputs").hidden = false;
    }
    role(result, "cancelled-note").hidden = frame.type !== "cancelled";
    result.hidden = false;
  }

  runningStep() {
    return this.timeline.querySelector('[data-kind="step"][data-state="running"]');
  }

  closeStep(item, state, iso) {
    this.setStepState(item, state);
    const started = item.dataset.startedAt;
    role(item, "duration").textContent = started ? formatDuration(secondsSince(started, Date.parse(iso))) : "";
  }

  setStepState(item, state) {
    item.dataset.state = state;
    ["done", "running", "failed", "cancelled", "upcoming"].forEach((s) => item.classList.remove(`step-${s}`));
    item.classList.add(`step-${state}`);
  }

  stepItem(number, name) {
    const item = document.createElement("li");
    item.className = "timeline-item timeline-step step-upcoming";
    item.dataset.kind = "step";
    item.dataset.step = String(number);
    item.dataset.state = "upcoming";
    item.innerHTML = '<span class="timeline-marker" aria-hidden="true"></span>'
      + '<span class="timeline-name"><span class="step-number"></span> <span class="step-name"></span></span>'
      + '<span class="timeline-time"></span><span class="timeline-duration" data-role="duration"></span>';
    item.querySelector(".step-number").textContent = `${number}.`;
    item.querySelector(".step-name").textContent = name;
    return item;
  }

  eventItem(kind, label, iso) {
    const item = document.createElement("li");
    item.className = "timeline-item timeline-event";
    item.dataset.kind = kind;
    item.innerHTML = '<span class="timeline-marker" aria-hidden="true"></span><span class="timeline-name"></span>';
    item.querySelector(".timeline-name").textContent = label;
    const duration = document.createElement("span");
    duration.className = "timeline-duration";
    item.append(timeElement(iso, "timeline-time"), duration);
    return item;
  }

  setEnded(label, iso) {
    role(this.root, "ended-label").textContent = label;
    const dd = role(this.root, "ended-at");
    dd.replaceChildren(timeElement(iso));
  }

  tick() {
    const { status, progress, progress_at: progressAt } = this.state;
    renderElapsed(this.elapsed);
    const running = this.runningStep();
    if (running && running.dataset.startedAt) {
      role(running, "duration").textContent = `running · ${formatDuration(secondsSince(running.dataset.startedAt))}`;
    }
    role(this.root, "eta").textContent = this.estimate(status, progress, progressAt);
  }

  // Remaining time, extrapolated at the last progress change and counted down since.
  estimate(status, progress, progressAt) {
    if (status === "completed") return "done";
    if (status !== "running" || !this.state.started_at) return "—";
    const pct = progress ? Number(progress.percentage) : 0;
    if (!(pct > 0) || !progressAt) return "estimating…";
    const spent = secondsSince(this.state.started_at, Date.parse(progressAt));
    const remaining = (spent * (100 - pct)) / pct - secondsSince(progressAt);
    return remaining < 1 ? "less than a second" : `about ${formatDuration(remaining)}`;
  }

  connection(mode, message) {
    const el = role(this.root, "connection");
    el.hidden = mode === "ended";
    el.dataset.mode = mode;
    role(el, "connection-text").textContent = CONNECTION_TEXT[mode] || "";
    if (message) this.notice(message);
  }

  notice(message) {
    const el = role(this.root, "notice");
    el.textContent = message;
    el.hidden = !message;
  }

  announce(text) {
    role(this.root, "announce").textContent = text;
  }

  bindCancel() {
    const form = role(this.root, "cancel-form");
    if (!form) return;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const button = role(form, "cancel-button");
      button.disabled = true;
      button.textContent = "Cancelling…";
      try {
        const response = await fetch(this.root.dataset.cancelApiUrl, {
          method: "POST",
          credentials: "same-origin",
          headers: { Accept: "application/json", "X-CSRFToken": form.elements.csrfmiddlewaretoken.value },
        });
        if (response.ok) {
          if (this.stream && this.stream.polling) this.stream.backfill();
          return; // the cancelled event arrives on the stream
        }
        const body = await response.json().catch(() => ({}));
        this.notice(body.detail || `Could not cancel (HTTP ${response.status}).`);
      } catch {
        this.notice("Could not reach the server to cancel; try again.");
      }
      button.disabled = false;
      button.textContent = "Cancel execution";
    });
  }
}

// --- start ---------------------------------------------------------------------------------------

function init() {
  const renderedAt = Date.parse(document.body.dataset.serverNow);
  if (!Number.isNaN(renderedAt)) clockOffsetMs = renderedAt - Date.now();
  document.querySelectorAll("time[data-local-time]").forEach(localizeTime);
  autoSubmit();
  const page = document.body.dataset.page;
  if (page === "list") listPage();
  if (page === "detail") {
    const root = document.getElementById("execution");
    if (root) new DetailPage(root).start();
  }
}

init();
