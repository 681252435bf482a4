"""ASGI entry point: HTTP goes to Django, WebSockets to the progress consumer.

Served by ``manage.py serve`` (or one ``daphne config.asgi:application``);
``tune_daphne()`` adjusts daphne once, here, before it starts serving.
"""

import os

from django.core.asgi import get_asgi_application

from core import memtrace

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
# Leak hunts only (MEMORY_TRACE_DIR): traces from here on, so start-up is included.
memtrace.install_from_environment()
# Django must be set up before anything imports models.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402 - after the set-up above

from core.serving.daphne import tune_daphne  # noqa: E402 - after the set-up above
from core.serving.http import BoundedBody  # noqa: E402 - after the set-up above
from progress.auth import TokenOrSessionAuthMiddleware  # noqa: E402 - after the set-up above
from progress.origin import BrowserOriginValidator  # noqa: E402 - after the set-up above
from progress.routing import websocket_urlpatterns  # noqa: E402 - after the set-up above

tune_daphne()

application = ProtocolTypeRouter(
    {
        "http": BoundedBody(django_asgi_app),
        "websocket": BrowserOriginValidator(
            TokenOrSessionAuthMiddleware(URLRouter(websocket_urlpatterns))
        ),
    }
)
