// The drop-in live progress widget: renders every {% execution_progress %} of the page
// (executions/templatetags/progress.py) and keeps it live. No build step, no dependencies.
//
// Each widget follows its execution with the pages' StreamClient (stream-client.js): the
// WebSocket, then Server-Sent Events when WebSockets are refused, then polling, resuming
// after the last seq shown; it stops at the terminal event. The server renders the first
// state with raw values (readable without JavaScript) and hands it over as JSON in the
// widget; the wording (step, percentage, time left) comes from progress-format.js, the
// rules the pages use too.
//
// Loaded as a module ({% execution_progress_assets %} writes the tag), it mounts every
// widget in the document once the document is parsed. Widgets added later (a fragment
// fetched by the page) are mounted with:
//
//   import { mountProgressWidgets } from "/static/js/progress-widget.js";
//   mountProgressWidgets(container);      // returns the widgets it started
//
// A widget element then carries data-status (the execution's status) and data-connection
// ("live" | "reconnecting" | "polling" | "offline" | "closed" | "ended"), plus
// data-transport ("websocket" | "sse") while live, for a page's own styling or tests.

import { percentOf, remainingText, stepText } from "./progress-format.js";
import { StreamClient, TERMINAL } from "./stream-client.js";

const SELECTOR = "[data-execution-progress]";
const WAITING_TEXT = "Waiting to start";

const role = (root, name) => root.querySelector(`[data-role="${name}"]`);
const ms = (iso) => (iso ? Date.parse(iso) : null);

export class ProgressWidget {
  constructor(element) {
    this.el = element;
    const state = JSON.parse(element.querySelector('script[type="application/json"]').textContent);
    this.labels = state.labels;
    this.apiRoot = state.api_root;
    this.id = state.execution_id;
    this.status = state.status;
    this.progress = state.progress;
    this.seq = state.seq;
    this.progressAt = ms(state.progress_at); // when this progress (and its eta_seconds) was recorded
    const renderedAt = ms(state.server_now);
    this.clockOffsetMs = renderedAt == null ? 0 : renderedAt - Date.now();
    this.client = null;
    this.timer = null;
  }

  start() {
    this.el.dataset.mounted = "";
    this.render();
    if (TERMINAL.has(this.status)) {
      this.connection("ended");
      return this;
    }
    this.timer = window.setInterval(() => this.renderEta(), 1000);
    this.client = new StreamClient(this.id, {
      afterSeq: this.seq,
      apiRoot: this.apiRoot,
      onFrame: (frame) => this.apply(frame),
      onConnection: (mode, message) => this.connection(mode, message),
    });
    this.client.start();
    return this;
  }

  stop() {
    this.client?.stop();
    window.clearInterval(this.timer);
  }

  apply(frame) {
    const before = this.status;
    this.status = frame.status;
    if (frame.progress != null) this.progress = frame.progress;
    if (frame.type !== "status") {
      this.seq = frame.seq;
      this.progressAt = ms(frame.timestamp);
    }
    this.render();
    if (this.status !== before) this.announce(this.labels[this.status] ?? this.status);
    if (TERMINAL.has(this.status)) window.clearInterval(this.timer);
  }

  render() {
    const { el, status, progress } = this;
    el.dataset.status = status;
    const badge = role(el, "status");
    badge.className = `epw-status epw-status-${status}`;
    badge.textContent = this.labels[status] ?? status;
    const bar = role(el, "bar");
    const step = stepText(status, progress);
    if (progress) {
      const pct = percentOf(progress);
      bar.setAttribute("aria-valuenow", String(pct));
      bar.setAttribute("aria-valuetext", `${Math.round(pct)}%${step ? `, ${step}` : ""}`);
      role(el, "fill").style.width = `${pct}%`;
      role(el, "percent").textContent = `${Math.round(pct)}%`;
    }
    role(el, "step").textContent = step || (status === "pending" ? WAITING_TEXT : "");
    this.renderEta();
  }

  renderEta() {
    const { status } = this;
    const eta = role(this.el, "eta");
    const shown = status === "running" || status === "completed";
    eta.hidden = !shown;
    if (!shown) return;
    const now = Date.now() + this.clockOffsetMs;
    role(eta, "eta-text").textContent = remainingText({ status, progress: this.progress, progressAt: this.progressAt, now });
  }

  connection(mode, message) {
    this.el.dataset.connection = mode;
    if (this.client?.transport) this.el.dataset.transport = this.client.transport;
    else delete this.el.dataset.transport;
    const notice = role(this.el, "notice");
    notice.textContent = message || "";
    notice.hidden = !message;
  }

  announce(text) {
    role(this.el, "announce").textContent = text;
  }
}

// Start every widget under root not started yet; returns them.
export function mountProgressWidgets(root = document) {
  const found = root.matches?.(SELECTOR) ? [root] : [...root.querySelectorAll(SELECTOR)];
  return found.filter((el) => !("mounted" in el.dataset)).map((el) => new ProgressWidget(el).start());
}

mountProgressWidgets();
