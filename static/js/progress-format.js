// The presentation rules shared by the pages (execution-page.js) and the drop-in widget
// (progress-widget.js): how a duration, a percentage, the current step and the time left
// are worded. No build step, no dependencies; pure functions of what the server sends
// (the progress object of docs/protocol/frames.md).

// "0.4 s", "12 s", "4 min 05 s", "2 h 03 min"; "—" when unknown.
export function formatDuration(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return "—";
  const s = Math.max(0, seconds);
  if (s < 10) return `${s.toFixed(1)} s`;
  if (s < 60) return `${Math.round(s)} s`;
  const whole = Math.floor(s);
  if (whole < 3600) return `${Math.floor(whole / 60)} min ${String(whole % 60).padStart(2, "0")} s`;
  return `${Math.floor(whole / 3600)} h ${String(Math.floor((whole % 3600) / 60)).padStart(2, "0")} min`;
}

// The percentage, clamped to 0..100, two decimals (aria-valuenow); the text shows it whole.
export const percentOf = (progress) => Math.round(Math.min(100, Math.max(0, Number(progress.percentage) || 0)) * 100) / 100;

// "Step 3 of 5 · resize" while a named step runs, "5 of 5 steps" at the end.
export function stepText(status, progress) {
  if (!progress || !progress.total_steps) return "";
  const { current_step: current, total_steps: total, current_step_name: name } = progress;
  if (name) return `Step ${current + 1} of ${total} · ${name}`;
  if (status === "completed" || current >= total) return `${total} of ${total} steps`;
  return `${current} of ${total} steps`;
}

// Remaining time: the server's estimate (progress.eta_seconds, made when that progress was
// recorded at progressAt), counted down since; without progressAt it is shown as it is
// (times in milliseconds).
export function remainingText({ status, progress, progressAt, now }) {
  if (status === "completed") return "done";
  if (status !== "running") return "—";
  const eta = progress?.eta_seconds;
  if (eta == null) return "estimating…";
  const remaining = eta - (progressAt == null ? 0 : Math.max(0, now - progressAt) / 1000);
  return remaining < 1 ? "less than a second" : `about ${formatDuration(remaining)}`;
}
