from django.urls import re_path

from .consumers import ExecutionProgressConsumer

websocket_urlpatterns = [
    re_path(r"^api/v1/executions/(?P<execution_id>[^/]+)/progress/ws/?$", ExecutionProgressConsumer.as_asgi()),
]
