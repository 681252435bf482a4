"""The widget demo page (``/widget-demo/?ids=exec_...,exec_...``) and a page with a plain
``EventSource`` (``/event-source-demo/<id>``), both logged in."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from executions.selectors import execution_get_for_user


@login_required
def widget_demo(request: HttpRequest) -> HttpResponse:
    """One widget per id: an Execution the user may see, or the id itself (shown as not available)."""
    ids = [value for value in request.GET.get("ids", "").split(",") if value]
    executions = [execution_get_for_user(user=request.user, execution_id=value) or value for value in ids]
    return render(request, "widget_site/demo.html", {"executions": executions})


@login_required
def event_source_demo(request: HttpRequest, execution_id: str) -> HttpResponse:
    """An execution's events as a template author follows them: the browser's own ``EventSource``."""
    return render(request, "widget_site/event_source.html", {"execution_id": execution_id})
