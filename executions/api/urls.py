"""The REST API's routes, under ``/api/v1/`` (``config/urls.py`` mounts them).

Each path is served with and without a trailing slash, never redirected (a
redirected POST turns into a GET in many clients). The two hot GETs go to
``async_views`` first, which hands what it does not serve to the DRF view.
"""

from django.urls import re_path

from . import views
from .async_views import async_get, read_execution, read_progress

EXECUTION = r"executions/(?P<execution_id>[^/]+)"


def both(pattern: str) -> str:
    return rf"^{pattern}/?$"


urlpatterns = [
    re_path(both("executions"), views.ExecutionCollectionView.as_view(), name="api-executions"),
    # The two GETs pollers hit: async, one query, DRF for anything unusual (async_views.py).
    # (django-stubs types a view as a sync callable; Django awaits an async one.)
    re_path(
        both(EXECUTION),
        async_get(views.ExecutionDetailView, read_execution),  # type: ignore[arg-type]  # an async view
        name="api-execution",
    ),
    re_path(
        both(EXECUTION + "/progress"),
        async_get(views.ExecutionProgressView, read_progress),  # type: ignore[arg-type]  # an async view
        name="api-execution-progress",
    ),
    re_path(both(EXECUTION + "/cancel"), views.ExecutionCancelView.as_view(), name="api-execution-cancel"),
    re_path(both(EXECUTION + "/rerun"), views.ExecutionRerunView.as_view(), name="api-execution-rerun"),
    re_path(both(EXECUTION + "/events"), views.ExecutionEventsView.as_view(), name="api-execution-events"),
    re_path(both(EXECUTION + "/steps"), views.ExecutionStepsView.as_view(), name="api-execution-steps"),
    re_path(both("targets"), views.TargetListView.as_view(), name="api-targets"),
    re_path(both("auth/token"), views.TokenView.as_view(), name="api-token"),
]
