"""Server-rendered pages: the list, one execution, and the start form; each view calls one selector or service.

The server renders raw values only (the status label, the stored percentage,
``current_step/total_steps``, ISO times, the JSON as stored), so that a page
reads without JavaScript, and embeds the same state as data (``#page-data``):
the execution's public shape and its stored frames. Every presentation rule
(durations, step text, timeline, time left, local times) lives only in
``static/js/execution-page.js``; nothing here formats or words a value.
"""

from __future__ import annotations

import json
from typing import Any

from django.contrib import messages
from django.contrib.admin.utils import quote
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from executions.errors import (
    BrokerUnavailableError,
    ExecutionsError,
    InputsInvalidError,
    NotCancellableError,
    NotResumableError,
)
from executions.frames import execution_dict
from executions.models import UNENDED_STATUSES, Execution, ExecutionStatus
from executions.registry import all_targets, get_target
from executions.selectors import event_frames_after, execution_get_for_user, execution_list_for_user
from executions.services import execution_cancel, execution_create, execution_rerun
from executions.steps import execution_steps, step_dict, steps_resume_index

from .forms import ExecutionFilterForm, ExecutionStartForm, target_for_key, target_key

PAGE_SIZE = 20
#: The detail page renders at most this many of the latest events.
TIMELINE_MAX_EVENTS = 500
#: What the list's script needs of each execution's public shape (``execution_dict``).
LIST_STATE_KEYS = (
    "execution_id",
    "status",
    "progress",
    "seq",
    "started_at",
    "completed_at",
    "failed_at",
    "cancelled_at",
)
#: The words of each status, for the script to label a status it receives live.
STATUS_LABELS: dict[str, str] = dict(ExecutionStatus.choices)
#: The id of the list's blank row (the script copies it for an execution that appears live).
BLANK_ROW_ID = "exec_000000000000"


# --- page data -----------------------------------------------------------------------------


def planned_steps(execution: Execution) -> list[str] | None:
    """The step names of the run, so the timeline can list the steps still to come."""
    target = get_target(execution.type, execution.target_id)
    if target is None:
        return None
    try:
        return target.step_names(execution.inputs)
    except Exception:  # noqa: BLE001 - a target's step function must not break the page
        return None


def reused_steps(execution: Execution) -> list[dict[str, Any]]:
    """The steps a resume from the failed step reused (they have no events in this execution)."""
    if not execution.from_failed_step:
        return []
    return [step_dict(step) for step in execution_steps(execution) if step.reused_from]


def resume_step(execution: Execution) -> int | None:
    """The step (1-based) a resume of this execution from its failed step starts at; None if it cannot."""
    if not execution.durable or execution.status != ExecutionStatus.FAILED:
        return None
    try:
        return steps_resume_index(execution) + 1
    except NotResumableError:
        return None


def raw_json(value: Any) -> str:
    """JSON as the API would send it; the script indents it for reading (the no-JS page shows it as is)."""
    return json.dumps(value, ensure_ascii=False)


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
    """The user's executions (staff: everyone's), filtered and paginated, live."""
    assert request.user.is_authenticated, "login_required let it in"
    filters = ExecutionFilterForm(request.GET)
    executions = execution_list_for_user(user=request.user, **filters.selectors_kwargs())
    page = Paginator(executions.select_related("owner"), PAGE_SIZE).get_page(request.GET.get("page"))
    executions_shown = list(page.object_list)
    query = request.GET.copy()
    query.pop("page", None)
    filters_used = filters.selectors_kwargs()
    return render(
        request,
        "executions/list.html",
        {
            "nav": "list",
            "filters": filters,
            "filtered": bool(filters_used),
            "page_obj": page,
            "executions": executions_shown,
            "page_data": {
                "status_labels": STATUS_LABELS,
                "executions": [
                    {key: value for key, value in execution_dict(execution).items() if key in LIST_STATE_KEYS}
                    for execution in executions_shown
                ],
                # The execution feed: which executions it follows, and
                # which of those the page shows as new rows (its first page only,
                # those the filters let through).
                "feed": {
                    "scope": "all" if request.user.is_staff else "own",
                    "adds_rows": page.number == 1,
                    "filters": filters_used,
                    "page_size": PAGE_SIZE,
                },
                "detail_url": reverse("execution-detail", args=[BLANK_ROW_ID]),
                "blank_id": BLANK_ROW_ID,
            },
            "blank_row": Execution(
                id=BLANK_ROW_ID, type="", target_id="", status=ExecutionStatus.PENDING, owner=request.user
            ),
            "page_query": query.urlencode(),
            "show_owner": request.user.is_staff,
        },
    )


@login_required
@require_GET
def execution_detail(request: HttpRequest, execution_id: str) -> HttpResponse:
    """One execution, live: state, progress, timeline of events, outputs or error."""
    execution = execution_or_404(request, execution_id)
    # Events up to the execution's seq: the page shows exactly that state, and
    # the script resumes the stream after it (``after_seq``), so nothing is missed.
    first_shown = max(0, execution.seq - TIMELINE_MAX_EVENTS)
    events = [
        json.loads(text)
        for _, _, text in event_frames_after(
            execution_id=execution.id, after_seq=first_shown, before_seq=execution.seq + 1
        )
    ]
    return render(
        request,
        "executions/detail.html",
        {
            "execution": execution,
            "events": events,
            "hidden_events": first_shown,
            "page_data": {
                "status_labels": STATUS_LABELS,
                "execution": execution_dict(execution),
                "events": events,
                "planned_steps": planned_steps(execution) if execution.status in UNENDED_STATUSES else None,
                "durable": execution.durable,
                "reused_steps": reused_steps(execution),
            },
            "resume_step": resume_step(execution),
            "can_cancel": execution.status in UNENDED_STATUSES,
            "can_rerun": execution.status not in UNENDED_STATUSES,
            "inputs_json": raw_json(execution.inputs),
            "config_json": raw_json(execution.config) if execution.config else "",
            "outputs_json": raw_json(execution.outputs) if execution.outputs is not None else "",
            "error_details_json": raw_json(execution.error["details"])
            if execution.error and execution.error.get("details") is not None
            else "",
            # Quoted as the admin quotes primary keys: unquoted, an id such as
            # exec_23... would be read back as "exec#...".
            "admin_url": reverse("admin:executions_execution_change", args=[quote(execution.id)])
            if request.user.is_staff
            else "",
        },
    )


@login_required
@require_POST
def execution_cancel_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The Cancel button without JavaScript (execution-page.js uses the REST endpoint)."""
    execution = execution_or_404(request, execution_id)
    try:
        execution_cancel(execution_id=execution.id)
    except NotCancellableError as exc:
        messages.warning(request, str(exc))
    else:
        messages.success(request, "Execution cancelled.")
    return redirect("execution-detail", execution_id=execution.id)


@login_required
@require_POST
def execution_rerun_view(request: HttpRequest, execution_id: str) -> HttpResponse:
    """The Rerun button of an ended execution (and "Resume from step k" of a failed durable one), then its page."""
    original = execution_or_404(request, execution_id)
    assert request.user.is_authenticated, "login_required let it in"
    try:
        execution = execution_rerun(
            original=original, owner=request.user, from_failed_step=request.POST.get("from_failed_step") == "1"
        )
    except InputsInvalidError as exc:
        problems = "; ".join(f"{name}: {' '.join(map(str, errors))}" for name, errors in exc.errors.items())
        messages.error(request, f"Not rerun: its inputs are no longer valid ({problems})")
    except ExecutionsError as exc:
        messages.error(request, f"Not rerun: {exc}")
    else:
        return redirect("execution-detail", execution_id=execution.id)
    return redirect("execution-detail", execution_id=original.id)


@login_required
@require_http_methods(["GET", "POST"])
def execution_start(request: HttpRequest) -> HttpResponse:
    """The start form of a target (generated from its inputs); a valid POST submits and redirects."""
    assert request.user.is_authenticated, "login_required let it in"
    targets = all_targets()
    key = request.POST.get("target") if request.method == "POST" else request.GET.get("target")
    target = target_for_key(key)
    unknown_target = bool(key) and target is None
    if target is None and targets:
        target = targets[0]
    form = None
    status = 400 if unknown_target else 200
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
                except InputsInvalidError as exc:
                    form.add_input_errors(exc.errors)
                except BrokerUnavailableError as exc:
                    # Nothing was stored: the form stays filled in for another try.
                    form.add_error(None, str(exc))
                    status = 503
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
        status=status,
    )
