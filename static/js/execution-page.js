// The pages' script: renders the list and detail pages (no build step, no dependencies).
//
// Who presents what -- each rule lives on one side only:
// - The server (executions/pages/views.py, templates/executions/) renders the first
//   page with raw values that read without JavaScript (the status label, the stored
//   percentage, the step's name and current_step/total_steps, ISO times, JSON as
//   stored, the stored events as a plain list), and hands over the same state in
//   #page-data: the execution's public JSON and its stored events as frames (see the
//   docs/protocol/websocket.md).
// - This module (with progress-format.js, the rules it shares with the drop-in widget)
//   owns every presentation rule: durations, the step text, the timeline
//   of steps built from frames, the remaining time shown (the server estimates it,
//   progress.eta_seconds; this counts it down between frames), rounded percentages,
//   local times, indented JSON. It renders from #page-data at load, then from each
//   frame the StreamClient (one execution) or the FeedClient (the list) delivers.
// Apart from seq, type and status, which stream-client.js reads to order frames and
// to stop, only this module looks inside a frame.

import { formatDuration, percentOf, remainingText, stepText } from "./progress-format.js";
import { FeedClient, StreamClient, TERMINAL } from "./stream-client.js";

// The rules shared with the drop-in widget live in progress-format.js; re-exported so that
// one module offers every rule of the pages.
export { formatDuration, percentOf, remainingText, stepText };

const STATUSES = ["pending", "running", "completed", "failed", "cancelled"];
const STEP_END_STATE = { completed: "done", failed: "failed", cancelled: "cancelled" };
// How many of the steps not reached yet are listed (the rest are counted).
const UPCOMING_STEPS_SHOWN = 5;
const WAITING_TEXT = "Waiting for a worker…";
const CONNECTION_TEXT = {
  live: "Live", reconnecting: "Reconnecting…", polling: "Live (polling)", offline: "Offline, retrying…", closed: "Disconnected",
};

// --- the rules of the pages alone (the shared ones: progress-format.js) ------------------

// The steps with their start and end times, from event frames (oldest first). A step
// starts at the progress frame that enters it and ends at the next step's or the
// terminal frame; reports within a step add nothing. A resumed frame (a durable run
// taken up by another worker) ends the step that was running as interrupted and adds a
// "resumed" marker; each step carries the attempt that ran it. Steps reused from the
// original by a resume from the failed step (no events here) come first. While the
// execution can still run, a few of the planned steps not reached yet follow, and the
// rest are counted.
export function buildTimeline(frames, { status, plannedSteps = null, reusedSteps = [] }) {
  const timeline = { startedAt: null, steps: [], end: null, progressAt: null, moreSteps: 0 };
  reusedSteps.forEach((step, i) => {
    timeline.steps.push({
      kind: "step", number: i + 1, name: step.name, startedAt: step.started_at, endedAt: step.finished_at,
      state: "reused", attempt: step.attempt, reusedFrom: step.reused_from,
    });
  });
  let attempt = 1;
  let running = null; // the step running now, if any
  for (const frame of frames) {
    const at = frame.timestamp;
    if (frame.type === "started") {
      timeline.startedAt = at;
      timeline.progressAt = at;
    } else if (frame.type === "resumed") {
      timeline.progressAt = at;
      if (running) Object.assign(running, { endedAt: at, state: "interrupted" });
      running = null;
      attempt = frame.attempt;
      timeline.steps.push({ kind: "resumed", attempt, at, number: (frame.progress?.current_step ?? 0) + 1 });
    } else if (frame.type === "progress") {
      timeline.progressAt = at;
      const name = frame.progress?.current_step_name;
      const number = (frame.progress?.current_step ?? 0) + 1;
      if (!name || (running && running.number === number && running.name === name)) continue;
      if (running) Object.assign(running, { endedAt: at, state: "done" });
      running = { kind: "step", number, name, startedAt: at, endedAt: null, state: "running", attempt };
      timeline.steps.push(running);
    } else if (TERMINAL.has(frame.type)) {
      timeline.end = { type: frame.type, at };
      timeline.progressAt = at;
      if (running) Object.assign(running, { endedAt: at, state: STEP_END_STATE[frame.type] });
      running = null;
    }
  }
  if (!TERMINAL.has(status) && plannedSteps) {
    const steps = timeline.steps.filter((step) => step.kind === "step");
    const reached = steps.length ? steps[steps.length - 1].number : 0;
    const upcoming = plannedSteps.slice(reached, reached + UPCOMING_STEPS_SHOWN);
    upcoming.forEach((name, i) => {
      timeline.steps.push({ kind: "step", number: reached + i + 1, name, startedAt: null, endedAt: null, state: "upcoming" });
    });
    timeline.moreSteps = Math.max(0, plannedSteps.length - reached - upcoming.length);
  }
  return timeline;
}

export const prettyJson = (value) => JSON.stringify(value, null, 2);

// --- the state of one execution: its public JSON at load, then frames ---------------------

export class ExecutionState {
  constructor(execution) {
    this.id = execution.execution_id;
    this.status = execution.status;
    this.progress = execution.progress ?? null;
    this.seq = execution.seq;
    this.createdAt = execution.created_at ?? null;
    this.startedAt = execution.started_at ?? null;
    this.endedAt = execution.completed_at ?? execution.failed_at ?? execution.cancelled_at ?? null;
    this.outputs = execution.outputs ?? null;
    this.error = execution.error ?? null;
    this.progressAt = null; // when the progress (and its eta_seconds) was recorded, if known
  }

  apply(frame) {
    this.status = frame.status;
    if (frame.progress != null) this.progress = frame.progress;
    if (frame.type === "status") return;
    this.progressAt = frame.timestamp;
    this.seq = frame.seq;
    if (frame.type === "started") this.startedAt = frame.timestamp;
    if (TERMINAL.has(frame.type)) {
      this.endedAt = frame.timestamp;
      this.outputs = frame.outputs ?? null;
      this.error = frame.error ?? null;
    }
  }

  get ended() {
    return TERMINAL.has(this.status);
  }
}

// --- rendering ---------------------------------------------------------------------------

const resumedText = (attempt, step) => `Resumed on attempt ${attempt} at step ${step}`;

// Server timestamps vs. this browser's clock: measured once from the page's render time.
let clockOffsetMs = 0;
const serverNow = () => Date.now() + clockOffsetMs;
const ms = (iso) => (iso ? Date.parse(iso) : null);
const role = (root, name) => root.querySelector(`[data-role="${name}"]`);

function elapsedText({ startedAt, endedAt }) {
  return startedAt ? formatDuration(((ms(endedAt) ?? serverNow()) - ms(startedAt)) / 1000) : formatDuration(null);
}

// Made once: a formatter per call costs more than the rest of a timeline row.
const TIME_OF_DAY = new Intl.DateTimeFormat([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
const DATE_AND_TIME = new Intl.DateTimeFormat([], { dateStyle: "medium", timeStyle: "medium" });

function localizeTime(el) {
  const date = new Date(el.getAttribute("datetime"));
  if (Number.isNaN(date.getTime())) return;
  el.title = date.toISOString();
  el.textContent = (el.classList.contains("timeline-time") ? TIME_OF_DAY : DATE_AND_TIME).format(date);
}

function timeElement(iso, className = "") {
  const el = document.createElement("time");
  el.dateTime = iso;
  el.dataset.localTime = "";
  if (className) el.className = className;
  localizeTime(el);
  return el;
}

function element(tag, className, text = "") {
  const el = document.createElement(tag);
  if (className) el.className = className;
  el.textContent = text;
  return el;
}

// Badge, bar, percentage and step text: the same markup in a list row and on the detail page.
function renderProgress(root, state, labels) {
  const { status, progress } = state;
  root.dataset.status = status;
  root.dataset.seq = String(state.seq);
  const badge = role(root, "badge");
  badge.className = `badge badge-${status}`;
  role(badge, "badge-text").textContent = labels[status] ?? status;
  const bar = role(root, "bar");
  STATUSES.forEach((s) => bar.classList.toggle(`progress-${s}`, s === status));
  const text = stepText(status, progress);
  if (progress) {
    const pct = percentOf(progress);
    bar.setAttribute("aria-valuenow", String(pct));
    bar.setAttribute("aria-valuetext", `${Math.round(pct)}%${text ? `, ${text}` : ""}`);
    role(bar, "fill").style.width = `${pct}%`;
    role(root, "percent").textContent = `${Math.round(pct)}%`;
  }
  role(root, "step").textContent = text;
}

function autoSubmit() {
  document.querySelectorAll("form[data-auto-submit]").forEach((form) => {
    form.querySelectorAll("[data-js-hide]").forEach((el) => { el.hidden = true; });
    form.addEventListener("change", () => form.requestSubmit());
  });
}

// --- the list page -------------------------------------------------------------------------

const createdOf = (row) => ms(role(row, "created")?.getAttribute("datetime"));

class ListPage {
  constructor(data) {
    this.data = data;
    this.labels = data.status_labels;
    this.feed = data.feed;
    this.body = document.querySelector('[data-role="rows"]');
    this.template = document.getElementById("row-template");
    this.rows = new Map();
    for (const execution of data.executions) {
      const el = this.body.querySelector(`tr.execution-row[data-execution-id="${CSS.escape(execution.execution_id)}"]`);
      if (el) this.render(this.track(el, new ExecutionState(execution)));
    }
  }

  start() {
    window.setInterval(() => this.rows.forEach((row) => { if (!row.state.ended) this.tick(row); }), 1000);
    new FeedClient({
      executions: this.data.executions,
      scope: this.feed.scope,
      onExecution: (execution) => this.upsert(execution),
      onFrame: (frame) => this.apply(frame),
      onConnection: (mode, message) => this.connection(mode, message),
    }).start();
  }

  track(el, state) {
    const row = { el, state };
    this.rows.set(state.id, row);
    return row;
  }

  render(row) {
    renderProgress(row.el, row.state, this.labels);
    this.tick(row);
  }

  tick(row) {
    role(row.el, "elapsed").textContent = elapsedText(row.state);
    const eta = role(row.el, "eta");
    const { status } = row.state;
    if (eta) {
      // Under the duration, briefly: "~12 s left".
      const text = status === "running"
        ? remainingText({ status, progress: row.state.progress, progressAt: ms(row.state.progressAt), now: serverNow() })
        : "";
      eta.textContent = text.startsWith("about ") ? `~${text.slice("about ".length)} left` : text;
    }
  }

  apply(frame) {
    const row = this.rows.get(frame.execution_id);
    if (!row) return;
    row.state.apply(frame);
    this.render(row);
  }

  // An execution's REST shape from the feed: update its row, or add one if this page shows it.
  upsert(execution) {
    const row = this.rows.get(execution.execution_id);
    if (row) {
      if (execution.seq < row.state.seq) return;
      row.state = new ExecutionState(execution);
      this.render(row);
      return;
    }
    if (!this.feed.adds_rows) return;
    if (!Object.entries(this.feed.filters).every(([key, value]) => execution[key] === value)) return;
    const created = ms(execution.created_at);
    const shown = [...this.body.querySelectorAll("tr.execution-row")];
    const next = shown.find((el) => createdOf(el) < created);
    // Older than every row of a full first page: it belongs to a later page.
    if (!next && shown.length >= this.feed.page_size) return;
    const el = this.newRow(execution);
    this.body.insertBefore(el, next ?? null);
    this.render(this.track(el, new ExecutionState(execution)));
    this.counted(1);
  }

  newRow(execution) {
    const el = this.template.content.firstElementChild.cloneNode(true);
    const id = execution.execution_id;
    el.className = "execution-row";
    el.dataset.executionId = id;
    const link = role(el, "link");
    link.href = this.data.detail_url.replace(this.data.blank_id, id);
    link.textContent = id;
    role(el, "target").textContent = execution.target_id;
    role(el, "type").textContent = execution.type;
    role(el, "bar").setAttribute("aria-label", `Progress of ${execution.target_id} (${id})`);
    const created = role(el, "created");
    created.setAttribute("datetime", execution.created_at);
    localizeTime(created);
    const owner = role(el, "owner");
    if (owner) owner.textContent = execution.owner ?? "";
    return el;
  }

  counted(added) {
    const total = document.querySelector('[data-role="total"]');
    const count = Number.parseInt(total.textContent, 10);
    if (!Number.isNaN(count)) total.textContent = `${count + added} total`;
    document.querySelector('[data-role="table"]').hidden = false;
    document.querySelector('[data-role="empty"]').hidden = true;
  }

  connection(mode, message) {
    const el = document.querySelector('.page-head [data-role="connection"]');
    showConnection(el, mode);
    if (message) el.title = message;
  }
}

// The live indicator of a page: "Live", "Live (SSE)" (over Server-Sent Events), "Reconnecting…", ...
function showConnection(el, mode, transport = null) {
  el.hidden = mode === "ended";
  el.dataset.mode = mode;
  const sse = mode === "live" && transport === "sse";
  role(el, "connection-text").textContent = sse ? "Live (SSE)" : CONNECTION_TEXT[mode] || "";
}

// --- the detail page -----------------------------------------------------------------------

class DetailPage {
  constructor(root, data) {
    this.root = root;
    this.labels = data.status_labels;
    this.plannedSteps = data.planned_steps;
    this.durable = data.durable;
    this.reusedSteps = data.reused_steps;
    this.state = new ExecutionState(data.execution);
    this.frames = [...data.events]; // the stored events up to state.seq, then live ones
    this.timeline = role(root, "timeline");
    this.renderQueued = false;
  }

  start() {
    this.render();
    this.bindCancel();
    window.setInterval(() => this.tick(), 1000);
    if (this.state.ended) return;
    this.client = new StreamClient(this.state.id, {
      afterSeq: this.state.seq,
      onFrame: (frame) => this.apply(frame),
      onConnection: (mode, message) => this.connection(mode, message),
    });
    this.client.start();
  }

  apply(frame) {
    this.state.apply(frame);
    if (frame.type !== "status") this.frames.push(frame);
    if (frame.type === "started") this.announce(this.labels.running);
    if (frame.type === "resumed") this.announce(resumedText(frame.attempt, (frame.progress?.current_step ?? 0) + 1));
    if (TERMINAL.has(frame.type)) this.announce(`Execution ${frame.type}`);
    if (this.renderQueued) return;
    this.renderQueued = true; // one render per animation frame, however many frames arrive
    window.requestAnimationFrame(() => {
      this.renderQueued = false;
      this.render();
    });
  }

  render() {
    const { state } = this;
    renderProgress(this.root, state, this.labels);
    if (state.status === "pending" && !state.progress) role(this.root, "step").textContent = WAITING_TEXT;
    this.timelineNow = buildTimeline(this.frames, {
      status: state.status, plannedSteps: this.plannedSteps, reusedSteps: this.reusedSteps,
    });
    this.renderTimeline(this.timelineNow);
    const endedAt = state.ended ? state.endedAt : null;
    role(this.root, "ended-label").textContent = endedAt ? this.labels[state.status] : "Started";
    const at = endedAt ?? state.startedAt;
    role(this.root, "ended-at").replaceChildren(at ? timeElement(at) : "—");
    this.renderResult();
    if (state.ended) {
      role(this.root, "cancel-form")?.remove();
      const rerun = role(this.root, "rerun-form");
      if (rerun) rerun.hidden = false;
      this.renderResume().catch(() => {}); // without it, Rerun is still there
    }
    this.tick();
  }

  // Each row is keyed by what it shows, and only rows whose key changed are rebuilt:
  // a long run's timeline changes at its end, so a step costs a few elements, not all.
  renderTimeline({ startedAt, steps, end, moreSteps }) {
    const rows = [[`created ${this.state.createdAt}`, () => this.eventItem("created", "Submitted", this.state.createdAt)]];
    if (startedAt) rows.push([`started ${startedAt}`, () => this.eventItem("started", "Started", startedAt)]);
    for (const step of steps) {
      if (step.kind === "resumed") {
        rows.push([`resumed ${step.attempt} ${step.at}`, () => this.resumedItem(step)]);
        continue;
      }
      const key = `step ${step.number} ${step.state} ${step.startedAt} ${step.endedAt} ${step.attempt} ${step.name}`;
      rows.push([key, () => this.stepItem(step)]);
    }
    if (moreSteps > 0) {
      rows.push([`more ${moreSteps}`, () => {
        const more = this.item("timeline-more", "more", `+ ${moreSteps} more step${moreSteps === 1 ? "" : "s"}`);
        more.append(element("span", "timeline-time"), element("span", "timeline-duration"));
        return more;
      }]);
    }
    if (end) {
      rows.push([`end ${end.type} ${end.at}`, () => {
        const item = this.eventItem(end.type, this.labels[end.type], end.at);
        item.classList.add("timeline-end", `end-${end.type}`);
        return item;
      }]);
    }
    const list = this.timeline;
    list.className = "timeline";
    rows.forEach(([key, make], i) => {
      const current = list.children[i];
      if (current?.dataset.key === key) return;
      const row = make();
      row.dataset.key = key;
      if (current) current.replaceWith(row);
      else list.append(row);
    });
    while (list.children.length > rows.length) list.lastElementChild.remove();
  }

  item(className, kind, name) {
    const item = element("li", `timeline-item ${className}`);
    item.dataset.kind = kind;
    const marker = element("span", "timeline-marker");
    marker.setAttribute("aria-hidden", "true");
    item.append(marker, typeof name === "string" ? element("span", "timeline-name", name) : name);
    return item;
  }

  eventItem(kind, label, iso) {
    const item = this.item("timeline-event", kind, label);
    item.append(timeElement(iso, "timeline-time"), element("span", "timeline-duration"));
    return item;
  }

  // The hand-over of a durable run: another worker took it up at step `number`.
  resumedItem({ attempt, at, number }) {
    const item = this.eventItem("resumed", resumedText(attempt, number), at);
    item.classList.add("timeline-resumed");
    Object.assign(item.dataset, { attempt: String(attempt), step: String(number) });
    return item;
  }

  stepItem({ number, name, startedAt, endedAt, state, attempt, reusedFrom }) {
    const title = element("span", "timeline-name");
    title.append(element("span", "step-number", `${number}.`), " ", element("span", "step-name", name));
    if (this.durable && attempt) title.append(" ", element("span", "tag step-attempt", `attempt ${attempt}`));
    if (reusedFrom) {
      const link = element("a", "mono", reusedFrom);
      link.href = `/executions/${reusedFrom}`;
      title.append(" ", element("span", "step-reused", "reused from "), link);
    }
    const item = this.item(`timeline-step step-${state}`, "step", title);
    Object.assign(item.dataset, { step: String(number), state });
    if (attempt) item.dataset.attempt = String(attempt);
    if (startedAt) item.dataset.startedAt = startedAt;
    const duration = element("span", "timeline-duration");
    duration.dataset.role = "duration";
    if (state !== "running" && startedAt && endedAt) duration.textContent = formatDuration((ms(endedAt) - ms(startedAt)) / 1000);
    item.append(startedAt ? timeElement(startedAt, "timeline-time") : element("span", "timeline-time"), duration);
    return item;
  }

  // "Resume from step k" of a durable run that failed while the page was open: k is its
  // first step not completed, as the server tells (GET .../steps), as on a page load.
  async renderResume() {
    const form = role(this.root, "resume-form");
    if (!form || !form.hidden || this.state.status !== "failed" || this.resumeAsked) return;
    this.resumeAsked = true;
    const response = await fetch(this.root.dataset.stepsUrl, { headers: { Accept: "application/json" } });
    if (!response.ok) return;
    const { steps } = await response.json();
    const failed = steps.findIndex((step) => step.status !== "completed");
    if (failed < 0) return;
    role(form, "resume-button").textContent = `Resume from step ${failed + 1}`;
    form.hidden = false;
  }

  renderResult() {
    const { status, outputs, error } = this.state;
    const result = role(this.root, "result");
    const errorBox = role(result, "error");
    errorBox.hidden = !error;
    if (error) {
      role(errorBox, "error-type").textContent = error.type;
      role(errorBox, "error-message").textContent = error.message;
      const details = role(errorBox, "error-details");
      details.hidden = error.details == null;
      details.textContent = error.details == null ? "" : prettyJson(error.details);
    }
    role(result, "outputs").hidden = outputs == null;
    role(result, "outputs-json").textContent = outputs == null ? "" : prettyJson(outputs);
    role(result, "cancelled-note").hidden = status !== "cancelled";
    result.hidden = outputs == null && !error && status !== "cancelled";
  }

  // Once a second: what depends on the clock.
  tick() {
    const { state } = this;
    role(this.root, "elapsed").textContent = elapsedText(state);
    const running = this.timeline.querySelector('[data-kind="step"][data-state="running"]');
    if (running) role(running, "duration").textContent = `running · ${formatDuration((serverNow() - ms(running.dataset.startedAt)) / 1000)}`;
    role(this.root, "eta").textContent = remainingText({
      status: state.status,
      progress: state.progress,
      progressAt: ms(this.timelineNow?.progressAt),
      now: serverNow(),
    });
  }

  connection(mode, message) {
    showConnection(role(this.root, "connection"), mode, this.client?.transport);
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
          if (this.client && this.client.mode !== "live") this.client.refresh();
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

// --- start ---------------------------------------------------------------------------------

function init() {
  const renderedAt = Date.parse(document.body.dataset.serverNow);
  if (!Number.isNaN(renderedAt)) clockOffsetMs = renderedAt - Date.now();
  document.querySelectorAll("time[data-local-time]").forEach(localizeTime);
  document.querySelectorAll("pre[data-json]").forEach((el) => {
    try {
      el.textContent = prettyJson(JSON.parse(el.textContent));
    } catch {
      // left as the server wrote it
    }
  });
  autoSubmit();
  const dataElement = document.getElementById("page-data");
  if (!dataElement) return;
  const data = JSON.parse(dataElement.textContent);
  const page = document.body.dataset.page;
  if (page === "list") new ListPage(data).start();
  if (page === "detail") new DetailPage(document.getElementById("execution"), data).start();
}

init();
