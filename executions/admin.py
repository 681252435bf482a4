"""Admin inspection of executions.

Everything an execution holds is written by the system (services and the
worker), so every field is read-only here (a durable run's steps too); the
actions, cancel, rerun and resume from the failed step, go through the same
services as the API. An execution can have thousands of
events: its change page shows only the latest ones, and a paginated history
view lists them all.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import quote, unquote
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.views.decorators.http import require_POST

from .errors import ExecutionsError, NotCancellableError
from .models import TERMINAL_STATUSES, Execution, ExecutionStep, ProgressSnapshot, WebhookAttempt
from .services import execution_cancel, execution_rerun

#: Events shown inline on the change page (the newest ones).
INLINE_EVENTS = 50
#: Events per page of the history view.
HISTORY_PAGE_SIZE = 100


class LatestEventsFormSet(BaseInlineFormSet):
    """Only the latest ``INLINE_EVENTS`` events, newest first, however many there are."""

    queryset: QuerySet[ProgressSnapshot]  # set by BaseInlineFormSet.__init__

    # A list: the formset only iterates and counts it, and a sliced QuerySet cannot be filtered again.
    def get_queryset(self) -> list[ProgressSnapshot]:  # type: ignore[override]  # see above
        if not hasattr(self, "_latest"):
            self._latest = list(self.queryset.order_by("-seq")[:INLINE_EVENTS])
        return self._latest

    @property
    def total_count(self) -> int:
        if not hasattr(self, "_total"):
            self._total = self.queryset.count()
        return self._total


class ReadOnlyInline(admin.TabularInline):
    """Rows written by the system: shown, never added, changed or deleted here."""

    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False


class WebhookAttemptInline(ReadOnlyInline):
    """Every delivery attempt of the terminal event to ``callback_url`` (at most six)."""

    model = WebhookAttempt
    verbose_name = "webhook attempt"
    verbose_name_plural = "webhook attempts"
    fields = ("attempt", "event", "delivered", "status_code", "error", "duration_ms", "sent_at", "url")
    readonly_fields = fields
    ordering = ("attempt",)

    @admin.display(description="Sent at")
    def sent_at(self, obj: WebhookAttempt) -> str:
        return precise(obj.created_at)


class ExecutionStepInline(ReadOnlyInline):
    """A durable run's stored steps: state, the attempt that ran each, and what a resume reused."""

    model = ExecutionStep
    verbose_name = "step"
    verbose_name_plural = "steps (durable run)"
    fields = ("number", "name", "status", "attempt", "started", "finished", "reused_from")
    readonly_fields = fields
    ordering = ("index",)

    @admin.display(description="#")
    def number(self, obj: ExecutionStep) -> int:
        return obj.index + 1

    @admin.display(description="Started at")
    def started(self, obj: ExecutionStep) -> str:
        return precise(obj.started_at)

    @admin.display(description="Finished at")
    def finished(self, obj: ExecutionStep) -> str:
        return precise(obj.finished_at)


class ProgressSnapshotInline(ReadOnlyInline):
    """The latest events as a read-only table (its template renders the rows itself)."""

    model = ProgressSnapshot
    formset = LatestEventsFormSet
    template = "admin/executions/execution/events_inline.html"
    verbose_name = "event"
    verbose_name_plural = "latest events"
    fields = ("seq", "type", "status", "progress", "payload", "timestamp")
    readonly_fields = fields


def page_url(execution: Execution) -> str:
    """The execution's live page on the site (not the admin)."""
    return reverse("execution-detail", args=[execution.pk])


def precise(value: datetime | None) -> str:
    """Event times to the millisecond, in UTC: the admin's default format drops seconds."""
    if value is None:
        return "-"
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] + " UTC"


def _time_column(field_name: str, label: str) -> Any:
    @admin.display(description=label, ordering=field_name)
    def column(self: Any, obj: Execution) -> str:
        return precise(getattr(obj, field_name))

    column.__name__ = f"{field_name}_precise"
    return column


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    """Executions, read-only, with their events and webhook attempts; cancel and rerun go through the services."""

    list_display = ("id", "target_id", "status_badge", "progress_bar", "owner", "created_at", "live_page")
    list_display_links = ("id",)
    list_filter = ("status", "type", "target_id")
    search_fields = ("id", "target_id", "owner__username")
    list_select_related = ("owner",)
    list_per_page = 50
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    actions = ["cancel_selected", "rerun_selected", "resume_selected"]
    inlines = [ProgressSnapshotInline, WebhookAttemptInline]
    view_on_site = False  # the change page links to the live page itself (object tools)
    # Nothing here is the admin's to edit: the system owns every field.
    readonly_fields = (
        "id", "owner", "type", "target_id", "status_badge", "progress_bar", "progress_json", "seq",
        "inputs", "config", "outputs", "error", "callback_url",
        "created_at_precise", "started_at_precise", "completed_at_precise", "failed_at_precise",
        "cancelled_at_precise", "live_page", "rerun_of", "durable", "attempt", "from_failed_step",
    )
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "id",
                    "live_page",
                    "owner",
                    "type",
                    "target_id",
                    "status_badge",
                    "progress_bar",
                    "progress_json",
                    "seq",
                    "rerun_of",
                )
            },
        ),
        ("Durable run", {"fields": ("durable", "attempt", "from_failed_step")}),
        ("Data", {"fields": ("inputs", "config", "outputs", "error", "callback_url")}),
        (
            "Times (UTC)",
            {
                "fields": (
                    "created_at_precise",
                    "started_at_precise",
                    "completed_at_precise",
                    "failed_at_precise",
                    "cancelled_at_precise",
                )
            },
        ),
    )

    created_at_precise = _time_column("created_at", "Created at")
    started_at_precise = _time_column("started_at", "Started at")
    completed_at_precise = _time_column("completed_at", "Completed at")
    failed_at_precise = _time_column("failed_at", "Failed at")
    cancelled_at_precise = _time_column("cancelled_at", "Cancelled at")

    def get_inlines(self, request: HttpRequest, obj: Execution | None) -> list[type[admin.options.InlineModelAdmin]]:
        """The steps table only for a durable run: any other has no stored steps."""
        if obj is not None and obj.durable:
            return [ExecutionStepInline, *self.inlines]
        return list(self.inlines)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Executions are started through the API or the start page, which validate inputs.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        """Only ended executions may be deleted (a running one still has a worker writing to it).

        The changelist's bulk "delete selected" is not offered (see ``get_actions``):
        it cannot check each row's status.
        """
        if obj is not None and obj.status not in TERMINAL_STATUSES:
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        """The actions, without bulk delete: it cannot check that each row has ended."""
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_cancel_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        """Cancelling changes an execution: it takes the change permission."""
        return self.has_change_permission(request, obj)

    def has_rerun_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        """A rerun changes nothing of the original and makes an execution the admin owns:
        seeing the original is enough (staff may rerun any execution through the API too)."""
        return self.has_view_or_change_permission(request, obj)

    # --- columns ---------------------------------------------------------------------

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Execution) -> str:
        """The status in its colour; the colours, one per admin colour scheme, are in
        static/css/admin.css (an inline colour could not follow the dark theme)."""
        return format_html(
            '<span class="execution-status execution-status-{}"><span aria-hidden="true">&#9679;</span> {}</span>',
            obj.status,
            obj.get_status_display(),
        )

    @admin.display(description="Progress")
    def progress_bar(self, obj: Execution) -> str:
        """The list's progress column: a bar with its percentage and steps."""
        progress = obj.progress
        if progress is None:
            return "-"
        pct = float(progress.get("percentage", 0.0))
        steps = ""
        if progress.get("total_steps"):
            steps = f" · {progress.get('current_step', 0)}/{progress['total_steps']} steps"
        return format_html(
            '<span style="white-space:nowrap"><progress value="{}" max="100" style="width:7em;vertical-align:middle"'
            ' aria-label="{}% done"></progress> <span style="font-variant-numeric:tabular-nums">{}%{}</span></span>',
            f"{pct:.2f}",
            f"{pct:.0f}",
            f"{pct:.0f}",
            steps,
        )

    @admin.display(description="Progress (stored)")
    def progress_json(self, obj: Execution) -> str:
        """The stored progress as JSON."""
        return "-" if obj.progress is None else json.dumps(obj.progress)

    @admin.display(description="Live page")
    def live_page(self, obj: Execution) -> str:
        """A link to the execution's live page."""
        return format_html('<a href="{}">Open &rarr;</a>', page_url(obj))

    # --- change page -----------------------------------------------------------------------

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """The read-only change page, with the cancel button while the execution can change."""
        if request.method == "POST":
            # Nothing on this page is editable; saving it could only fail on the inline.
            return HttpResponseNotAllowed(["GET"])
        obj = self.get_object(request, unquote(object_id))
        extra = {
            # All fields are read-only: a Save button would only pretend.
            "show_save": False,
            "show_save_and_continue": False,
            "live_page_url": page_url(obj) if obj else "",
            "can_cancel_execution": obj is not None and obj.status not in TERMINAL_STATUSES
            and self.has_cancel_permission(request, obj),
        }
        return super().change_view(request, object_id, form_url, {**extra, **(extra_context or {})})

    def get_urls(self) -> list:
        """The admin's URLs plus the event history and the cancel button's."""
        own = [
            path(
                "<path:object_id>/events/",
                self.admin_site.admin_view(self.events_view),
                name="executions_execution_events",
            ),
            path(
                "<path:object_id>/cancel/",
                self.admin_site.admin_view(require_POST(self.cancel_view)),
                name="executions_execution_cancel",
            ),
        ]
        return own + super().get_urls()

    def _get_or_404(self, request: HttpRequest, object_id: str) -> Execution:
        obj = self.get_object(request, unquote(object_id))
        if obj is None:
            raise Http404(f"Execution '{object_id}' not found")
        return obj

    def events_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Every stored event of one execution, oldest first, a page at a time."""
        # Permission before lookup: without it, 403 vs 404 would tell which ids exist.
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        obj = self._get_or_404(request, object_id)
        events = ProgressSnapshot.objects.filter(execution=obj).order_by("seq").only(
            "seq", "type", "status", "progress", "payload", "timestamp"
        )
        page = Paginator(events, HISTORY_PAGE_SIZE).get_page(request.GET.get("p"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": obj,
            "title": f"Events of {obj.pk}",
            "subtitle": None,
            "page_obj": page,
            "page_range": page.paginator.get_elided_page_range(page.number, on_each_side=2, on_ends=1),
            "live_page_url": page_url(obj),
        }
        return TemplateResponse(request, "admin/executions/execution/events.html", context)

    def cancel_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's cancel button: cancel through the service, then back to the page."""
        if not self.has_cancel_permission(request):
            raise PermissionDenied
        obj = self._get_or_404(request, object_id)
        try:
            execution_cancel(execution_id=obj.pk)
        except NotCancellableError as exc:
            self.message_user(request, f"{obj.pk} was not cancelled: {exc}.", messages.WARNING)
        else:
            self.message_user(request, f"Cancelled {obj.pk}.", messages.SUCCESS)
        return HttpResponseRedirect(reverse("admin:executions_execution_change", args=[quote(obj.pk)]))

    # --- actions ----------------------------------------------------------------------------

    @admin.action(description="Cancel selected executions", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        """Cancel each selected execution that has not ended; report the others."""
        cancelled: list[str] = []
        skipped: list[str] = []
        for execution_id in queryset.values_list("id", flat=True):
            try:
                execution_cancel(execution_id=execution_id)
                cancelled.append(execution_id)
            except NotCancellableError as exc:
                skipped.append(f"{execution_id} ({exc.status})")
        if cancelled:
            self.message_user(
                request, f"Cancelled {len(cancelled)} execution(s): {', '.join(cancelled)}.", messages.SUCCESS
            )
        if skipped:
            self.message_user(
                request,
                f"Not cancelled, {len(skipped)} already ended: {', '.join(skipped)}.",
                messages.WARNING,
            )

    @admin.action(description="Rerun selected executions (same inputs and config, owned by you)", permissions=["rerun"])
    def rerun_selected(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        """Rerun each selected execution as the acting user; report those refused."""
        self._rerun(request, queryset, from_failed_step=False)

    @admin.action(description="Resume from the failed step (failed durable executions, owned by you)",
                  permissions=["rerun"])
    def resume_selected(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        """Resume each selected failed durable execution from its failed step; report those refused."""
        self._rerun(request, queryset, from_failed_step=True)

    def _rerun(self, request: HttpRequest, queryset: QuerySet[Execution], *, from_failed_step: bool) -> None:
        started: list[str] = []
        refused: list[str] = []
        assert request.user.is_authenticated, "the admin let a staff user in"
        for original in queryset.order_by("created_at"):
            try:
                execution = execution_rerun(original=original, owner=request.user, from_failed_step=from_failed_step)
            except ExecutionsError as exc:
                refused.append(f"{original.pk} ({exc})")
            else:
                started.append(f"{execution.pk} ({'resumed from' if from_failed_step else 'rerun of'} {original.pk})")
        if started:
            self.message_user(request, f"Started {len(started)} execution(s): {', '.join(started)}.", messages.SUCCESS)
        if refused:
            verb = "resumed" if from_failed_step else "rerun"
            self.message_user(request, f"Not {verb}, {len(refused)}: {', '.join(refused)}.", messages.WARNING)


@admin.register(WebhookAttempt)
class WebhookAttemptAdmin(admin.ModelAdmin):
    """All deliveries across executions, to find the failing receivers; read-only."""

    list_display = ("execution", "attempt", "event", "delivered", "status_code", "duration_ms", "created_at", "url")
    list_filter = ("delivered", "event")
    search_fields = ("execution__id", "url")
    list_select_related = ("execution",)
    ordering = ("-created_at",)
    readonly_fields = (
        "execution", "attempt", "url", "event", "status_code", "error", "duration_ms", "delivered", "created_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: WebhookAttempt | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: WebhookAttempt | None = None) -> bool:
        return False
