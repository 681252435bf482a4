"""Server-rendered pages: the list, one execution (live), and the start form.

See views.py; docs/guides/pages-and-admin.md lists the URLs. A page typed with a
trailing slash redirects to its address without one (APPEND_SLASH stays off for the API).
"""

from collections.abc import Callable

from django.http import HttpResponseBase
from django.urls import path
from django.views.generic import RedirectView

from . import views


def without_slash(pattern_name: str) -> Callable[..., HttpResponseBase]:
    """A permanent redirect of GET and HEAD to the named page, query string kept."""
    return RedirectView.as_view(
        pattern_name=pattern_name, permanent=True, query_string=True, http_method_names=["get", "head"]
    )


urlpatterns = [
    path("", views.execution_list, name="execution-list"),
    path("executions/new", views.execution_start, name="execution-start"),
    path("executions/<str:execution_id>", views.execution_detail, name="execution-detail"),
    path("executions/<str:execution_id>/cancel", views.execution_cancel_view, name="execution-cancel"),
    path("executions/<str:execution_id>/rerun", views.execution_rerun_view, name="execution-rerun"),
    # The same two pages as Django users type them, with a trailing slash.
    path("executions/new/", without_slash("execution-start")),
    path("executions/<str:execution_id>/", without_slash("execution-detail")),
]
