"""The WebSocket routes: one execution's socket, and the execution feed."""

from django.urls import re_path

from .consumers import ExecutionProgressConsumer
from .feed import ExecutionFeedConsumer

websocket_urlpatterns = [
    re_path(r"^api/v1/executions/(?P<execution_id>[^/]+)/progress/ws/?$", ExecutionProgressConsumer.as_asgi()),
    re_path(r"^api/v1/executions/ws/?$", ExecutionFeedConsumer.as_asgi()),
]
