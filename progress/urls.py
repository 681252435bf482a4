"""HTTP routes of the streaming edge, under ``/api/v1/`` (the WebSocket's are in routing.py).

Served with and without a trailing slash, like every API path (no redirect).
"""

from django.urls import re_path

from .sse import ExecutionProgressStreamView

urlpatterns = [
    re_path(
        r"^executions/(?P<execution_id>[^/]+)/progress/stream/?$",
        ExecutionProgressStreamView.as_view(),
        name="api-execution-progress-stream",
    ),
]
