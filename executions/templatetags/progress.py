"""The drop-in live progress widget, for any Django template of the project::

    {% load progress %}
    {% execution_progress_assets %}        {# once per page, e.g. in <head> #}
    {% execution_progress execution %}     {# where the bar goes; as many as needed #}

The bar shows raw values that read without JavaScript (of an ``Execution``, or
of an id looked up as the page's user may see it); the assets' script keeps it
live with the pages' stream client. An edge, like the pages: it reads through
the selectors, and the stream it opens checks access itself.
"""

from __future__ import annotations

import json
from typing import Any

from django import template
from django.templatetags.static import static
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from executions.frames import iso
from executions.models import Execution, ExecutionStatus
from executions.selectors import event_frame_at, execution_get_for_user

register = template.Library()

#: The words of each status, for the script to label a status it receives live.
STATUS_LABELS: dict[str, str] = dict(ExecutionStatus.choices)


def api_root() -> str:
    """The REST API's root as this site routes it (``/api/v1`` unless mounted elsewhere)."""
    return reverse("api-executions").removesuffix("/executions")


def progress_recorded_at(execution: Execution) -> str | None:
    """When the execution's current progress was recorded: the timestamp of its last event.

    The script counts ``eta_seconds`` down from there (it is the estimate at that moment).
    """
    if execution.seq == 0:
        return None
    frame = event_frame_at(execution_id=execution.id, seq=execution.seq)
    return None if frame is None else json.loads(frame).get("timestamp")


def widget_state(execution: Execution) -> dict[str, Any]:
    """What the script needs to render and follow the execution: no inputs or outputs,
    since the host page may show the widget to people who should see only the progress."""
    return {
        "execution_id": execution.id,
        "status": execution.status,
        "progress": execution.progress,
        "seq": execution.seq,
        "progress_at": progress_recorded_at(execution),
        "server_now": iso(timezone.now()),
        "api_root": api_root(),
        "labels": STATUS_LABELS,
    }


@register.simple_tag
def execution_progress_assets() -> SafeString:
    """The widget's stylesheet and script; once per page that shows a widget."""
    return format_html(
        '<link rel="stylesheet" href="{}">\n<script type="module" src="{}"></script>',
        static("css/progress-widget.css"),
        static("js/progress-widget.js"),
    )


@register.inclusion_tag("executions/widget.html", takes_context=True)
def execution_progress(
    context: template.Context, execution: Execution | str, label: str | None = None
) -> dict[str, Any]:
    """One execution's live progress. ``label`` names it (default: its target's name).

    Given an id, the execution is read as the template's ``user`` may see it (the auth
    context processor's; nobody if there is none): one it may not see is rendered as
    not available, like a missing one, and no stream is opened.
    """
    if isinstance(execution, str):
        user = context.get("user")
        found = execution_get_for_user(user=user, execution_id=execution) if user is not None else None
        if found is None:
            return {"missing": True, "execution_id": execution, "label": label or execution}
        execution = found
    return {
        "missing": False,
        "execution": execution,
        "label": label or execution.target_id,
        "state": widget_state(execution),
        "status_label": STATUS_LABELS.get(execution.status, execution.status),
    }
