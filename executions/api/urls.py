"""API routes. Each path is served with and without a trailing slash (no
redirect: a redirected POST turns into a GET in many clients)."""

from django.urls import re_path

from . import views

EXECUTION = r"executions/(?P<execution_id>[^/]+)"


def both(pattern: str) -> str:
    return rf"^{pattern}/?$"


urlpatterns = [
    re_path(both("executions"), views.ExecutionCollectionView.as_view(), name="api-executions"),
    re_path(both(EXECUTION), views.ExecutionDetailView.as_view(), name="api-execution"),
    re_path(both(EXECUTION + "/progress"), views.ExecutionProgressView.as_view(), name="api-execution-progress"),
    re_path(both(EXECUTION + "/cancel"), views.ExecutionCancelView.as_view(), name="api-execution-cancel"),
    re_path(both(EXECUTION + "/rerun"), views.ExecutionRerunView.as_view(), name="api-execution-rerun"),
    re_path(both(EXECUTION + "/events"), views.ExecutionEventsView.as_view(), name="api-execution-events"),
    re_path(both("targets"), views.TargetListView.as_view(), name="api-targets"),
    re_path(both("auth/token"), views.TokenView.as_view(), name="api-token"),
]
