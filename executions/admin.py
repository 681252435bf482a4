"""Admin inspection of executions; the cancel action goes through the service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from progress.models import ProgressSnapshot

from .models import Execution
from .services import CannotCancel, execution_cancel


class ProgressSnapshotInline(admin.TabularInline):
    model = ProgressSnapshot
    fields = ("seq", "type", "status", "progress", "payload", "timestamp")
    readonly_fields = fields
    ordering = ("seq",)
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Execution | None = None) -> bool:
        return False


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin):
    list_display = ("id", "target_id", "type", "status", "progress_bar", "owner", "created_at")
    list_filter = ("status", "type", "target_id")
    search_fields = ("id", "target_id")
    list_select_related = ("owner",)
    ordering = ("-created_at",)
    date_hierarchy = "created_at"
    actions = ["cancel_selected"]
    inlines = [ProgressSnapshotInline]
    readonly_fields = (
        "id", "owner", "type", "target_id", "status", "progress", "inputs", "config", "outputs",
        "error", "callback_url", "seq", "created_at", "started_at", "completed_at", "failed_at",
        "cancelled_at",
    )
    fieldsets = (
        (None, {"fields": ("id", "owner", "type", "target_id", "status", "progress", "seq")}),
        ("Data", {"fields": ("inputs", "config", "outputs", "error", "callback_url")}),
        ("Times", {"fields": ("created_at", "started_at", "completed_at", "failed_at", "cancelled_at")}),
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Executions are started through the API or the start page, which validate inputs.
        return False

    @admin.display(description="Progress")
    def progress_bar(self, obj: Execution) -> str:
        pct = obj.percentage
        if pct is None:
            return "-"
        return format_html(
            '<progress value="{}" max="100" style="width:8em"></progress> {}%', f"{pct:.2f}", f"{pct:.0f}"
        )

    @admin.action(description="Cancel selected executions")
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        cancelled, skipped = 0, []
        for execution_id in queryset.values_list("id", flat=True):
            try:
                execution_cancel(execution_id=execution_id)
                cancelled += 1
            except CannotCancel as exc:
                skipped.append(f"{execution_id} ({exc.status})")
        if cancelled:
            self.message_user(request, f"Cancelled {cancelled} execution(s).", messages.SUCCESS)
        if skipped:
            self.message_user(
                request, "Not cancelled, already ended: " + ", ".join(skipped), messages.WARNING
            )
