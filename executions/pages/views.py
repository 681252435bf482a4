"""Server-rendered pages: the list, one execution, and the start form.

Each view parses the request, calls one selector or service and renders. The
small presentation helpers below turn an execution and its stored events into
what the templates show; ``static/js/progress.js`` keeps the same markup up to
date from the WebSocket stream (or the REST API when the socket is unusable),
so without JavaScript the page still shows the state as rendered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from executions.frames import execution_dict, iso
from executions.models import TERMINAL_EVENT_TYPES, Execution, ExecutionStatus
from executions.registry import InputsInvalid, all_targets, get_target
from executions.selectors import event_frames_after, execution_get_for_user, execution_list_for_user
from executions.services import CannotCancel, execution_cancel, execution_create

from .forms import ExecutionFilterForm, ExecutionStartForm, target_for_key, target_key

PAGE_SIZE = 20
#: The detail page renders at most this many of the latest events in its timeline.
TIMELINE_MAX_EVENTS = 500
#: How many of the steps not reached yet are listed (the rest are counted).
UPCOMING_STEPS_SHOWN = 5
CANCELLABLE = frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING})
LIST_COLUMNS = (
    "id", "owner__username", "type", "target_id", "status", "progress", "seq",
    "created_at", "started_at", "completed_at", "failed_at", "cancelled_at",
)


# --- presentation helpers -------------------------------------------------------------


def format_duration(seconds: float | None) -> str:
    """``0.4 s``, ``12 s``, ``4 min 05 s``, ``2 h 03 min`` (progress.js formats alike)."""
    if seconds is None:
        return "—"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def ended_at(execution: Execution) -> datetime | None:
    return execution.completed_at or execution.failed_at or execution.cancelled_at


def elapsed_seconds(execution: Execution, now: datetime) -> float | None:
    if execution.started_at is None:
        return None
    return ((ended_at(execution) or now) - execution.started_at).total_seconds()


@dataclass
class TimelineStep:
    number: int
    name: str
    started_at: datetime | None = None
    ended_at: datetime | None = None
    #: done | running | failed | cancelled | upcoming
    state: str = "upcoming"

    @property
    def duration(self) -> str:
        if self.started_at is None or self.ended_at is None:
            return ""
        return format_duration((self.ended_at - self.started_at).total_seconds())


@dataclass
class Timeline:
    started_at: datetime | None = None
    steps: list[TimelineStep] = field(default_factory=list)
    end_type: str | None = None
    ended_at: datetime | None = None
    #: When the progress last changed (the estimate counts down from there).
    progress_at: datetime | None = None
    #: Events older than the ones shown (very long runs).
    hidden_events: int = 0
    #: Steps still to come beyond the upcoming ones listed.
    more_steps: int = 0


def _parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


TERMINAL_STEP_STATE = {"completed": "done", "failed": "failed", "cancelled": "cancelled"}


def build_timeline(frames: list[dict[str, Any]], *, planned_steps: list[str] | None, status: str) -> Timeline:
    """Steps with their start times and durations, from the stored events.

    A step starts at the ``progress`` event that enters it and ends at the next
    step's event or the terminal one; reports within a step do not add rows.
    """
    timeline = Timeline()
    for frame in frames:
        at = _parse_time(frame["timestamp"])
        kind = frame["type"]
        if kind == "started":
            timeline.started_at = at
            timeline.progress_at = at
        elif kind == "progress":
            timeline.progress_at = at
            progress = frame.get("progress") or {}
            name = progress.get("current_step_name")
            number = int(progress.get("current_step", 0)) + 1
            last = timeline.steps[-1] if timeline.steps else None
            if name is None or (last is not None and last.number == number and last.name == name):
                continue
            if last is not None and last.ended_at is None:
                last.ended_at, last.state = at, "done"
            timeline.steps.append(TimelineStep(number=number, name=name, started_at=at, state="running"))
        elif kind in TERMINAL_EVENT_TYPES:
            timeline.end_type, timeline.ended_at = kind, at
            timeline.progress_at = at
            last = timeline.steps[-1] if timeline.steps else None
            if last is not None and last.ended_at is None:
                last.ended_at, last.state = at, TERMINAL_STEP_STATE[kind]
    if status in CANCELLABLE and planned_steps:
        reached = timeline.steps[-1].number if timeline.steps else 0
        upcoming = planned_steps[reached : reached + UPCOMING_STEPS_SHOWN]
        timeline.steps.extend(
            TimelineStep(number=number, name=name) for number, name in enumerate(upcoming, start=reached + 1)
        )
        timeline.more_steps = max(0, len(planned_steps) - reached - len(upcoming))
    return timeline


def planned_steps(execution: Execution) -> list[str] | None:
    target = get_target(execution.type, execution.target_id)
    if target is None:
        return None
    try:
        return target.step_names(execution.inputs)
    except Exception:  # noqa: BLE001 - a target's step function must not break the page
        return None


def progress_view(execution: Execution) -> dict[str, Any]:
    """What the progress bar partial needs, for one execution."""
    progress = execution.progress
    percentage = None if progress is None else round(float(progress["percentage"]), 2)
    step_text = ""
    if progress is not None and progress.get("total_steps"):
        current, total = progress["current_step"], progress["total_steps"]
        name = progress.get("current_step_name")
        if name:
            step_text = f"Step {current + 1} of {total} · {name}"
        elif execution.status == ExecutionStatus.COMPLETED or current >= total:
            step_text = f"{total} of {total} steps"
        else:
            step_text = f"{current} of {total} steps"
    return {"percentage": percentage, "step_text": step_text}


def pretty_json(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


# --- pages --------------------------------------------------------------------------------


def execution_or_404(request: HttpRequest, execution_id: str) -> Execution:
    """The user's execution (staff: anyone's); someone else's is as missing as an unknown one."""
    execution = execution_get_for_user(user=request.user, execution_id=execution_id)
    if execution is None:
        raise Http404(f"Execution '{execution_id}' not found")
    return execution


@login_required
@require_GET
def execution_list(request: HttpRequest) -> HttpResponse:
    filters = ExecutionFilterForm(request.GET)
    executions = execution_list_for_user(user=request.user, **filters.selectors_kwargs())
    page = Paginator(executions.select_related("owner").only(*LIST_COLUMNS), PAGE_SIZE).get_page(
        request.GET.get("page")
    )
    now = timezone.now()
    rows = [
        {
            "execution": execution,
            "progress": progress_view(execution),
            "elapsed": format_duration(elapsed_seconds(execution, now)),
            "ended_at": ended_at(execution),
        }
        for execution in page.object_list
    ]
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "executions/list.html",
        {
            "nav": "list",
            "filters": filters,
            "filtered": bool(filters.selectors_kwargs()),
            "page_obj": page,
            "rows": rows,
            "page_query": query.urlencode(),
            "show_owner": request.user.is_staff,
        },
    )


@login_required
@require_GET
def execution_detail(request: HttpRequest, execution_id: str) -> HttpResponse:
    execution = execution_or_404(request, execution_id)
    # Events up to the execution's seq: the page shows exactly that state, and
    # the script resumes the stream after it (``after_seq``), so nothing is missed.
    first_shown = max(0, execution.seq - TIMELINE_MAX_EVENTS)
    frames = [
        json.loads(text)
        for _, _, text in event_frames_after(execution_id=execution.id, after_seq=first_shown, before_seq=execution.seq + 1)
    ]
    timeline = build_timeline(frames, planned_steps=planned_steps(execution), status=execution.status)
    timeline.hidden_events = first_shown
    now = timezone.now()
    state = execution_dict(execution)
    state["progress_at"] = iso(timeline.progress_at)
    return render(
        request,
        "executions/detail.html",
        {
            "execution": execution,
            "state": state,
            "progress": progress_view(execution),
            "timeline": timeline,
            "elapsed": format_duration(elapsed_seconds(execution, now)),
            "ended_at": ended_at(execution),
            "can_cancel": execution.status in CANCELLABLE,
            "inputs_json": pretty_json(execution.inputs),
            "config_json": pretty_json(execution.config) if execution.config else "",
            "outputs_json": pretty_json(execution.outputs) if execution.outputs is not None else "",
            "error_details_json": pretty_json(execution.error["details"])
            if execution.error and execution.error.get("details") is not None
            else "",
            "admin_url": reverse("admin:executions_execution_change", args=[execution.id])
            if request.user.is_staff
            else "",
        },
    )


@login_required
@require_POST
def execution_cancel_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The Cancel button without JavaScript (progress.js uses the REST endpoint)."""
    execution = execution_or_404(request, execution_id)
    try:
        execution_cancel(execution_id=execution.id)
    except CannotCancel as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, "Execution cancelled.")
    return redirect("execution-detail", execution_id=execution.id)


@login_required
@require_http_methods(["GET", "POST"])
def execution_start(request: HttpRequest) -> HttpResponse:
    targets = all_targets()
    key = request.POST.get("target") if request.method == "POST" else request.GET.get("target")
    target = target_for_key(key)
    unknown_target = bool(key) and target is None
    if target is None and targets:
        target = targets[0]
    form = None
    if target is not None:
        if request.method == "POST" and not unknown_target:
            form = ExecutionStartForm(request.POST, target=target)
            if form.is_valid():
                try:
                    execution = execution_create(
                        owner=request.user,
                        type=target.type,
                        target_id=target.target_id,
                        inputs=form.inputs(),
                        config=form.config(),
                    )
                except InputsInvalid as exc:
                    form.add_input_errors(exc.errors)
                else:
                    return redirect("execution-detail", execution_id=execution.id)
        else:
            form = ExecutionStartForm(target=target)
    return render(
        request,
        "executions/start.html",
        {
            "nav": "start",
            "targets": [{"key": target_key(t), "target": t} for t in targets],
            "target": target,
            "target_key": target_key(target) if target else "",
            "target_steps": target.static_steps if target else None,
            "unknown_target": key if unknown_target else "",
            "form": form,
        },
        status=400 if unknown_target else 200,
    )
